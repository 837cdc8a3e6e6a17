#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <variant>

#include "server/control.h"
#include "server/rpc_methods.h"

namespace drawbridge::server {

// health, status, the lifecycle (gateway.restart.request, gateway.stop, gateway.update) and
// the config file (config.get, config.patch, config.apply, config.set).
class GatewayMethods {
 public:
  explicit GatewayMethods(Control& control) : control_(control) {}
  void install(RpcMethods& rpc);

 private:
  RpcOutcome health();
  RpcOutcome restart_request(const nlohmann::json& params);
  RpcOutcome stop(const nlohmann::json& params);
  RpcOutcome update(const nlohmann::json& params);
  RpcOutcome config_get();
  void config_write(const nlohmann::json& params, const char* method, bool whole, Respond respond);

  Control& control_;
};

// The params of `gateway.restart.request` as a RestartIntent, or the message naming the field
// that is wrong. Besides drawbridge's {reason, force, waitMs, delayMs, runId} it honours
// OpenClaw's `skipDeferral` (same as force) and its nested `restartIntent {reason, force,
// waitMs}`, whose fields fill what the top level leaves unset. Other keys OpenClaw clients
// send (`target`, `safe`) are ignored. waitMs and delayMs are at most kMaxRestartWaitMs.
inline constexpr std::int64_t kMaxRestartWaitMs = 86'400'000;  // a day
std::variant<RestartIntent, std::string> parse_restart_intent(const nlohmann::json& params);

}  // namespace drawbridge::server
