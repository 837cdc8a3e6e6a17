#include "channels/irc/irc_probe.h"

#include <openssl/ssl.h>

#include <array>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <deque>
#include <memory>
#include <random>

#include "channels/irc/irc_message.h"

namespace drawbridge::channels::irc {

namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

constexpr std::size_t kMaxLine = 8192;

bool is_nick_refusal(const std::string& cmd) {
  return cmd == "432" || cmd == "433" || cmd == "436" || cmd == "437";
}

bool is_error_numeric(const std::string& cmd) {
  return cmd.size() == 3 && (cmd[0] == '4' || cmd[0] == '5') &&
         cmd.find_first_not_of("0123456789") == std::string::npos;
}

// A nick most servers accept (9 characters, RFC 2812's limit), for when the first is refused.
std::string short_nick() {
  std::mt19937 rng{std::random_device{}()};
  return "probe" + std::to_string(1000 + rng() % 9000);
}

class Probe : public std::enable_shared_from_this<Probe> {
 public:
  Probe(asio::io_context& io, IrcOptions options, std::function<void(ProbeResult)> done)
      : io_(io),
        options_(std::move(options)),
        resolver_(io),
        timer_(io),
        done_(std::move(done)),
        nick_(probe_nick(options_.nick)) {
    if (options_.tls) {
      ctx_ = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_client);
      if (options_.tls_insecure) {
        ctx_->set_verify_mode(asio::ssl::verify_none);
      } else {
        boost::system::error_code ec;
        ctx_->set_default_verify_paths(ec);
        ctx_->set_verify_mode(asio::ssl::verify_peer);
      }
      tls_ = std::make_unique<asio::ssl::stream<tcp::socket>>(io, *ctx_);
    } else {
      plain_ = std::make_unique<tcp::socket>(io);
    }
  }

  void start(std::chrono::milliseconds timeout) {
    step_ = "resolve " + options_.host;
    timer_.expires_after(timeout);
    timer_.async_wait([self = shared_from_this(), timeout](const boost::system::error_code& ec) {
      if (ec) return;
      self->fail(self->step_ + ": timed out after " +
                 (timeout.count() % 1000 == 0 ? std::to_string(timeout.count() / 1000) + " s"
                                              : std::to_string(timeout.count()) + " ms"));
    });
    resolver_.async_resolve(
        options_.host, std::to_string(options_.port),
        [self = shared_from_this()](const boost::system::error_code& ec,
                                    tcp::resolver::results_type results) {
          if (self->finished_) return;
          if (ec) return self->fail("cannot resolve " + self->options_.host + ": " + ec.message());
          self->step_ = "connect to " + self->where();
          asio::async_connect(self->socket(), results,
                              [self](const boost::system::error_code& ec2, const tcp::endpoint&) {
                                self->on_connect(ec2);
                              });
        });
  }

 private:
  std::string where() const { return options_.host + ":" + std::to_string(options_.port); }
  tcp::socket& socket() { return tls_ ? tls_->next_layer() : *plain_; }

  void on_connect(const boost::system::error_code& ec) {
    if (finished_) return;
    if (ec) return fail("cannot connect to " + where() + ": " + ec.message());
    if (!tls_) return registration();
    step_ = "TLS handshake with " + where();
    if (!SSL_set_tlsext_host_name(tls_->native_handle(), options_.host.c_str())) {
      return fail("TLS: cannot set the server name");
    }
    if (!options_.tls_insecure) {
      tls_->set_verify_callback(asio::ssl::host_name_verification(options_.host));
    }
    tls_->async_handshake(asio::ssl::stream_base::client,
                          [self = shared_from_this()](const boost::system::error_code& ec2) {
                            if (self->finished_) return;
                            if (ec2) return self->fail("TLS handshake: " + ec2.message());
                            self->registration();
                          });
  }

  void registration() {
    step_ = "waiting for the welcome (001) from " + where();
    read();
    if (!options_.password.empty()) send("PASS " + options_.password);
    send("NICK " + nick_);
    send(format("USER", {options_.username.empty() ? options_.nick : options_.username, "0", "*",
                         options_.realname}));
  }

  void read() {
    auto on_read = [self = shared_from_this()](const boost::system::error_code& ec, std::size_t n) {
      if (self->finished_) return;
      if (ec) {
        return self->fail(ec == asio::error::eof
                              ? "the server closed the connection before the welcome (001)"
                              : "read: " + ec.message());
      }
      self->on_data(n);
    };
    if (tls_) {
      tls_->async_read_some(asio::buffer(rbuf_), std::move(on_read));
    } else {
      plain_->async_read_some(asio::buffer(rbuf_), std::move(on_read));
    }
  }

