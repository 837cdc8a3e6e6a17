#pragma once

#include <memory>
#include <optional>
#include <string>

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "server/static_files.h"

namespace drawbridge::server {

class Server;
class ConnectionCounts;

// A plain HTTP connection (keep-alive): health, readiness, metrics and the local channel's
// REST door. A WebSocket upgrade hands the socket to a WsConnection.
class HttpSession : public std::enable_shared_from_this<HttpSession> {
 public:
  // `slot` counts the connection against the server's limits until it ends (it moves on to
  // the WebSocket connection on an upgrade).
  HttpSession(Server& server, boost::asio::ip::tcp::socket&& socket,
              std::shared_ptr<void> slot, std::string peer);
  void run();
  void abort_now();
  // Ends the connection: now when it waits for a request, after the answer when one is being
  // prepared or written.
  void end();

 private:
  using Request = boost::beast::http::request<boost::beast::http::string_body>;
  using Response = boost::beast::http::response<boost::beast::http::string_body>;

  void do_read();
  void on_read(boost::beast::error_code ec, std::size_t n);
  // nullopt: the answer is written later (after the commit of an accepted message).
  std::optional<Response> handle(const Request& req);
  std::optional<Response> route(const Request& req);
  // The bearer token of an Authorization header is the gateway's (constant time).
  bool bearer_matches(const Request& req) const;
  std::optional<Response> post_message(const Request& req);
  void write_response(Response res);
  // A request refused before routing (Host, Origin): answered, then the connection closes.
  void write_refusal(boost::beast::http::status status, const std::string& message);
  Response get_history(const Request& req);
  Response ui_response(const Request& req, StaticResponse answer);
  void on_write(bool keep_alive, boost::beast::error_code ec, std::size_t n);

  Server& server_;
  boost::beast::tcp_stream stream_;
  std::shared_ptr<void> slot_;
  std::string peer_;
  boost::beast::flat_buffer buffer_;
  std::optional<boost::beast::http::request_parser<boost::beast::http::string_body>> parser_;
  std::shared_ptr<Response> response_;
  bool busy_ = false;  // from a request read to its answer written
  bool ending_ = false;
  std::size_t served_ = 0;  // answers written
};

}  // namespace drawbridge::server
