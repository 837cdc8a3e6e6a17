#include "server/server.h"

#include "server/control_json.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <boost/asio/ip/address.hpp>
#include <boost/beast/websocket.hpp>
#include <spdlog/spdlog.h>

#include "server/http_session.h"
#include "server/ws_connection.h"

namespace drawbridge::server {

namespace asio = boost::asio;
using asio::ip::tcp;
using nlohmann::json;

Server::Server(asio::io_context& io, core::Clock& clock, core::Executor& executor,
               Control& control, pipeline::Pipeline& pipeline, ServerOptions options)
    : io_(io),
      clock_(clock),
      executor_(executor),
      control_(control),
      pipeline_(pipeline),
      options_(std::move(options)),
      rpc_(control, pipeline, options_.local_channel,
           RpcLimits{options_.max_message_bytes, options_.max_history_bytes}),
      acceptor_(io),
      auth_throttle_(options_.auth_throttle) {
  const std::size_t room = options_.max_message_bytes * 6 + 64 * 1024;
  if (options_.max_payload_bytes == 0) options_.max_payload_bytes = room;
  if (options_.max_http_body_bytes == 0) options_.max_http_body_bytes = room;
  origin_policy_.bind_address = options_.bind_address;
  origin_policy_.port = options_.port;
  origin_policy_.allowed_origins = options_.allowed_origins;
  origin_policy_.allowed_hosts = options_.allowed_hosts;
  pipeline_.add_listener(this);
}

ConnectionCounts::Slot::Slot(std::shared_ptr<ConnectionCounts> counts, std::string peer)
    : counts_(std::move(counts)), peer_(std::move(peer)) {
  ++counts_->total_;
  ++counts_->by_peer_[peer_];
}

ConnectionCounts::Slot::~Slot() {
  --counts_->total_;
  auto it = counts_->by_peer_.find(peer_);
  if (it != counts_->by_peer_.end() && --it->second == 0) counts_->by_peer_.erase(it);
}

std::size_t ConnectionCounts::of(const std::string& peer) const {
  auto it = by_peer_.find(peer);
  return it == by_peer_.end() ? 0 : it->second;
}

Server::~Server() {
  cancel_timer(tick_timer_);
  cancel_timer(close_timer_);
  cancel_timer(accept_timer_);
  pipeline_.remove_listener(this);
}

void Server::cancel_timer(std::optional<core::TimerId>& timer) {
  if (timer) executor_.cancel(*timer);
  timer.reset();
}

std::optional<std::string> Server::open_acceptor(const std::string& bind_address, int port,
                                                 tcp::acceptor& acceptor, bool* in_use) {
  boost::system::error_code ec;
  auto address = asio::ip::make_address(bind_address, ec);
  if (ec) return "gateway.bind: \"" + bind_address + "\" is not an IP address";
  tcp::endpoint ep(address, static_cast<unsigned short>(port));
  const std::string where =
      (address.is_v6() ? "[" + bind_address + "]" : bind_address) + ":" + std::to_string(port);
  acceptor.open(ep.protocol(), ec);
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(ep, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    std::string hint = ec == asio::error::address_in_use
                           ? " (another gateway may be running: try `drawbridge status`, or set "
                             "gateway.port)"
                           : "";
    if (in_use) *in_use = ec == asio::error::address_in_use;
    boost::system::error_code ignored;
    acceptor.close(ignored);
    return "cannot listen on " + where + ": " + ec.message() + hint;
  }
  return std::nullopt;
}

std::optional<std::string> Server::listen() {
  if (auto err = open_acceptor(options_.bind_address, options_.port, acceptor_)) return err;
  bound_port_ = acceptor_.local_endpoint().port();
  origin_policy_.port = bound_port_;
  return std::nullopt;
}

namespace {

// An int socket option, or -1 when it cannot be read.
int socket_option(int fd, int level, int name) {
  int value = 0;
  socklen_t len = sizeof value;
  if (::getsockopt(fd, level, name, &value, &len) != 0) return -1;
  return value;
}

}  // namespace

std::optional<std::string> Server::adopt(int fd) {
  const std::string what = "cannot serve on the inherited socket (fd " + std::to_string(fd) + "): ";
  if (fd < 0) return what + "no such file descriptor";
  auto refuse = [&](const std::string& why) {
    ::close(fd);
    return std::optional<std::string>(what + why);
  };
  if (closing_) return refuse("the server is closing");
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const int err = errno;
    if (err == EBADF) return what + "no such file descriptor";
    return refuse(err == ENOTSOCK ? "not a socket" : std::strerror(err));
  }
  if (addr.ss_family != AF_INET && addr.ss_family != AF_INET6) {
    return refuse("not an IPv4 or IPv6 socket");
  }
  if (socket_option(fd, SOL_SOCKET, SO_TYPE) != SOCK_STREAM) return refuse("not a stream socket");
#ifdef SO_PROTOCOL
  if (socket_option(fd, SOL_SOCKET, SO_PROTOCOL) != IPPROTO_TCP) return refuse("not a TCP socket");
#endif
  if (socket_option(fd, SOL_SOCKET, SO_ACCEPTCONN) != 1) return refuse("not listening");

