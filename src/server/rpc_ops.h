#pragma once

#include <nlohmann/json.hpp>

#include "pipeline/pipeline.h"
#include "server/control.h"
#include "server/rpc_methods.h"

namespace drawbridge::server {

// What an operator looks at: the gateway's log (logs.tail), the config's schema for a form
// (config.schema), the work lanes (diagnostics.lanes), the host (system.info), who is there
// (system-presence), the channels' links (channels.status), and the honest "none" of features
// drawbridge does not have (last-heartbeat, channels.pairing.list). OpenClaw's dashboard,
// TUI and CLI call them; each answer has the shape of OpenClaw's schema.
class OpsMethods {
 public:
  OpsMethods(Control& control, pipeline::Pipeline& pipeline)
      : control_(control), pipeline_(pipeline) {}
  void install(RpcMethods& rpc);

  // OpenClaw's bounds (LogsTailParams): limit 1..5000, maxBytes 1..1000000.
  static constexpr std::int64_t kMaxTailLines = 5000;
  static constexpr std::int64_t kMaxTailBytes = 1'000'000;

 private:
  RpcOutcome logs_tail(const nlohmann::json& params);
  RpcOutcome config_schema();
  RpcOutcome lanes();
  RpcOutcome system_info();
  RpcOutcome presence(const Caller& caller);
  RpcOutcome channels_status(const nlohmann::json& params);

  Control& control_;
  pipeline::Pipeline& pipeline_;
};

// "telegram:work" -> {"telegram", "work"}; "telegram" -> {"telegram", "default"}.
std::pair<std::string, std::string> channel_kind_and_account(const std::string& channel_id);

}  // namespace drawbridge::server
