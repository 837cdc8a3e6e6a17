#pragma once

// IrcChannel's connection, shared by irc_channel.cpp and irc_handover.cpp (private to them).

#include <array>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>
#include <memory>
#include <string>
#include <utility>

#include "channels/irc/irc_channel.h"

namespace drawbridge::channels {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

// One TCP (or TLS) connection. Handlers hold it by shared_ptr: a stream is never destroyed
// under an operation in flight, and a handler of a connection that is no longer conn_ returns.
struct IrcChannel::Conn {
  Conn(asio::io_context& io, std::shared_ptr<asio::ssl::context> ctx)
      : resolver(io), tls_context(std::move(ctx)) {
    if (tls_context) {
      tls = std::make_unique<asio::ssl::stream<tcp::socket>>(io, *tls_context);
    } else {
      plain = std::make_unique<tcp::socket>(io);
    }
  }
  tcp::socket& socket() { return tls ? tls->next_layer() : *plain; }
  void close() {
    boost::system::error_code ec;
    resolver.cancel();
    socket().shutdown(tcp::socket::shutdown_both, ec);
    socket().close(ec);
    closed = true;
  }
  template <class Handler>
  void read_some(Handler&& h) {
    if (tls) {
      tls->async_read_some(asio::buffer(rbuf), std::forward<Handler>(h));
    } else {
      plain->async_read_some(asio::buffer(rbuf), std::forward<Handler>(h));
    }
  }
  template <class Handler>
  void write(Handler&& h) {
    if (tls) {
      asio::async_write(*tls, asio::buffer(wbuf), std::forward<Handler>(h));
    } else {
      asio::async_write(*plain, asio::buffer(wbuf), std::forward<Handler>(h));
    }
  }

  tcp::resolver resolver;
  std::shared_ptr<asio::ssl::context> tls_context;
  std::unique_ptr<asio::ssl::stream<tcp::socket>> tls;
  std::unique_ptr<tcp::socket> plain;
  std::array<char, 4096> rbuf{};
  std::string wbuf;
  bool open = false;  // connected (and TLS established): lines may be written
  bool closed = false;
};

}  // namespace drawbridge::channels