  tcp::acceptor fresh(io_);
  boost::system::error_code ec;
  fresh.assign(addr.ss_family == AF_INET6 ? tcp::v6() : tcp::v4(), fd, ec);
  if (ec) return refuse(ec.message());
  const tcp::endpoint local = fresh.local_endpoint(ec);
  if (ec) return what + ec.message();  // `fresh` owns the fd now and closes it
  // Our agents' children must not hold the gateway's port open after we are gone.
  if (int flags = ::fcntl(fd, F_GETFD); flags >= 0) ::fcntl(fd, F_SETFD, flags | FD_CLOEXEC);

  boost::system::error_code ignored;
  acceptor_.close(ignored);  // its pending accept, if any, completes with operation_aborted
  acceptor_ = std::move(fresh);
  // relisten() compares with the address really served, not the one configured.
  options_.bind_address = local.address().to_string();
  options_.port = local.port();
  bound_port_ = local.port();
  origin_policy_.bind_address = options_.bind_address;
  origin_policy_.port = bound_port_;
  if (started_) do_accept();
  return std::nullopt;
}

void Server::pause_accepting() {
  if (paused_) return;
  paused_ = true;
  ++accept_generation_;  // a completion already queued must not re-arm the accept
  boost::system::error_code ignored;
  acceptor_.cancel(ignored);
}

void Server::resume_accepting() {
  if (!paused_) return;
  paused_ = false;
  if (started_ && !closing_) do_accept();
}

int Server::listen_fd() const {
  // native_handle() is not const in Asio; it only reads.
  auto& acceptor = const_cast<tcp::acceptor&>(acceptor_);
  return acceptor.is_open() ? acceptor.native_handle() : -1;
}

std::optional<std::string> Server::relisten(const std::string& bind_address, int port) {
  if (closing_) return "cannot listen on a new address: the server is closing";
  if (bind_address == options_.bind_address && port == options_.port && acceptor_.is_open()) {
    return std::nullopt;
  }
  tcp::acceptor fresh(io_);
  bool in_use = false;
  auto err = open_acceptor(bind_address, port, fresh, &in_use);
  if (err && in_use && port == bound_port_) {
    // Linux refuses 127.0.0.1:P while 0.0.0.0:P listens (and the reverse): on the same port
    // the old acceptor has to go first. If the new address still fails, the old one comes
    // back, so the gateway stays reachable where it was.
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    err = open_acceptor(bind_address, port, fresh);
    if (err) {
      if (auto back = open_acceptor(options_.bind_address, bound_port_, acceptor_)) {
        spdlog::error("cannot listen on the old address again either: {}", *back);
      } else if (started_) {
        do_accept();
      }
      return err;
    }
  }
  if (err) return err;
  boost::system::error_code ignored;
  acceptor_.close(ignored);  // its pending accept completes with operation_aborted
  acceptor_ = std::move(fresh);
  options_.bind_address = bind_address;
  options_.port = port;
  bound_port_ = acceptor_.local_endpoint().port();
  origin_policy_.bind_address = bind_address;
  origin_policy_.port = bound_port_;
  if (started_) do_accept();
  return std::nullopt;
}

