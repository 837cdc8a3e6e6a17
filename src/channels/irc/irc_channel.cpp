#include "channels/irc/irc_channel.h"

#include <openssl/ssl.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>
#include <utility>

#include "channels/group_entry.h"

namespace drawbridge::channels {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using nlohmann::json;
using pipeline::LinkState;
using pipeline::SendStatus;
using namespace std::chrono_literals;

namespace {

constexpr core::Duration kFirstBackoff{1000};
constexpr core::Duration kMaxBackoff{60000};
constexpr core::Duration kRegisterTimeout{30000};
constexpr core::Duration kKeepalive{90000};  // silence this long: PING; twice: reconnect
constexpr core::Duration kStopBound{2000};   // QUIT sent: wait this long for the server's close
constexpr core::Duration kRejoinDelay{10000};
constexpr int kMaxNickAttempts = 5;           // nick, nick_ ... nick____
constexpr std::size_t kMaxQueuedLines = 400;  // about 200 s of flood-controlled output
constexpr std::size_t kMaxCapList = 4096;
constexpr std::size_t kMaxExternalIdTag = 128;

// Keys of the channel object drawbridge reads; config/schema.cpp reads the first four.
const std::set<std::string>& known_keys() {
  static const std::set<std::string> keys = {
      "enabled",     "agent",    "maxMessageChars", "notices",       "host",
      "port",        "tls",      "tlsInsecure",     "nick",          "username",
      "realname",    "password", "passwordEnv",     "channels",      "groupPolicy",
      "groups",      "dmPolicy", "allowFrom",       "commandPrefix", "accounts",
      "historyLimit"};
  return keys;
}

bool has_line_break(const std::string& s) {
  return s.find_first_of(std::string("\r\n\0", 3)) != std::string::npos;
}

}  // namespace

std::optional<IrcOptions> IrcOptions::parse(
    const json& raw, std::string& error,
    const std::function<std::optional<std::string>(const std::string&)>& env) {
  IrcOptions o;
  const std::string at = "channels.irc.";
  if (!raw.is_object()) {
    error = "channels.irc: expected an object";
    return std::nullopt;
  }
  auto text = [&](const char* key, std::string& out) {
    if (!raw.contains(key)) return true;
    if (!raw[key].is_string()) {
      error = at + key + ": expected a string";
      return false;
    }
    out = raw[key].get<std::string>();
    if (has_line_break(out)) {
      error = at + key + ": must not contain a line break or NUL";
      return false;
    }
    return true;
  };
  auto flag = [&](const char* key, bool& out) {
    if (!raw.contains(key)) return true;
    if (!raw[key].is_boolean()) {
      error = at + key + ": expected true or false";
      return false;
    }
    out = raw[key].get<bool>();
    return true;
  };
  std::string password_env;
  if (!text("host", o.host) || !text("nick", o.nick) || !text("username", o.username) ||
      !text("realname", o.realname) || !text("password", o.password) ||
      !text("passwordEnv", password_env) || !text("groupPolicy", o.group_policy) ||
      !text("dmPolicy", o.dm_policy) || !text("commandPrefix", o.command_prefix) ||
      !flag("tls", o.tls) || !flag("tlsInsecure", o.tls_insecure)) {
    return std::nullopt;
  }
  if (o.host.empty() || o.host.find(' ') != std::string::npos) {
    error = at + "host: expected the server's host name";
    return std::nullopt;
  }
  o.port = o.tls ? 6697 : 6667;
  if (raw.contains("port")) {
    const auto& v = raw["port"];
    if (!v.is_number_integer() || v.get<std::int64_t>() < 1 || v.get<std::int64_t>() > 65535) {
      error = at + "port: expected an integer in 1..65535";
      return std::nullopt;
    }
    o.port = v.get<int>();
  }
  if (!irc::is_valid_nick(o.nick) || o.nick.size() > 30) {
    error = at +
            "nick: expected a nick (1 to 30 letters, digits or -[]\\`^{}|_, not starting "
            "with a digit or -)";
    return std::nullopt;
  }
  if (o.username.empty()) o.username = o.nick;
  if (o.username.find_first_of(" @") != std::string::npos) {
    error = at + "username: must not contain a space or @";
    return std::nullopt;
  }
  if (o.realname.empty()) o.realname = "drawbridge";
  if (o.password.empty() && !password_env.empty()) {
    auto v = env(password_env);
    if (!v || v->empty()) {
      error = at + "passwordEnv: the variable " + password_env + " is not set";
      return std::nullopt;
    }
    if (has_line_break(*v)) {
      error = at + "passwordEnv: the variable " + password_env +
              " holds a line break or NUL";  // never the value
      return std::nullopt;
    }
    o.password = *v;
  }
  if (raw.contains("channels")) {
    const auto& v = raw["channels"];
    if (!v.is_array()) {
      error = at + "channels: expected an array of channel names such as \"#ops\"";
      return std::nullopt;
    }
    for (std::size_t i = 0; i < v.size(); ++i) {
      if (!v[i].is_string() || !irc::is_channel_name(v[i].get<std::string>())) {
        error = at + "channels[" + std::to_string(i) +
                "]: expected a channel name such as \"#ops\" (no spaces or commas)";
        return std::nullopt;
      }
      o.channels.push_back(v[i].get<std::string>());
    }
  }
  if (o.group_policy != "open" && o.group_policy != "allowlist" && o.group_policy != "disabled") {
    error = at + "groupPolicy: expected one of \"open\", \"allowlist\", \"disabled\"";
    return std::nullopt;
  }
  if (o.dm_policy == "pairing") {
    o.dm_policy = "allowlist";  // pairing codes are not implemented: only allowFrom is answered
  } else if (o.dm_policy != "open" && o.dm_policy != "allowlist" && o.dm_policy != "disabled") {
    error = at + "dmPolicy: expected one of \"pairing\", \"allowlist\", \"open\", \"disabled\"";
    return std::nullopt;
  }
  if (raw.contains("groups")) {
    const auto& v = raw["groups"];
    if (!v.is_object()) {
      error = at + "groups: expected an object keyed by channel name";
      return std::nullopt;
    }
    for (const auto& [name, g] : v.items()) {
      const std::string key = at + "groups." + name;
      if (name != "*" && !irc::is_channel_name(name)) {
        error = key + ": expected a channel name such as \"#ops\" (or \"*\")";
        return std::nullopt;
      }
      auto group = parse_group_entry(g, key, error, o.warnings);
      if (!group) return std::nullopt;
      o.groups[irc::lower(name)] = {group->require_mention};
    }
  }
  if (raw.contains("allowFrom")) {
    const auto& v = raw["allowFrom"];
    if (!v.is_array()) {
      error = at + "allowFrom: expected an array of nicks";
      return std::nullopt;
    }
    for (std::size_t i = 0; i < v.size(); ++i) {
      std::string s = v[i].is_string() ? v[i].get<std::string>() : std::string();
      if (s.rfind("irc:", 0) == 0) s = s.substr(4);  // OpenClaw's prefixed form
      if (s.empty() || s.find(' ') != std::string::npos || has_line_break(s)) {
        error = at + "allowFrom[" + std::to_string(i) + "]: expected a nick (or nick!user@host)";
        return std::nullopt;
      }
      o.allow_from.insert(irc::lower(s));
    }
  }
  if (raw.contains("accounts")) {
    if (!raw["accounts"].is_object()) {
      error = at + "accounts: expected an object keyed by account id";
      return std::nullopt;
    }
    if (!raw["accounts"].empty()) {
      o.warnings.push_back(at +
                           "accounts: several IRC accounts are not supported yet; the top-level "
                           "account is used");
    }
  }
  for (const auto& [k, v] : raw.items()) {
    if (!known_keys().count(k)) {
      o.warnings.push_back(at + k + ": not supported by drawbridge yet; ignored");
    }
  }
  return o;
}

// One TCP (or TLS) connection. Handlers hold it by shared_ptr: a stream is never destroyed
// under an operation in flight, and a handler of a connection that is no longer conn_ returns.
struct IrcChannel::Conn {
  Conn(asio::io_context& io, std::shared_ptr<asio::ssl::context> ctx)
      : resolver(io), tls_context(std::move(ctx)) {
    if (tls_context) {
      tls = std::make_unique<asio::ssl::stream<tcp::socket>>(io, *tls_context);
    } else {
      plain = std::make_unique<tcp::socket>(io);
    }
  }
  tcp::socket& socket() { return tls ? tls->next_layer() : *plain; }
  void close() {
    boost::system::error_code ec;
    resolver.cancel();
    socket().shutdown(tcp::socket::shutdown_both, ec);
    socket().close(ec);
    closed = true;
  }
  template <class Handler>
  void read_some(Handler&& h) {
    if (tls) {
      tls->async_read_some(asio::buffer(rbuf), std::forward<Handler>(h));
    } else {
      plain->async_read_some(asio::buffer(rbuf), std::forward<Handler>(h));
    }
  }
  template <class Handler>
  void write(Handler&& h) {
    if (tls) {
      asio::async_write(*tls, asio::buffer(wbuf), std::forward<Handler>(h));
    } else {
      asio::async_write(*plain, asio::buffer(wbuf), std::forward<Handler>(h));
    }
  }

