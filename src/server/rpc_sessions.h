#pragma once

#include <nlohmann/json.hpp>

#include "pipeline/pipeline.h"
#include "server/control.h"
#include "server/rpc_methods.h"

namespace drawbridge::server {

// The session catalog and the agent pickers of OpenClaw's clients: sessions.subscribe, list,
// describe, create, reset, patch; agents.list, agent.identity.get, models.list,
// commands.list. drawbridge's sessions are its conversations (a session key, its transcript,
// a label); what OpenClaw keeps per session besides (model, thinking level, ...) is set per
// agent in the config here, and a patch of it answers so.
class SessionMethods {
 public:
  SessionMethods(Control& control, pipeline::Pipeline& pipeline)
      : control_(control), pipeline_(pipeline) {}
  void install(RpcMethods& rpc);

 private:
  RpcOutcome list(const nlohmann::json& params);
  RpcOutcome describe(const nlohmann::json& params);
  RpcOutcome create(const nlohmann::json& params);
  RpcOutcome reset(const nlohmann::json& params);
  RpcOutcome patch(const nlohmann::json& params);
  RpcOutcome agents_list();
  RpcOutcome agent_identity(const nlohmann::json& params);
  RpcOutcome models_list();
  nlohmann::json row(const pipeline::SessionInfo& s, const AgentCatalog& catalog) const;

  Control& control_;
  pipeline::Pipeline& pipeline_;
};

}  // namespace drawbridge::server
