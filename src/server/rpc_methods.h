#pragma once

#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <variant>
#include <vector>

#include "pipeline/pipeline.h"
#include "server/control.h"
#include "server/protocol.h"

namespace drawbridge::server {

// Who calls: what the connection proved at `connect`, and how it asks for events.
struct Caller {
  std::string conn_id;
  std::string client_id;
  std::vector<std::string> scopes;
  // Routes the session's `chat` events to this caller.
  std::function<void(const std::string& session_key)> subscribe;
  // sessions.subscribe: `sessions.changed` events from now on.
  std::function<void()> subscribe_sessions;
  // sessions.messages.subscribe / unsubscribe: `session.message` events of one session.
  std::function<void(const std::string& session_key, bool on)> subscribe_messages;
};

struct RpcLimits {
  std::size_t max_message_bytes = 256 * 1024;
  std::size_t max_history_bytes = 4 * 1024 * 1024;
};

using RpcOutcome = std::variant<nlohmann::json, RpcError>;
using Respond = std::function<void(RpcOutcome)>;

class ChatMethods;
class GatewayMethods;
class OpsMethods;
class SessionMethods;

// The method table after the handshake: a name, the scope it needs, a handler. The handlers
// live in groups of one subject each (rpc_chat, rpc_gateway, rpc_sessions, rpc_ops, rpc_quiet),
// which add themselves here; this class checks scope and params and answers exactly once.
class RpcMethods {
 public:
  using Sync = std::function<RpcOutcome(const Caller&, const nlohmann::json&)>;
  using Async = std::function<void(const Caller&, const nlohmann::json&, Respond)>;

  RpcMethods(Control& control, pipeline::Pipeline& pipeline, std::string local_channel,
             RpcLimits limits = {});
  ~RpcMethods();

  // Answers through `respond`: at once for most methods, after the commit for those that write
  // (chat.send, send), so an acknowledgement is never sent for something not yet durable.
  // `respond` runs exactly once; a handler that throws answers an error, never more.
  void call(const Caller& caller, const std::string& method, const nlohmann::json& params,
            Respond respond);
  std::vector<std::string> method_names() const;
  static std::vector<std::string> event_names();
  // operator.admin grants everything, operator.write grants operator.read.
  static bool has_scope(const std::vector<std::string>& granted, std::string_view required);

  // `scope` empty: no scope needed (health).
  void add(std::string name, std::string_view scope, Sync handler);
  void add_async(std::string name, std::string_view scope, Async handler);

 private:
  struct Method {
    std::string_view scope;
    Sync sync;
    Async async;
  };

  std::map<std::string, Method, std::less<>> methods_;
  std::unique_ptr<ChatMethods> chat_;
  std::unique_ptr<GatewayMethods> gateway_;
  std::unique_ptr<SessionMethods> sessions_;
  std::unique_ptr<OpsMethods> ops_;
};

// Registers the methods OpenClaw's dashboard and terminal UI call at load for features
// drawbridge does not have (approvals, questions, tasks, cron, ...): each answers an empty
// result in the shape of OpenClaw's schema, so the page shows no error and stops asking.
void add_quiet_methods(RpcMethods& rpc);

}  // namespace drawbridge::server
