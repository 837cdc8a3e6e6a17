#include "agents/openai/beast_transport.h"

#include <openssl/ssl.h>

#include <array>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <cctype>
#include <cstdint>
#include <limits>
#include <utility>

namespace drawbridge::agents::openai {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

asio::ssl::context& tls_context() {
  static asio::ssl::context ctx = [] {
    asio::ssl::context c(asio::ssl::context::tls_client);
    c.set_default_verify_paths();
    c.set_verify_mode(asio::ssl::verify_peer);
    return c;
  }();
  return ctx;
}

struct Url {
  bool tls = true;
  std::string host;
  std::string port;
  std::string path;
};

std::optional<Url> parse_url(const std::string& url, std::string& error) {
  Url u;
  std::string rest;
  if (url.rfind("https://", 0) == 0) {
    rest = url.substr(8);
  } else if (url.rfind("http://", 0) == 0) {
    u.tls = false;
    rest = url.substr(7);
  } else {
    error = "expected an http:// or https:// URL";
    return std::nullopt;
  }
  for (unsigned char c : url) {
    if (c <= 0x20 || c >= 0x7f || c == '?' || c == '#' || c == '@') {
      error = "the URL may not contain spaces, control characters, '?', '#' or '@'";
      return std::nullopt;
    }
  }
  while (!rest.empty() && rest.back() == '/') rest.pop_back();
  if (auto slash = rest.find('/'); slash != std::string::npos) {
    u.path = rest.substr(slash);
    rest = rest.substr(0, slash);
  }
  u.port = u.tls ? "443" : "80";
  if (!rest.empty() && rest.front() == '[') {  // [::1]:8080
    const auto close = rest.find(']');
    if (close == std::string::npos) {
      error = "the URL's IPv6 address has no closing ']'";
      return std::nullopt;
    }
    u.host = rest.substr(1, close - 1);
    if (close + 1 < rest.size()) {
      if (rest[close + 1] != ':') {
        error = "unexpected text after the URL's IPv6 address";
        return std::nullopt;
      }
      u.port = rest.substr(close + 2);
    }
  } else if (auto colon = rest.rfind(':'); colon != std::string::npos) {
    u.host = rest.substr(0, colon);
    u.port = rest.substr(colon + 1);
  } else {
    u.host = rest;
  }
  if (u.host.empty()) {
    error = "the URL has no host";
    return std::nullopt;
  }
  const bool digits = !u.port.empty() && u.port.size() <= 5 &&
                      u.port.find_first_not_of("0123456789") == std::string::npos;
  if (!digits || std::stoi(u.port) < 1 || std::stoi(u.port) > 65535) {
    error = "the URL's port is not a number in 1..65535";
    return std::nullopt;
  }
  return u;
}

bool stale(const beast::error_code& ec) {
  return ec == http::error::end_of_stream || ec == asio::error::eof ||
         ec == asio::error::connection_reset || ec == asio::error::broken_pipe ||
         ec == asio::ssl::error::stream_truncated;
}

}  // namespace

struct BeastTransport::Connection {
  std::optional<beast::tcp_stream> plain;
  std::optional<beast::ssl_stream<beast::tcp_stream>> tls;
  beast::flat_buffer buffer;  // bytes read past one answer belong to the next

  Connection(asio::io_context& io, bool use_tls) {
    if (use_tls) {
      tls.emplace(io, tls_context());
    } else {
      plain.emplace(io);
    }
  }
  beast::tcp_stream& lowest() { return tls ? beast::get_lowest_layer(*tls) : *plain; }
  void close() {
    beast::error_code ignored;
    lowest().socket().shutdown(tcp::socket::shutdown_both, ignored);
    lowest().socket().close(ignored);
  }
};

struct BeastTransport::Op : std::enable_shared_from_this<Op> {
  BeastTransport* transport;
  std::shared_ptr<bool> transport_alive;
  asio::io_context& io;
  bool use_tls;
  std::string host;
  std::string port;
  std::chrono::milliseconds connect_timeout;
  ExchangeCallbacks cb;
  http::request<http::string_body> req;
  std::shared_ptr<Connection> conn;
  bool reused = false;
  tcp::resolver resolver;
  std::optional<http::response_parser<http::buffer_body>> parser;
  // Not value-initialized: the parser writes what it reads, and only that is read; zeroing
  // made all 16 KiB of every open stream resident.
  std::array<char, 16384> buf;
  bool cancelled = false;
  bool ended = false;