std::optional<RpcError> Server::refusal() {
  const LifecycleView life = control_.lifecycle();
  if (life.accepting_connections) return std::nullopt;
  const bool stopping = life.state == "stopping";
  const std::string reason = stopping ? "gateway-stopping" : "gateway-restarting";
  // A floor, so that clients do not spin on a restart expected "now".
  const std::int64_t retry_after = std::max<std::int64_t>(life.restart_expected_ms, 250);
  return RpcError{
      std::string(error_code::unavailable),
      stopping ? "the gateway is stopping; retry when it is back"
               : "the gateway is restarting; retry in " + std::to_string(retry_after) + " ms",
      json{{"reason", reason}}, true, retry_after};
}

void Server::set_token(std::string token) {
  options_.token = std::move(token);
}

void Server::set_control_ui(std::string root, std::string assistant_name) {
  options_.control_ui_root = std::move(root);
  options_.control_ui_assistant_name = std::move(assistant_name);
}

void Server::start() {
  started_ = true;
  do_accept();
  schedule_tick();
}

void Server::do_accept() {
  // Paused: the backlog keeps the connections for whoever accepts next.
  if (paused_ || !acceptor_.is_open()) return;
  // A completion of an acceptor replaced by relisten() must not re-arm the new one twice.
  const auto generation = ++accept_generation_;
  acceptor_.async_accept(io_, [this, generation](boost::system::error_code ec, tcp::socket socket) {
    if (ec) {
      if (ec == asio::error::operation_aborted || closing_) return;
      if (ec == asio::error::no_descriptors || ec.value() == ENFILE ||
          ec == asio::error::no_buffer_space || ec == asio::error::no_memory) {
        if (generation == accept_generation_) accept_backoff(ec);
        return;
      }
      // A connection that died in the backlog (ECONNABORTED) and the like: next one.
      spdlog::debug("accept failed: {}", ec.message());
    } else if (!closing_) {
      if (accept_failures_ > 0) {
        spdlog::info("accepting again after {} failed accept(s) over {} ms", accept_failures_,
                     std::chrono::duration_cast<std::chrono::milliseconds>(
                         clock_.now() - accept_failing_since_)
                         .count());
        accept_failures_ = 0;
        accept_delay_ = std::chrono::milliseconds(0);
      }
      on_accepted(std::move(socket));
    }
    if (!closing_ && generation == accept_generation_) do_accept();
  });
}

void Server::accept_backoff(const boost::system::error_code& ec) {
  ++accept_failures_total_;
  if (accept_failures_++ == 0) {
    accept_failing_since_ = clock_.now();
    spdlog::warn("accept failed: {} ({} connections open); retrying with back-off, one line "
                 "until it recovers",
                 ec.message(), counts_->total());
  }
  accept_delay_ = std::min(std::max(accept_delay_ * 2, std::chrono::milliseconds(5)),
                           std::chrono::milliseconds(1000));
  const auto generation = accept_generation_;
  cancel_timer(accept_timer_);
  accept_timer_ = executor_.schedule(accept_delay_, [this, generation] {
    accept_timer_.reset();
    if (closing_ || generation != accept_generation_) return;
    do_accept();
  });
}

