#include "server/http_session.h"

#include <openssl/crypto.h>

#include <algorithm>

#include <boost/beast/websocket.hpp>
#include <spdlog/spdlog.h>

#include "config/bounded_json.h"
#include "server/protocol.h"
#include "server/random_id.h"
#include "server/rpc_chat.h"
#include "server/server.h"
#include "server/static_files.h"
#include "server/ws_connection.h"

namespace drawbridge::server {

namespace beast = boost::beast;
namespace http = beast::http;
using nlohmann::json;

namespace {

// Decodes %XX and '+' in a query component.
std::string url_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out.push_back(' ');
    } else if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(s[i + 1]) &&
               std::isxdigit(s[i + 2])) {
      out.push_back(static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16)));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

std::optional<std::string> query_param(std::string_view target, std::string_view name) {
  auto q = target.find('?');
  if (q == std::string_view::npos) return std::nullopt;
  std::string_view rest = target.substr(q + 1);
  while (!rest.empty()) {
    auto amp = rest.find('&');
    std::string_view kv = rest.substr(0, amp);
    auto eq = kv.find('=');
    if (kv.substr(0, eq) == name) {
      return eq == std::string_view::npos ? std::string() : url_decode(kv.substr(eq + 1));
    }
    if (amp == std::string_view::npos) break;
    rest.remove_prefix(amp + 1);
  }
  return std::nullopt;
}

std::string generated_key() { return "http-" + random_hex(12); }

}  // namespace

HttpSession::HttpSession(Server& server, boost::asio::ip::tcp::socket&& socket,
                         std::shared_ptr<void> slot, std::string peer)
    : server_(server), stream_(std::move(socket)), slot_(std::move(slot)), peer_(std::move(peer)) {}

void HttpSession::run() { do_read(); }

void HttpSession::abort_now() {
  beast::error_code ec;
  stream_.socket().close(ec);
}

void HttpSession::end() {
  ending_ = true;
  if (busy_) return;  // the answer being prepared is written, then the session closes
  if (served_ == 0) {
    // Accepted but its first request not read yet: the client has no reason to retry, so it is
    // answered (then closed), within a short bound for one that sends nothing.
    stream_.expires_after(std::chrono::seconds(1));
    return;
  }
  abort_now();  // idle keep-alive: HTTP clients retry a request on a closed idle connection
}

void HttpSession::do_read() {
  parser_.emplace();
  parser_->header_limit(16 * 1024);
  parser_->body_limit(server_.options().max_http_body_bytes);
  stream_.expires_after(std::chrono::seconds(60));
  http::async_read(stream_, buffer_, *parser_,
                   beast::bind_front_handler(&HttpSession::on_read, shared_from_this()));
}

void HttpSession::on_read(beast::error_code ec, std::size_t) {
  if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
      ec == boost::asio::error::operation_aborted) {
    beast::error_code ignored;
    stream_.socket().shutdown(boost::asio::ip::tcp::socket::shutdown_send, ignored);
    return;
  }
  busy_ = true;
  if (ec) {
    // Oversized or malformed request: answer it, then drop the connection.
    const bool too_big = ec == http::error::body_limit || ec == http::error::header_limit;
    auto res = std::make_shared<Response>(too_big ? http::status::payload_too_large
                                                  : http::status::bad_request,
                                          11);
    res->set(http::field::content_type, "application/json");
    res->body() = json{{"ok", false},
                       {"error",
                        {{"code", std::string(error_code::invalid_request)},
                         {"message", "bad HTTP request: " + ec.message()}}}}
                      .dump();
    res->keep_alive(false);
    res->prepare_payload();
    response_ = res;
    http::async_write(stream_, *response_,
                      beast::bind_front_handler(&HttpSession::on_write, shared_from_this(),
                                                false));
    return;
  }
  const auto& req = parser_->get();
  // Before anything else: a page that rebound its DNS name to us must get nothing.
  if (!server_.origin_policy().host_allowed(req[http::field::host])) {
    server_.refused_request(peer_, "Host header not allowed");
    return write_refusal(http::status::misdirected_request,
                         "Host header not allowed: this gateway answers to loopback names and "
                         "its bind address; add the name to gateway.allowedHosts");
  }
  if (beast::websocket::is_upgrade(req)) {
    if (server_.closing()) {
      abort_now();
      return;
    }
    if (!server_.origin_policy().origin_allowed(req[http::field::origin])) {
      server_.refused_request(peer_, "Origin not allowed");
      return write_refusal(http::status::forbidden,
                           "Origin not allowed: add it to gateway.controlUi.allowedOrigins");
    }
    auto ws = std::make_shared<WsConnection>(server_, stream_.release_socket(), server_.next_id(),
                                             std::move(slot_), peer_);
    ws->run(parser_->release());
    return;
  }
  std::optional<Response> res;
  try {
    res = handle(req);
  } catch (const std::exception& e) {
    // One request's bug costs its own answer, never the process.
    spdlog::error("HTTP {} {}: {}", std::string(req.method_string()),
                  std::string(req.target().substr(0, req.target().find('?'))), e.what());
    Response r{http::status::internal_server_error, req.version()};
    r.set(http::field::content_type, "application/json");
    r.keep_alive(false);
    r.body() = R"({"ok":false,"error":{"code":"UNAVAILABLE","message":"internal error"}})";
    r.prepare_payload();
    res = std::move(r);
  }
  if (res) write_response(std::move(*res));
}

