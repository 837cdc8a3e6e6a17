#include "channels/telegram/bot_api.h"

#include <openssl/ssl.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <optional>
#include <utility>

#include "config/bounded_json.h"

namespace drawbridge::channels::telegram {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using nlohmann::json;

namespace {

constexpr std::size_t kMaxAnswerBytes = 8u << 20;  // getUpdates with 100 long messages fits

asio::ssl::context& tls_context() {
  static asio::ssl::context ctx = [] {
    asio::ssl::context c(asio::ssl::context::tls_client);
    c.set_default_verify_paths();
    c.set_verify_mode(asio::ssl::verify_peer);
    return c;
  }();
  return ctx;
}

}  // namespace

struct BotApi::Call : std::enable_shared_from_this<Call> {
  BotApi* api;
  std::uint64_t id;
  std::shared_ptr<bool> alive;
  std::function<void(ApiResult)> done;
  std::chrono::milliseconds timeout;
  tcp::resolver resolver;
  std::optional<beast::tcp_stream> plain;
  std::optional<beast::ssl_stream<beast::tcp_stream>> tls;
  http::request<http::string_body> req;
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  bool written = false;
  bool cancelled = false;
  bool finished = false;

  Call(BotApi* a, std::uint64_t i, std::function<void(ApiResult)> d, std::chrono::milliseconds t)
      : api(a), id(i), alive(a->alive_), done(std::move(d)), timeout(t), resolver(a->io_) {
    parser.body_limit(kMaxAnswerBytes);
    if (a->tls_) {
      tls.emplace(a->io_, tls_context());
    } else {
      plain.emplace(a->io_);
    }
  }

  beast::tcp_stream& lowest() { return tls ? beast::get_lowest_layer(*tls) : *plain; }

  void start() {
    auto self = shared_from_this();
    resolver.async_resolve(api->host_, api->port_,
                           [self](beast::error_code ec, tcp::resolver::results_type results) {
                             if (ec) return self->fail(ec, "resolve");
                             self->connect(results);
                           });
  }

  void connect(const tcp::resolver::results_type& results) {
    auto self = shared_from_this();
    lowest().expires_after(timeout);
    lowest().async_connect(results, [self](beast::error_code ec, const tcp::endpoint&) {
      if (ec) return self->fail(ec, "connect");
      if (!self->tls) return self->write();
      // SNI and the certificate's host name: both are the API host's.
      if (!SSL_set_tlsext_host_name(self->tls->native_handle(), self->api->host_.c_str())) {
        return self->fail(
            beast::error_code(static_cast<int>(::ERR_get_error()), asio::error::get_ssl_category()),
            "TLS");
      }
      self->tls->set_verify_callback(asio::ssl::host_name_verification(self->api->host_));
      self->tls->async_handshake(asio::ssl::stream_base::client, [self](beast::error_code ec2) {
        if (ec2) return self->fail(ec2, "TLS handshake");
        self->write();
      });
    });
  }

  template <typename Stream>
  void write_on(Stream& stream) {
    auto self = shared_from_this();
    http::async_write(stream, req, [self, &stream](beast::error_code ec, std::size_t) {
      if (ec) return self->fail(ec, "send");
      self->written = true;
      http::async_read(stream, self->buffer, self->parser,
                       [self](beast::error_code ec2, std::size_t) {
                         if (ec2) return self->fail(ec2, "answer");
                         self->answered();
                       });
    });
  }

  void write() {
    if (tls) {
      write_on(*tls);
    } else {
      write_on(*plain);
    }
  }

  void answered() {
    ApiResult r;
    const auto& res = parser.get();
    r.http_status = static_cast<int>(res.result_int());
    // The answer is outside input: bounded in size (the parser's body limit) and in nesting.
    config::JsonLimits limits;
    limits.max_bytes = kMaxAnswerBytes;
    limits.max_depth = 32;
    auto parsed = config::parse_bounded_json(res.body(), limits);
    json body = parsed.ok() ? std::move(parsed.value) : json();
    if (!body.is_object() || !body.contains("ok") || !body["ok"].is_boolean()) {
      r.description =
          "the Bot API answered HTTP " + std::to_string(r.http_status) + " without a Bot API body";
      r.error_code = r.http_status;
      return finish(std::move(r));
    }
    r.ok = body["ok"].get<bool>();
    if (r.ok) {
      r.result = body.value("result", json());
    } else {
      const auto code = body.find("error_code");
      r.error_code =
          code != body.end() && code->is_number_integer() ? code->get<int>() : r.http_status;
      const auto desc = body.find("description");
      r.description = desc != body.end() && desc->is_string()
                          ? desc->get<std::string>()
                          : "error " + std::to_string(r.error_code);
      if (auto p = body.find("parameters"); p != body.end() && p->is_object()) {
        if (auto ra = p->find("retry_after"); ra != p->end() && ra->is_number_integer()) {
          r.retry_after_s = ra->get<int>();
        }
      }
    }
    finish(std::move(r));
  }

