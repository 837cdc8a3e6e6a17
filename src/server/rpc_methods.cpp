#include "server/rpc_methods.h"

#include <spdlog/spdlog.h>

#include "server/rpc_chat.h"
#include "server/rpc_errors.h"
#include "server/rpc_gateway.h"
#include "server/rpc_ops.h"
#include "server/rpc_sessions.h"

namespace drawbridge::server {

RpcMethods::RpcMethods(Control& control, pipeline::Pipeline& pipeline, std::string local_channel,
                       RpcLimits limits)
    : chat_(std::make_unique<ChatMethods>(pipeline, std::move(local_channel), limits)),
      gateway_(std::make_unique<GatewayMethods>(control)),
      sessions_(std::make_unique<SessionMethods>(control, pipeline)),
      ops_(std::make_unique<OpsMethods>(control, pipeline)) {
  chat_->install(*this);
  gateway_->install(*this);
  sessions_->install(*this);
  ops_->install(*this);
  add_quiet_methods(*this);
}

RpcMethods::~RpcMethods() = default;

void RpcMethods::add(std::string name, std::string_view scope, Sync handler) {
  methods_[std::move(name)] = Method{scope, std::move(handler), nullptr};
}

void RpcMethods::add_async(std::string name, std::string_view scope, Async handler) {
  methods_[std::move(name)] = Method{scope, nullptr, std::move(handler)};
}

std::vector<std::string> RpcMethods::method_names() const {
  std::vector<std::string> names{"connect"};
  for (const auto& [name, m] : methods_) names.push_back(name);
  return names;
}

std::vector<std::string> RpcMethods::event_names() {
  return {"connect.challenge", "chat", "tick", "shutdown", "health", "sessions.changed"};
}

bool RpcMethods::has_scope(const std::vector<std::string>& granted, std::string_view required) {
  for (const auto& s : granted) {
    if (s == required || s == scope::admin) return true;
    if (s == scope::write && required == scope::read) return true;
  }
  return false;
}

void RpcMethods::call(const Caller& caller, const std::string& method, const nlohmann::json& params,
                      Respond respond) {
  auto it = methods_.find(method);
  if (it == methods_.end()) {
    return respond(RpcError{
        std::string(error_code::invalid_request), "unknown method: " + method, nullptr, {}, {}});
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
    if (it->second.async) {
      it->second.async(caller, params, once);
      return;
    }
    once(it->second.sync(caller, params));
  } catch (const std::exception& e) {
    spdlog::error("{} ({}): {}", method, caller.conn_id, e.what());
    if (!*answered) {
      once(RpcError{
          std::string(error_code::unavailable), method + ": internal error", nullptr, false, {}});
    }
  }
}

}  // namespace drawbridge::server
