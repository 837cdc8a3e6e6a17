#include "server/rpc_gateway.h"

#include "server/control_json.h"
#include "server/rpc_errors.h"

namespace drawbridge::server {

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

void GatewayMethods::install(RpcMethods& rpc) {
  // Liveness needs no scope.
  rpc.add("health", "", [this](const Caller&, const nlohmann::json&) { return health(); });
  rpc.add("status", scope::read, [this](const Caller&, const nlohmann::json&) -> RpcOutcome {
    return to_json(control_.status());
  });
  rpc.add("gateway.restart.request", scope::admin,
          [this](const Caller&, const nlohmann::json& p) { return restart_request(p); });
  // A drawbridge extension: OpenClaw stops only through its service manager.
  rpc.add("gateway.stop", scope::admin,
          [this](const Caller&, const nlohmann::json& p) { return stop(p); });
  // A drawbridge extension: start another binary on the same socket (issue 5).
  rpc.add("gateway.update", scope::admin,
          [this](const Caller&, const nlohmann::json& p) { return update(p); });
  rpc.add("config.get", scope::read,
          [this](const Caller&, const nlohmann::json&) { return config_get(); });
  rpc.add_async("config.patch", scope::admin,
                [this](const Caller&, const nlohmann::json& p, Respond r) {
                  config_write(p, "config.patch", false, std::move(r));
                });
  rpc.add_async("config.apply", scope::admin,
                [this](const Caller&, const nlohmann::json& p, Respond r) {
                  config_write(p, "config.apply", true, std::move(r));
                });
  // OpenClaw's dashboard saves its config form with config.set {raw, baseHash}: the whole
  // document, as config.apply (and enables the form only when the method is advertised).
  rpc.add_async("config.set", scope::admin,
                [this](const Caller&, const nlohmann::json& p, Respond r) {
                  config_write(p, "config.set", true, std::move(r));
                });
}

RpcOutcome GatewayMethods::health() {
  try {
    return to_json(control_.health());
  } catch (const std::exception& e) {
    return store_unavailable(e);
  }
}

RpcOutcome GatewayMethods::restart_request(const nlohmann::json& params) {
  auto parsed = parse_restart_intent(params);
  if (auto* err = std::get_if<std::string>(&parsed)) return invalid(*err);
  try {
    return to_json(control_.request_restart(std::get<RestartIntent>(parsed)));
  } catch (const std::exception& e) {
    return control_failed("gateway.restart.request", e);
  }
}

RpcOutcome GatewayMethods::stop(const nlohmann::json& params) {
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

RpcOutcome GatewayMethods::config_get() {
  try {
    return to_json(control_.config_get());
  } catch (const std::exception& e) {
    return control_failed("config.get", e);
  }
}

// OpenClaw's ConfigPatchParams/ConfigApplyParams: raw and baseHash are ours to act on;
// sessionKey, deliveryContext and replacePaths are accepted and not used.
void GatewayMethods::config_write(const nlohmann::json& params, const char* method, bool whole,
                                  Respond respond) {
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
  try {
    control_.config_write(w, [respond, method](ConfigWriteResult result) {
      if (auto* ok = std::get_if<ConfigWriteDone>(&result)) return respond(to_json(*ok));
      const auto& e = std::get<ConfigWriteError>(result);
      nlohmann::json details = {{"code", e.code}};
      if (!e.errors.empty()) details["errors"] = e.errors;
      for (const auto& [k, v] : e.extra.items()) details[k] = v;
      RpcError out{std::string(e.retryable ? error_code::unavailable : error_code::invalid_request),
                   std::string(method) + ": " + e.message,
                   details,
                   {},
                   {}};
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

RpcOutcome GatewayMethods::update(const nlohmann::json& params) {
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
                      nullptr,
                      {},
                      {}};
    }
    return to_json(out);
  } catch (const std::exception& e) {
    return control_failed("gateway.update", e);
  }
}

}  // namespace drawbridge::server
