#include "openai_bench_direct.h"

#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>
#include <nlohmann/json.hpp>

namespace openai_bench {

namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;
using nlohmann::json;

DirectStream::DirectStream(asio::io_context& io, std::string tag) : socket_(io) {
  turn_.tag = std::move(tag);
}

void DirectStream::start(const tcp::endpoint& fake, const std::string& path,
                         const std::string& api_key, Done ended) {
  ended_ = std::move(ended);
  json body = {{"model", "fake-model"},
               {"messages", {{{"role", "user"}, {"content", turn_.tag + " stream please"}}}},
               {"stream", true}};
  const std::string b = body.dump();
  request_ = "POST " + path + " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(fake.port()) +
             "\r\nContent-Type: application/json\r\nAccept: text/event-stream\r\n"
             "Authorization: Bearer " +
             api_key + "\r\nConnection: close\r\nContent-Length: " + std::to_string(b.size()) +
             "\r\n\r\n" + b;
  turn_.sent = Clock::now();
  auto self = shared_from_this();
  socket_.async_connect(fake, [self](beast::error_code ec) {
    if (ec) return self->end("lost", "connect: " + ec.message());
    beast::error_code ignored;
    self->socket_.set_option(tcp::no_delay(true), ignored);
    asio::async_write(self->socket_, asio::buffer(self->request_),
                      [self](beast::error_code ec2, std::size_t) {
                        if (ec2) return self->end("lost", "write: " + ec2.message());
                        self->read();
                      });
  });
}

void DirectStream::read() {
  socket_.async_read_some(
      asio::buffer(buf_), [self = shared_from_this()](beast::error_code ec, std::size_t n) {
        const auto at = Clock::now();
        if (n > 0) {
          self->seen_.append(self->buf_.data(), n);
          self->scan(at);
        }
        if (ec == asio::error::eof) {
          const bool done = self->seen_.find("data: [DONE]") != std::string::npos;
          return self->end(done ? "final" : "cut", done ? "" : "EOF before [DONE]");
        }
        if (ec) return self->end("lost", "read: " + ec.message());
        self->read();
      });
}

void DirectStream::scan(Clock::time_point at) {
  static const std::string kPattern = "\"content\":\"t";
  for (;;) {
    const auto p = seen_.find(kPattern, scanned_);
    if (p == std::string::npos) {
      scanned_ = seen_.size() > kPattern.size() ? seen_.size() - kPattern.size() : 0;
      return;
    }
    std::size_t e = p + kPattern.size();
    while (e < seen_.size() && seen_[e] >= '0' && seen_[e] <= '9') ++e;
    if (e + 1 >= seen_.size()) {  // the rest of this marker is still on its way
      scanned_ = p;
      return;
    }
    scanned_ = e;
    if (e == p + kPattern.size() || seen_[e] != ' ' || seen_[e + 1] != '"') continue;
    const auto k = std::stoul(seen_.substr(p + kPattern.size(), e - p - kPattern.size()));
    if (k >= 100000) continue;
    if (turn_.markers.size() <= k) turn_.markers.resize(k + 1);
    if (!turn_.markers[k]) turn_.markers[k] = at;
    if (!turn_.first_delta) turn_.first_delta = at;
    ++turn_.delta_events;
    turn_.final_text += "t" + std::to_string(k) + " ";
  }
}

void DirectStream::end(std::string state, std::string error) {
  if (turn_.ended) return;
  turn_.ended = Clock::now();
  turn_.end_state = std::move(state);
  turn_.error = std::move(error);
  beast::error_code ignored;
  socket_.close(ignored);
  if (auto done = std::move(ended_)) done(*this);
}

}  // namespace openai_bench