  void fail(beast::error_code ec, const char* step) {
    ApiResult r;
    r.cancelled = cancelled;
    r.maybe_done = written;
    if (cancelled) {
      r.description = "cancelled";
    } else if (ec == beast::error::timeout) {
      r.description = std::string(step) + ": timed out";
    } else {
      r.description = std::string(step) + ": " + ec.message();
    }
    finish(std::move(r));
  }

  void cancel() {
    cancelled = true;
    resolver.cancel();
    beast::error_code ignored;
    lowest().socket().cancel(ignored);
    lowest().socket().close(ignored);
  }

  void finish(ApiResult r) {
    if (finished) return;
    finished = true;
    beast::error_code ignored;
    lowest().socket().shutdown(tcp::socket::shutdown_both, ignored);
    lowest().socket().close(ignored);
    if (!*alive) return;  // the client is gone, and with it whoever waited for this
    auto d = std::move(done);
    api->finished(id);
    if (d) d(std::move(r));
  }
};

BotApi::BotApi(asio::io_context& io, std::string root, std::string token)
    : io_(io), token_(std::move(token)) {
  std::string rest = root;
  if (rest.rfind("https://", 0) == 0) {
    tls_ = true;
    rest = rest.substr(8);
  } else if (rest.rfind("http://", 0) == 0) {
    tls_ = false;
    rest = rest.substr(7);
  }
  while (!rest.empty() && rest.back() == '/') rest.pop_back();
  std::string base_path;
  if (auto slash = rest.find('/'); slash != std::string::npos) {
    base_path = rest.substr(slash);
    rest = rest.substr(0, slash);
  }
  port_ = tls_ ? "443" : "80";
  if (!rest.empty() && rest.front() == '[') {  // [::1]:8081
    const auto close = rest.find(']');
    host_ = rest.substr(1, close - 1);
    if (close + 1 < rest.size() && rest[close + 1] == ':') port_ = rest.substr(close + 2);
  } else if (auto colon = rest.rfind(':'); colon != std::string::npos) {
    host_ = rest.substr(0, colon);
    port_ = rest.substr(colon + 1);
  } else {
    host_ = rest;
  }
  path_prefix_ = base_path + "/bot" + token_ + "/";
}

BotApi::~BotApi() {
  *alive_ = false;
  for (auto& [id, call] : calls_) call->cancel();
}

std::optional<std::string> BotApi::check_root(const std::string& root) {
  std::string rest;
  if (root.rfind("https://", 0) == 0) {
    rest = root.substr(8);
  } else if (root.rfind("http://", 0) == 0) {
    rest = root.substr(7);
  } else {
    return "expected an http:// or https:// URL";
  }
  if (rest.empty() || rest.front() == '/' || rest.front() == ':') return "the URL has no host";
  for (unsigned char c : root) {
    if (c <= 0x20 || c >= 0x7f || c == '?' || c == '#' || c == '@') {
      return "the URL may not contain spaces, control characters, '?', '#' or '@'";
    }
  }
  return std::nullopt;
}

std::uint64_t BotApi::call(const std::string& method, const json& params,
                           std::chrono::milliseconds timeout, std::function<void(ApiResult)> done) {
  const auto id = ++next_id_;
  auto c = std::make_shared<Call>(this, id, std::move(done), timeout);
  c->req.method(http::verb::post);
  c->req.target(path_prefix_ + method);
  c->req.version(11);
  c->req.set(http::field::host, host_);
  c->req.set(http::field::user_agent, "drawbridge");
  c->req.set(http::field::content_type, "application/json");
  c->req.set(http::field::connection, "close");
  c->req.body() = params.dump(-1, ' ', false, json::error_handler_t::replace);
  c->req.prepare_payload();
  calls_[id] = c;
  c->start();
  return id;
}

void BotApi::cancel(std::uint64_t id) {
  auto it = calls_.find(id);
  if (it == calls_.end()) return;
  auto c = it->second;  // cancel() may end it and erase it from calls_
  c->cancel();
}

void BotApi::cancel_all() {
  auto calls = calls_;
  for (auto& [id, call] : calls) call->cancel();
}

void BotApi::finished(std::uint64_t id) {
  calls_.erase(id);
}

}  // namespace drawbridge::channels::telegram
