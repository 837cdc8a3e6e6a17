#include "server/client.h"

#include <deque>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>

namespace drawbridge::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using nlohmann::json;

struct GatewayClient::Impl {
  std::string host;
  int port;
  asio::io_context io;
  websocket::stream<beast::tcp_stream> ws{io};
  beast::flat_buffer buffer;
  std::deque<json> events;
  std::uint64_t next_id = 0;
  bool open = false;
  std::optional<std::uint16_t> close_code;
  // A read that timed out stays pending and is picked up by the next read, so a timeout
  // does not break the stream (cancelling a Beast read would).
  bool reading = false;
  bool read_done = false;
  beast::error_code read_ec;

  // Runs one async operation to completion or until the deadline.
  template <typename Start>
  beast::error_code run(Start start, std::chrono::milliseconds timeout) {
    bool done = false;
    beast::error_code result;
    start([&](beast::error_code ec, auto&&...) {
      done = true;
      result = ec;
    });
    io.restart();
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done && io.run_one_until(deadline) > 0) {
    }
    if (!done) {
      beast::get_lowest_layer(ws).cancel();
      io.restart();
      while (!done && io.run_one() > 0) {
      }
      return asio::error::timed_out;
    }
    return result;
  }

  json read_frame(std::chrono::milliseconds timeout) {
    if (!reading) {
      buffer.consume(buffer.size());
      reading = true;
      read_done = false;
      ws.async_read(buffer, [this](beast::error_code ec, std::size_t) {
        read_done = true;
        read_ec = ec;
      });
    }
    io.restart();
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!read_done && io.run_one_until(deadline) > 0) {
    }
    if (!read_done) throw ClientError("TIMEOUT", "timed out waiting for the gateway");
    reading = false;
    auto ec = read_ec;
    if (ec) {
      open = false;
      std::string why = ec.message();
      if (ec == websocket::error::closed) {
        auto r = ws.reason();
        close_code = static_cast<std::uint16_t>(r.code);
        why = "connection closed by the gateway (" + std::to_string(r.code) +
              (r.reason.empty() ? "" : " " + std::string(r.reason.c_str())) + ")";
      }
      throw ClientError("CLOSED", why);
    }
    json frame = json::parse(beast::buffers_to_string(buffer.data()), nullptr, false);
    if (frame.is_discarded()) throw ClientError("PROTOCOL", "the gateway sent malformed JSON");
    return frame;
  }

  void write(const json& frame, std::chrono::milliseconds timeout) {
    std::string text = frame.dump();
    auto ec = run([&](auto h) { ws.async_write(asio::buffer(text), h); }, timeout);
    if (ec) throw ClientError("CLOSED", "cannot write to the gateway: " + ec.message());
  }

  json await_response(const std::string& id, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) throw ClientError("TIMEOUT", "timed out waiting for a response");
      json f = read_frame(left);
      if (f.value("type", "") == "event") {
        events.push_back(std::move(f));
        continue;
      }
      if (f.value("type", "") != "res" || f.value("id", "") != id) continue;
      if (f.value("ok", false)) return f.contains("payload") ? f["payload"] : json(nullptr);
      const auto& e = f["error"];
      throw ClientError(e.value("code", "ERROR"), e.value("message", "request failed"), e);
    }
  }
};

GatewayClient::GatewayClient(std::string host, int port) : impl_(std::make_unique<Impl>()) {
  impl_->host = std::move(host);
  impl_->port = port;
}

GatewayClient::~GatewayClient() {
  try {
    close();
  } catch (...) {
  }
}

json GatewayClient::connect(const std::string& token, const std::vector<std::string>& scopes,
                            std::chrono::milliseconds timeout) {
  auto& d = *impl_;
  asio::ip::tcp::resolver resolver(d.io);
  beast::error_code ec;
  auto results = resolver.resolve(d.host, std::to_string(d.port), ec);
  if (ec) throw ClientError("CONNECT", "cannot resolve " + d.host + ": " + ec.message());
  ec = d.run([&](auto h) { beast::get_lowest_layer(d.ws).async_connect(results, h); }, timeout);
  const std::string where = d.host + ":" + std::to_string(d.port);
  if (ec) {
    throw ClientError("CONNECT", "cannot connect to the gateway at " + where + ": " +
                                     ec.message() + " (is `drawbridge run` running?)");
  }
  ec = d.run([&](auto h) { d.ws.async_handshake(where, "/", h); }, timeout);
  if (ec) throw ClientError("CONNECT", "WebSocket handshake with " + where + " failed: " + ec.message());
  d.open = true;
  json challenge = d.read_frame(timeout);
  if (challenge.value("event", "") != "connect.challenge") {
    throw ClientError("PROTOCOL", "expected connect.challenge, got " + challenge.dump());
  }
  const std::string id = "c" + std::to_string(++d.next_id);
  json params = {{"minProtocol", 4},
                 {"maxProtocol", 4},
                 {"client",
                  {{"id", "cli"}, {"version", DRAWBRIDGE_VERSION}, {"platform", "linux"},
                   {"mode", "cli"}}},
                 {"role", "operator"},
                 {"scopes", scopes},
                 {"auth", {{"token", token}}}};
  d.write({{"type", "req"}, {"id", id}, {"method", "connect"}, {"params", params}}, timeout);
  return d.await_response(id, timeout);
}

json GatewayClient::request(const std::string& method, const json& params,
                            std::chrono::milliseconds timeout) {
  auto& d = *impl_;
  const std::string id = "r" + std::to_string(++d.next_id);
  d.write({{"type", "req"}, {"id", id}, {"method", method}, {"params", params}}, timeout);
  return d.await_response(id, timeout);
}

std::optional<json> GatewayClient::next_event(std::chrono::milliseconds timeout) {
  auto& d = *impl_;
  if (!d.events.empty()) {
    json e = std::move(d.events.front());
    d.events.pop_front();
    return e;
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    try {
      json f = d.read_frame(left);
      if (f.value("type", "") == "event") return f;
    } catch (const ClientError& e) {
      if (e.code == "TIMEOUT") return std::nullopt;
      throw;
    }
  }
}

std::optional<std::uint16_t> GatewayClient::close_code() const {
  return impl_->close_code;
}

bool accepts_connections(const std::string& host, int port, std::chrono::milliseconds timeout) {
  asio::io_context io;
  asio::ip::tcp::resolver resolver(io);
  beast::error_code ec;
  auto results = resolver.resolve(host, std::to_string(port), ec);
  if (ec) return false;
  beast::tcp_stream stream(io);
  stream.expires_after(timeout);
  bool connected = false;
  stream.async_connect(results, [&](beast::error_code e, const auto&) { connected = !e; });
  io.run();
  return connected;
}

void GatewayClient::close() {
  auto& d = *impl_;
  if (!d.open) return;
  d.open = false;
  d.run([&](auto h) { d.ws.async_close(websocket::close_code::normal, h); },
        std::chrono::seconds(1));
}

}  // namespace drawbridge::server
