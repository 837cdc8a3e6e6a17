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

#include "core/clock.h"
#include "core/executor.h"
#include "pipeline/pipeline.h"
#include "server/auth_throttle.h"
#include "server/control.h"
#include "server/missed_finals.h"
#include "server/origin_policy.h"
#include "server/rpc_methods.h"
#include "server/session_watchers.h"

namespace drawbridge::server {

struct ServerOptions {
  std::string bind_address = "127.0.0.1";
  int port = 18789;
  std::string token;
  std::string version;
  std::string local_channel = "local";
  std::size_t max_preauth_bytes = 64 * 1024;  // frames before `connect`
  std::size_t max_message_bytes = 256 * 1024;  // text of one inbound message
  std::size_t max_history_bytes = 4 * 1024 * 1024;  // text of one history answer
  // A frame after `connect`, and an HTTP body: 0 = room for a message of max_message_bytes
  // even if every character of it is JSON-escaped (6 bytes each), plus the envelope.
  std::size_t max_payload_bytes = 0;
  std::size_t max_http_body_bytes = 0;
  std::size_t max_buffered_bytes = 16 * 1024 * 1024;  // per connection, then it is closed
  std::size_t max_connections = 512;
  std::size_t max_connections_per_peer = 128;  // loopback counts as one peer
  std::vector<std::string> allowed_origins;    // gateway.controlUi.allowedOrigins
  std::vector<std::string> allowed_hosts;      // gateway.allowedHosts
  // gateway.controlUi.root (absolute; empty: the Control UI is not served) and .assistantName.
  std::string control_ui_root;
  std::string control_ui_assistant_name = "drawbridge";
  int tick_interval_ms = 30000;
  int handshake_timeout_ms = 15000;  // from the upgrade to `connect`
  int close_timeout_ms = 2000;       // a close handshake the client does not answer
  // A drain's teardown (disconnect_all, close) waits this long for the clients' close
  // handshakes, then cuts the rest: a client that does not answer must not hold a restart.
  int teardown_close_ms = 100;
  // A WebSocket that receives nothing this long is closed; pings go out at half of it.
  int idle_timeout_ms = 120000;
  AuthThrottle::Options auth_throttle;
};

// The connections open now, in total and per peer (loopback is one peer); a connection
// holds a Slot from its accept to its end. Shared, so a slot outliving the server is harmless.
class ConnectionCounts {
 public:
  class Slot {
   public:
    Slot(std::shared_ptr<ConnectionCounts> counts, std::string peer);
    ~Slot();
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;
    const std::string& peer() const { return peer_; }

   private:
    std::shared_ptr<ConnectionCounts> counts_;
    std::string peer_;
  };
  std::size_t total() const { return total_; }
  std::size_t of(const std::string& peer) const;

 private:
  friend class Slot;
  std::size_t total_ = 0;
  std::unordered_map<std::string, std::size_t> by_peer_;
};

class WsConnection;
class HttpSession;

// One port for HTTP (/healthz, /readyz, /metrics, /v1/messages) and the WebSocket control
// protocol, on the gateway's event loop. Its timers (tick, close bound, accept back-off, the
// WebSocket `connect` deadline) are timers of `executor`, which runs on the io_context's thread;
// only the sockets' own I/O deadlines (Beast's tcp_stream and WebSocket timeouts) stay on Asio.
class Server final : public pipeline::ChatEventListener {
 public:
  Server(boost::asio::io_context& io, core::Clock& clock, core::Executor& executor,
         Control& control, pipeline::Pipeline& pipeline, ServerOptions options);
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
  // The Control UI's folder and name from the next request on (a config change).
  void set_control_ui(std::string root, std::string assistant_name);
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
  std::size_t open_connections() const { return counts_->total(); }
  // Prometheus lines of the server's own counters (auth failures, refused connections, ...).
  std::string metrics_text() const;