void HttpSession::write_refusal(http::status status, const std::string& message) {
  busy_ = true;
  Response res{status, parser_->get().version()};
  res.set(http::field::content_type, "application/json");
  res.body() = json{{"ok", false},
                    {"error",
                     {{"code", std::string(error_code::forbidden)}, {"message", message}}}}
                   .dump();
  res.keep_alive(false);
  res.prepare_payload();
  write_response(std::move(res));
}

void HttpSession::write_response(Response res) {
  response_ = std::make_shared<Response>(std::move(res));
  const bool keep_alive = response_->keep_alive() && !server_.closing() && !ending_;
  response_->keep_alive(keep_alive);
  http::async_write(stream_, *response_,
                    beast::bind_front_handler(&HttpSession::on_write, shared_from_this(),
                                              keep_alive));
}

void HttpSession::on_write(bool keep_alive, beast::error_code ec, std::size_t) {
  response_.reset();
  busy_ = false;
  ++served_;
  if (ec) return;
  if (!keep_alive || ending_) {
    beast::error_code ignored;
    stream_.socket().shutdown(boost::asio::ip::tcp::socket::shutdown_send, ignored);
    return;
  }
  do_read();
}

std::optional<HttpSession::Response> HttpSession::handle(const Request& req) {
  auto reply = [&](http::status status, const json& body) {
    Response res{status, req.version()};
    res.set(http::field::server, "drawbridge/" DRAWBRIDGE_VERSION);
    res.set(http::field::content_type, "application/json");
    res.keep_alive(req.keep_alive());
    res.body() = body.dump(-1, ' ', false, json::error_handler_t::replace);
    res.prepare_payload();
    return res;
  };
  auto error = [&](http::status status, std::string_view code, const std::string& message) {
    return reply(status, {{"ok", false}, {"error", {{"code", code}, {"message", message}}}});
  };

  std::string_view target = req.target();
  std::string_view path = target.substr(0, target.find('?'));

  if (path == "/healthz") {
    if (req.method() != http::verb::get && req.method() != http::verb::head) {
      return error(http::status::method_not_allowed, error_code::invalid_request, "use GET");
    }
    return reply(http::status::ok, {{"ok", true}, {"status", "live"}});
  }
  if (path == "/readyz") {
    auto r = server_.control().readiness();
    json body = {{"ok", r.ready}, {"ready", r.ready}};
    if (!r.ready) body["reason"] = r.reason;
    // The why (config errors, what blocks) only for a caller with the token: without it,
    // anyone who can reach the port learns ready or not and one word.
    if (!r.details.is_null() && !req[http::field::authorization].empty() &&
        !server_.auth_blocked(peer_) && bearer_matches(req)) {
      body["details"] = r.details;
    }
    return reply(r.ready ? http::status::ok : http::status::service_unavailable, body);
  }
  if (path == "/metrics") {
    Response res{http::status::ok, req.version()};
    res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
    res.keep_alive(req.keep_alive());
    res.body() = server_.control().metrics_text() + server_.metrics_text();
    res.prepare_payload();
    return res;
  }
  if (req.method() == http::verb::post && !path.starts_with("/v1/")) {
    // A channel's webhook (Telegram): answered once what it carried is durable.
    auto respond = [self = shared_from_this(), version = req.version(),
                    keep_alive = req.keep_alive()](int status, std::string body) {
      Response res{static_cast<http::status>(status), version};
      res.set(http::field::content_type, "application/json");
      res.keep_alive(keep_alive);
      res.body() = std::move(body);
      res.prepare_payload();
      self->write_response(std::move(res));
    };
    const std::string secret(req["X-Telegram-Bot-Api-Secret-Token"]);
    if (server_.control().webhook(path, secret, req.body(), respond)) return std::nullopt;
    if (server_.refusal()) {
      // Between two generations: the sender retries.
      auto res = error(http::status::service_unavailable, error_code::unavailable,
                       "the gateway is restarting; retry");
      res.set(http::field::retry_after, "1");
      return res;
    }
  }
  if (path.starts_with("/v1/")) {
    auto auth = req[http::field::authorization];
    if (auto blocked = server_.auth_blocked(peer_)) {
      auto res = reply(http::status::too_many_requests, {{"ok", false}, {"error", blocked->to_json()}});
      res.set(http::field::retry_after,
              std::to_string(std::max<std::int64_t>((*blocked->retry_after_ms + 999) / 1000, 1)));
      return res;
    }
    if (!bearer_matches(req)) {
      if (!auth.empty()) server_.auth_failed(peer_, "HTTP bearer token mismatch");
      auto res = error(http::status::unauthorized, error_code::unauthorized,
                       auth.empty() ? "missing Authorization: Bearer <gateway token>"
                                    : "gateway token mismatch");
      res.set(http::field::www_authenticate, "Bearer");
      return res;
    }
    server_.auth_succeeded(peer_);
    if (path == "/v1/messages") {
      if (req.method() == http::verb::post) return post_message(req);
      if (req.method() == http::verb::get) return get_history(req);
      return error(http::status::method_not_allowed, error_code::invalid_request,
                   "use POST to send, GET to read the history");
    }
  }
  // The Control UI takes what drawbridge's own routes left, /v1 excepted.
  const auto& options = server_.options();
  if (!options.control_ui_root.empty() && path != "/v1" && !path.starts_with("/v1/")) {
    ControlUiSettings ui{options.control_ui_root, options.control_ui_assistant_name,
                         options.version};
    auto answer = serve_control_ui(ui, {req.method_string(), target, req[http::field::accept],
                                        req[http::field::accept_encoding]});
    if (answer) return ui_response(req, std::move(*answer));
  }
  return error(http::status::not_found, error_code::not_found,
               "no route for " + std::string(path) +
                   "; try /healthz, /readyz, /metrics, /v1/messages or a WebSocket upgrade");
}

