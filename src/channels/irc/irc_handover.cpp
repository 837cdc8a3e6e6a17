// IrcChannel::release / adopt: a registered connection handed from one process to the next
// (a re-exec or an update) without QUIT, reconnect or rejoin (docs/DECISIONS.md "An IRC
// connection outlives a restart").

#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <cstdint>
#include <utility>

#include "channels/irc/irc_channel.h"
#include "channels/irc/irc_conn.h"

namespace drawbridge::channels {

using nlohmann::json;
using pipeline::LinkState;
using pipeline::SendStatus;

namespace {

constexpr int kStateVersion = 1;
constexpr std::size_t kMaxCarriedLines = 400;
constexpr std::size_t kMaxCarriedLine = 512;

// Lines and partial lines are bytes, not necessarily UTF-8: carried as hex.
std::string to_hex(const std::string& bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

std::optional<std::string> from_hex(const json& v, std::size_t max_bytes) {
  if (!v.is_string()) return std::nullopt;
  const auto& s = v.get_ref<const std::string&>();
  if (s.size() % 2 != 0 || s.size() / 2 > max_bytes) return std::nullopt;
  auto digit = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  std::string out;
  out.reserve(s.size() / 2);
  for (std::size_t i = 0; i < s.size(); i += 2) {
    const int hi = digit(s[i]), lo = digit(s[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<char>(hi * 16 + lo));
  }
  return out;
}

std::optional<std::vector<std::string>> lines_from(const json& v) {
  if (!v.is_array() || v.size() > kMaxCarriedLines) return std::nullopt;
  std::vector<std::string> out;
  for (const auto& item : v) {
    auto line = from_hex(item, kMaxCarriedLine);
    if (!line || line->find_first_of("\r\n") != std::string::npos) return std::nullopt;
    out.push_back(std::move(*line));
  }
  return out;
}

bool small_text(const json& v, std::size_t max) {
  return v.is_string() && v.get_ref<const std::string&>().size() <= max &&
         v.get_ref<const std::string&>().find_first_of(" \r\n") == std::string::npos;
}

}  // namespace

void IrcChannel::release(std::function<void(std::optional<IrcHandover>)> done) {
  if (releasing_ || stopping_ || !running_ || !conn_ || !conn_->open || conn_->closed ||
      conn_->tls || !registered_) {
    executor_.post([done = std::move(done)] { done(std::nullopt); });
    return;
  }
  releasing_ = true;
  release_done_ = std::move(done);
  finish_release();
}

// Runs until nothing is in flight on the socket: a write under way completes (its handler
// comes back here), a read under way is cancelled (its handler, with data or aborted, comes
// back here). Then the socket is let go without shutdown: the next process holds it too.
void IrcChannel::finish_release() {
  if (!releasing_ || !conn_) return;
  if (writing_) return;
  if (read_pending_) {
    boost::system::error_code ec;
    conn_->plain->cancel(ec);
    return;
  }
  json urgent = json::array(), queued = json::array();
  for (const auto& l : urgent_) urgent.push_back(to_hex(l));
  for (auto& l : queue_) {
    queued.push_back(to_hex(l.line));
    // Only notices can wait here (the drain reached the channels with every reply delivered):
    // the next process writes them.
    if (l.done) executor_.post([d = std::move(l.done)] { d(SendStatus::sent, {}); });
  }
  json state = {{"v", kStateVersion},
                {"host", options_.host},
                {"port", options_.port},
                {"nick", nick_},
                {"ownMask", own_mask_},
                {"capTags", cap_tags_},
                {"sasl", sasl_},
                {"epochMs", conn_epoch_ms_},
                {"seq", seq_},
                {"rbuf", to_hex(rbuf_)},
                {"skipping", skipping_},
                {"tokens", tokens_},
                {"regainAttempts", regain_attempts_},
                {"urgent", std::move(urgent)},
                {"queue", std::move(queued)}};
  boost::system::error_code ec;
  const int fd = conn_->plain->release(ec);
  conn_->closed = true;
  conn_.reset();
  queue_.clear();
  urgent_.clear();
  // The lease stays: the next process is this replica too, and renews it.
  for (auto* t : {&backoff_timer_, &refill_timer_, &register_timer_, &keepalive_timer_,
                  &rejoin_timer_, &user_timer_, &regain_timer_, &lease_timer_, &lease_watch_}) {
    if (*t) {
      executor_.cancel(**t);
      t->reset();
    }
  }
  releasing_ = false;
  running_ = false;
  registered_ = false;
  ready_ = false;
  state_ = LinkState::stopped;
  auto done = std::move(release_done_);
  release_done_ = nullptr;
  if (ec || fd < 0) {
    spdlog::warn("channel {}: cannot let the connection go: {}", id_, ec.message());
    executor_.post([done = std::move(done)] { done(std::nullopt); });
    return;
  }
  spdlog::info("channel {}: connection to {} handed over as {} ({} line(s) not yet written)", id_,
               options_.host, nick_, state["urgent"].size() + state["queue"].size());
  executor_.post([done = std::move(done), fd, state = std::move(state)]() mutable {
    done(IrcHandover{fd, std::move(state)});
  });
}

bool IrcChannel::adopt(IrcHandover& h, std::string& error) {
  if (running_ || conn_) {
    error = "the channel already runs";
    return false;
  }
  if (options_.tls) {
    error = "a TLS connection cannot be taken over";
    return false;
  }
  const json& s = h.state;
  auto bad = [&error](const std::string& what) {
    error = "the handed-over state is not usable: " + what;
    return false;
  };
  if (!s.is_object() || !s.contains("v") || s["v"] != kStateVersion) return bad("version");
  if (!s.contains("nick") || !small_text(s["nick"], 64) || s["nick"].get<std::string>().empty())
    return bad("nick");
  if (!s.contains("ownMask") || !small_text(s["ownMask"], 512)) return bad("ownMask");
  for (const char* k : {"capTags", "sasl", "skipping"}) {
    if (!s.contains(k) || !s[k].is_boolean()) return bad(k);
  }
  for (const char* k : {"epochMs", "seq", "tokens", "regainAttempts"}) {
    if (!s.contains(k) || !s[k].is_number_integer() || s[k].get<std::int64_t>() < 0) return bad(k);
  }
  auto rbuf = from_hex(s.value("rbuf", json()), kMaxInboundLine);
  if (!rbuf) return bad("rbuf");
  auto urgent = lines_from(s.value("urgent", json()));
  auto queued = lines_from(s.value("queue", json()));
  if (!urgent || !queued) return bad("lines");

  int type = 0;
  socklen_t len = sizeof type;
  sockaddr_storage addr{};
  socklen_t addr_len = sizeof addr;
  sockaddr_storage peer{};
  socklen_t peer_len = sizeof peer;
  if (h.fd < 0 || ::getsockopt(h.fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 ||
      type != SOCK_STREAM ||
      ::getsockname(h.fd, reinterpret_cast<sockaddr*>(&addr), &addr_len) != 0 ||
      (addr.ss_family != AF_INET && addr.ss_family != AF_INET6) ||
      ::getpeername(h.fd, reinterpret_cast<sockaddr*>(&peer), &peer_len) != 0) {
    error = "fd " + std::to_string(h.fd) + " is not a connected TCP socket";
    return false;
  }
  auto c = std::make_shared<Conn>(io_, nullptr);
  boost::system::error_code ec;
  c->plain->assign(addr.ss_family == AF_INET ? tcp::v4() : tcp::v6(), h.fd, ec);
  if (ec) {
    error = "cannot use fd " + std::to_string(h.fd) + ": " + ec.message();
    return false;
  }
  h.fd = -1;
  c->open = true;
  conn_ = c;
  nick_ = s["nick"].get<std::string>();
  own_mask_ = s["ownMask"].get<std::string>();
  cap_tags_ = s["capTags"].get<bool>();
  sasl_ = s["sasl"].get<bool>();
  skipping_ = s["skipping"].get<bool>();
  conn_epoch_ms_ = s["epochMs"].get<std::int64_t>();
  seq_ = s["seq"].get<std::uint64_t>();
  tokens_ = static_cast<int>(std::min<std::int64_t>(s["tokens"].get<std::int64_t>(), kBurst));
  regain_attempts_ =
      static_cast<int>(std::min<std::int64_t>(s["regainAttempts"].get<std::int64_t>(), 1000));
  rbuf_ = std::move(*rbuf);
  for (auto& l : *urgent) urgent_.push_back(std::move(l));
  for (auto& l : *queued) queue_.push_back({std::move(l), nullptr});
  adopted_ = true;
  return true;
}

// start() of a channel that adopted a connection: registered already, in its channels.
void IrcChannel::resume_adopted() {
  adopted_ = false;
  registered_ = true;
  user_sent_ = true;
  ready_ = true;
  state_ = LinkState::connected;
  backoff_ = core::Duration{0};
  spdlog::info("channel {}: took over the connection to {} as {} (no reconnect)", id_,
               options_.host, nick_);
  read(conn_);
  arm_keepalive();
  arm_nick_regain();
  pump();
}

}  // namespace drawbridge::channels