void Server::on_accepted(tcp::socket socket) {
  boost::system::error_code ec;
  const auto remote = socket.remote_endpoint(ec);
  if (ec) return;  // gone already
  std::string peer = peer_key(remote.address());
  const bool over_total = counts_->total() >= options_.max_connections;
  const bool over_peer = counts_->of(peer) >= options_.max_connections_per_peer;
  if (over_total || over_peer) {
    ++refused_total_;
    if (refused_episode_++ == 0) {
      spdlog::warn("{}: closing new connections at once ({} open, {} from {}; limits "
                   "gateway.limits.maxConnections {}, maxConnectionsPerPeer {}); one line until "
                   "a connection is accepted again",
                   over_total ? "connection limit reached" : "per-peer connection limit reached",
                   counts_->total(), counts_->of(peer), peer, options_.max_connections,
                   options_.max_connections_per_peer);
    }
    // RST rather than FIN: no TIME_WAIT kept on our side for a connection never served.
    socket.set_option(asio::socket_base::linger(true, 0), ec);
    socket.close(ec);
    return;
  }
  if (refused_episode_ > 0) {
    spdlog::info("accepting connections again; {} closed at once meanwhile", refused_episode_);
    refused_episode_ = 0;
  }
  socket.set_option(tcp::no_delay(true), ec);
  auto slot = std::make_shared<ConnectionCounts::Slot>(counts_, peer);
  auto s = std::make_shared<HttpSession>(*this, std::move(socket), std::move(slot),
                                         std::move(peer));
  track(s);
  s->run();
}

std::optional<RpcError> Server::auth_blocked(const std::string& peer) {
  auto wait = auth_throttle_.blocked(peer, clock_.now());
  if (!wait) return std::nullopt;
  auth_throttle_.count_throttled();
  const auto ms = std::max<std::int64_t>(wait->count(), 1);
  return RpcError{std::string(error_code::unavailable),
                  "too many failed authentication attempts from this address; retry in " +
                      std::to_string(ms) + " ms",
                  json{{"code", "AUTH_RATE_LIMITED"}, {"reason", "auth-rate-limited"}}, true, ms};
}

void Server::auth_failed(const std::string& peer, std::string_view how) {
  const auto f = auth_throttle_.record_failure(peer, clock_.now());
  if (f.failures == 1) {
    spdlog::info("authentication failed from {} ({})", peer, how);
  } else if (f.episode_started) {
    spdlog::warn("{} failed authentication attempts from {} ({}); its attempts are refused "
                 "for {} ms, then for twice as long after each further failure (one line per "
                 "episode)",
                 f.failures, peer, how, f.lockout.count());
  }
}

void Server::auth_succeeded(const std::string& peer) { auth_throttle_.record_success(peer); }

void Server::refused_request(const std::string& peer, std::string_view what) {
  ++refused_requests_total_;
  const std::string key = peer + "|" + std::string(what.substr(0, what.find(':')));
  const auto now = clock_.now();
  auto it = refused_logged_.find(key);
  if (it != refused_logged_.end() && now - it->second < std::chrono::minutes(1)) return;
  if (refused_logged_.size() > 1024) refused_logged_.clear();
  refused_logged_[key] = now;
  spdlog::warn("refused a request from {}: {} (one line per peer and kind a minute)", peer, what);
}

std::string Server::metrics_text() const {
  std::string out;
  auto counter = [&](const char* name, const char* help, std::uint64_t v) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " counter\n" +
           name + " " + std::to_string(v) + "\n";
  };
  counter("drawbridge_auth_failures_total", "Failed authentication attempts (WebSocket and HTTP)",
          auth_throttle_.failures_total());
  counter("drawbridge_auth_throttled_total",
          "Authentication attempts refused unchecked during a back-off",
          auth_throttle_.throttled_total());
  counter("drawbridge_connections_refused_total",
          "Connections closed at once for a connection limit", refused_total_);
  counter("drawbridge_requests_refused_total", "Requests refused by the Host or Origin check",
          refused_requests_total_);
  counter("drawbridge_accept_failures_total",
          "accept() failures for lack of resources (each retried after a back-off)",
          accept_failures_total_);
  out += "# HELP drawbridge_connections_open Open TCP connections\n"
         "# TYPE drawbridge_connections_open gauge\ndrawbridge_connections_open " +
         std::to_string(counts_->total()) + "\n";
  return out;
}

