#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace drawbridge::server {

struct ClientError : std::runtime_error {
  ClientError(std::string code, const std::string& message)
      : std::runtime_error(message), code(std::move(code)) {}
  std::string code;  // the protocol error code, or "CONNECT" / "TIMEOUT" / "CLOSED"
};

// A small blocking client of the control protocol, for the CLI and the tests.
class GatewayClient {
 public:
  GatewayClient(std::string host, int port);
  ~GatewayClient();
  GatewayClient(const GatewayClient&) = delete;
  GatewayClient& operator=(const GatewayClient&) = delete;

  // TCP connect, WebSocket upgrade, challenge, `connect`. Returns the hello-ok payload.
  nlohmann::json connect(const std::string& token, const std::vector<std::string>& scopes,
                         std::chrono::milliseconds timeout = std::chrono::seconds(5));
  // Sends a request and returns its payload; events that arrive meanwhile are kept for
  // next_event(). Throws ClientError with the server's code on an error response.
  nlohmann::json request(const std::string& method, const nlohmann::json& params,
                         std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // The next event frame, or nullopt on timeout.
  std::optional<nlohmann::json> next_event(std::chrono::milliseconds timeout);
  void close();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace drawbridge::server
