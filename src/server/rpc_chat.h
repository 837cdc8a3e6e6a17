#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "pipeline/local_chat.h"
#include "pipeline/pipeline.h"
#include "server/rpc_methods.h"

namespace drawbridge::server {

// The conversation: chat.send, chat.history (and chat.startup, its form for a page that
// opens a session), chat.abort, send, and the session.message subscription.
class ChatMethods {
 public:
  ChatMethods(pipeline::Pipeline& pipeline, std::string local_channel, RpcLimits limits)
      : pipeline_(pipeline), local_channel_(std::move(local_channel)), limits_(limits) {}
  void install(RpcMethods& rpc);

 private:
  void chat_send(const Caller& caller, const nlohmann::json& params, Respond respond);
  RpcOutcome chat_history(const Caller& caller, const nlohmann::json& params);
  RpcOutcome chat_abort(const nlohmann::json& params);
  void send(const nlohmann::json& params, Respond respond);
  RpcOutcome messages_subscribe(const Caller& caller, const nlohmann::json& params, bool on);

  pipeline::Pipeline& pipeline_;
  std::string local_channel_;
  RpcLimits limits_;
};

// A transcript entry as OpenClaw's clients read it: {role, content, timestamp, __openclaw}.
// A user entry carries its idempotencyKey (the chat.send key is the run id), which is how the
// dashboard matches what it sent to what the gateway holds.
nlohmann::json transcript_message(const pipeline::TranscriptMessage& e);

}  // namespace drawbridge::server
