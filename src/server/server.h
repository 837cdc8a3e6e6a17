#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include "core/clock.h"
#include "pipeline/pipeline.h"
#include "server/control.h"
#include "server/rpc_methods.h"

namespace drawbridge::server {

struct ServerOptions {
  std::string bind_address = "127.0.0.1";
  int port = 18789;
  std::string token;
  std::string version;
  std::string local_channel = "local";
  std::size_t max_preauth_bytes = 64 * 1024;  // frames before `connect`
  std::size_t max_payload_bytes = 25 * 1024 * 1024;
  std::size_t max_buffered_bytes = 50 * 1024 * 1024;  // per connection, then it is closed
  std::size_t max_http_body_bytes = 1024 * 1024;
  int tick_interval_ms = 30000;
  int handshake_timeout_ms = 15000;
};

class WsConnection;
class HttpSession;

// One port for HTTP (/healthz, /readyz, /metrics, /v1/messages) and the WebSocket control
// protocol, on the gateway's event loop.
class Server final : public pipeline::ChatEventListener {
 public:
  Server(boost::asio::io_context& io, core::Clock& clock, Control& control,
         pipeline::Pipeline& pipeline, ServerOptions options);
  ~Server() override;

  // Binds and listens. Returns a message a user can act on when it cannot.
  std::optional<std::string> listen();
  int port() const { return bound_port_; }
  void start();
  // Sends `shutdown` to every client, closes WebSockets with `code` once their queues are
  // flushed, stops accepting; `done` runs when every connection is gone (bounded).
  void close(std::string reason, std::optional<std::int64_t> restart_expected_ms,
             std::uint16_t code, std::string close_reason, std::function<void()> done);
  void on_chat_event(const pipeline::ChatEvent& event) override;
  std::size_t connection_count() const { return connections_.size(); }

  // For the sessions.
  boost::asio::io_context& io() { return io_; }
  core::Clock& clock() { return clock_; }
  Control& control() { return control_; }
  pipeline::Pipeline& pipeline() { return pipeline_; }
  RpcMethods& rpc() { return rpc_; }
  const ServerOptions& options() const { return options_; }
  bool closing() const { return closing_; }
  void attach(const std::shared_ptr<WsConnection>& c);
  void detach(std::uint64_t conn_id);
  void track(const std::shared_ptr<HttpSession>& s);
  void subscribe(std::uint64_t conn_id, const std::string& session_key);
  std::uint64_t next_id() { return ++next_conn_id_; }

 private:
  void do_accept();
  void schedule_tick();
  void maybe_closed();

  boost::asio::io_context& io_;
  core::Clock& clock_;
  Control& control_;
  pipeline::Pipeline& pipeline_;
  ServerOptions options_;
  RpcMethods rpc_;
  boost::asio::ip::tcp::acceptor acceptor_;
  boost::asio::steady_timer tick_timer_;
  boost::asio::steady_timer close_timer_;
  int bound_port_ = 0;
  bool closing_ = false;
  std::function<void()> on_closed_;
  std::uint64_t next_conn_id_ = 0;
  std::uint64_t ticks_ = 0;
  std::uint64_t health_version_ = 0;
  std::map<std::uint64_t, std::shared_ptr<WsConnection>> connections_;
  std::unordered_map<std::string, std::set<std::uint64_t>> subscribers_;  // by session key
  std::map<std::uint64_t, std::weak_ptr<HttpSession>> http_sessions_;
};

}  // namespace drawbridge::server
