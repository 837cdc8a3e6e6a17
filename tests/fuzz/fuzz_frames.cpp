// libFuzzer target: WebSocket frames to the real server, over a real connection.
//
// The input is a list of frames separated by the byte 0x1E (ASCII record separator, as in
// RFC 7464 JSON text sequences). A frame whose first byte is 0x02 is sent as a binary frame
// (without that byte); every other frame as a text frame.
//   frame 0       is sent before `connect` (skipped when empty): the pre-auth path;
//   then          the harness sends a valid `connect` with the gateway token;
//   frames 1..n   follow, on the authenticated connection;
//   at the end    simulated time passes (debounce, agent turns finish), then a `health`
//                 request: the connection must answer it, or be closed, within
//                 FUZZ_IO_TIMEOUT_MS. Anything else (a hang) is reported as a crash.
// A crash of the server (an exception out of a handler, a sanitizer report) ends the
// process, which is what libFuzzer looks for.

#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <nlohmann/json.hpp>

#include "fuzz/fuzz_server.h"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using drawbridge::fuzz::InProcessServer;

struct Frame {
  std::string data;
  bool binary = false;
};

std::vector<Frame> split_frames(std::string_view input) {
  std::vector<Frame> frames;
  for (;;) {
    const auto sep = input.find('\x1e');
    std::string_view part = input.substr(0, sep);
    Frame f;
    if (!part.empty() && part.front() == '\x02') {
      f.binary = true;
      part.remove_prefix(1);
    }
    f.data = std::string(part);
    frames.push_back(std::move(f));
    if (sep == std::string_view::npos) break;
    input.remove_prefix(sep + 1);
  }
  return frames;
}

std::string connect_frame() {
  nlohmann::json params = {
      {"minProtocol", 4},
      {"maxProtocol", 4},
      {"client", {{"id", "fuzz"}, {"version", "1"}, {"platform", "linux"}, {"mode", "cli"}}},
      {"role", "operator"},
      {"scopes", {"operator.admin"}},
      {"auth", {{"token", drawbridge::fuzz::kToken}}}};
  return nlohmann::json{{"type", "req"}, {"id", "fz-connect"}, {"method", "connect"},
                        {"params", params}}
      .dump();
}

const std::string kEnd = R"({"type":"req","id":"fz-end","method":"health","params":{}})";

// The client side of one connection: a read loop that records what arrives, and writes one
// at a time.
class Client {
 public:
  explicit Client(InProcessServer& s) : s_(s), ws_(s.io()) {}

  bool open(std::chrono::milliseconds timeout) {
    bool done = false;
    beast::error_code result;
    beast::get_lowest_layer(ws_).async_connect(s_.endpoint(), [&](beast::error_code ec) {
      done = true;
      result = ec;
    });
    if (!s_.run_until([&] { return done; }, timeout) || result) return false;
    // Frames go out at once (Nagle with delayed ACKs would add 40 ms stalls between them).
    beast::get_lowest_layer(ws_).socket().set_option(asio::ip::tcp::no_delay(true), result);
    done = false;
    ws_.async_handshake("127.0.0.1", "/", [&](beast::error_code ec) {
      done = true;
      result = ec;
    });
    if (!s_.run_until([&] { return done; }, timeout) || result) return false;
    read_loop();
    return true;
  }

  // False when the connection is gone (closed by the server or failed).
  bool send(const Frame& f, std::chrono::milliseconds timeout) {
    if (closed_) return false;
    bool done = false;
    beast::error_code result;
    ws_.binary(f.binary);
    ws_.async_write(asio::buffer(f.data), [&](beast::error_code ec, std::size_t) {
      done = true;
      result = ec;
    });
    if (!s_.run_until([&] { return done || closed_; }, timeout)) {
      drawbridge::fuzz::fail("a frame could not be written within FUZZ_IO_TIMEOUT_MS");
    }
    if (!done) {  // closed while writing: let the write finish with its error
      s_.run_until([&] { return done; }, timeout);
    }
    return done && !result && !closed_;
  }

  bool answered(const std::string& id) const { return answered_ids_.count(id) > 0; }
  bool closed() const { return closed_; }

  void abort() {
    beast::error_code ec;
    auto& sock = beast::get_lowest_layer(ws_).socket();
    sock.set_option(asio::socket_base::linger(true, 0), ec);  // RST: no TIME_WAIT per input
    sock.close(ec);
  }

 private:
  void read_loop() {
    ws_.async_read(buffer_, [this](beast::error_code ec, std::size_t) {
      if (ec) {
        closed_ = true;
        return;
      }
      auto frame = nlohmann::json::parse(beast::buffers_to_string(buffer_.data()), nullptr, false);
      buffer_.consume(buffer_.size());
      if (frame.is_discarded()) drawbridge::fuzz::fail("the server sent a frame that is not JSON");
      if (frame.is_object() && frame.contains("id") && frame["id"].is_string()) {
        answered_ids_.insert(frame["id"].get<std::string>());
      }
      read_loop();
    });
  }

  InProcessServer& s_;
  websocket::stream<beast::tcp_stream> ws_;
  beast::flat_buffer buffer_;
  std::set<std::string> answered_ids_;
  bool closed_ = false;
};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  drawbridge::fuzz::init_logging();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto timeout = drawbridge::fuzz::io_timeout();
  auto frames = split_frames(std::string_view(reinterpret_cast<const char*>(data), size));

  InProcessServer server;
  {
    Client client(server);
    if (!client.open(timeout)) drawbridge::fuzz::fail("cannot open a WebSocket to the server");

    bool open = true;
    if (!frames[0].data.empty() || frames[0].binary) open = client.send(frames[0], timeout);
    if (open) open = client.send({connect_frame(), false}, timeout);
    for (std::size_t i = 1; open && i < frames.size(); ++i) open = client.send(frames[i], timeout);
    if (open) {
      server.settle_pipeline();
      open = client.send({kEnd, false}, timeout);
    }
    // The connection must answer the last request, or be closed by the server.
    const bool ok = server.run_until(
        [&] { return client.closed() || (open && client.answered("fz-end")); }, timeout);
    if (!ok) drawbridge::fuzz::fail("the connection neither answered nor closed in time");
    client.abort();
    server.run_until([&] { return client.closed(); }, timeout);
  }
  return 0;
}