  // For the sessions.
  boost::asio::io_context& io() { return io_; }
  core::Clock& clock() { return clock_; }
  core::Executor& executor() { return executor_; }
  Control& control() { return control_; }
  pipeline::Pipeline& pipeline() { return pipeline_; }
  RpcMethods& rpc() { return rpc_; }
  const ServerOptions& options() const { return options_; }
  const OriginPolicy& origin_policy() const { return origin_policy_; }
  bool closing() const { return closing_; }
  // Failed authentication, by peer (WebSocket `connect` and HTTP bearer tokens alike).
  // nullopt: go on and check the token; else the RATE_LIMITED answer to give.
  std::optional<RpcError> auth_blocked(const std::string& peer);
  void auth_failed(const std::string& peer, std::string_view how);
  void auth_succeeded(const std::string& peer);
  // A request refused by the Host or Origin check, for the log (one line per peer and kind
  // a minute) and the metric.
  void refused_request(const std::string& peer, std::string_view what);
  // While Control::lifecycle() refuses new connections (a restart between two generations, a
  // stop): the retryable UNAVAILABLE a new client gets. nullopt while accepting.
  std::optional<RpcError> refusal();
  void attach(const std::shared_ptr<WsConnection>& c);
  void detach(std::uint64_t conn_id);
  void track(const std::shared_ptr<HttpSession>& s);
  void subscribe(std::uint64_t conn_id, const std::string& session_key);
  // sessions.subscribe, sessions.messages.(un)subscribe: `sessions.changed` events.
  void watch_sessions(std::uint64_t conn_id) { watchers_.watch_list(conn_id); }
  void watch_messages(std::uint64_t conn_id, const std::string& session_key, bool on);
  std::uint64_t next_id() { return ++next_conn_id_; }

 private:
  // `in_use`, when given, tells whether the address was taken (EADDRINUSE).
  std::optional<std::string> open_acceptor(const std::string& bind_address, int port,
                                           boost::asio::ip::tcp::acceptor& acceptor,
                                           bool* in_use = nullptr);
  void do_accept();
  // An accepted socket: counted, checked against the limits, served or closed.
  void on_accepted(boost::asio::ip::tcp::socket socket);
  // accept() failed for lack of resources (EMFILE, ENFILE, ENOBUFS, ENOMEM): wait, with a
  // back-off, instead of failing again at once in a loop; one log line per episode.
  void accept_backoff(const boost::system::error_code& ec);
  void schedule_tick();
  void end_connections(const std::string& reason, std::optional<std::int64_t> restart_expected_ms,
                       std::uint16_t code, const std::string& close_reason,
                       std::function<void()> done);
  void maybe_closed();
  void cancel_timer(std::optional<core::TimerId>& timer);

  boost::asio::io_context& io_;
  core::Clock& clock_;
  core::Executor& executor_;
  Control& control_;
  pipeline::Pipeline& pipeline_;
  ServerOptions options_;
  RpcMethods rpc_;
  boost::asio::ip::tcp::acceptor acceptor_;
  // Timers of executor_, while armed.
  std::optional<core::TimerId> tick_timer_;
  std::optional<core::TimerId> close_timer_;
  std::optional<core::TimerId> accept_timer_;
  std::shared_ptr<ConnectionCounts> counts_ = std::make_shared<ConnectionCounts>();
  OriginPolicy origin_policy_;
  AuthThrottle auth_throttle_;
  // Accept failures of the episode under way (0: none), its back-off and start; and in total.
  std::uint64_t accept_failures_ = 0;
  std::uint64_t accept_failures_total_ = 0;
  std::chrono::milliseconds accept_delay_{0};
  core::TimePoint accept_failing_since_{};
  // Connections closed at once for a limit: in total, and in the episode under way.
  std::uint64_t refused_total_ = 0;
  std::uint64_t refused_episode_ = 0;
  std::uint64_t refused_requests_total_ = 0;
  std::unordered_map<std::string, core::TimePoint> refused_logged_;
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
  // End events of sessions whose subscribers all went away, for when one comes back.
  MissedFinals missed_;
  SessionWatchers watchers_;
  // A run of the session ended: `sessions.changed` to whoever watches the list or the session.
  void notify_session_watchers(const pipeline::ChatEvent& ev);
  std::map<std::uint64_t, std::weak_ptr<HttpSession>> http_sessions_;
};

}  // namespace drawbridge::server