HttpSession::Response HttpSession::ui_response(const Request& req, StaticResponse answer) {
  Response res{static_cast<http::status>(answer.status), req.version()};
  for (auto& [name, value] : answer.headers) res.set(name, std::move(value));
  res.keep_alive(req.keep_alive());
  res.body() = std::move(answer.body);
  // Set, not computed from the body: a HEAD answer has none but tells the GET's length.
  res.content_length(answer.content_length);
  return res;
}

bool HttpSession::bearer_matches(const Request& req) const {
  auto auth = req[http::field::authorization];
  const std::string& token = server_.options().token;
  if (token.empty()) return false;
  const std::string expected = "Bearer " + token;
  return auth.size() == expected.size() &&
         CRYPTO_memcmp(auth.data(), expected.data(), expected.size()) == 0;
}

std::optional<HttpSession::Response> HttpSession::post_message(const Request& req) {
  // By value: it also builds the answer written after the commit.
  auto reply = [version = req.version(), keep_alive = req.keep_alive()](http::status status,
                                                                        const json& body) {
    Response res{status, version};
    res.set(http::field::content_type, "application/json");
    res.keep_alive(keep_alive);
    res.body() = body.dump(-1, ' ', false, json::error_handler_t::replace);
    res.prepare_payload();
    return res;
  };
  auto bad = [&](const std::string& message) {
    return reply(http::status::bad_request,
                 {{"ok", false},
                  {"error", {{"code", error_code::invalid_request}, {"message", message}}}});
  };
  if (auto refused = server_.refusal()) {
    // Between two generations there is no pipeline to commit to: the client retries, with
    // the same idempotency key, and is answered once.
    auto res = reply(
        http::status::service_unavailable,
        {{"ok", false}, {"error", refused->to_json()}, {"reason", refused->details["reason"]}});
    const auto seconds = (*refused->retry_after_ms + 999) / 1000;
    res.set(http::field::retry_after, std::to_string(std::max<std::int64_t>(seconds, 1)));
    return res;
  }
  config::JsonLimits limits;
  limits.max_bytes = server_.options().max_http_body_bytes;
  limits.reject_duplicate_keys = true;
  auto parsed = config::parse_bounded_json(req.body(), limits);
  if (!parsed.ok()) return bad("body: malformed JSON: " + parsed.error->message);
  json body = std::move(parsed.value);
  if (!body.is_object()) return bad("body: expected a JSON object {sessionKey, message}");
  Params p(body, "body");
  std::string err;
  auto session = p.string("sessionKey", false, true, err);
  auto message = err.empty() ? p.string("message", false, false, err) : std::nullopt;
  if (err.empty() && !message) message = p.string("text", false, false, err);
  auto key = err.empty() ? p.string("idempotencyKey", false, true, err) : std::nullopt;
  auto sender = err.empty() ? p.string("sender", false, false, err) : std::nullopt;
  if (!err.empty()) return bad(err);
  if (!message) return bad("body.message: required");
  if (!key) {
    auto header = req["Idempotency-Key"];
    if (!header.empty()) key = std::string(header);
  }
  if (auto why = check_sizes(session.value_or("main"), key.value_or(""), sender.value_or(""),
                             *message, server_.options().max_message_bytes, "body")) {
    auto res = bad(*why);
    if (message->size() > server_.options().max_message_bytes) {
      res.result(http::status::payload_too_large);
    }
    return res;
  }
  const bool generated = !key;
  if (!key) key = generated_key();

  const auto m = pipeline::local_chat_message({server_.options().local_channel,
                                               session.value_or("main"), sender.value_or("http"),
                                               *message, *key, /*key_is_run_id=*/false});
  auto unavailable = [reply](const std::string& why) {
    spdlog::error("POST /v1/messages: {}", why);
    auto res = reply(http::status::service_unavailable,
                     {{"ok", false},
                      {"error",
                       {{"code", error_code::unavailable},
                        {"message", "not accepted: " + why},
                        {"retryable", true}}}});
    res.set(http::field::retry_after, "1");
    return res;
  };
  try {
    // Answered after the commit: a 202 means the message is durable.
    server_.pipeline().accept(
        m, [self = shared_from_this(), reply, unavailable, session = m.session_key, key = *key,
            generated](const pipeline::AcceptResult& res) {
          if (!res.error.empty()) return self->write_response(unavailable(res.error));
          json out = {{"ok", true},
                      {"runId", res.run_id},
                      {"status", res.status},
                      {"sessionKey", session},
                      {"idempotencyKey", key},
                      {"duplicate", res.duplicate}};
          if (!res.reason.empty()) out["reason"] = res.reason;
          if (generated) out["idempotencyKeyGenerated"] = true;
          self->write_response(reply(res.duplicate ? http::status::ok : http::status::accepted, out));
        });
    return std::nullopt;
  } catch (const std::exception& e) {
    return unavailable(e.what());
  }
}

