// Honest empty answers for what OpenClaw's dashboard and terminal UI ask at load about features
// drawbridge does not have. Each answer has the shape of OpenClaw's schema (checked by the
// conformance tests) and says "none": no approvals wait, no question is open, no task, no cron
// job, no update, no progress card. Without them the pages retry every two seconds and show
// "unknown method" where an empty list belongs.

#include <utility>
#include <vector>

#include "server/rpc_methods.h"

namespace drawbridge::server {

void add_quiet_methods(RpcMethods& rpc) {
  using nlohmann::json;
  const std::vector<std::pair<const char*, json>> answers = {
      {"exec.approval.list", json::array()},
      {"plugin.approval.list", json::array()},
      {"openclaw.approval.list", json::array()},
      {"question.list", {{"questions", json::array()}}},
      {"tasks.list", {{"tasks", json::array()}}},
      {"progressCard.get", {{"card", nullptr}}},
      {"sessions.branches.list", {{"branches", json::array()}}},
      {"sessions.companion.state", {{"exchanges", json::array()}}},
      {"sessions.observer.visibility", {{"ok", true}}},
      {"update.status", {{"sentinel", nullptr}, {"updateAvailable", nullptr}}},
      {"models.authStatus", {{"providers", json::array()}}},
      {"cron.status", {{"enabled", false}, {"jobs", 0}}},
      {"cron.list", {{"jobs", json::array()}, {"total", 0}, {"offset", 0}, {"hasMore", false}}},
      {"talk.catalog",
       {{"modes", json::array()},
        {"transports", json::array()},
        {"brains", json::array()},
        {"speech", {{"providers", json::array()}}},
        {"transcription", {{"providers", json::array()}}},
        {"realtime", {{"providers", json::array()}}}}},
  };
  for (const auto& entry : answers) {
    // A copy by name: clang 14 cannot capture a structured binding.
    rpc.add(entry.first, scope::read,
            [answer = entry.second](const Caller&, const json&) -> RpcOutcome { return answer; });
  }
}

}  // namespace drawbridge::server
