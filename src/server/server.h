#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

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
  // Moves to another address (a new generation whose config changed gateway.bind or
  // gateway.port): the new acceptor is opened first and the old one closed only when that
  // worked, so a failure leaves the server listening where it was. Same messages as listen().
  std::optional<std::string> relisten(const std::string& bind_address, int port);
  // Serves on an already listening socket (inherited: socket activation or a predecessor's
  // hand-off) instead of binding; takes ownership of `fd`, which is closed when it is refused.
  // Returns an error text when the fd is not a usable listening TCP socket. A socket already
  // listening is replaced; the address the server reports (port(), relisten()) becomes the
  // inherited socket's.
  std::optional<std::string> adopt(int fd);
  // Stops accepting without closing the listening socket: connections arriving now wait in the
  // kernel's backlog for whoever accepts next (a successor process that inherited the socket).
  // The pending accept is cancelled; a connection accepted just before is still served, so
  // pause before disconnect_all() when the process is about to hand over and exit.
  // resume_accepting() undoes it (a hand-off that failed) and serves what waited meanwhile.
  void pause_accepting();
  void resume_accepting();
  // The listening socket's fd, for handing it over (-1 when not listening). It stays ours.
  int listen_fd() const;
  // Connections authenticate against `token` from now on; connected clients are not re-checked.
  void set_token(std::string token);
  int port() const { return bound_port_; }
  void start();
  // Sends `shutdown` to every client, closes WebSockets with `code` once their queues are
  // flushed, stops accepting; `done` runs when every connection is gone (bounded).
  void close(std::string reason, std::optional<std::int64_t> restart_expected_ms,
             std::uint16_t code, std::string close_reason, std::function<void()> done);
  // The same for the connections of now, but the server keeps accepting and ticking: an
  // in-process restart never refuses a TCP connection. Connections opened meanwhile are left
  // alone (Control::lifecycle() decides whether their `connect` is served). HTTP keep-alive
  // sessions end after the answer they are writing, if any. `done` runs when the connections
  // of now are gone (bounded by the same 2 s).
  void disconnect_all(std::string reason, std::optional<std::int64_t> restart_expected_ms,
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
  // While Control::lifecycle() refuses new connections (a restart between two generations, a
  // stop): the retryable UNAVAILABLE a new client gets. nullopt while accepting.
  std::optional<RpcError> refusal();
  void attach(const std::shared_ptr<WsConnection>& c);
  void detach(std::uint64_t conn_id);
  void track(const std::shared_ptr<HttpSession>& s);
  void subscribe(std::uint64_t conn_id, const std::string& session_key);
  std::uint64_t next_id() { return ++next_conn_id_; }

 private:
  // `in_use`, when given, tells whether the address was taken (EADDRINUSE).
  std::optional<std::string> open_acceptor(const std::string& bind_address, int port,
                                           boost::asio::ip::tcp::acceptor& acceptor,
                                           bool* in_use = nullptr);
  void do_accept();
  void schedule_tick();
  void end_connections(const std::string& reason, std::optional<std::int64_t> restart_expected_ms,
                       std::uint16_t code, const std::string& close_reason,
                       std::function<void()> done);
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
  bool started_ = false;
  bool paused_ = false;  // pause_accepting(): listening, not accepting
  std::uint64_t accept_generation_ = 0;
  bool closing_ = false;
  // Connections being ended by close() or disconnect_all(), and who waits for them.
  std::set<std::uint64_t> ending_;
  std::vector<std::function<void()>> on_ended_;
  std::uint64_t next_conn_id_ = 0;
  std::uint64_t ticks_ = 0;
  std::uint64_t health_version_ = 0;
  std::map<std::uint64_t, std::shared_ptr<WsConnection>> connections_;
  std::unordered_map<std::string, std::set<std::uint64_t>> subscribers_;  // by session key
  std::map<std::uint64_t, std::weak_ptr<HttpSession>> http_sessions_;
};

}  // namespace drawbridge::server
