#include "server/rpc_methods.h"

#include "server/control_json.h"

#include <algorithm>
#include <limits>

#include <spdlog/spdlog.h>

namespace drawbridge::server {

namespace {

RpcError invalid(std::string message) {
  return RpcError{std::string(error_code::invalid_request), std::move(message), nullptr, {}, {}};
}


RpcError store_unavailable(const std::exception& e) {
  spdlog::error("store error: {}", e.what());
  return RpcError{std::string(error_code::unavailable),
                  std::string("the message store cannot commit right now: ") + e.what(),
                  nlohmann::json{{"reason", "store-unavailable"}}, true, 1000};
}

RpcError control_failed(std::string_view what, const std::exception& e) {
  spdlog::error("{} failed: {}", what, e.what());
  return RpcError{std::string(error_code::unavailable), std::string(what) + " failed: " + e.what(),
                  nullptr, true, 1000};
}

}  // namespace

nlohmann::json transcript_message(const pipeline::TranscriptMessage& e) {
  nlohmann::json m = {{"role", e.role},
                      {"content", nlohmann::json::array({{{"type", "text"}, {"text", e.text}}})},
                      {"timestamp", e.created_at_ms},
                      {"__openclaw", {{"id", std::to_string(e.id)}, {"seq", e.id}}}};
  if (!e.run_id.empty()) m["__openclaw"]["runId"] = e.run_id;
  if (e.interrupted) {
    // pi-ai's AssistantMessage fields, which OpenClaw's clients read: a reply cut short.
    m["stopReason"] = "aborted";
    m["errorMessage"] = "interrupted: the reply was cut short";
  }
  return m;
}

std::variant<RestartIntent, std::string> parse_restart_intent(const nlohmann::json& params) {
  static const nlohmann::json empty = nlohmann::json::object();
  const nlohmann::json& top = params.is_object() ? params : empty;
  Params p(top);
  std::string err;
  RestartIntent intent;
  auto reason = p.string("reason", false, false, err);
  auto force = err.empty() ? p.boolean("force", err) : std::nullopt;
  auto skip_deferral = err.empty() ? p.boolean("skipDeferral", err) : std::nullopt;
  auto wait_ms = err.empty() ? p.integer("waitMs", 0, kMaxRestartWaitMs, err) : std::nullopt;
  auto delay_ms = err.empty() ? p.integer("delayMs", 0, kMaxRestartWaitMs, err) : std::nullopt;
  auto run_id = err.empty() ? p.string("runId", false, false, err) : std::nullopt;
  auto fresh = err.empty() ? p.boolean("freshProcess", err) : std::nullopt;
  if (!err.empty()) return err;
  intent.fresh_process = fresh.value_or(false);

  const auto nested = top.find("restartIntent");
  if (nested != top.end() && !nested->is_null()) {
    if (!nested->is_object()) return std::string("params.restartIntent: expected an object");
    Params n(*nested, "params.restartIntent");
    auto n_reason = n.string("reason", false, false, err);
    auto n_force = err.empty() ? n.boolean("force", err) : std::nullopt;
    auto n_wait_ms = err.empty() ? n.integer("waitMs", 0, kMaxRestartWaitMs, err) : std::nullopt;
    if (!err.empty()) return err;
    if (!reason) reason = n_reason;
    if (!force) force = n_force;
    if (!wait_ms) wait_ms = n_wait_ms;
  }

  intent.reason = reason.value_or("");
  intent.force = force.value_or(false) || skip_deferral.value_or(false);
  intent.wait_ms = wait_ms;
  intent.delay_ms = delay_ms;
  intent.requested_by_run = run_id.value_or("");
  intent.source = "rpc";
  return intent;
}

RpcMethods::RpcMethods(Control& control, pipeline::Pipeline& pipeline, std::string local_channel,
                       RpcLimits limits)
    : control_(control),
      pipeline_(pipeline),
      local_channel_(std::move(local_channel)),
      limits_(limits) {
  methods_ = {
      {"health", {"", &RpcMethods::health}},  // liveness needs no scope
      {"status", {scope::read, &RpcMethods::status}},
      {"chat.history", {scope::read, &RpcMethods::chat_history}},
      {"chat.send", {scope::write, nullptr, &RpcMethods::chat_send}},
      {"chat.abort", {scope::write, &RpcMethods::chat_abort}},
      {"send", {scope::write, nullptr, &RpcMethods::send}},
      {"gateway.restart.request", {scope::admin, &RpcMethods::gateway_restart_request}},
      {"config.get", {scope::read, &RpcMethods::config_get}},
      {"config.patch", {scope::admin, nullptr, &RpcMethods::config_patch}},
      {"config.apply", {scope::admin, nullptr, &RpcMethods::config_apply}},
      // A drawbridge extension: OpenClaw stops only through its service manager.
      {"gateway.stop", {scope::admin, &RpcMethods::gateway_stop}},
      // A drawbridge extension: start another binary on the same socket (issue 5).
      {"gateway.update", {scope::admin, &RpcMethods::gateway_update}},
  };
}

std::vector<std::string> RpcMethods::method_names() const {
  std::vector<std::string> names{"connect"};
  for (const auto& [name, m] : methods_) names.push_back(name);
  return names;
}

std::vector<std::string> RpcMethods::event_names() {
  return {"connect.challenge", "chat", "tick", "shutdown", "health"};
}

bool RpcMethods::has_scope(const std::vector<std::string>& granted, std::string_view required) {
  for (const auto& s : granted) {
    if (s == required || s == scope::admin) return true;
    if (s == scope::write && required == scope::read) return true;
  }
  return false;
}

void RpcMethods::call(const Caller& caller, const std::string& method,
                      const nlohmann::json& params, Respond respond) {
  auto it = methods_.find(method);
  if (it == methods_.end()) {
    return respond(RpcError{std::string(error_code::invalid_request),
                            "unknown method: " + method, nullptr, {}, {}});
  }
  if (!it->second.scope.empty() && !has_scope(caller.scopes, it->second.scope)) {
    return respond(RpcError{std::string(error_code::forbidden),
                            "missing scope: " + std::string(it->second.scope),
                            nlohmann::json{{"code", "MISSING_SCOPE"},
                                           {"missingScope", it->second.scope},
                                           {"requiredScopes", {it->second.scope}}},
                            {},
                            {}});
  }
  if (!params.is_null() && !params.is_object()) {
    return respond(invalid("params: expected an object"));
  }
  // The boundary: whatever a handler throws answers this request with an error, once.
  auto answered = std::make_shared<bool>(false);
  Respond once = [answered, respond = std::move(respond)](RpcOutcome out) {
    if (*answered) return;
    *answered = true;
    respond(std::move(out));
  };
  try {
    if (it->second.async_handler) {
      (this->*(it->second.async_handler))(caller, params, once);
      return;
    }
    once((this->*(it->second.handler))(caller, params));
  } catch (const std::exception& e) {
    spdlog::error("{} ({}): {}", method, caller.conn_id, e.what());
    if (!*answered) {
      once(RpcError{std::string(error_code::unavailable), method + ": internal error", nullptr,
                    false, {}});
    }
  }
}

RpcOutcome RpcMethods::health(const Caller&, const nlohmann::json&) {
  try {
    return to_json(control_.health());
  } catch (const std::exception& e) {
    return store_unavailable(e);
  }
}

RpcOutcome RpcMethods::status(const Caller&, const nlohmann::json&) {
  return to_json(control_.status());
}

void RpcMethods::chat_send(const Caller& caller, const nlohmann::json& params, Respond respond) {
  Params p(params);
  std::string err;
  auto session = p.string("sessionKey", true, true, err);
  auto message = err.empty() ? p.string("message", true, false, err) : std::nullopt;
  auto key = err.empty() ? p.string("idempotencyKey", true, true, err) : std::nullopt;
  if (!err.empty()) return respond(invalid(err));
  if (auto why = check_sizes(*session, *key, caller.client_id, *message,
                             limits_.max_message_bytes, "params")) {
    return respond(invalid(*why));
  }

  const auto m = pipeline::local_chat_message(
      {local_channel_, *session, caller.client_id, *message, *key, /*key_is_run_id=*/true});
  // Subscribe first: the first delta may follow the ack immediately.
  if (caller.subscribe) caller.subscribe(*session);
  auto on_accepted = [respond](const pipeline::AcceptResult& res) {
    if (!res.error.empty()) {
      return respond(store_unavailable(std::runtime_error(res.error)));
    }
    // Duplicates answer like OpenClaw's dedupe: in_flight while it runs, then its outcome.
    std::string status = res.status;
    if (res.duplicate) {
      if (status == "queued" || status == "in_flight") status = "in_flight";
      else if (status == "done") status = "ok";
      else if (status == "aborted") status = "timeout";
      else if (status == "failed") status = "error";
    }
    nlohmann::json out = {{"runId", res.run_id}, {"status", status}};
    if (res.duplicate && status == "timeout") out["summary"] = "aborted";
    if (!res.reason.empty()) out["reason"] = res.reason;
    respond(out);
  };
  try {
    pipeline_.accept(m, on_accepted);
  } catch (const std::invalid_argument& e) {
    respond(RpcError{std::string(error_code::unavailable), e.what(), nullptr, false, {}});
  }
}

RpcOutcome RpcMethods::chat_history(const Caller& caller, const nlohmann::json& params) {
  Params p(params);
  std::string err;
  auto session = p.string("sessionKey", true, true, err);
  auto limit = err.empty() ? p.integer("limit", 1, 1000, err) : std::nullopt;
  auto before = err.empty() ? p.integer("before", 1, std::numeric_limits<std::int64_t>::max(), err)
                            : std::nullopt;
  if (!err.empty()) return invalid(err);
  if (auto why = check_sizes(*session, "", "", "", 0, "params")) return invalid(*why);
  if (caller.subscribe) caller.subscribe(*session);
  try {
    nlohmann::json messages = nlohmann::json::array();
    // Paged and capped by bytes: a long session never makes one answer larger than
    // gateway.limits.maxHistoryBytes (older entries: `before` = nextBefore).
    auto page = pipeline_.history_page(*session, limit.value_or(200), limits_.max_history_bytes,
                                       before.value_or(0));
    for (const auto& e : page.messages) messages.push_back(transcript_message(e));
    const bool more = page.more && !page.messages.empty();
    const std::int64_t next_before = more ? page.messages.front().id : 0;
    nlohmann::json active = nlohmann::json::array();
    for (const auto& r : pipeline_.active_runs()) {
      if (r.session_key == *session) active.push_back(r.run_id);
    }
    nlohmann::json info = {{"sessionKey", *session}, {"hasActiveRun", !active.empty()}};
    if (!active.empty()) {
      info["activeRunIds"] = active;
      info["status"] = "running";
    }
    nlohmann::json out = {{"sessionKey", *session},
                          {"sessionId", *session},
                          {"messages", std::move(messages)},
                          {"sessionInfo", std::move(info)}};
    if (more) {
      out["hasMore"] = true;
      out["nextBefore"] = next_before;
    }
    return out;
  } catch (const std::exception& e) {
    return store_unavailable(e);
  }
}

RpcOutcome RpcMethods::chat_abort(const Caller&, const nlohmann::json& params) {
  Params p(params);
  std::string err;
  auto session = p.string("sessionKey", true, true, err);
  auto run_id = err.empty() ? p.string("runId", false, true, err) : std::nullopt;
  if (!err.empty()) return invalid(err);
  try {
    auto aborted = pipeline_.abort(*session, run_id.value_or(""));
    return nlohmann::json{{"ok", true}, {"aborted", !aborted.empty()}, {"runIds", aborted}};
  } catch (const std::exception& e) {
    return store_unavailable(e);
  }
}

void RpcMethods::send(const Caller&, const nlohmann::json& params, Respond respond) {
  Params p(params);
  std::string err;
  auto to = p.string("to", true, true, err);
  auto key = err.empty() ? p.string("idempotencyKey", true, true, err) : std::nullopt;
  auto message = err.empty() ? p.string("message", false, false, err) : std::nullopt;
  auto channel = err.empty() ? p.string("channel", false, true, err) : std::nullopt;
  auto session = err.empty() ? p.string("sessionKey", false, false, err) : std::nullopt;
  if (!err.empty()) return respond(invalid(err));
  if (!message || message->empty()) {
    return respond(invalid("params.message: required (text to send)"));
  }
  if (auto why = check_sizes(session.value_or(""), *key, "", *message, limits_.max_message_bytes,
                             "params")) {
    return respond(invalid(*why));
  }
  if (to->size() > kMaxSessionKey) {
    return respond(invalid("params.to: longer than " + std::to_string(kMaxSessionKey) + " bytes"));
  }
  pipeline::SendRequest req{channel.value_or(local_channel_), *to, *message, *key,
                            session.value_or("")};
  if (!pipeline_.has_channel(req.channel)) {
    return respond(RpcError{std::string(error_code::invalid_request),
                            "params.channel: channel \"" + req.channel + "\" is not configured",
                            nullptr,
                            {},
                            {}});
  }
  pipeline_.send(req, [respond, key = *key, channel = req.channel,
                       to = *to](const pipeline::SendResult& res) {
    if (!res.error.empty()) return respond(store_unavailable(std::runtime_error(res.error)));
    nlohmann::json out = {{"runId", key}, {"messageId", res.message_id}, {"channel", channel},
                          {"chatId", to}};
    if (res.duplicate) out["duplicate"] = true;
    respond(out);
  });
}

RpcOutcome RpcMethods::gateway_restart_request(const Caller&, const nlohmann::json& params) {
  auto parsed = parse_restart_intent(params);
  if (auto* err = std::get_if<std::string>(&parsed)) return invalid(*err);
  try {
    return to_json(control_.request_restart(std::get<RestartIntent>(parsed)));
  } catch (const std::exception& e) {
    return control_failed("gateway.restart.request", e);
  }
}

RpcOutcome RpcMethods::gateway_stop(const Caller&, const nlohmann::json& params) {
  Params p(params);
  std::string err;
  auto reason = p.string("reason", false, false, err);
  if (!err.empty()) return invalid(err);
  try {
    return to_json(control_.request_stop(reason && !reason->empty() ? *reason : "requested"));
  } catch (const std::exception& e) {
    return control_failed("gateway.stop", e);
  }
}

RpcOutcome RpcMethods::config_get(const Caller&, const nlohmann::json&) {
  try {
    return to_json(control_.config_get());
  } catch (const std::exception& e) {
    return control_failed("config.get", e);
  }
}

void RpcMethods::config_patch(const Caller&, const nlohmann::json& params, Respond respond) {
  config_write(params, false, std::move(respond));
}

void RpcMethods::config_apply(const Caller&, const nlohmann::json& params, Respond respond) {
  config_write(params, true, std::move(respond));
}

// OpenClaw's ConfigPatchParams/ConfigApplyParams: raw and baseHash are ours to act on;
// sessionKey, deliveryContext and replacePaths are accepted and not used.
void RpcMethods::config_write(const nlohmann::json& params, bool whole, Respond respond) {
  Params p(params);
  std::string err;
  ConfigWrite w;
  w.whole = whole;
  auto raw = p.string("raw", true, true, err);
  auto base = err.empty() ? p.string("baseHash", false, true, err) : std::nullopt;
  auto delay = err.empty() ? p.integer("restartDelayMs", 0, 3'600'000, err) : std::nullopt;
  auto note = err.empty() ? p.string("note", false, false, err) : std::nullopt;
  if (!err.empty()) return respond(invalid(err));
  w.raw = *raw;
  w.base_hash = base;
  w.restart_delay_ms = delay;
  w.note = note.value_or("");
  const char* method = whole ? "config.apply" : "config.patch";
  try {
    control_.config_write(w, [respond, method](ConfigWriteResult result) {
      if (auto* ok = std::get_if<ConfigWriteDone>(&result)) return respond(to_json(*ok));
      const auto& e = std::get<ConfigWriteError>(result);
      nlohmann::json details = {{"code", e.code}};
      if (!e.errors.empty()) details["errors"] = e.errors;
      for (const auto& [k, v] : e.extra.items()) details[k] = v;
      RpcError out{std::string(e.retryable ? error_code::unavailable : error_code::invalid_request),
                   std::string(method) + ": " + e.message, details, {}, {}};
      if (e.retryable) {
        out.retryable = true;
        out.retry_after_ms = e.retry_after_ms;
      }
      respond(out);
    });
  } catch (const std::exception& e) {
    respond(control_failed(method, e));
  }
}

RpcOutcome RpcMethods::gateway_update(const Caller&, const nlohmann::json& params) {
  Params p(params);
  std::string err;
  auto binary = p.string("binary", true, true, err);
  auto reason = err.empty() ? p.string("reason", false, false, err) : std::nullopt;
  if (!err.empty()) return invalid(err);
  try {
    auto out = control_.request_update(*binary, reason.value_or(""));
    if (!out.ok) {
      return RpcError{std::string(error_code::invalid_request),
                      "gateway.update: " + (out.note.empty() ? std::string("refused") : out.note),
                      nullptr, {}, {}};
    }
    return to_json(out);
  } catch (const std::exception& e) {
    return control_failed("gateway.update", e);
  }
}

}  // namespace drawbridge::server
