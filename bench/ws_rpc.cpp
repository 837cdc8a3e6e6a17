// See ws_rpc.h.

#include "ws_rpc.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/post.hpp>

namespace bench_ws {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;

Ws::Ws(int port, std::string client_id, std::string client_mode)
    : port_(port), client_id_(std::move(client_id)), client_mode_(std::move(client_mode)), ws_(io_) {}

template <class Start>
beast::error_code Ws::run(Start start, Millis timeout) {
  beast::get_lowest_layer(ws_).expires_after(timeout);
  std::optional<beast::error_code> result;
  start([&](beast::error_code ec, auto&&...) { result = ec; });
  io_.restart();
  while (!result && io_.run_one()) {
  }
  beast::get_lowest_layer(ws_).expires_never();
  return result.value_or(asio::error::operation_aborted);
}

Ws::~Ws() {
  if (pump_thread_.joinable()) {
    io_.stop();
    pump_thread_.join();
  }
}

std::string Ws::open(const std::string& token, Millis timeout, bool& retryable) {
  retryable = true;
  tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), static_cast<std::uint16_t>(port_));
  auto ec = run([&](auto h) { beast::get_lowest_layer(ws_).async_connect(ep, h); }, timeout);
  if (ec) return "connect: " + ec.message();
  beast::error_code ignored;
  beast::get_lowest_layer(ws_).socket().set_option(tcp::no_delay(true), ignored);
  ec = run([&](auto h) { ws_.async_handshake("127.0.0.1:" + std::to_string(port_), "/", h); },
           timeout);
  if (ec) return "websocket handshake: " + ec.message();
  ws_.read_message_max(64 * 1024 * 1024);
  ws_.text(true);
  json connect = {
      {"type", "req"},
      {"id", "connect"},
      {"method", "connect"},
      {"params",
       {{"minProtocol", 4},
        {"maxProtocol", 4},
        {"client", {{"id", client_id_}, {"version", "1"}, {"platform", "linux"}, {"mode", client_mode_}}},
        {"role", "operator"},
        {"scopes", {"operator.admin"}},
        {"auth", {{"token", token}}}}}};
  if (!write(connect.dump(), timeout)) return "write connect: " + last_error_;
  auto res = response("connect", timeout);
  if (!res) return "no connect response: " + last_error_;
  if (!res->value("ok", false)) {
    const auto& e = (*res)["error"];
    retryable = e.is_object() && e.value("retryable", false);
    return "connect refused: " + res->dump();
  }
  hello_ = res->value("payload", json::object());
  return {};
}

bool Ws::write(const std::string& text, Millis timeout) {
  auto ec = run([&](auto h) { ws_.async_write(asio::buffer(text), h); }, timeout);
  if (ec) last_error_ = ec.message();
  return !ec;
}

Ws::Frame Ws::read(Millis timeout) {
  Frame f;
  buffer_.clear();
  auto ec = run([&](auto h) { ws_.async_read(buffer_, h); }, timeout);
  f.at = Clock::now();
  if (ec) {
    if (ec == websocket::error::closed) f.close_code = ws_.reason().code;
    f.error = ec.message();
    last_error_ = f.error;
    closed_ = true;
    return f;
  }
  f.ok = true;
  f.text = beast::buffers_to_string(buffer_.data());
  f.msg = json::parse(f.text, nullptr, false);
  return f;
}

std::optional<json> Ws::response(const std::string& id, Millis timeout) {
  const auto deadline = Clock::now() + timeout;
  while (!closed_) {
    const auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now());
    if (left.count() <= 0) {
      last_error_ = "timeout waiting for " + id;
      return std::nullopt;
    }
    Frame f = read(left);
    if (!f.ok) return std::nullopt;
    if (f.msg.is_object() && f.msg.value("type", "") == "res" && f.msg.value("id", "") == id) {
      return f.msg;
    }
    if (keep_events_) events_.push_back(std::move(f));
  }
  return std::nullopt;
}

std::optional<json> Ws::request(const std::string& method, const json& params, Millis timeout,
                                Clock::time_point* sent, Clock::time_point* answered) {
  const std::string id = "r" + std::to_string(++next_id_);
  json req = {{"type", "req"}, {"id", id}, {"method", method}, {"params", params}};
  if (sent) *sent = Clock::now();
  if (!write(req.dump(), timeout)) return std::nullopt;
  auto r = response(id, timeout);
  if (answered) *answered = Clock::now();
  return r;
}

void Ws::pump(std::function<void(Frame)> on_frame) {
  on_frame_ = std::move(on_frame);
  beast::get_lowest_layer(ws_).expires_never();
  io_.restart();
  work_.emplace(asio::make_work_guard(io_));
  read_loop();
  pump_thread_ = std::thread([this] { io_.run(); });
}

void Ws::post_write(std::string text) {
  auto t = std::make_shared<std::string>(std::move(text));
  asio::post(io_, [this, t] {
    ws_.async_write(asio::buffer(*t), [t](beast::error_code, std::size_t) {});
  });
}

void Ws::read_loop() {
  buffer_.clear();
  ws_.async_read(buffer_, [this](beast::error_code ec, std::size_t) {
    Frame f;
    f.at = Clock::now();
    if (ec) {
      if (ec == websocket::error::closed) f.close_code = ws_.reason().code;
      f.error = ec.message();
      closed_ = true;
      on_frame_(std::move(f));
      return;
    }
    f.ok = true;
    f.text = beast::buffers_to_string(buffer_.data());
    f.msg = json::parse(f.text, nullptr, false);
    on_frame_(std::move(f));
    read_loop();
  });
}

}  // namespace bench_ws
