#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <nlohmann/json.hpp>

#include "core/executor.h"
#include "server/rpc_methods.h"

namespace drawbridge::server {

class Server;

// One WebSocket client: challenge, `connect` with token auth, then requests and events.
// Writes are queued and sent one at a time; a client that lets more than
// max_buffered_bytes pile up is closed (1008, "slow consumer").
class WsConnection : public std::enable_shared_from_this<WsConnection> {
 public:
  // `slot` counts the connection against the server's limits for as long as it lives; `peer`
  // is the remote address as the limits and the auth throttle know it.
  WsConnection(Server& server, boost::asio::ip::tcp::socket&& socket, std::uint64_t id,
               std::shared_ptr<void> slot = nullptr, std::string peer = "");
  void run(boost::beast::http::request<boost::beast::http::string_body> upgrade);
  void send_event(std::string_view event, const nlohmann::json& payload,
                  const nlohmann::json& state_version = nullptr);
  void send_event_dump(std::string_view event, const std::string& payload_json);
  void shutdown(const nlohmann::json& payload, std::uint16_t code, const std::string& reason);
  void abort_now();
  bool authenticated() const { return authenticated_; }
  std::uint64_t id() const { return id_; }

 private:
  // hello-ok snapshot.sessionDefaults: the default agent and the main session's key.
  nlohmann::json session_defaults();
  void on_accept(boost::beast::error_code ec);
  void do_read();
  void on_read(boost::beast::error_code ec, std::size_t n);
  void handle_frame(std::string_view text);
  void handle_connect(const std::string& req_id, const nlohmann::json& params);
  // Answers a frame whose handling threw: an error for this connection only.
  void on_frame_failure(const std::exception& e);
  void send_frame(std::string frame, bool response = false);
  void do_write();
  void on_write(boost::beast::error_code ec, std::size_t n);
  void close_after_flush(std::uint16_t code, std::string reason);
  void finish();
  void cancel_handshake_timer();

  Server& server_;
  boost::beast::websocket::stream<boost::beast::tcp_stream> ws_;
  std::shared_ptr<void> slot_;
  std::string peer_;
  boost::beast::flat_buffer buffer_;
  std::deque<std::string> queue_;
  std::size_t queued_bytes_ = 0;
  bool writing_ = false;
  bool closing_ = false;
  std::size_t pending_responses_ = 0;  // requests handed to the RPC layer, not yet answered
  bool finished_ = false;
  std::optional<boost::beast::websocket::close_reason> pending_close_;
  bool authenticated_ = false;
  std::uint64_t id_;
  std::uint64_t seq_ = 0;
  std::string nonce_;
  // The `connect` deadline: a timer of the server's executor, while armed.
  std::optional<core::TimerId> handshake_timer_;
  Caller caller_;
};

}  // namespace drawbridge::server