  Op(BeastTransport* t, ExchangeCallbacks c)
      : transport(t),
        transport_alive(t->alive_),
        io(t->io_),
        use_tls(t->tls_),
        host(t->host_),
        port(t->port_),
        connect_timeout(t->connect_timeout_),
        cb(std::move(c)),
        resolver(t->io_) {}

  template <typename F>
  void with_stream(F&& f) {
    if (conn->tls) {
      f(*conn->tls);
    } else {
      f(*conn->plain);
    }
  }

  void start(std::shared_ptr<Connection> idle) {
    if (idle) {
      conn = std::move(idle);
      reused = true;
      return write();
    }
    fresh();
  }

  void fresh() {
    reused = false;
    conn = std::make_shared<Connection>(io, use_tls);
    if (*transport_alive) ++transport->opened_;
    auto self = shared_from_this();
    resolver.async_resolve(host, port,
                           [self](beast::error_code ec, tcp::resolver::results_type results) {
                             if (self->cancelled) return;
                             if (ec)
                               return self->end("resolve " + self->host + ": " + ec.message());
                             self->connect(results);
                           });
  }

  void connect(const tcp::resolver::results_type& results) {
    auto self = shared_from_this();
    conn->lowest().expires_after(connect_timeout);
    conn->lowest().async_connect(results, [self](beast::error_code ec, const tcp::endpoint&) {
      if (self->cancelled) return;
      if (ec) return self->failed(ec, "connect");
      if (!self->conn->tls) return self->write();
      auto& tls = *self->conn->tls;
      if (!SSL_set_tlsext_host_name(tls.native_handle(), self->host.c_str())) {
        return self->end("TLS: cannot set the server name");
      }
      tls.set_verify_callback(asio::ssl::host_name_verification(self->host));
      tls.async_handshake(asio::ssl::stream_base::client, [self](beast::error_code ec2) {
        if (self->cancelled) return;
        if (ec2) return self->failed(ec2, "TLS handshake");
        self->write();
      });
    });
  }

  void write() {
    auto self = shared_from_this();
    conn->lowest().expires_after(connect_timeout);
    with_stream([&](auto& stream) {
      http::async_write(stream, req, [self](beast::error_code ec, std::size_t) {
        if (self->cancelled) return;
        if (ec) return self->failed(ec, "send");
        self->conn->lowest().expires_never();  // the caller bounds the wait for the answer
        self->read_head();
      });
    });
  }

  void read_head() {
    parser.emplace();
    // The caller bounds what it keeps (an error body, the reply); a stream has no set length.
    parser->body_limit(std::numeric_limits<std::uint64_t>::max());
    auto self = shared_from_this();
    with_stream([&](auto& stream) {
      http::async_read_header(
          stream, conn->buffer, *parser, [self](beast::error_code ec, std::size_t) {
            if (self->cancelled) return;
            if (ec) return self->failed(ec, "answer");
            HttpHead head;
            const auto& res = self->parser->get();
            head.status = static_cast<int>(res.result_int());
            for (const auto& field : res) {
              std::string name(field.name_string());
              for (auto& ch : name)
                ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
              head.headers[name] = std::string(field.value());
            }
            self->reused = false;  // answered: a failure from here on is not a stale connection
            if (self->cb.on_head) self->cb.on_head(head);
            if (self->cancelled) return;
            self->read_body();
          });
    });
  }

  void read_body() {
    if (parser->is_done()) return end("");
    parser->get().body().data = buf.data();
    parser->get().body().size = buf.size();
    auto self = shared_from_this();
    with_stream([&](auto& stream) {
      http::async_read_some(
          stream, conn->buffer, *parser, [self](beast::error_code ec, std::size_t) {
            if (self->cancelled) return;
            if (ec == http::error::need_buffer) ec = {};
            const std::size_t n = self->buf.size() - self->parser->get().body().size;
            if (n > 0 && self->cb.on_body) {
              self->cb.on_body(std::string_view(self->buf.data(), n));
              if (self->cancelled) return;
            }
            if (ec) return self->failed(ec, "answer");
            self->read_body();
          });
    });
  }

