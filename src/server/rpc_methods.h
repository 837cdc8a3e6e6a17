#pragma once

#include <functional>
#include <map>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "pipeline/local_chat.h"
#include "pipeline/pipeline.h"
#include "server/control.h"
#include "server/protocol.h"

namespace drawbridge::server {

// Who calls: what the connection proved at `connect`.
struct Caller {
  std::string conn_id;
  std::string client_id;
  std::vector<std::string> scopes;
  // Routes the session's `chat` events to this caller.
  std::function<void(const std::string& session_key)> subscribe;
};

struct RpcLimits {
  std::size_t max_message_bytes = 256 * 1024;
  std::size_t max_history_bytes = 4 * 1024 * 1024;
};

using RpcOutcome = std::variant<nlohmann::json, RpcError>;
using Respond = std::function<void(RpcOutcome)>;

// The methods of shared/PROTOCOL.md after the handshake, with their scopes.
class RpcMethods {
 public:
  RpcMethods(Control& control, pipeline::Pipeline& pipeline, std::string local_channel,
             RpcLimits limits = {});

  // Answers through `respond`: at once for most methods, after the commit for those that write
  // (chat.send, send), so an acknowledgement is never sent for something not yet durable.
  // `respond` runs exactly once; a handler that throws answers an error, never more.
  void call(const Caller& caller, const std::string& method, const nlohmann::json& params,
            Respond respond);
  std::vector<std::string> method_names() const;
  static std::vector<std::string> event_names();
  // operator.admin grants everything, operator.write grants operator.read.
  static bool has_scope(const std::vector<std::string>& granted, std::string_view required);

 private:
  using Handler = RpcOutcome (RpcMethods::*)(const Caller&, const nlohmann::json&);
  using AsyncHandler = void (RpcMethods::*)(const Caller&, const nlohmann::json&, Respond);
  struct Method {
    std::string_view scope;
    Handler handler = nullptr;
    AsyncHandler async_handler = nullptr;
  };

  RpcOutcome health(const Caller&, const nlohmann::json&);
  RpcOutcome status(const Caller&, const nlohmann::json&);
  void chat_send(const Caller&, const nlohmann::json&, Respond);
  RpcOutcome chat_history(const Caller&, const nlohmann::json&);
  RpcOutcome chat_abort(const Caller&, const nlohmann::json&);
  void send(const Caller&, const nlohmann::json&, Respond);
  RpcOutcome gateway_restart_request(const Caller&, const nlohmann::json&);
  RpcOutcome gateway_stop(const Caller&, const nlohmann::json&);
  RpcOutcome gateway_update(const Caller&, const nlohmann::json&);
  RpcOutcome config_get(const Caller&, const nlohmann::json&);
  void config_patch(const Caller&, const nlohmann::json&, Respond);
  void config_apply(const Caller&, const nlohmann::json&, Respond);
  void config_write(const nlohmann::json& params, bool whole, Respond respond);

  Control& control_;
  pipeline::Pipeline& pipeline_;
  std::string local_channel_;
  RpcLimits limits_;
  std::map<std::string, Method, std::less<>> methods_;
};

nlohmann::json transcript_message(const pipeline::TranscriptMessage& e);

// The params of `gateway.restart.request` as a RestartIntent, or the message naming the field
// that is wrong. Besides drawbridge's {reason, force, waitMs, delayMs, runId} it honours
// OpenClaw's `skipDeferral` (same as force) and its nested `restartIntent {reason, force,
// waitMs}`, whose fields fill what the top level leaves unset. Other keys OpenClaw clients
// send (`target`, `safe`) are ignored. waitMs and delayMs are at most kMaxRestartWaitMs.
inline constexpr std::int64_t kMaxRestartWaitMs = 86'400'000;  // a day
std::variant<RestartIntent, std::string> parse_restart_intent(const nlohmann::json& params);

}  // namespace drawbridge::server