void Server::schedule_tick() {
  cancel_timer(tick_timer_);
  tick_timer_ = executor_.schedule(std::chrono::milliseconds(options_.tick_interval_ms), [this] {
    tick_timer_.reset();
    if (closing_) return;
    json payload = {{"ts", clock_.wall_ms()}};
    auto conns = connections_;  // a send may close a slow consumer
    for (auto& [id, c] : conns) c->send_event("tick", payload);
    // The health snapshot is refreshed and broadcast every other tick (60 s by default).
    if (++ticks_ % 2 == 0) {
      try {
        json health = to_json(control_.health());
        json version = {{"presence", 0}, {"health", ++health_version_}};
        for (auto& [id, c] : conns) c->send_event("health", health, version);
      } catch (const std::exception& e) {
        spdlog::warn("health snapshot failed: {}", e.what());
      }
    }
    schedule_tick();
  });
}

void Server::attach(const std::shared_ptr<WsConnection>& c) {
  if (closing_) {
    c->abort_now();
    return;
  }
  connections_[c->id()] = c;
}

void Server::detach(std::uint64_t conn_id) {
  connections_.erase(conn_id);
  ending_.erase(conn_id);
  watchers_.forget(conn_id);
  for (auto it = subscribers_.begin(); it != subscribers_.end();) {
    if (it->second.erase(conn_id) > 0 && it->second.empty()) {
      missed_.watcher_left(it->first);  // its next end events wait for a watcher
    }
    it = it->second.empty() ? subscribers_.erase(it) : std::next(it);
  }
  maybe_closed();
}

void Server::track(const std::shared_ptr<HttpSession>& s) {
  // Forget sessions that ended, so the map does not grow with every request.
  for (auto it = http_sessions_.begin(); it != http_sessions_.end();) {
    it = it->second.expired() ? http_sessions_.erase(it) : std::next(it);
    if (http_sessions_.size() < 64) break;
  }
  http_sessions_[next_id()] = s;
}

void Server::subscribe(std::uint64_t conn_id, const std::string& session_key) {
  subscribers_[session_key].insert(conn_id);
  if (!missed_.keeps(session_key)) return;
  // The runs that ended while nobody watched: their end events, once, to whoever comes back.
  auto missed = missed_.take(session_key, clock_.wall_ms());
  auto c = connections_.find(conn_id);
  if (c == connections_.end()) return;
  for (const auto& payload : missed) c->second->send_event_dump("chat", payload);
}

void Server::on_chat_event(const pipeline::ChatEvent& ev) {
  notify_session_watchers(ev);
  auto subs = subscribers_.find(ev.session_key);
  const bool away = subs == subscribers_.end();
  // Nobody watches: only the end of a run is kept, and only for a session someone left.
  if (away && (ev.state == pipeline::ChatEvent::State::delta || !missed_.keeps(ev.session_key))) {
    return;
  }
  // Built member by member and moved into place: braced lists copy every element (a deep
  // copy of `message` too), which cost a third of the event's CPU.
  json payload(json::value_t::object);
  payload.emplace("runId", ev.run_id);
  payload.emplace("sessionKey", ev.session_key);
  payload.emplace("seq", ev.seq);
  payload.emplace("state", pipeline::to_string(ev.state));
  auto message = [&ev](const std::string& text) {
    json item(json::value_t::object);
    item.emplace("type", "text");
    item.emplace("text", text);
    json content(json::value_t::array);
    content.push_back(std::move(item));
    json m(json::value_t::object);
    m.emplace("role", "assistant");
    m.emplace("content", std::move(content));
    m.emplace("timestamp", ev.ts_ms);
    return m;
  };
  switch (ev.state) {
    case pipeline::ChatEvent::State::delta:
      payload.emplace("deltaText", ev.text);
      payload.emplace("message", message(ev.accumulated));
      break;
    case pipeline::ChatEvent::State::final: {
      json m = message(ev.text);
      json meta(json::value_t::object);
      meta.emplace("runId", ev.run_id);
      meta.emplace("id", ev.message_id);
      m.emplace("__openclaw", std::move(meta));
      if (ev.final_part) {
        payload.emplace("message", std::move(m));
        payload.emplace("stopReason", "stop");
      } else {
        // A reply split into parts: all but the last arrive as deltas carrying their part.
        payload["state"] = "delta";
        payload.emplace("deltaText", "");
        payload.emplace("message", std::move(m));
      }
      break;
    }
    case pipeline::ChatEvent::State::error:
      payload.emplace("errorMessage", ev.error);
      break;
    case pipeline::ChatEvent::State::aborted:
      payload.emplace("stopReason", "rpc");
      if (!ev.error.empty()) payload.emplace("errorMessage", ev.error);
      break;
  }
  std::string payload_json =
      payload.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (away) {
    missed_.record(ev.session_key, std::move(payload_json), clock_.wall_ms());
    return;
  }
  for (auto id : subs->second) {
    if (auto c = connections_.find(id); c != connections_.end()) {
      c->second->send_event_dump("chat", payload_json);
    }
  }
}