  void failed(const beast::error_code& ec, const char* step) {
    if (reused && stale(ec)) {
      // The server closed the pooled connection while it waited: nothing of this request
      // was answered, it goes once more on a new connection.
      conn->close();
      return fresh();
    }
    if (ec == beast::error::timeout) return end(std::string(step) + ": timed out");
    if (ec == http::error::partial_message || ec == http::error::end_of_stream ||
        ec == asio::error::eof) {
      return end(std::string(step) + ": the connection was closed before the answer ended");
    }
    end(std::string(step) + ": " + ec.message());
  }

  void end(std::string error) {
    if (ended) return;
    ended = true;
    const bool reusable = error.empty() && parser && parser->keep_alive();
    if (reusable && *transport_alive) {
      transport->give_back(conn);
    } else if (conn) {
      conn->close();
    }
    if (cb.on_end) cb.on_end(error);
  }

  void cancel() {
    if (cancelled || ended) return;
    cancelled = true;
    resolver.cancel();
    if (conn) conn->close();
  }
};

namespace {

class Exchange final : public HttpExchange {
 public:
  explicit Exchange(std::shared_ptr<BeastTransport::Op> op) : op_(std::move(op)) {}
  ~Exchange() override { op_->cancel(); }
  void cancel() override { op_->cancel(); }

 private:
  std::shared_ptr<BeastTransport::Op> op_;
};

}  // namespace

BeastTransport::BeastTransport(asio::io_context& io, const std::string& base_url,
                               std::chrono::milliseconds connect_timeout, std::size_t max_idle)
    : io_(io), connect_timeout_(connect_timeout), max_idle_(max_idle) {
  std::string error;
  auto u = parse_url(base_url, error);
  if (!u) throw std::invalid_argument("baseUrl: " + error);
  tls_ = u->tls;
  host_ = u->host;
  port_ = u->port;
  base_path_ = u->path;
}

BeastTransport::~BeastTransport() {
  *alive_ = false;
  for (auto& c : idle_) c->close();
}

std::optional<std::string> BeastTransport::check_url(const std::string& base_url) {
  std::string error;
  if (!parse_url(base_url, error)) return error;
  return std::nullopt;
}

std::string BeastTransport::endpoint() const {
  const bool v6 = host_.find(':') != std::string::npos;
  return std::string(tls_ ? "https://" : "http://") + (v6 ? "[" + host_ + "]" : host_) + ":" +
         port_;
}

std::size_t BeastTransport::idle_connections() const {
  return idle_.size();
}

std::shared_ptr<BeastTransport::Connection> BeastTransport::take_idle() {
  if (idle_.empty()) return nullptr;
  auto c = std::move(idle_.back());
  idle_.pop_back();
  return c;
}

void BeastTransport::give_back(std::shared_ptr<Connection> c) {
  if (idle_.size() >= max_idle_) {
    c->close();
    return;
  }
  idle_.push_back(std::move(c));
}

std::unique_ptr<HttpExchange> BeastTransport::send(HttpRequest request,
                                                   ExchangeCallbacks callbacks) {
  auto op = std::make_shared<Op>(this, std::move(callbacks));
  op->req.method(http::string_to_verb(request.method));
  op->req.target(base_path_ + request.target);
  op->req.version(11);
  const bool default_port = port_ == (tls_ ? "443" : "80");
  const bool v6 = host_.find(':') != std::string::npos;
  const std::string host = v6 ? "[" + host_ + "]" : host_;
  op->req.set(http::field::host, default_port ? host : host + ":" + port_);
  op->req.set(http::field::user_agent, "drawbridge");
  for (const auto& [name, value] : request.headers) op->req.set(name, value);
  op->req.body() = std::move(request.body);
  op->req.prepare_payload();
  auto idle = take_idle();
  // Started from the loop: nothing is called back from inside send().
  asio::post(io_, [op, idle]() mutable {
    if (!op->cancelled) op->start(std::move(idle));
  });
  return std::make_unique<Exchange>(std::move(op));
}

}  // namespace drawbridge::agents::openai