  tcp::resolver resolver;
  std::shared_ptr<asio::ssl::context> tls_context;
  std::unique_ptr<asio::ssl::stream<tcp::socket>> tls;
  std::unique_ptr<tcp::socket> plain;
  std::array<char, 4096> rbuf{};
  std::string wbuf;
  bool open = false;  // connected (and TLS established): lines may be written
  bool closed = false;
};

IrcChannel::IrcChannel(std::string id, IrcOptions options, asio::io_context& io,
                       core::Executor& executor, core::Clock& clock, pipeline::Pipeline& pipeline)
    : id_(std::move(id)),
      options_(std::move(options)),
      io_(io),
      executor_(executor),
      clock_(clock),
      pipeline_(pipeline),
      nick_(options_.nick) {
  if (options_.tls) {
    tls_context_ = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
    if (options_.tls_insecure) {
      tls_context_->set_verify_mode(asio::ssl::verify_none);
    } else {
      boost::system::error_code ec;
      tls_context_->set_default_verify_paths(ec);
      if (ec) spdlog::warn("channel {}: no default CA certificates: {}", id_, ec.message());
      tls_context_->set_verify_mode(asio::ssl::verify_peer);
    }
  }
}

IrcChannel::~IrcChannel() {
  *alive_ = false;
  for (auto* t : {&backoff_timer_, &refill_timer_, &register_timer_, &keepalive_timer_,
                  &stop_timer_, &rejoin_timer_}) {
    if (*t) executor_.cancel(**t);
  }
  if (conn_) conn_->close();
}

void IrcChannel::start() {
  running_ = true;
  stopping_ = false;
  if (options_.dm_policy == "allowlist" && options_.allow_from.empty()) {
    spdlog::warn(
        "channel {}: allowFrom is empty and dmPolicy is \"allowlist\": no private message will "
        "be answered (set channels.{}.allowFrom to nicks, or dmPolicy \"open\")",
        id_, id_);
  }
  if (options_.group_policy == "allowlist" && options_.groups.empty() &&
      !options_.channels.empty()) {
    spdlog::warn(
        "channel {}: groupPolicy is \"allowlist\" and groups is empty: no channel message will "
        "be answered (set channels.{}.groups, or groupPolicy \"open\")",
        id_, id_);
  }
  connect();
}

void IrcChannel::connect() {
  if (!running_) return;
  state_ = LinkState::connecting;
  auto c = std::make_shared<Conn>(io_, tls_context_);
  conn_ = c;
  spdlog::info("channel {}: connecting to {}:{}{}", id_, options_.host, options_.port,
               options_.tls ? " (TLS)" : "");
  c->resolver.async_resolve(
      options_.host, std::to_string(options_.port),
      [this, alive = alive_, c](const boost::system::error_code& ec,
                                tcp::resolver::results_type results) {
        if (!*alive || c != conn_) return;
        if (ec) return fail_connection("cannot resolve " + options_.host + ": " + ec.message());
        asio::async_connect(
            c->socket(), results,
            [this, alive, c](const boost::system::error_code& ec2, const tcp::endpoint&) {
              if (!*alive || c != conn_) return;
              if (ec2) {
                return fail_connection("cannot connect to " + options_.host + ":" +
                                       std::to_string(options_.port) + ": " + ec2.message());
              }
              if (!c->tls) return on_connected(c);
              if (!SSL_set_tlsext_host_name(c->tls->native_handle(), options_.host.c_str())) {
                return fail_connection("TLS: cannot set the server name");
              }
              if (!options_.tls_insecure) {
                c->tls->set_verify_callback(asio::ssl::host_name_verification(options_.host));
              }
              c->tls->async_handshake(asio::ssl::stream_base::client,
                                      [this, alive, c](const boost::system::error_code& ec3) {
                                        if (!*alive || c != conn_) return;
                                        if (ec3) {
                                          return fail_connection("TLS handshake: " + ec3.message());
                                        }
                                        on_connected(c);
                                      });
            });
      });
}

void IrcChannel::on_connected(const std::shared_ptr<Conn>& c) {
  // External ids of this connection: its start in ms, strictly after the previous one's, and
  // a sequence number (docs/DECISIONS.md "IRC").
  conn_epoch_ms_ = std::max(clock_.wall_ms(), conn_epoch_ms_ + 1);
  seq_ = 0;
  rbuf_.clear();
  skipping_ = false;
  registered_ = false;
  nick_attempt_ = 0;
  nick_shorten_ = false;
  nick_ = options_.nick;
  cap_list_.clear();
  cap_tags_ = false;
  sasl_ = false;
  own_mask_.clear();
  tokens_ = kBurst;
  c->open = true;
  read(c);
  // PASS first (RFC 2812 3.1.1); registration then waits for CAP END.
  if (!options_.password.empty()) urgent("PASS " + options_.password);
  urgent("CAP LS 302");
  urgent("NICK " + nick_);
  urgent(irc::format("USER", {options_.username, "0", "*", options_.realname}));
  register_timer_ = executor_.schedule(kRegisterTimeout, [this, alive = alive_] {
    if (!*alive) return;
    register_timer_.reset();
    if (!registered_) fail_connection("no welcome (001) from the server within 30 s");
  });
}

void IrcChannel::read(const std::shared_ptr<Conn>& c) {
  c->read_some([this, alive = alive_, c](const boost::system::error_code& ec, std::size_t n) {
    if (!*alive || c != conn_) return;
    if (ec) {
      if (stopping_) return finish_stop();
      return fail_connection(ec == asio::error::eof ? "the server closed the connection"
                                                    : "read: " + ec.message());
    }
    on_data(c, n);
  });
}

void IrcChannel::on_data(const std::shared_ptr<Conn>& c, std::size_t n) {
  seen_since_ping_ = true;
  ping_sent_ = false;
  std::string_view data(c->rbuf.data(), n);
  while (!data.empty()) {
    const auto lf = data.find('\n');
    const std::string_view piece = data.substr(0, lf);
    if (skipping_) {
      if (lf != std::string_view::npos) skipping_ = false;
    } else if (rbuf_.size() + piece.size() > kMaxInboundLine) {
      spdlog::warn("channel {}: a line of more than {} bytes from the server was dropped", id_,
                   kMaxInboundLine);
      rbuf_.clear();
      skipping_ = lf == std::string_view::npos;
    } else {
      rbuf_.append(piece);
      if (lf != std::string_view::npos) {
        std::string line = std::move(rbuf_);
        rbuf_.clear();
        on_line(line);
        if (c != conn_) return;  // the line ended the connection
      }
    }
    if (lf == std::string_view::npos) break;
    data.remove_prefix(lf + 1);
  }
  read(c);
}

void IrcChannel::on_line(const std::string& line) {
  auto parsed = irc::parse(line);
  if (!parsed) return;
  const irc::Message& m = *parsed;
  const std::string& cmd = m.command;
  if (cmd == "PING") {
    urgent(irc::format("PONG", {m.param(0)}));
  } else if (cmd == "CAP") {
    on_cap(m);
  } else if (cmd == "AUTHENTICATE") {
    if (m.param(0) == "+" && sasl_) {
      const std::string payload =
          options_.username + '\0' + options_.username + '\0' + options_.password;
      const std::string encoded = irc::base64(payload);
      // 400-byte chunks; a last chunk of exactly 400 is followed by "+" (IRCv3 SASL).
      for (std::size_t i = 0; i < encoded.size(); i += 400) {
        urgent("AUTHENTICATE " + encoded.substr(i, 400));
      }
      if (encoded.size() % 400 == 0) urgent("AUTHENTICATE +");
    }
  } else if (cmd == "903") {
    spdlog::info("channel {}: SASL authentication succeeded", id_);
    urgent("CAP END");
  } else if (cmd == "902" || cmd == "904" || cmd == "905" || cmd == "906" || cmd == "908") {
    note_error("SASL authentication failed (" + cmd + "): continuing without");
    spdlog::error("channel {}: {}", id_, last_error_);
    urgent("CAP END");
  } else if (cmd == "001") {
    on_welcome(m.param(0));
  } else if ((cmd == "433" || cmd == "432" || cmd == "436" || cmd == "437") && !registered_) {
    next_nick(cmd == "432");
  } else if (cmd == "NICK") {
    if (irc::same_name(irc::nick_of(m.prefix), nick_) && !m.param(0).empty()) {
      nick_ = m.param(0);
    }
  } else if (cmd == "JOIN") {
    if (irc::same_name(irc::nick_of(m.prefix), nick_)) {
      own_mask_ = m.prefix;
      spdlog::info("channel {}: joined {}", id_, irc::sanitize_utf8(m.param(0)));
    }
  } else if (cmd == "KICK") {
    if (irc::same_name(m.param(1), nick_) && running_ && !rejoin_timer_) {
      spdlog::warn("channel {}: kicked from {}; rejoining in {} s", id_,
                   irc::sanitize_utf8(m.param(0)), kRejoinDelay.count() / 1000);
      rejoin_timer_ = executor_.schedule(kRejoinDelay, [this, alive = alive_] {
        if (!*alive) return;
        rejoin_timer_.reset();
        if (!registered_ || !running_) return;
        for (const auto& ch : options_.channels) queue_.push_back({"JOIN " + ch, nullptr});
        pump();
      });
    }
  } else if (cmd == "471" || cmd == "473" || cmd == "474" || cmd == "475" || cmd == "403") {
    note_error("cannot join " + irc::sanitize_utf8(m.param(1)) + ": " +
               irc::sanitize_utf8(m.param(2)));
    spdlog::warn("channel {}: {}", id_, last_error_);
  } else if (cmd == "ERROR") {
    if (!stopping_) {  // after our QUIT, the server's ERROR is its goodbye
      note_error("server: " + irc::sanitize_utf8(m.param(0)));
      spdlog::warn("channel {}: {}", id_, last_error_);
    }
  } else if (cmd == "PRIVMSG") {
    on_privmsg(m);
  }
}

void IrcChannel::on_cap(const irc::Message& m) {
  const std::string& sub = m.param(1);
  if (sub == "LS") {
    // "CAP * LS * :a b" continues; "CAP * LS :c d" ends the list.
    const bool more = m.params.size() >= 4 && m.param(2) == "*";
    if (cap_list_.size() < kMaxCapList) cap_list_ += " " + m.params.back();
    if (more) return;
    std::vector<std::string> want;
    std::string_view caps = cap_list_;
    auto offered = [&](std::string_view cap) {
      std::size_t pos = 0;
      while (pos < caps.size()) {
        auto end = caps.find(' ', pos);
        if (end == std::string_view::npos) end = caps.size();
        auto word = caps.substr(pos, end - pos);
        if (word.substr(0, word.find('=')) == cap) return true;
        pos = end + 1;
      }
      return false;
    };
    if (!options_.password.empty() && offered("sasl")) want.push_back("sasl");
    if (offered("message-tags")) want.push_back("message-tags");
    if (want.empty()) return urgent("CAP END");
    std::string req;
    for (const auto& w : want) req += (req.empty() ? "" : " ") + w;
    urgent(irc::format("CAP", {"REQ", req}));
  } else if (sub == "ACK") {
    const std::string acked = " " + m.params.back() + " ";
    cap_tags_ = cap_tags_ || acked.find(" message-tags ") != std::string::npos;
    if (acked.find(" sasl ") != std::string::npos) {
      sasl_ = true;
      urgent("AUTHENTICATE PLAIN");
    } else if (!registered_) {
      urgent("CAP END");
    }
  } else if (sub == "NAK") {
    if (!registered_) urgent("CAP END");
  }
}

void IrcChannel::on_welcome(const std::string& nick) {
  if (registered_) return;
  registered_ = true;
  if (irc::is_valid_nick(nick)) nick_ = nick;
  if (register_timer_) {
    executor_.cancel(*register_timer_);
    register_timer_.reset();
  }
  backoff_ = core::Duration{0};
  for (const auto& ch : options_.channels) queue_.push_back({"JOIN " + ch, nullptr});
  pump();
  ready_ = running_;
  state_ = LinkState::connected;
  spdlog::info("channel {}: registered on {} as {}{}", id_, options_.host, nick_,
               nick_ == options_.nick ? "" : " (" + options_.nick + " is in use)");
  arm_keepalive();
}

void IrcChannel::next_nick(bool erroneous) {
  if (erroneous && nick_attempt_ == 0) {
    return fail_connection("the server refuses the nick " + options_.nick + " as erroneous");
  }
  if (erroneous) nick_shorten_ = true;
  if (++nick_attempt_ >= kMaxNickAttempts) {
    return fail_connection("no nick available (" + options_.nick + " and " +
                           std::to_string(kMaxNickAttempts - 1) + " variants are in use)");
  }
  nick_ = irc::nick_candidate(options_.nick, nick_attempt_, nick_shorten_);
  spdlog::warn("channel {}: nick in use or refused; trying {}", id_, nick_);
  urgent("NICK " + nick_);
}

void IrcChannel::on_privmsg(const irc::Message& m) {
  if (!running_ || m.params.size() < 2) return;  // after stop(): nothing is accepted
  const std::string sender = irc::nick_of(m.prefix);
  if (sender.empty() || irc::same_name(sender, nick_) || !irc::is_valid_nick(sender)) return;
  const std::string& raw_text = m.params[1];
  if (irc::is_ctcp(raw_text)) {
    spdlog::debug("channel {}: CTCP from {} ignored", id_, sender);
    return;
  }
  const std::string& target = m.params[0];
  pipeline::InboundMessage in;
  in.channel = id_;
  in.sender = sender;
  if (irc::is_channel_name(target)) {
    bool require_mention = true;
    if (!channel_allowed(target, require_mention)) return;
    auto addressed = irc::addressed_text(raw_text, nick_, options_.command_prefix);
    if (!addressed && nick_ != options_.nick) {
      addressed = irc::addressed_text(raw_text, options_.nick, {});
    }
    if (!addressed && require_mention) return;
    in.text = irc::sanitize_utf8(addressed ? *addressed : raw_text);
    in.chat_id = irc::sanitize_utf8(target);
    in.session_key = id_ + ":" + irc::lower(in.chat_id);
  } else if (irc::same_name(target, nick_)) {
    if (!dm_allowed(sender, m.prefix)) {
      spdlog::info("channel {}: private message from {} ignored (dmPolicy \"{}\")", id_, sender,
                   options_.dm_policy);
      return;
    }
    in.text = irc::sanitize_utf8(raw_text);
    in.chat_id = sender;
    in.session_key = id_ + ":dm:" + irc::lower(sender);
  } else {
    return;  // to a channel type we do not know, or to a nick that is not ours
  }
  if (in.text.empty()) return;
  in.external_id = next_external_id(m);
  const std::string ext = in.external_id;
  try {
    pipeline_.accept(in, [this, alive = alive_, ext](pipeline::AcceptResult r) {
      if (!*alive) return;
      if (!r.error.empty()) {
        // IRC delivers once: a message that cannot be journaled is lost (README "IRC").
        note_error("message " + ext + " not journaled: " + r.error);
        spdlog::error("channel {}: {}", id_, last_error_);
      }
    });
  } catch (const std::exception& e) {
    spdlog::error("channel {}: message {} refused: {}", id_, ext, e.what());
  }
}

std::string IrcChannel::next_external_id(const irc::Message& m) {
  if (cap_tags_) {
    if (const auto* msgid = m.tag("msgid"); msgid && !msgid->empty()) {
      return "msgid:" + irc::sanitize_utf8(msgid->substr(0, kMaxExternalIdTag));
    }
  }
  return std::to_string(conn_epoch_ms_) + "-" + std::to_string(++seq_);
}

bool IrcChannel::channel_allowed(const std::string& chan, bool& require_mention) const {
  if (options_.group_policy == "disabled") return false;
  const auto key = irc::lower(chan);
  auto it = options_.groups.find(key);
  if (it == options_.groups.end()) it = options_.groups.find("*");
  if (it == options_.groups.end()) {
    require_mention = true;
    return options_.group_policy == "open";
  }
  require_mention = it->second.require_mention;
  return true;
}

bool IrcChannel::dm_allowed(const std::string& nick, const std::string& mask) const {
  if (options_.dm_policy == "disabled") return false;
  if (options_.dm_policy == "open") return true;
  return options_.allow_from.count("*") || options_.allow_from.count(irc::lower(nick)) ||
         options_.allow_from.count(irc::lower(mask));
}

std::size_t IrcChannel::relay_reserve() const {
  // ":nick!user@host " the server prepends when it relays our line; before our first JOIN
  // shows it, the longest it can be (a host name is at most 63 bytes).
  if (!own_mask_.empty()) return own_mask_.size() + 2;
  return 1 + nick_.size() + 1 + options_.username.size() + 1 + 1 + 63 + 1;
}

void IrcChannel::send(const pipeline::OutboundPart& part,
                      std::function<void(SendStatus, std::string)> done) {
  auto later = [this](std::function<void(SendStatus, std::string)> d, SendStatus s,
                      std::string why) {
    executor_.post([d = std::move(d), s, why = std::move(why)] { d(s, why); });
  };
  if (!irc::is_valid_target(part.chat_id)) {
    return later(std::move(done), SendStatus::failed,
                 "not an IRC channel or nick: " + irc::sanitize_utf8(part.chat_id));
  }
  if (!registered_ || !conn_ || stopping_) {
    return later(std::move(done), SendStatus::retry, "not connected to " + options_.host);
  }
  auto lines = irc::privmsg_lines(part.chat_id, part.text, relay_reserve());
  if (lines.empty()) return later(std::move(done), SendStatus::sent, {});
  if (queue_.size() + lines.size() > kMaxQueuedLines) {
    return later(std::move(done), SendStatus::retry, "send queue full (flood control)");
  }
  for (std::size_t i = 0; i < lines.size(); ++i) {
    queue_.push_back({std::move(lines[i]), i + 1 == lines.size() ? std::move(done) : nullptr});
  }
  pump();
}

void IrcChannel::urgent(std::string line) {
  urgent_.push_back(std::move(line));
  pump();
}

// Writes what may go now: every urgent line, and queued lines while tokens last. One write
// is in flight at a time; a part is reported sent once its last line is written.
void IrcChannel::pump() {
  if (writing_ || !conn_ || !conn_->open || conn_->closed) return;
  auto c = conn_;
  c->wbuf.clear();
  while (!urgent_.empty()) {
    c->wbuf += urgent_.front() + "\r\n";
    urgent_.pop_front();
  }
  while (!queue_.empty() && tokens_ > 0 && registered_) {
    c->wbuf += queue_.front().line + "\r\n";
    if (queue_.front().done) in_write_.push_back(std::move(queue_.front().done));
    queue_.pop_front();
    --tokens_;
  }
  arm_refill();
  if (c->wbuf.empty()) return;
  writing_ = true;
  c->write([this, alive = alive_, c](const boost::system::error_code& ec, std::size_t) {
    if (!*alive || c != conn_) return;
    writing_ = false;
    auto written = std::move(in_write_);
    in_write_.clear();
    if (ec) {
      for (auto& d : written) {
        executor_.post([d = std::move(d), why = ec.message()] { d(SendStatus::retry, why); });
      }
      if (stopping_) return finish_stop();
      return fail_connection("write: " + ec.message());
    }
    for (auto& d : written) {
      executor_.post([d = std::move(d)] { d(SendStatus::sent, {}); });
    }
    pump();
  });
}

void IrcChannel::arm_refill() {
  if (refill_timer_ || tokens_ >= kBurst) return;
  refill_timer_ = executor_.schedule(kRefill, [this, alive = alive_] {
    if (!*alive) return;
    refill_timer_.reset();
    tokens_ = std::min(tokens_ + 1, kBurst);
    pump();
    arm_refill();
  });
}

void IrcChannel::arm_keepalive() {
  if (keepalive_timer_) executor_.cancel(*keepalive_timer_);
  seen_since_ping_ = false;
  keepalive_timer_ = executor_.schedule(kKeepalive, [this, alive = alive_] {
    if (!*alive) return;
    keepalive_timer_.reset();
    if (!registered_ || stopping_) return;
    if (!seen_since_ping_) {
      if (ping_sent_) return fail_connection("no answer from the server for 180 s");
      ping_sent_ = true;
      urgent("PING :drawbridge");
    }
    arm_keepalive();
  });
}

void IrcChannel::note_error(const std::string& why) {
  last_error_ = why;
  last_error_at_ms_ = clock_.wall_ms();
  ++errors_;
}

void IrcChannel::fail_pending(const std::string& why) {
  for (auto& l : queue_) {
    if (l.done) {
      executor_.post([d = std::move(l.done), why] { d(SendStatus::retry, why); });
    }
  }
  queue_.clear();
  for (auto& d : in_write_) {
    executor_.post([d = std::move(d), why] { d(SendStatus::retry, why); });
  }
  in_write_.clear();
  urgent_.clear();
}

void IrcChannel::fail_connection(const std::string& why) {
  if (conn_) conn_->close();
  conn_.reset();
  writing_ = false;
  registered_ = false;
  ready_ = false;
  fail_pending(why);
  for (auto* t : {&register_timer_, &keepalive_timer_, &rejoin_timer_}) {
    if (*t) {
      executor_.cancel(**t);
      t->reset();
    }
  }
  if (stopping_ || !running_) return finish_stop();
  note_error(why);
  state_ = LinkState::failed;
  backoff_ = backoff_.count() == 0 ? kFirstBackoff : std::min(backoff_ * 2, kMaxBackoff);
  spdlog::warn("channel {}: {}; reconnecting in {} ms", id_, why, backoff_.count());
  if (backoff_timer_) executor_.cancel(*backoff_timer_);
  backoff_timer_ = executor_.schedule(backoff_, [this, alive = alive_] {
    if (!*alive) return;
    backoff_timer_.reset();
    connect();
  });
}

void IrcChannel::stop(std::function<void()> done) {
  if (stopping_ && state_ == LinkState::stopped && !stop_done_) {
    if (done) executor_.post(std::move(done));  // already stopped
    return;
  }
  if (stopping_) {
    // A second stop while one is under way: both are told when it ends.
    auto first = std::move(stop_done_);
    stop_done_ = [first = std::move(first), done = std::move(done)] {
      if (first) first();
      if (done) done();
    };
    return;
  }
  running_ = false;
  stopping_ = true;
  ready_ = false;
  stop_done_ = std::move(done);
  for (auto* t : {&backoff_timer_, &register_timer_, &keepalive_timer_, &rejoin_timer_}) {
    if (*t) {
      executor_.cancel(**t);
      t->reset();
    }
  }
  // Replies not yet written go to the next start (the outbox keeps them).
  for (auto& l : queue_) {
    if (l.done) {
      executor_.post([d = std::move(l.done)] { d(SendStatus::retry, "the channel stops"); });
    }
  }
  queue_.clear();
  if (!conn_ || !conn_->open || conn_->closed) return finish_stop();
  // QUIT, then the server closes; it is given kStopBound to do so.
  urgent("QUIT :restarting");
  stop_timer_ = executor_.schedule(kStopBound, [this, alive = alive_] {
    if (!*alive) return;
    stop_timer_.reset();
    finish_stop();
  });
}

void IrcChannel::finish_stop() {
  if (stop_timer_) {
    executor_.cancel(*stop_timer_);
    stop_timer_.reset();
  }
  if (refill_timer_) {
    executor_.cancel(*refill_timer_);
    refill_timer_.reset();
  }
  if (conn_) conn_->close();
  conn_.reset();
  writing_ = false;
  registered_ = false;
  ready_ = false;
  fail_pending("the channel stops");
  state_ = LinkState::stopped;
  if (!stop_done_) return;
  auto done = std::move(stop_done_);
  stop_done_ = nullptr;
  executor_.post([done = std::move(done)] { done(); });
}

pipeline::ChannelHealth IrcChannel::health() const {
  pipeline::ChannelHealth h;
  h.state = state_;
  h.last_error = last_error_;
  h.last_error_at_ms = last_error_at_ms_;
  h.errors = errors_;
  h.detail = nick_;
  return h;
}

}  // namespace drawbridge::channels