HttpSession::Response HttpSession::get_history(const Request& req) {
  auto session = query_param(req.target(), "sessionKey").value_or("main");
  auto number = [&](const char* name, std::int64_t fallback, std::int64_t lo, std::int64_t hi) {
    auto v = query_param(req.target(), name);
    if (!v || v->empty() || v->size() > 19 ||
        !std::all_of(v->begin(), v->end(), [](unsigned char c) { return std::isdigit(c); })) {
      return fallback;
    }
    return std::clamp<std::int64_t>(std::stoll(*v), lo, hi);
  };
  const auto limit = static_cast<std::size_t>(number("limit", 200, 1, 1000));
  const std::int64_t before = number("before", 0, 0, std::numeric_limits<std::int64_t>::max());
  json messages = json::array();
  http::status status = http::status::ok;
  json body;
  try {
    if (session.empty() || session.size() > kMaxSessionKey) {
      throw std::invalid_argument("sessionKey: expected 1.." + std::to_string(kMaxSessionKey) +
                                  " characters");
    }
    auto page = server_.pipeline().history_page(session, limit,
                                                server_.options().max_history_bytes, before);
    for (const auto& e : page.messages) messages.push_back(transcript_message(e));
    body = {{"ok", true}, {"sessionKey", session}, {"messages", std::move(messages)},
            {"hasMore", page.more}};
    if (page.more && !page.messages.empty()) body["nextBefore"] = page.messages.front().id;
  } catch (const std::invalid_argument& e) {
    status = http::status::bad_request;
    body = {{"ok", false},
            {"error", {{"code", error_code::invalid_request}, {"message", e.what()}}}};
  } catch (const std::exception& e) {
    status = http::status::service_unavailable;
    body = {{"ok", false},
            {"error", {{"code", error_code::unavailable}, {"message", e.what()}}}};
  }
  Response res{status, req.version()};
  res.set(http::field::content_type, "application/json");
  res.keep_alive(req.keep_alive());
  res.body() = body.dump(-1, ' ', false, json::error_handler_t::replace);
  res.prepare_payload();
  return res;
}

}  // namespace drawbridge::server