void Server::close(std::string reason, std::optional<std::int64_t> restart_expected_ms,
                   std::uint16_t code, std::string close_reason, std::function<void()> done) {
  if (!closing_) {
    closing_ = true;
    boost::system::error_code ec;
    acceptor_.close(ec);
    cancel_timer(tick_timer_);
    cancel_timer(accept_timer_);
    for (auto& [id, weak] : http_sessions_) {
      if (auto s = weak.lock()) s->abort_now();
    }
    http_sessions_.clear();
  }
  end_connections(reason, restart_expected_ms, code, close_reason, std::move(done));
}

void Server::disconnect_all(std::string reason, std::optional<std::int64_t> restart_expected_ms,
                            std::uint16_t code, std::string close_reason,
                            std::function<void()> done) {
  // An answer being written (a POST waiting for its commit) is finished first: the client
  // would otherwise not know its message was accepted.
  for (auto& [id, weak] : http_sessions_) {
    if (auto s = weak.lock()) s->end();
  }
  http_sessions_.clear();
  end_connections(reason, restart_expected_ms, code, close_reason, std::move(done));
}

void Server::end_connections(const std::string& reason,
                             std::optional<std::int64_t> restart_expected_ms, std::uint16_t code,
                             const std::string& close_reason, std::function<void()> done) {
  if (done) on_ended_.push_back(std::move(done));
  json payload = {{"reason", reason}};
  if (restart_expected_ms) payload["restartExpectedMs"] = *restart_expected_ms;
  auto conns = connections_;  // shutdown() may detach synchronously
  for (auto& [id, c] : conns) {
    if (!ending_.insert(id).second) continue;  // already closing: one shutdown event each
    c->shutdown(payload, code, close_reason);
  }
  // A client that does not answer the close handshake is cut off after a bound: the shutdown
  // event and the close frame went out first; what it missed is in chat.history.
  cancel_timer(close_timer_);
  close_timer_ = executor_.schedule(std::chrono::milliseconds(options_.teardown_close_ms), [this] {
    close_timer_.reset();
    auto left = std::move(ending_);
    ending_.clear();
    for (auto id : left) {
      auto c = connections_.find(id);
      if (c == connections_.end()) continue;
      auto conn = c->second;
      connections_.erase(c);
      conn->abort_now();
    }
    maybe_closed();
  });
  maybe_closed();
}

void Server::maybe_closed() {
  if (!ending_.empty() || on_ended_.empty()) return;
  cancel_timer(close_timer_);
  auto waiters = std::move(on_ended_);
  on_ended_.clear();
  for (auto& done : waiters) done();
}

}  // namespace drawbridge::server
