#pragma once

#include <functional>
#include <map>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

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

using RpcOutcome = std::variant<nlohmann::json, RpcError>;

// The methods of shared/PROTOCOL.md after the handshake, with their scopes.
class RpcMethods {
 public:
  RpcMethods(Control& control, pipeline::Pipeline& pipeline, std::string local_channel);

  RpcOutcome call(const Caller& caller, const std::string& method, const nlohmann::json& params);
  std::vector<std::string> method_names() const;
  static std::vector<std::string> event_names();
  // operator.admin grants everything, operator.write grants operator.read.
  static bool has_scope(const std::vector<std::string>& granted, std::string_view required);

 private:
  using Handler = RpcOutcome (RpcMethods::*)(const Caller&, const nlohmann::json&);
  struct Method {
    std::string_view scope;
    Handler handler;
  };

  RpcOutcome health(const Caller&, const nlohmann::json&);
  RpcOutcome status(const Caller&, const nlohmann::json&);
  RpcOutcome chat_send(const Caller&, const nlohmann::json&);
  RpcOutcome chat_history(const Caller&, const nlohmann::json&);
  RpcOutcome chat_abort(const Caller&, const nlohmann::json&);
  RpcOutcome send(const Caller&, const nlohmann::json&);

  Control& control_;
  pipeline::Pipeline& pipeline_;
  std::string local_channel_;
  std::map<std::string, Method, std::less<>> methods_;
};

nlohmann::json transcript_message(const store::TranscriptEntry& e);

}  // namespace drawbridge::server
