#include "server/server.h"

#include <boost/asio/ip/address.hpp>
#include <boost/beast/websocket.hpp>
#include <spdlog/spdlog.h>

#include "server/http_session.h"
#include "server/ws_connection.h"

namespace drawbridge::server {

namespace asio = boost::asio;
using asio::ip::tcp;
using nlohmann::json;

Server::Server(asio::io_context& io, core::Clock& clock, Control& control,
               pipeline::Pipeline& pipeline, ServerOptions options)
    : io_(io),
      clock_(clock),
      control_(control),
      pipeline_(pipeline),
      options_(std::move(options)),
      rpc_(control, pipeline, options_.local_channel),
      acceptor_(io),
      tick_timer_(io),
      close_timer_(io) {
  pipeline_.add_listener(this);
}

Server::~Server() { pipeline_.remove_listener(this); }

std::optional<std::string> Server::listen() {
  boost::system::error_code ec;
  auto address = asio::ip::make_address(options_.bind_address, ec);
  if (ec) return "gateway.bind: \"" + options_.bind_address + "\" is not an IP address";
  tcp::endpoint ep(address, static_cast<unsigned short>(options_.port));
  const std::string where = (address.is_v6() ? "[" + options_.bind_address + "]"
                                             : options_.bind_address) +
                            ":" + std::to_string(options_.port);
  acceptor_.open(ep.protocol(), ec);
  if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(ep, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    std::string hint = ec == asio::error::address_in_use
                           ? " (another gateway may be running: try `drawbridge status`, or set "
                             "gateway.port)"
                           : "";
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    return "cannot listen on " + where + ": " + ec.message() + hint;
  }
  bound_port_ = acceptor_.local_endpoint().port();
  return std::nullopt;
}

void Server::start() {
  do_accept();
  schedule_tick();
}

void Server::do_accept() {
  acceptor_.async_accept(io_, [this](boost::system::error_code ec,
                                                        tcp::socket socket) {
    if (ec) {
      if (ec == asio::error::operation_aborted || closing_) return;
      // Out of file descriptors and the like: log, keep accepting.
      spdlog::warn("accept failed: {}", ec.message());
    } else if (!closing_) {
      socket.set_option(tcp::no_delay(true), ec);
      auto s = std::make_shared<HttpSession>(*this, std::move(socket));
      track(s);
      s->run();
    }
    if (!closing_) do_accept();
  });
}

void Server::schedule_tick() {
  tick_timer_.expires_after(std::chrono::milliseconds(options_.tick_interval_ms));
  tick_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec || closing_) return;
    json payload = {{"ts", clock_.wall_ms()}};
    auto conns = connections_;  // a send may close a slow consumer
    for (auto& [id, c] : conns) c->send_event("tick", payload);
    // The health snapshot is refreshed and broadcast every other tick (60 s by default).
    if (++ticks_ % 2 == 0) {
      try {
        json health = control_.health();
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
  for (auto it = subscribers_.begin(); it != subscribers_.end();) {
    it->second.erase(conn_id);
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
}

void Server::on_chat_event(const pipeline::ChatEvent& ev) {
  auto subs = subscribers_.find(ev.session_key);
  if (subs == subscribers_.end()) return;
  json payload = {{"runId", ev.run_id},
                  {"sessionKey", ev.session_key},
                  {"seq", ev.seq},
                  {"state", pipeline::to_string(ev.state)}};
  json message = {{"role", "assistant"},
                  {"content", json::array({{{"type", "text"}, {"text", ev.text}}})},
                  {"timestamp", ev.ts_ms}};
  switch (ev.state) {
    case pipeline::ChatEvent::State::delta:
      payload["deltaText"] = ev.text;
      message["content"][0]["text"] = ev.accumulated;
      payload["message"] = message;
      break;
    case pipeline::ChatEvent::State::final:
      message["__openclaw"] = {{"runId", ev.run_id}, {"id", ev.message_id}};
      if (ev.final_part) {
        payload["message"] = message;
        payload["stopReason"] = "stop";
      } else {
        // A reply split into parts: all but the last arrive as deltas carrying their part.
        payload["state"] = "delta";
        payload["deltaText"] = "";
        payload["message"] = message;
      }
      break;
    case pipeline::ChatEvent::State::error:
      payload["errorMessage"] = ev.error;
      break;
    case pipeline::ChatEvent::State::aborted:
      payload["stopReason"] = "rpc";
      if (!ev.error.empty()) payload["errorMessage"] = ev.error;
      break;
  }
  const std::string payload_json =
      payload.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  for (auto id : subs->second) {
    if (auto c = connections_.find(id); c != connections_.end()) {
      c->second->send_event_dump("chat", payload_json);
    }
  }
}

void Server::close(std::string reason, std::optional<std::int64_t> restart_expected_ms,
                   std::uint16_t code, std::string close_reason, std::function<void()> done) {
  if (closing_) {
    done();
    return;
  }
  closing_ = true;
  on_closed_ = std::move(done);
  boost::system::error_code ec;
  acceptor_.close(ec);
  tick_timer_.cancel();
  for (auto& [id, weak] : http_sessions_) {
    if (auto s = weak.lock()) s->abort_now();
  }
  http_sessions_.clear();
  json payload = {{"reason", reason}};
  if (restart_expected_ms) payload["restartExpectedMs"] = *restart_expected_ms;
  auto conns = connections_;  // shutdown() may detach synchronously
  for (auto& [id, c] : conns) c->shutdown(payload, code, close_reason);
  // A client that does not answer the close handshake is cut off after a bound.
  close_timer_.expires_after(std::chrono::seconds(2));
  close_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    auto left = connections_;
    for (auto& [id, c] : left) c->abort_now();
    connections_.clear();
    maybe_closed();
  });
  maybe_closed();
}

void Server::maybe_closed() {
  if (!closing_ || !connections_.empty() || !on_closed_) return;
  close_timer_.cancel();
  auto done = std::move(on_closed_);
  on_closed_ = nullptr;
  done();
}

}  // namespace drawbridge::server
