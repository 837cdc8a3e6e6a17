#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agents/openai/transport.h"

namespace drawbridge::agents::openai {

// HTTP/1.1 and HTTPS (OpenSSL: the system's CA store, SNI and host name check) on the event
// loop, with keep-alive: a connection whose answer was read to the end goes back to a small
// pool and the next request reuses it. A pooled connection the server closed meanwhile is
// noticed when it fails before any byte of the answer, and the request is sent once more on a
// new connection. `connect_timeout` bounds resolving, connecting, the TLS handshake and writing
// the request; reading the answer is bounded by the caller (first-token and idle timeouts),
// which cancels. Bodies are handed on as they arrive (chunked transfer coding removed).
class BeastTransport final : public HttpTransport {
 public:
  BeastTransport(boost::asio::io_context& io, const std::string& base_url,
                 std::chrono::milliseconds connect_timeout, std::size_t max_idle = 16);
  ~BeastTransport() override;
  BeastTransport(const BeastTransport&) = delete;
  BeastTransport& operator=(const BeastTransport&) = delete;

  // Why `base_url` is not an http(s) URL this client can call; nullopt when it is.
  static std::optional<std::string> check_url(const std::string& base_url);

  std::unique_ptr<HttpExchange> send(HttpRequest request, ExchangeCallbacks callbacks) override;
  std::string endpoint() const override;

  std::size_t idle_connections() const;
  std::size_t connections_opened() const { return opened_; }

  struct Connection;
  struct Op;

 private:
  friend struct Op;
  std::shared_ptr<Connection> take_idle();
  void give_back(std::shared_ptr<Connection> c);

  boost::asio::io_context& io_;
  bool tls_ = true;
  std::string host_;
  std::string port_;
  std::string base_path_;  // "/v1"
  std::chrono::milliseconds connect_timeout_;
  std::size_t max_idle_;
  std::size_t opened_ = 0;
  std::vector<std::shared_ptr<Connection>> idle_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace drawbridge::agents::openai