  void on_data(std::size_t n) {
    for (std::size_t i = 0; i < n && !finished_; ++i) {
      const char ch = rbuf_[i];
      if (ch == '\n') {
        if (!line_.empty() && line_.back() == '\r') line_.pop_back();
        on_line(line_);
        line_.clear();
      } else if (line_.size() < kMaxLine) {
        line_ += ch;
      }
    }
    if (!finished_) read();
  }

  void on_line(const std::string& line) {
    const auto m = parse(line);
    if (!m) return;
    const std::string& cmd = m->command;
    if (cmd == "PING") {
      send(format("PONG", {m->param(0)}));
    } else if (cmd == "001") {
      ProbeResult r;
      r.ok = true;
      r.server = sanitize_utf8(m->prefix);
      r.nick = sanitize_utf8(m->param(0).empty() ? nick_ : m->param(0));
      r.message = "welcome from " + (r.server.empty() ? where() : r.server) + " as " + r.nick;
      quit_then_finish(std::move(r));
    } else if (is_nick_refusal(cmd) && !retried_nick_) {
      // A taken or too long probe nick says nothing about the link: one more, short, try.
      retried_nick_ = true;
      nick_ = short_nick();
      send("NICK " + nick_);
    } else if (cmd == "ERROR") {
      fail("the server closed the link: " + sanitize_utf8(m->param(0)));
    } else if (is_error_numeric(cmd)) {
      const std::string text = m->params.empty() ? std::string() : m->params.back();
      fail("the server refused the registration: " + cmd + " " + sanitize_utf8(text));
    }
  }

  void send(std::string line) {
    out_.push_back(std::move(line) + "\r\n");
    if (!writing_) write_next();
  }

  void write_next() {
    if (out_.empty() || closed_) {
      writing_ = false;
      if (quitting_ && out_.empty()) finish(std::move(pending_));
      return;
    }
    writing_ = true;
    wbuf_ = std::move(out_.front());
    out_.pop_front();
    auto on_write = [self = shared_from_this()](const boost::system::error_code& ec, std::size_t) {
      if (ec) {
        self->out_.clear();
        if (self->quitting_) return self->finish(std::move(self->pending_));
        return self->fail("write: " + ec.message());
      }
      self->write_next();
    };
    if (tls_) {
      asio::async_write(*tls_, asio::buffer(wbuf_), std::move(on_write));
    } else {
      asio::async_write(*plain_, asio::buffer(wbuf_), std::move(on_write));
    }
  }

  // Registered: leave politely, then report (the timer still bounds the QUIT's write).
  void quit_then_finish(ProbeResult r) {
    pending_ = std::move(r);
    quitting_ = true;
    finished_ = true;  // no line read from here on changes the outcome
    send("QUIT :drawbridge channels probe");
  }

  void fail(std::string why) {
    if (done_ == nullptr) return;
    if (quitting_) return finish(std::move(pending_));  // the QUIT's write timed out
    ProbeResult r;
    r.message = std::move(why);
    finish(std::move(r));
  }

  void finish(ProbeResult r) {
    finished_ = true;
    if (done_ == nullptr) return;
    close();
    auto done = std::move(done_);
    done_ = nullptr;
    // Posted: the caller may destroy what it owns from `done`, outside this handler.
    asio::post(io_, [done = std::move(done), r = std::move(r)]() mutable { done(std::move(r)); });
  }

  void close() {
    closed_ = true;
    boost::system::error_code ec;
    timer_.cancel();
    resolver_.cancel();
    socket().shutdown(tcp::socket::shutdown_both, ec);
    socket().close(ec);
  }

  asio::io_context& io_;
  IrcOptions options_;
  tcp::resolver resolver_;
  asio::steady_timer timer_;
  std::function<void(ProbeResult)> done_;
  std::unique_ptr<asio::ssl::context> ctx_;
  std::unique_ptr<asio::ssl::stream<tcp::socket>> tls_;
  std::unique_ptr<tcp::socket> plain_;
  std::string nick_;
  bool retried_nick_ = false;
  std::string step_;  // what a timeout interrupted
  std::array<char, 4096> rbuf_{};
  std::string line_;
  std::deque<std::string> out_;
  std::string wbuf_;
  bool writing_ = false;
  bool finished_ = false;
  bool quitting_ = false;
  bool closed_ = false;
  ProbeResult pending_;
};

}  // namespace

std::string probe_nick(const std::string& nick) {
  return nick + "-probe";
}

void probe(asio::io_context& io, const IrcOptions& options, std::chrono::milliseconds timeout,
           std::function<void(ProbeResult)> done) {
  std::make_shared<Probe>(io, options, std::move(done))->start(timeout);
}

}  // namespace drawbridge::channels::irc
