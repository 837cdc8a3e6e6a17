#include "server/ws_connection.h"

#include <openssl/crypto.h>

#include <spdlog/spdlog.h>

#include "config/bounded_json.h"
#include "server/protocol.h"
#include "server/random_id.h"
#include "server/server.h"

namespace drawbridge::server {

namespace beast = boost::beast;
namespace websocket = beast::websocket;
using nlohmann::json;

namespace {

bool token_matches(const std::string& given, const std::string& expected) {
  // Constant time for equal lengths; a length mismatch says nothing about the content.
  if (given.size() != expected.size() || expected.empty()) return false;
  return CRYPTO_memcmp(given.data(), expected.data(), given.size()) == 0;
}

}  // namespace

WsConnection::WsConnection(Server& server, boost::asio::ip::tcp::socket&& socket,
                           std::uint64_t id, std::shared_ptr<void> slot, std::string peer)
    : server_(server),
      ws_(std::move(socket)),
      slot_(std::move(slot)),
      peer_(std::move(peer)),
      id_(id) {
  caller_.conn_id = "conn-" + std::to_string(id);
}

void WsConnection::run(beast::http::request<beast::http::string_body> upgrade) {
  beast::get_lowest_layer(ws_).expires_never();
  // The suggested server timeouts wait 30 s for a close handshake (a client that never sent
  // `connect` lived 15 + 30 s) and never time out an idle peer.
  websocket::stream_base::timeout timeouts{};
  timeouts.handshake_timeout = std::chrono::milliseconds(server_.options().close_timeout_ms);
  timeouts.idle_timeout = std::chrono::milliseconds(server_.options().idle_timeout_ms);
  timeouts.keep_alive_pings = true;
  ws_.set_option(timeouts);
  ws_.set_option(websocket::stream_base::decorator([](websocket::response_type& res) {
    res.set(beast::http::field::server, "drawbridge/" DRAWBRIDGE_VERSION);
  }));
  ws_.read_message_max(server_.options().max_preauth_bytes);
  ws_.async_accept(upgrade, beast::bind_front_handler(&WsConnection::on_accept,
                                                      shared_from_this()));
}

void WsConnection::on_accept(beast::error_code ec) {
  if (ec) {
    spdlog::debug("websocket upgrade failed: {}", ec.message());
    return;
  }
  server_.attach(shared_from_this());
  nonce_ = random_hex(16);
  send_frame(make_event("connect.challenge", {{"nonce", nonce_}, {"ts", server_.clock().wall_ms()}},
                        std::nullopt));
  // A weak reference: the timer does not keep a connection that ended alive.
  handshake_timer_ = server_.executor().schedule(
      std::chrono::milliseconds(server_.options().handshake_timeout_ms),
      [weak = weak_from_this()] {
        auto self = weak.lock();
        if (!self) return;
        self->handshake_timer_.reset();
        if (self->authenticated_ || self->closing_) return;
        spdlog::info("{}: no connect request in time, closing", self->caller_.conn_id);
        self->close_after_flush(websocket::close_code::normal, "");
      });
  do_read();
}

void WsConnection::do_read() {
  ws_.async_read(buffer_, beast::bind_front_handler(&WsConnection::on_read, shared_from_this()));
}

void WsConnection::on_read(beast::error_code ec, std::size_t) {
  if (ec) {
    if (ec == websocket::error::message_too_big) {
      spdlog::warn("{}: frame over {} bytes {} connect, closing", caller_.conn_id,
                   ws_.read_message_max(), authenticated_ ? "after" : "before");
    } else if (ec != websocket::error::closed && ec != boost::asio::error::operation_aborted &&
               ec != boost::asio::error::eof) {
      spdlog::debug("{}: read ended: {}", caller_.conn_id, ec.message());
    }
    finish();
    return;
  }
  if (!ws_.got_text()) {
    buffer_.consume(buffer_.size());
    if (!authenticated_) {
      spdlog::info("{}: binary frame before connect, closing", caller_.conn_id);
      close_after_flush(websocket::close_code::policy_error, "invalid request frame");
      return;
    }
    send_frame(make_error_response(
        "invalid-frame", RpcError{std::string(error_code::invalid_request),
                                  "binary frames are not supported; send JSON text frames",
                                  nullptr, {}, {}}));
    do_read();
    return;
  }
  {
    const auto data = buffer_.cdata();
    const std::string_view text(static_cast<const char*>(data.data()), data.size());
    try {
      handle_frame(text);
    } catch (const std::exception& e) {
      on_frame_failure(e);
    }
  }
  buffer_.consume(buffer_.size());
  // A large frame leaves a large buffer: give it back rather than keep it per connection.
  if (buffer_.capacity() > 64 * 1024) buffer_.shrink_to_fit();
  if (!closing_) do_read();
}

void WsConnection::on_frame_failure(const std::exception& e) {
  spdlog::error("{}: handling a frame failed: {}", caller_.conn_id, e.what());
  if (!authenticated_) {
    close_after_flush(websocket::close_code::policy_error, "invalid request frame");
    return;
  }
  send_frame(make_error_response(
      "invalid-frame", RpcError{std::string(error_code::invalid_request),
                                "the frame could not be handled", nullptr, {}, {}}));
}

void WsConnection::handle_frame(std::string_view text) {
  config::JsonLimits limits;
  limits.max_bytes = ws_.read_message_max();
  limits.reject_duplicate_keys = true;
  auto parsed = config::parse_bounded_json(text, limits);
  json frame = std::move(parsed.value);
  auto field = [&](const char* key) -> const json* {
    if (!frame.is_object()) return nullptr;
    auto it = frame.find(key);
    return it == frame.end() ? nullptr : &*it;
  };
  const json* type = field("type");
  const bool is_req = type != nullptr && type->is_string() && *type == "req";
  std::string req_id;
  if (const json* id = field("id"); is_req && id != nullptr && id->is_string()) {
    req_id = id->get<std::string>();
  }
  const json* method_field = field("method");
  if (!parsed.ok() || !is_req || req_id.empty() || req_id.size() > 256 ||
      method_field == nullptr || !method_field->is_string()) {
    if (!authenticated_) {
      // As OpenClaw: a first frame that is not a request is a policy violation.
      spdlog::info("{}: invalid frame before connect, closing", caller_.conn_id);
      close_after_flush(websocket::close_code::policy_error, "invalid request frame");
      return;
    }
    std::string why = !parsed.ok()         ? "malformed JSON: " + parsed.error->message
                      : !is_req            ? "expected a request frame {type:\"req\", id, method}"
                      : req_id.empty()     ? "id: expected a non-empty string"
                      : req_id.size() > 256 ? "id: longer than 256 bytes"
                                           : "method: expected a string";
    RpcError err{std::string(error_code::invalid_request), "invalid frame: " + why, nullptr, {},
                 {}};
    const bool echo_id = !req_id.empty() && req_id.size() <= 256;
    send_frame(make_error_response(echo_id ? req_id : "invalid-frame", err));
    return;
  }
  const std::string method = method_field->get<std::string>();
  // Moved, not copied: the frame is not used again.
  json params = nullptr;
  if (auto it = frame.find("params"); it != frame.end()) params = std::move(*it);
  if (!authenticated_) {
    if (method != "connect") {
      send_frame(make_error_response(
          req_id, RpcError{std::string(error_code::invalid_request),
                           "invalid handshake: first request must be connect (got " +
                               method.substr(0, 64) + ")",
                           nullptr, {}, {}}));
      close_after_flush(websocket::close_code::policy_error,
                        "invalid handshake: first request must be connect");
      return;
    }
    handle_connect(req_id, params);
    return;
  }
  if (method == "connect") {
    send_frame(make_error_response(
        req_id, RpcError{std::string(error_code::invalid_request),
                         "connect is only valid as the first request", nullptr, {}, {}}));
    return;
  }
  ++pending_responses_;
  server_.rpc().call(caller_, method, params,
                     [self = shared_from_this(), req_id](RpcOutcome out) {
                       --self->pending_responses_;
                       if (auto* payload = std::get_if<json>(&out)) {
                         self->send_frame(make_response(req_id, *payload), true);
                       } else {
                         self->send_frame(make_error_response(req_id, std::get<RpcError>(out)),
                                          true);
                       }
                     });
}

void WsConnection::handle_connect(const std::string& req_id, const json& params) {
  auto reject = [&](RpcError err, const char* close_reason,
                    std::uint16_t code = websocket::close_code::policy_error) {
    spdlog::info("{}: connect refused: {}", caller_.conn_id, err.message);
    send_frame(make_error_response(req_id, err));
    close_after_flush(code, close_reason);
  };
  if (!params.is_object()) {
    return reject({std::string(error_code::invalid_request), "params: expected an object",
                   nullptr, {}, {}},
                  "invalid connect");
  }
  Params p(params);
  std::string err;
  auto min_p = p.integer("minProtocol", 1, 1 << 20, err);
  auto max_p = err.empty() ? p.integer("maxProtocol", 1, 1 << 20, err) : std::nullopt;
  if (err.empty() && (!min_p || !max_p)) err = "params.minProtocol and params.maxProtocol: required";
  if (err.empty() && (!params.contains("client") || !params["client"].is_object())) {
    err = "params.client: expected an object {id, version, platform, mode}";
  }
  if (!err.empty()) {
    return reject({std::string(error_code::invalid_request), err, nullptr, {}, {}},
                  "invalid connect");
  }
  if (*min_p > kProtocolVersion || *max_p < kProtocolVersion) {
    return reject({std::string(error_code::invalid_request),
                   "protocol mismatch: this gateway speaks protocol " +
                       std::to_string(kProtocolVersion) + ", the client asked for " +
                       std::to_string(*min_p) + ".." + std::to_string(*max_p),
                   json{{"code", "PROTOCOL_MISMATCH"},
                        {"clientMinProtocol", *min_p},
                        {"clientMaxProtocol", *max_p},
                        {"expectedProtocol", kProtocolVersion}},
                   false,
                   {}},
                  "protocol mismatch", websocket::close_code::protocol_error);
  }
  // Before the token: a new generation may bring a new token, and a client should retry
  // rather than be told that the one it has is wrong.
  if (auto refused = server_.refusal()) {
    return reject(std::move(*refused), "try again later", websocket::close_code::try_again_later);
  }
  // Types first: nothing below may meet a value of the wrong kind.
  const auto& client = params["client"];
  std::string bad;
  auto optional_string = [&](const json& obj, const char* key, const char* name) {
    auto it = obj.find(key);
    if (bad.empty() && it != obj.end() && !it->is_null() && !it->is_string()) {
      bad = std::string(name) + ": expected a string";
    }
  };
  optional_string(client, "id", "params.client.id");
  optional_string(params, "role", "params.role");
  std::vector<std::string> scopes;
  bool scopes_given = false;
  if (auto it = params.find("scopes"); it != params.end()) {
    scopes_given = true;
    if (!it->is_array()) {
      if (bad.empty()) bad = "params.scopes: expected an array of strings";
    } else {
      for (const auto& s : *it) {
        if (!s.is_string() || s.get_ref<const std::string&>().size() > 128) {
          if (bad.empty()) bad = "params.scopes: expected an array of strings";
          break;
        }
        if (scopes.size() < 32) scopes.push_back(s.get<std::string>());
      }
    }
  }
  const json* auth = nullptr;
  if (auto it = params.find("auth"); it != params.end() && !it->is_null()) {
    if (!it->is_object()) {
      if (bad.empty()) bad = "params.auth: expected an object {token}";
    } else {
      auth = &*it;
      optional_string(*auth, "token", "params.auth.token");
    }
  }
  if (!bad.empty()) {
    return reject({std::string(error_code::invalid_request), bad, nullptr, {}, {}},
                  "invalid connect");
  }
  // Throttled before the token is looked at: a locked-out address learns nothing by trying.
  if (auto blocked = server_.auth_blocked(peer_)) {
    return reject(std::move(*blocked), "too many failed attempts",
                  websocket::close_code::try_again_later);
  }
  std::string token;
  if (auth != nullptr) {
    if (auto it = auth->find("token"); it != auth->end() && it->is_string()) token = *it;
  }
  if (!token_matches(token, server_.options().token)) {
    const bool missing = token.empty();
    if (!missing) server_.auth_failed(peer_, "WebSocket connect token mismatch");
    return reject({std::string(error_code::invalid_request),
                   missing ? "unauthorized: gateway token missing (provide gateway auth token)"
                           : "unauthorized: gateway token mismatch (provide gateway auth token)",
                   json{{"code", missing ? "AUTH_TOKEN_MISSING" : "AUTH_TOKEN_MISMATCH"},
                        {"authReason", missing ? "token_missing" : "token_mismatch"},
                        {"canRetryWithDeviceToken", false},
                        {"recommendedNextStep",
                         missing ? "update_auth_configuration" : "update_auth_credentials"}},
                   false,
                   {}},
                  missing ? "unauthorized: gateway token missing"
                          : "unauthorized: gateway token mismatch");
  }
  server_.auth_succeeded(peer_);
  caller_.client_id = "unknown";
  if (auto it = client.find("id"); it != client.end() && it->is_string()) {
    caller_.client_id = it->get<std::string>().substr(0, kMaxSender);
  }
  std::string role = "operator";
  if (auto it = params.find("role"); it != params.end() && it->is_string()) role = *it;
  if (role != "operator") {
    return reject({std::string(error_code::invalid_request),
                   "invalid role: drawbridge serves the operator role, not \"" +
                       role.substr(0, 64) + "\"",
                   nullptr, false, {}},
                  "invalid role");
  }
  // No scopes at all: a client of before scopes, with the token: everything, as OpenClaw.
  if (!scopes_given) scopes = {std::string(scope::admin)};
  caller_.scopes = scopes;
  std::weak_ptr<WsConnection> weak = shared_from_this();
  Server* server = &server_;
  caller_.subscribe = [server, id = id_](const std::string& session) {
    server->subscribe(id, session);
  };
  caller_.subscribe_sessions = [server, id = id_] { server->watch_sessions(id); };
  caller_.subscribe_messages = [server, id = id_](const std::string& session, bool on) {
    server->watch_messages(id, session, on);
  };
  authenticated_ = true;
  cancel_handshake_timer();
  ws_.read_message_max(server_.options().max_payload_bytes);

  const auto& opts = server_.options();
  json hello = {
      {"type", "hello-ok"},
      {"protocol", kProtocolVersion},
      {"server", {{"version", opts.version}, {"connId", caller_.conn_id}}},
      {"features", {{"methods", server_.rpc().method_names()},
                    {"events", RpcMethods::event_names()}}},
      {"snapshot",
       {{"presence", json::array()},
        {"health", json::object()},
        {"stateVersion", {{"presence", 0}, {"health", 0}}},
        {"uptimeMs", server_.control().uptime_ms()},
        {"suspension",
         {{"phase", server_.pipeline().draining() ? "draining" : "accepting"}}},
        {"authMode", "token"},
        {"sessionDefaults", session_defaults()}}},
      {"auth", {{"role", role}, {"scopes", scopes}}},
      {"policy",
       {{"maxPayload", opts.max_payload_bytes},
        {"maxBufferedBytes", opts.max_buffered_bytes},
        {"tickIntervalMs", opts.tick_interval_ms}}},
  };
  // OpenClaw's dashboard keeps the token across reloads only when hello-ok says how it was
  // used (auth.method). OpenClaw's gateway sends it; the protocol schema of
  // @openclaw/gateway-protocol@2026.9.1 does not have it yet (auth is closed there), so it goes
  // to the dashboard only and every other client gets a hello-ok that validates.
  if (caller_.client_id == "openclaw-control-ui") hello["auth"]["method"] = "token";
  send_frame(make_response(req_id, hello));
  spdlog::debug("{}: connected as {} with {}", caller_.conn_id, caller_.client_id,
                fmt::join(scopes, ","));
}

nlohmann::json WsConnection::session_defaults() {
  std::string agent = "main";
  try {
    auto c = server_.control().agent_catalog();
    if (!c.default_agent.empty()) agent = c.default_agent;
  } catch (const std::exception& e) {
    spdlog::warn("{}: agent catalog unavailable: {}", caller_.conn_id, e.what());
  }
  return {{"defaultAgentId", agent},
          {"mainKey", "main"},
          {"mainSessionKey", "main"},
          {"scope", "per-sender"}};
}

void WsConnection::send_event(std::string_view event, const json& payload,
                              const json& state_version) {
  if (!authenticated_) return;
  send_frame(make_event(event, payload, ++seq_, state_version));
}

void WsConnection::send_event_dump(std::string_view event, const std::string& payload_json) {
  if (!authenticated_) return;
  send_frame(make_event_from_dump(event, payload_json, ++seq_));
}

void WsConnection::send_frame(std::string frame, bool response) {
  // A response to a request read before the close began still goes out (an acknowledgement
  // of a committed chat.send must reach its client); anything else stops at the close.
  if (finished_ || (closing_ && (!response || !pending_close_))) return;
  queued_bytes_ += frame.size();
  if (queued_bytes_ > server_.options().max_buffered_bytes) {
    spdlog::warn("{}: more than {} bytes queued, closing slow consumer", caller_.conn_id,
                 server_.options().max_buffered_bytes);
    queue_.clear();
    queued_bytes_ = 0;
    close_after_flush(websocket::close_code::policy_error, "slow consumer");
    return;
  }
  queue_.push_back(std::move(frame));
  if (!writing_) do_write();
}

void WsConnection::do_write() {
  if (queue_.empty()) {
    writing_ = false;
    // The close frame waits for the answers still owed (bounded by the server's close timer).
    if (pending_close_ && pending_responses_ == 0) {
      auto reason = *pending_close_;
      pending_close_.reset();
      writing_ = true;
      ws_.async_close(reason, [self = shared_from_this()](beast::error_code) {
        self->writing_ = false;
        self->finish();
      });
    }
    return;
  }
  writing_ = true;
  ws_.text(true);
  ws_.async_write(boost::asio::buffer(queue_.front()),
                  beast::bind_front_handler(&WsConnection::on_write, shared_from_this()));
}

void WsConnection::on_write(beast::error_code ec, std::size_t) {
  if (ec) {
    writing_ = false;
    queue_.clear();
    finish();
    return;
  }
  queued_bytes_ -= queue_.front().size();
  queue_.pop_front();
  do_write();
}

void WsConnection::close_after_flush(std::uint16_t code, std::string reason) {
  if (closing_) return;
  closing_ = true;
  cancel_handshake_timer();
  pending_close_ = websocket::close_reason(static_cast<websocket::close_code>(code), reason);
  if (!writing_) do_write();
}

void WsConnection::shutdown(const json& payload, std::uint16_t code, const std::string& reason) {
  if (authenticated_) send_event("shutdown", payload);
  close_after_flush(code, reason);
}

void WsConnection::abort_now() {
  beast::error_code ec;
  beast::get_lowest_layer(ws_).socket().close(ec);
}

void WsConnection::cancel_handshake_timer() {
  if (handshake_timer_) server_.executor().cancel(*handshake_timer_);
  handshake_timer_.reset();
}

void WsConnection::finish() {
  if (finished_) return;
  finished_ = true;
  cancel_handshake_timer();
  server_.detach(id_);
}

}  // namespace drawbridge::server
