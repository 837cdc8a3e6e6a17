// libFuzzer target: raw bytes to the real server's port as an HTTP request.
//
// The input is written as it is to a TCP connection to the in-process server (Beast's request
// parser, routing, /healthz, /readyz, /metrics, /v1/messages with or without the bearer token
// `fuzz-token-0123456789abcdef`, a WebSocket upgrade), then the client half-closes and reads
// until the server closes. The server must answer and close within FUZZ_IO_TIMEOUT_MS;
// a hang is reported as a crash, and so is any crash of the server.

#include <cstddef>
#include <array>
#include <cstdint>
#include <functional>
#include <string>

#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include "fuzz/fuzz_server.h"

namespace asio = boost::asio;
using drawbridge::fuzz::InProcessServer;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  drawbridge::fuzz::init_logging();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto timeout = drawbridge::fuzz::io_timeout();
  InProcessServer server;
  {
    asio::ip::tcp::socket sock(server.io());
    bool done = false;
    boost::system::error_code result;
    sock.async_connect(server.endpoint(), [&](boost::system::error_code ec) {
      done = true;
      result = ec;
    });
    if (!server.run_until([&] { return done; }, timeout) || result) {
      drawbridge::fuzz::fail("cannot connect to the server");
    }

    // Read everything the server sends until it closes (EOF or reset).
    bool closed = false;
    std::string answer;
    std::array<char, 4096> chunk;
    std::function<void()> read_some = [&] {
      sock.async_read_some(asio::buffer(chunk), [&](boost::system::error_code ec, std::size_t n) {
        answer.append(chunk.data(), n);
        if (ec) {
          closed = true;
          return;
        }
        read_some();
      });
    };
    read_some();

    bool written = false;
    asio::async_write(sock, asio::buffer(data, size),
                      [&](boost::system::error_code, std::size_t) { written = true; });
    if (!server.run_until([&] { return written || closed; }, timeout)) {
      drawbridge::fuzz::fail("the request could not be written within FUZZ_IO_TIMEOUT_MS");
    }
    server.run_until([&] { return written; }, timeout);
    boost::system::error_code ec;
    sock.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
    server.settle_pipeline();
    if (!server.run_until([&] { return closed; }, timeout)) {
      drawbridge::fuzz::fail("the server neither answered and closed nor closed in time");
    }
    sock.set_option(asio::socket_base::linger(true, 0), ec);  // RST: no TIME_WAIT per input
    sock.close(ec);
  }
  return 0;
}
