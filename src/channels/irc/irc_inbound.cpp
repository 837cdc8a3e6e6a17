// IrcChannel, what the server says: registration replies, CAP/SASL, nick fallback, and the
// messages handed to the pipeline. The connection and the output queue: irc_channel.cpp.
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
#include "channels/irc/irc_channel.h"

namespace drawbridge::channels {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using nlohmann::json;
using pipeline::LinkState;
using pipeline::SendStatus;
using namespace std::chrono_literals;

namespace {

constexpr core::Duration kRejoinDelay{10000};
constexpr int kMaxNickAttempts = 5;  // nick, nick_ ... nick____
// Registered under a fallback nick (ours was still held, e.g. by our own previous connection
// that the server had not yet closed after a restart): ask for ours again this often, this many
// times. Not sooner: a refused NICK costs ngircd's 2 s of penalty on everything we send.
// The first ask 2 s after registering (a connection the server has not yet seen close, such as
// one of a killed process, holds the nick that long), then every 10 s.
constexpr core::Duration kNickRegainFirst{2000};
constexpr core::Duration kNickRegainEvery{10000};
constexpr int kMaxNickRegains = 6;
constexpr std::size_t kMaxCapList = 4096;
constexpr std::size_t kMaxExternalIdTag = 128;

}  // namespace

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
  } else if (cmd == "421" && irc::same_name(m.param(1), "CAP")) {
    send_user();  // a server without CAP: registration goes on without it
  } else if (cmd == "001") {
    on_welcome(m.param(0));
  } else if ((cmd == "433" || cmd == "432" || cmd == "436" || cmd == "437") && !registered_) {
    next_nick(cmd == "432");
  } else if (cmd == "NICK") {
    if (irc::same_name(irc::nick_of(m.prefix), nick_) && !m.param(0).empty()) {
      nick_ = m.param(0);
      if (irc::same_name(nick_, options_.nick)) {
        spdlog::info("channel {}: {} is ours again", id_, nick_);
        if (regain_timer_) {
          executor_.cancel(*regain_timer_);
          regain_timer_.reset();
        }
      }
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
    send_user();
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
  regain_attempts_ = 0;
  arm_nick_regain();
}

void IrcChannel::arm_nick_regain() {
  if (regain_timer_ || !registered_ || irc::same_name(nick_, options_.nick)) return;
  if (regain_attempts_ >= kMaxNickRegains) {
    spdlog::warn("channel {}: {} is still in use after {} attempts; staying {}", id_,
                 options_.nick, regain_attempts_, nick_);
    return;
  }
  const auto wait = regain_attempts_ == 0 ? kNickRegainFirst : kNickRegainEvery;
  regain_timer_ = executor_.schedule(wait, [this, alive = alive_] {
    if (!*alive) return;
    regain_timer_.reset();
    if (!registered_ || !running_ || irc::same_name(nick_, options_.nick)) return;
    ++regain_attempts_;
    urgent("NICK " + options_.nick);  // the server's NICK line confirms it (on_line)
    arm_nick_regain();
  });
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
  // After stop() the QUIT is on its way, and until the server has read it, it still relays
  // messages to us: those are journaled like any other (a restart's next generation answers
  // them) rather than dropped without a word to their senders.
  if ((!running_ && !stopping_) || m.params.size() < 2) return;
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

}  // namespace drawbridge::channels
