#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace drawbridge::server {

struct ClientError : std::runtime_error {
  ClientError(std::string code, const std::string& message, nlohmann::json error = nullptr)
      : std::runtime_error(message), code(std::move(code)), error(std::move(error)) {}
  std::string code;  // the protocol error code, or "CONNECT" / "TIMEOUT" / "CLOSED"
  // The error object of an error response (details, retryable, retryAfterMs); null otherwise.
  nlohmann::json error;
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
  // The WebSocket close code the gateway sent, once a read saw it close the connection.
  std::optional<std::uint16_t> close_code() const;
  void close();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// True when a TCP connection to host:port succeeds within `timeout`: the gateway (or something
// else) still listens there.
bool accepts_connections(const std::string& host, int port, std::chrono::milliseconds timeout);

}  // namespace drawbridge::server
