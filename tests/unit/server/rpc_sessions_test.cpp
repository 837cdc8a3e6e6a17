// The methods OpenClaw's terminal UI and dashboard call besides chat: the session catalog,
// the agent pickers, the receipts of sent messages and the empty answers.

#include <gtest/gtest.h>

#include "server/session_watchers.h"
#include "unit/server/rpc_fixture.h"

namespace drawbridge::server {
namespace {

using nlohmann::json;

class RpcSessionsTest : public RpcMethodsTest {
 protected:
  json ok(const Caller& c, const std::string& method, const json& params) {
    auto out = call(c, method, params);
    EXPECT_TRUE(std::holds_alternative<json>(out)) << method << ": " << error_of(out).message;
    return std::holds_alternative<json>(out) ? std::get<json>(out) : json();
  }
  json ok(const std::string& method, const json& params) {
    return ok(caller({"operator.admin"}), method, params);
  }
  void send(const std::string& session, const std::string& text, const std::string& key) {
    ok("chat.send", {{"sessionKey", session}, {"message", text}, {"idempotencyKey", key}});
  }
};

TEST_F(RpcSessionsTest, SessionsSubscribeAnswersAndAsksForListEvents) {
  int asked = 0;
  Caller c = caller({"operator.read"});
  c.subscribe_sessions = [&] { ++asked; };
  EXPECT_EQ(ok(c, "sessions.subscribe", json::object()), (json{{"subscribed", true}}));
  EXPECT_EQ(asked, 1);
}

TEST_F(RpcSessionsTest, MessagesSubscribeNamesTheKeyAndRoutesChatEvents) {
  std::vector<std::pair<std::string, bool>> watched;
  Caller c = caller({"operator.read"});
  c.subscribe_messages = [&](const std::string& key, bool on) { watched.emplace_back(key, on); };
  EXPECT_EQ(ok(c, "sessions.messages.subscribe", {{"key", "main"}, {"includeApprovals", true}}),
            (json{{"subscribed", true}, {"key", "main"}}));
  EXPECT_EQ(subscribed_, std::vector<std::string>{"main"});
  ok(c, "sessions.messages.unsubscribe", {{"key", "main"}});
  ASSERT_EQ(watched.size(), 2u);
  EXPECT_TRUE(watched[0].second);
  EXPECT_FALSE(watched[1].second);
  EXPECT_EQ(error_of(call(c, "sessions.messages.subscribe", json::object())).message,
            "params.key: required");
}

TEST_F(RpcSessionsTest, ChatStartupAnswersTheSessionsHistory) {
  send("main", "hello", "k1");
  agent_.complete(0, "hi there");
  executor_.run_ready();
  auto out = ok("chat.startup", {{"sessionKey", "main"}, {"limit", 50}, {"maxBytes", 100000}});
  EXPECT_EQ(out["sessionKey"], "main");
  ASSERT_EQ(out["messages"].size(), 2u);
  EXPECT_EQ(out["messages"][1]["content"][0]["text"], "hi there");
}

TEST_F(RpcSessionsTest, UserMessagesCarryTheKeyTheyWereSentWith) {
  send("main", "hello", "key-42");
  auto out = ok("chat.history", {{"sessionKey", "main"}});
  ASSERT_EQ(out["messages"].size(), 1u);
  EXPECT_EQ(out["messages"][0]["__openclaw"]["idempotencyKey"], "key-42");
  agent_.complete(0, "answer");
  executor_.run_ready();
  out = ok("chat.history", {{"sessionKey", "main"}});
  EXPECT_FALSE(out["messages"][1]["__openclaw"].contains("idempotencyKey"));
}

TEST_F(RpcSessionsTest, InputReceiptsSayPendingUntilATurnTakesTheMessage) {
  pipeline_->set_draining(true);  // accepted and journaled, not run
  send("main", "queued", "run-q");
  auto out = ok("chat.history", {{"sessionKey", "main"}, {"inputRunIds", {"run-q", "unknown"}}});
  EXPECT_EQ(out["inputReceipts"], (json::array({{{"runId", "run-q"}, {"state", "pending"}}})));

  pipeline_->set_draining(false);
  send("live", "now", "run-n");  // "main" holds the queued message until the restart
  out = ok("chat.history", {{"sessionKey", "live"}, {"inputRunIds", {"run-n"}}});
  ASSERT_EQ(out["inputReceipts"].size(), 1u);
  EXPECT_EQ(out["inputReceipts"][0]["state"], "consumed");
  // The id the dashboard matches against its message in the history.
  const auto& user = out["messages"].back();
  EXPECT_EQ(user["__openclaw"]["idempotencyKey"], "run-n");
  EXPECT_EQ(out["inputReceipts"][0]["consumedByEventId"], user["__openclaw"]["id"]);
}

TEST_F(RpcSessionsTest, InputReceiptsOfAnotherSessionAreNotShown) {
  send("other", "hello", "run-o");
  auto out = ok("chat.history", {{"sessionKey", "main"}, {"inputRunIds", {"run-o"}}});
  EXPECT_EQ(out["inputReceipts"], json::array());
  EXPECT_FALSE(ok("chat.history", {{"sessionKey", "main"}}).contains("inputReceipts"));
}

TEST_F(RpcSessionsTest, SessionsListShowsTheNewestFirstWithAPreview) {
  send("first", "one", "k1");
  agent_.complete(0, "reply one");
  executor_.run_ready();
  clock_.advance(std::chrono::seconds(5));
  send("second", "two", "k2");
  auto out = ok("sessions.list", {{"limit", 10}});
  EXPECT_EQ(out["count"], 2);
  ASSERT_EQ(out["sessions"].size(), 2u);
  EXPECT_EQ(out["sessions"][0]["key"], "second");
  EXPECT_EQ(out["sessions"][0]["status"], "running");
  EXPECT_EQ(out["sessions"][0]["lastMessagePreview"], "two");
  EXPECT_EQ(out["sessions"][1]["key"], "first");
  EXPECT_EQ(out["sessions"][1]["lastMessagePreview"], "reply one");
  EXPECT_EQ(out["sessions"][1]["kind"], "direct");
  EXPECT_FALSE(out["sessions"][1].contains("status"));
  // The dashboard polls for sessions an agent spawned: drawbridge's spawn none.
  EXPECT_EQ(ok("sessions.list", {{"spawnedBy", "main"}})["sessions"], json::array());
  EXPECT_EQ(error_of(call(caller({"operator.read"}), "sessions.list", {{"limit", 0}})).message,
            "params.limit: expected an integer in 1..1000, got 0");
}

TEST_F(RpcSessionsTest, ACreatedSessionIsDescribedAndLabelled) {
  auto created = ok("sessions.create", {{"key", "tui-1"}, {"label", "notes"}, {"agentId", "echo"}});
  EXPECT_EQ(created["ok"], true);
  EXPECT_EQ(created["key"], "tui-1");
  auto described = ok("sessions.describe", {{"key", "tui-1"}});
  EXPECT_EQ(described["session"]["label"], "notes");
  EXPECT_EQ(described["session"]["displayName"], "notes");
  EXPECT_EQ(ok("sessions.describe", {{"key", "nope"}})["session"], nullptr);
  ok("sessions.patch", {{"key", "tui-1"}, {"label", "renamed"}});
  EXPECT_EQ(ok("sessions.describe", {{"key", "tui-1"}})["session"]["label"], "renamed");
  ok("sessions.patch", {{"key", "tui-1"}, {"label", nullptr}});
  EXPECT_FALSE(ok("sessions.describe", {{"key", "tui-1"}})["session"].contains("label"));
  EXPECT_EQ(error_of(call(caller({"operator.write"}), "sessions.create", json::object())).code,
            "INVALID_REQUEST");
}

TEST_F(RpcSessionsTest, APatchOfWhatBelongsToTheAgentSaysWhere) {
  ok("sessions.create", {{"key", "s"}});
  auto out =
      call(caller({"operator.write"}), "sessions.patch", {{"key", "s"}, {"thinkingLevel", "high"}});
  EXPECT_EQ(error_of(out).message,
            "sessions.patch: drawbridge has no per-session \"thinkingLevel\"; set it on the "
            "agent in the config (agents.<id>)");
  EXPECT_EQ(error_of(call(caller({"operator.write"}), "sessions.patch",
                          {{"key", "missing"}, {"label", "x"}}))
                .message,
            "sessions.patch: no session \"missing\"");
}

TEST_F(RpcSessionsTest, AResetSessionStartsOverForTheAgentAndTheHistory) {
  send("main", "remember 7", "k1");
  agent_.complete(0, "ok, 7");
  executor_.run_ready();
  EXPECT_EQ(ok("sessions.reset", {{"key", "main"}, {"reason", "reset"}})["ok"], true);
  EXPECT_EQ(ok("chat.history", {{"sessionKey", "main"}})["messages"], json::array());
  send("main", "what number?", "k2");
  ASSERT_EQ(agent_.calls.size(), 2u);
  ASSERT_EQ(agent_.calls[1]->request.history.size(), 1u);
  EXPECT_EQ(agent_.calls[1]->request.history[0].text, "what number?");
  EXPECT_EQ(
      error_of(call(caller({"operator.write"}), "sessions.reset", {{"key", "never"}})).message,
      "sessions.reset: no session \"never\"");
}

TEST_F(RpcSessionsTest, AResetAbortsTheTurnStillRunning) {
  send("main", "long question", "k1");
  ASSERT_EQ(agent_.calls.size(), 1u);
  ok("sessions.reset", {{"key", "main"}});
  EXPECT_TRUE(agent_.calls[0]->cancelled);
}

TEST_F(RpcSessionsTest, AgentsAndModelsComeFromTheConfiguredAgents) {
  control_.catalog = {"main",
                      {{"main", "openai", "gpt-4o-mini", "http://127.0.0.1:1/v1"},
                       {"shell", "exec", "", ""},
                       {"twin", "openai", "gpt-4o-mini", "http://127.0.0.1:2/v1"}},
                      {"local"}};
  auto agents = ok("agents.list", json::object());
  EXPECT_EQ(agents["defaultId"], "main");
  EXPECT_EQ(agents["mainKey"], "main");
  ASSERT_EQ(agents["agents"].size(), 3u);
  EXPECT_EQ(agents["agents"][0]["model"]["primary"], "gpt-4o-mini");
  EXPECT_EQ(agents["agents"][1]["model"]["primary"], "exec");  // as models.list names it
  auto models = ok("models.list", json::object())["models"];
  ASSERT_EQ(models.size(), 2u);  // one per model, not per agent
  EXPECT_EQ(models[0]["id"], "gpt-4o-mini");
  EXPECT_EQ(models[0]["provider"], "openai");
  EXPECT_EQ(models[1]["id"], "exec");
  auto identity = ok("agent.identity.get", {{"agentId", "shell"}});
  EXPECT_EQ(identity["name"], "shell");
  EXPECT_EQ(identity["nameSource"], "config");
  EXPECT_EQ(ok("agent.identity.get", json::object())["agentId"], "main");
  auto session_defaults = ok("sessions.list", json::object())["defaults"];
  EXPECT_EQ(session_defaults["model"], "gpt-4o-mini");
}

TEST_F(RpcSessionsTest, CommandsListNamesTheChatCommandsThePipelineAnswers) {
  auto commands = ok("commands.list", {{"agentId", "main"}, {"scope", "text"}})["commands"];
  std::vector<std::string> names;
  for (const auto& c : commands) names.push_back(c["name"]);
  EXPECT_EQ(names, (std::vector<std::string>{"stop", "status", "restart"}));
}

TEST_F(RpcSessionsTest, WhatDrawbridgeDoesNotHaveAnswersEmptyInOpenClawsShape) {
  EXPECT_EQ(ok("plugin.approval.list", json::object()), json::array());
  EXPECT_EQ(ok("question.list", json::object()), (json{{"questions", json::array()}}));
  EXPECT_EQ(ok("tasks.list", json::object()), (json{{"tasks", json::array()}}));
  EXPECT_EQ(ok("progressCard.get", json::object()), (json{{"card", nullptr}}));
  // Read scope is enough; no scope is not.
  EXPECT_EQ(error_of(call(caller({}), "question.list", json::object())).code, "FORBIDDEN");
}

TEST(SessionWatchers, AConnectionWatchesABoundedNumberOfSessions) {
  SessionWatchers w;
  for (std::size_t i = 0; i < SessionWatchers::kMaxKeysPerConnection; ++i) {
    ASSERT_TRUE(w.watch_messages(1, "s" + std::to_string(i)));
  }
  EXPECT_FALSE(w.watch_messages(1, "one-too-many"));
  EXPECT_EQ(w.message_watchers("one-too-many"), nullptr);
  EXPECT_TRUE(w.watch_messages(1, "s0"));  // already watched: still fine
  EXPECT_TRUE(w.watch_messages(2, "one-too-many"));
  w.unwatch_messages(1, "s0");
  EXPECT_TRUE(w.watch_messages(1, "one-too-many"));
  w.watch_list(1);
  w.forget(1);
  EXPECT_TRUE(w.list_watchers().empty());
  EXPECT_EQ(w.message_watchers("s1"), nullptr);
  ASSERT_NE(w.message_watchers("one-too-many"), nullptr);
  EXPECT_EQ(*w.message_watchers("one-too-many"), (std::set<std::uint64_t>{2}));
}

}  // namespace
}  // namespace drawbridge::server
