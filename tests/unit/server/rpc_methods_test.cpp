#include "server/rpc_methods.h"
#include "server/rpc_ops.h"

#include <gtest/gtest.h>

#include "unit/server/rpc_fixture.h"

namespace drawbridge::server {
namespace {

TEST_F(RpcMethodsTest, UnknownMethodIsAClearInvalidRequest) {
  auto out = call(caller({"operator.admin"}), "nope.method", nlohmann::json::object());
  EXPECT_EQ(error_of(out).code, "INVALID_REQUEST");
  EXPECT_EQ(error_of(out).message, "unknown method: nope.method");
}

TEST_F(RpcMethodsTest, MissingScopeIsForbiddenWithDetails) {
  auto out = call(caller({"operator.read"}), "chat.send",
                        {{"sessionKey", "s"}, {"message", "m"}, {"idempotencyKey", "k"}});
  const auto& e = error_of(out);
  EXPECT_EQ(e.code, "FORBIDDEN");
  EXPECT_EQ(e.details["code"], "MISSING_SCOPE");
  EXPECT_EQ(e.details["missingScope"], "operator.write");
  EXPECT_EQ(store_->counts().inbox_total, 0);
}

TEST_F(RpcMethodsTest, ScopesImplyAsInOpenClaw) {
  EXPECT_TRUE(RpcMethods::has_scope({"operator.admin"}, "operator.write"));
  EXPECT_TRUE(RpcMethods::has_scope({"operator.write"}, "operator.read"));
  EXPECT_FALSE(RpcMethods::has_scope({"operator.read"}, "operator.write"));
  EXPECT_FALSE(RpcMethods::has_scope({"operator.write"}, "operator.admin"));
  EXPECT_FALSE(RpcMethods::has_scope({}, "operator.read"));
}

TEST_F(RpcMethodsTest, HealthNeedsNoScope) {
  auto out = call(caller({}), "health", nullptr);
  ASSERT_TRUE(std::holds_alternative<nlohmann::json>(out));
  EXPECT_EQ(std::get<nlohmann::json>(out)["ok"], true);
}

TEST_F(RpcMethodsTest, ChatSendNamesTheMissingParam) {
  auto out = call(caller({"operator.write"}), "chat.send",
                        {{"message", "m"}, {"idempotencyKey", "k"}});
  EXPECT_EQ(error_of(out).code, "INVALID_REQUEST");
  EXPECT_EQ(error_of(out).message, "params.sessionKey: required");
  out = call(caller({"operator.write"}), "chat.send",
                   {{"sessionKey", 42}, {"message", "m"}, {"idempotencyKey", "k"}});
  EXPECT_EQ(error_of(out).message, "params.sessionKey: expected a non-empty string, got an integer");
}

TEST_F(RpcMethodsTest, ChatSendUsesTheIdempotencyKeyAsRunIdAndSubscribes) {
  auto out = call(caller({"operator.write"}), "chat.send",
                        {{"sessionKey", "s"}, {"message", "m"}, {"idempotencyKey", "key-1"}});
  ASSERT_TRUE(std::holds_alternative<nlohmann::json>(out));
  auto ack = std::get<nlohmann::json>(out);
  EXPECT_EQ(ack["runId"], "key-1");
  EXPECT_EQ(ack["status"], "started");
  EXPECT_EQ(subscribed_, std::vector<std::string>{"s"});
  auto again = std::get<nlohmann::json>(call(
      caller({"operator.write"}), "chat.send",
      {{"sessionKey", "s"}, {"message", "m"}, {"idempotencyKey", "key-1"}}));
  EXPECT_EQ(again["runId"], "key-1");
  EXPECT_EQ(again["status"], "in_flight");
  agent_.complete(0, "done");
  executor_.run_ready();
  auto later = std::get<nlohmann::json>(call(
      caller({"operator.write"}), "chat.send",
      {{"sessionKey", "s"}, {"message", "m"}, {"idempotencyKey", "key-1"}}));
  EXPECT_EQ(later["status"], "ok");
  EXPECT_EQ(agent_.calls.size(), 1u);
}

TEST_F(RpcMethodsTest, ChatHistoryReturnsTranscriptMessages) {
  call(caller({"operator.write"}), "chat.send",
             {{"sessionKey", "s"}, {"message", "question"}, {"idempotencyKey", "k"}});
  agent_.complete(0, "answer");
  executor_.run_ready();
  auto out = std::get<nlohmann::json>(
      call(caller({"operator.read"}), "chat.history", {{"sessionKey", "s"}}));
  ASSERT_EQ(out["messages"].size(), 2u);
  EXPECT_EQ(out["messages"][0]["role"], "user");
  EXPECT_EQ(out["messages"][1]["content"][0]["text"], "answer");
  EXPECT_EQ(out["messages"][1]["__openclaw"]["runId"], "k");
}

TEST_F(RpcMethodsTest, ParamsThatAreNotAnObjectAreRefused) {
  auto out = call(caller({"operator.admin"}), "chat.history", nlohmann::json::array());
  EXPECT_EQ(error_of(out).message, "params: expected an object");
}

TEST_F(RpcMethodsTest, SendToAnUnconfiguredChannelIsRefused) {
  auto out = call(caller({"operator.write"}), "send",
                        {{"to", "x"}, {"message", "m"}, {"idempotencyKey", "k"},
                         {"channel", "telegram"}});
  EXPECT_EQ(error_of(out).code, "INVALID_REQUEST");
  EXPECT_EQ(error_of(out).message, "params.channel: channel \"telegram\" is not configured");
}

TEST_F(RpcMethodsTest, ChatSendDuringADrainIsQueuedForTheRestart) {
  pipeline_->set_draining(true);
  auto out = call(caller({"operator.write"}), "chat.send",
                  {{"sessionKey", "s"}, {"message", "m"}, {"idempotencyKey", "key-d"}});
  ASSERT_TRUE(std::holds_alternative<nlohmann::json>(out));
  auto ack = std::get<nlohmann::json>(out);
  EXPECT_EQ(ack["runId"], "key-d");
  EXPECT_EQ(ack["status"], "queued");
  EXPECT_EQ(ack["reason"], "gateway-restarting");
  EXPECT_TRUE(agent_.calls.empty());
}

TEST_F(RpcMethodsTest, RestartRequestPassesTheIntentToTheGateway) {
  auto out = call(caller({"operator.admin"}), "gateway.restart.request",
                  {{"reason", "new plugin"},
                   {"force", true},
                   {"waitMs", 5000},
                   {"delayMs", 0},
                   {"runId", "run-7"}});
  ASSERT_TRUE(std::holds_alternative<nlohmann::json>(out)) << error_of(out).message;
  EXPECT_EQ(std::get<nlohmann::json>(out)["status"], "scheduled");
  EXPECT_EQ(std::get<nlohmann::json>(out)["cycle"], 3);
  ASSERT_EQ(control_.intents.size(), 1u);
  const auto& intent = control_.intents[0];
  EXPECT_EQ(intent.reason, "new plugin");
  EXPECT_TRUE(intent.force);
  EXPECT_EQ(intent.wait_ms, 5000);
  EXPECT_EQ(intent.delay_ms, 0);
  EXPECT_EQ(intent.requested_by_run, "run-7");
  EXPECT_EQ(intent.source, "rpc");
}

TEST_F(RpcMethodsTest, RestartRequestWithoutParamsLeavesTheDefaultsToTheScheduler) {
  auto out = call(caller({"operator.admin"}), "gateway.restart.request", nullptr);
  ASSERT_TRUE(std::holds_alternative<nlohmann::json>(out)) << error_of(out).message;
  ASSERT_EQ(control_.intents.size(), 1u);
  const auto& intent = control_.intents[0];
  EXPECT_EQ(intent.reason, "");
  EXPECT_FALSE(intent.force);
  EXPECT_EQ(intent.wait_ms, std::nullopt);
  EXPECT_EQ(intent.delay_ms, std::nullopt);
  EXPECT_EQ(intent.requested_by_run, "");
}

TEST_F(RpcMethodsTest, RestartRequestHonoursOpenClawsSkipDeferral) {
  call(caller({"operator.admin"}), "gateway.restart.request",
       {{"reason", "gateway.restart.safe"}, {"skipDeferral", true}});
  call(caller({"operator.admin"}), "gateway.restart.request", {{"skipDeferral", false}});
  ASSERT_EQ(control_.intents.size(), 2u);
  EXPECT_TRUE(control_.intents[0].force);
  EXPECT_EQ(control_.intents[0].reason, "gateway.restart.safe");
  EXPECT_FALSE(control_.intents[1].force);
}

TEST_F(RpcMethodsTest, RestartIntentFillsWhatTheTopLevelLeavesUnset) {
  // OpenClaw's CLI sends its own keys (`target`) too: they are not an error.
  call(caller({"operator.admin"}), "gateway.restart.request",
       {{"reason", "gateway.restart"},
        {"target", {{"pid", 1}, {"port", 18789}}},
        {"restartIntent", {{"reason", "ignored"}, {"force", true}, {"waitMs", 30000}}}});
  call(caller({"operator.admin"}), "gateway.restart.request",
       {{"force", false}, {"waitMs", 10}, {"restartIntent", {{"force", true}, {"waitMs", 20}}}});
  ASSERT_EQ(control_.intents.size(), 2u);
  EXPECT_EQ(control_.intents[0].reason, "gateway.restart");
  EXPECT_TRUE(control_.intents[0].force);
  EXPECT_EQ(control_.intents[0].wait_ms, 30000);
  EXPECT_FALSE(control_.intents[1].force);
  EXPECT_EQ(control_.intents[1].wait_ms, 10);
}

TEST_F(RpcMethodsTest, RestartRequestNamesTheFieldOfTheWrongType) {
  const auto message = [&](const nlohmann::json& params) {
    auto out = call(caller({"operator.admin"}), "gateway.restart.request", params);
    EXPECT_EQ(error_of(out).code, "INVALID_REQUEST") << params.dump();
    return error_of(out).message;
  };
  EXPECT_EQ(message({{"waitMs", -1}}), "params.waitMs: expected an integer in 0..86400000, got -1");
  EXPECT_EQ(message({{"waitMs", "5s"}}),
            "params.waitMs: expected an integer in 0..86400000, got \"5s\"");
  EXPECT_EQ(message({{"delayMs", 1.5}}),
            "params.delayMs: expected an integer in 0..86400000, got 1.5");
  EXPECT_EQ(message({{"force", "yes"}}), "params.force: expected a boolean, got a string");
  EXPECT_EQ(message({{"skipDeferral", 1}}),
            "params.skipDeferral: expected a boolean, got an integer");
  EXPECT_EQ(message({{"reason", 42}}), "params.reason: expected a string, got an integer");
  EXPECT_EQ(message({{"runId", false}}), "params.runId: expected a string, got a boolean");
  EXPECT_EQ(message({{"restartIntent", "force"}}), "params.restartIntent: expected an object");
  EXPECT_EQ(message({{"restartIntent", {{"waitMs", -5}}}}),
            "params.restartIntent.waitMs: expected an integer in 0..86400000, got -5");
  EXPECT_EQ(message({{"restartIntent", {{"force", "true"}}}}),
            "params.restartIntent.force: expected a boolean, got a string");
  EXPECT_TRUE(control_.intents.empty());
}

TEST_F(RpcMethodsTest, RestartAndStopNeedTheAdminScope) {
  for (const char* method : {"gateway.restart.request", "gateway.stop"}) {
    auto out = call(caller({"operator.write"}), method, nlohmann::json::object());
    const auto& e = error_of(out);
    EXPECT_EQ(e.code, "FORBIDDEN") << method;
    EXPECT_EQ(e.details["code"], "MISSING_SCOPE") << method;
    EXPECT_EQ(e.details["missingScope"], "operator.admin") << method;
  }
  EXPECT_TRUE(control_.intents.empty());
  EXPECT_TRUE(control_.stops.empty());
}

TEST_F(RpcMethodsTest, StopPassesItsReasonOrRequested) {
  auto out = call(caller({"operator.admin"}), "gateway.stop", {{"reason", "maintenance"}});
  ASSERT_TRUE(std::holds_alternative<nlohmann::json>(out)) << error_of(out).message;
  EXPECT_EQ(std::get<nlohmann::json>(out)["status"], "stopping");
  call(caller({"operator.admin"}), "gateway.stop", nullptr);
  call(caller({"operator.admin"}), "gateway.stop", {{"reason", ""}});
  EXPECT_EQ(control_.stops, (std::vector<std::string>{"maintenance", "requested", "requested"}));
  out = call(caller({"operator.admin"}), "gateway.stop", {{"reason", 7}});
  EXPECT_EQ(error_of(out).message, "params.reason: expected a string, got an integer");
  EXPECT_EQ(control_.stops.size(), 3u);
}

TEST_F(RpcMethodsTest, MethodNamesListRestartAndStop) {
  const auto names = rpc_->method_names();
  EXPECT_NE(std::find(names.begin(), names.end(), "gateway.restart.request"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "gateway.stop"), names.end());
}

TEST_F(RpcMethodsTest, ConfigGetNeedsReadAndPatchNeedsAdmin) {
  auto got = call(caller({"operator.read"}), "config.get", nlohmann::json::object());
  ASSERT_TRUE(std::holds_alternative<nlohmann::json>(got));
  EXPECT_EQ(std::get<nlohmann::json>(got)["hash"], "h1");
  auto refused = call(caller({"operator.write"}), "config.patch", {{"raw", "{}"}});
  EXPECT_EQ(error_of(refused).code, "FORBIDDEN");
  EXPECT_EQ(error_of(refused).details["missingScope"], "operator.admin");
  EXPECT_TRUE(control_.writes.empty());
}

TEST_F(RpcMethodsTest, ConfigPatchAndApplyPassTheirParams) {
  auto out = call(caller({"operator.admin"}), "config.patch",
                  {{"raw", "{\"logging\":{\"level\":\"debug\"}}"},
                   {"baseHash", "h1"},
                   {"restartDelayMs", 50},
                   {"note", "why"},
                   {"sessionKey", "ignored"}});
  ASSERT_TRUE(std::holds_alternative<nlohmann::json>(out));
  EXPECT_EQ(std::get<nlohmann::json>(out)["plan"]["kind"], "none");
  out = call(caller({"operator.admin"}), "config.apply", {{"raw", "{}"}});
  ASSERT_EQ(control_.writes.size(), 2u);
  EXPECT_FALSE(control_.writes[0].whole);
  EXPECT_EQ(control_.writes[0].base_hash, "h1");
  EXPECT_EQ(control_.writes[0].restart_delay_ms, 50);
  EXPECT_EQ(control_.writes[0].note, "why");
  EXPECT_TRUE(control_.writes[1].whole);
  EXPECT_FALSE(control_.writes[1].base_hash.has_value());
}

TEST_F(RpcMethodsTest, ConfigPatchWithoutRawIsRefusedBeforeTheGatewaySeesIt) {
  auto out = call(caller({"operator.admin"}), "config.patch", {{"baseHash", "h1"}});
  EXPECT_EQ(error_of(out).code, "INVALID_REQUEST");
  EXPECT_NE(error_of(out).message.find("params.raw"), std::string::npos) << error_of(out).message;
  EXPECT_TRUE(control_.writes.empty());
}

TEST_F(RpcMethodsTest, ConfigWriteErrorsCarryTheirCodeAndEveryError) {
  ConfigWriteError e;
  e.code = "CONFIG_INVALID";
  e.message = "2 problem(s)";
  e.errors = {{{"path", "gateway.port"}, {"pointer", "/gateway/port"}, {"message", "bad"}},
              {{"path", "logging.level"}, {"pointer", "/logging/level"}, {"message", "bad"}}};
  control_.write_result = e;
  auto out = call(caller({"operator.admin"}), "config.patch", {{"raw", "{}"}});
  EXPECT_EQ(error_of(out).code, "INVALID_REQUEST");
  EXPECT_EQ(error_of(out).details["code"], "CONFIG_INVALID");
  EXPECT_EQ(error_of(out).details["errors"].size(), 2u);

  ConfigWriteError busy;
  busy.code = "GATEWAY_BUSY";
  busy.message = "restarting";
  busy.retryable = true;
  busy.retry_after_ms = 1500;
  control_.write_result = busy;
  out = call(caller({"operator.admin"}), "config.apply", {{"raw", "{}"}});
  EXPECT_EQ(error_of(out).code, "UNAVAILABLE");
  EXPECT_EQ(error_of(out).retryable, true);
  EXPECT_EQ(error_of(out).retry_after_ms, 1500);
}

// --- rpc_ops: what an operator looks at ---

TEST_F(RpcMethodsTest, LogsTailPassesTheWindowOnAndChecksItsBounds) {
  auto out = call(caller({"operator.read"}), "logs.tail",
                  {{"cursor", 7}, {"limit", 20}, {"maxBytes", 1000}});
  ASSERT_TRUE(std::holds_alternative<nlohmann::json>(out)) << error_of(out).message;
  const auto tail = std::get<nlohmann::json>(out);
  EXPECT_EQ(tail["file"], "memory:test");
  EXPECT_EQ(tail["lines"], nlohmann::json({"a", "b"}));
  EXPECT_EQ(tail["cursor"], 10);
  EXPECT_FALSE(tail.contains("skippedBytes"));
  ASSERT_EQ(control_.tail_requests.size(), 1u);
  EXPECT_EQ(control_.tail_requests[0].cursor, 7u);
  EXPECT_EQ(control_.tail_requests[0].limit, 20u);
  EXPECT_EQ(control_.tail_requests[0].max_bytes, 1000u);
  // OpenClaw's CLI sends {limit, maxBytes} only: the defaults fill the rest.
  call(caller({"operator.read"}), "logs.tail", {{"limit", 5}});
  EXPECT_FALSE(control_.tail_requests.back().cursor.has_value());
  EXPECT_EQ(control_.tail_requests.back().max_bytes, 250'000u);
  EXPECT_EQ(error_of(call(caller({"operator.read"}), "logs.tail", {{"limit", 5001}})).message,
            "params.limit: expected an integer in 1..5000, got 5001");
  EXPECT_EQ(error_of(call(caller({"operator.read"}), "logs.tail", {{"cursor", -1}})).code,
            "INVALID_REQUEST");
  EXPECT_EQ(error_of(call(caller({"operator.read"}), "logs.tail", {{"maxBytes", "1"}})).code,
            "INVALID_REQUEST");
  EXPECT_EQ(control_.tail_requests.size(), 2u) << "a refused request reached the log";
  EXPECT_EQ(error_of(call(caller({}), "logs.tail", {})).code, "FORBIDDEN");
}

TEST_F(RpcMethodsTest, ConfigSchemaAnswersTheGeneratedSchemaAndHints) {
  auto out = std::get<nlohmann::json>(call(caller({"operator.read"}), "config.schema", {}));
  EXPECT_EQ(out["schema"]["$schema"], "http://json-schema.org/draft-07/schema#");
  EXPECT_EQ(out["schema"]["properties"]["gateway"]["properties"]["port"]["maximum"], 65535);
  EXPECT_EQ(out["uiHints"]["gateway.auth.token"]["sensitive"], true);
  EXPECT_EQ(out["version"], DRAWBRIDGE_VERSION);
  EXPECT_EQ(out["generatedAt"].get<std::string>().size(), 24u);  // 2026-12-05T13:58:04.123Z
}

TEST_F(RpcMethodsTest, HeartbeatIsNullAndPairingIsAnEmptyListBehindItsScope) {
  EXPECT_TRUE(std::get<nlohmann::json>(call(caller({"operator.read"}), "last-heartbeat", {}))
                  .is_null());
  EXPECT_EQ(error_of(call(caller({"operator.read"}), "channels.pairing.list", {})).code,
            "FORBIDDEN");
  auto out = std::get<nlohmann::json>(
      call(caller({"operator.pairing"}), "channels.pairing.list", {}));
  EXPECT_EQ(out["requests"], nlohmann::json::array());
  EXPECT_EQ(out["limits"]["pendingPerAccount"], 0);
}

TEST_F(RpcMethodsTest, SystemInfoSaysThereIsNoNode) {
  auto out = std::get<nlohmann::json>(call(caller({"operator.read"}), "system.info", {}));
  EXPECT_EQ(out["platform"], "linux");
  EXPECT_EQ(out["hostname"], "host");
  EXPECT_EQ(out["machineName"], "host");
  EXPECT_EQ(out["nodeVersion"], "n/a (drawbridge 9.9.9)");
  EXPECT_EQ(out["pid"], 42);
  EXPECT_FALSE(out.contains("loadAverage")) << "unknown load is left out, not zero";
  EXPECT_FALSE(out.contains("diskPath"));
}

TEST_F(RpcMethodsTest, PresenceListsTheGatewayAndTheCaller) {
  auto out = std::get<nlohmann::json>(call(caller({"operator.read"}), "system-presence", {}));
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0]["mode"], "gateway");
  EXPECT_EQ(out[0]["reason"], "self");
  EXPECT_EQ(out[0]["host"], "host");
  EXPECT_EQ(out[0]["instanceId"], "drawbridge-42");
  EXPECT_EQ(out[1]["host"], "test");
  EXPECT_EQ(out[1]["instanceId"], "conn-1");
  EXPECT_EQ(out[1]["scopes"], nlohmann::json({"operator.read"}));
}

TEST_F(RpcMethodsTest, ChannelsStatusGroupsAccountsByKind) {
  control_.report.channels = {
      {"local", true, "main", 1, {"connected", "", 0, 0, 0, ""}},
      {"telegram", false, "main", 2, {"failed", "401 Unauthorized", 5, 3, 0, ""}},
      {"telegram:work", true, "ai", 1, {"connected", "", 0, 0, 0, ""}}};
  auto out = std::get<nlohmann::json>(
      call(caller({"operator.read"}), "channels.status", {{"probe", false}, {"timeoutMs", 10}}));
  EXPECT_EQ(out["channelOrder"], nlohmann::json({"local", "telegram"}));
  EXPECT_EQ(out["channelLabels"]["telegram"], "Telegram");
  const auto& tg = out["channelAccounts"]["telegram"];
  ASSERT_EQ(tg.size(), 2u);
  EXPECT_EQ(tg[0]["accountId"], "default");
  EXPECT_EQ(tg[0]["running"], false);
  EXPECT_EQ(tg[0]["lastError"], "401 Unauthorized");
  EXPECT_EQ(tg[0]["healthState"], "failed");
  EXPECT_EQ(tg[1]["accountId"], "work");
  EXPECT_EQ(tg[1]["connected"], true);
  EXPECT_EQ(out["channels"]["telegram"]["connected"], true);
  EXPECT_EQ(out["channels"]["telegram"]["state"], "failed");
  EXPECT_EQ(out["channelDefaultAccountId"]["local"], "default");
  auto one = std::get<nlohmann::json>(
      call(caller({"operator.read"}), "channels.status", {{"channel", "local"}}));
  EXPECT_EQ(one["channelOrder"], nlohmann::json({"local"}));
  EXPECT_EQ(error_of(call(caller({"operator.read"}), "channels.status", {{"probe", "yes"}})).code,
            "INVALID_REQUEST");
}

TEST_F(RpcMethodsTest, LanesAreTheSessionsWithATurnRunning) {
  auto idle = std::get<nlohmann::json>(call(caller({"operator.read"}), "diagnostics.lanes", {}));
  EXPECT_EQ(idle["lanes"], nlohmann::json::array());
  EXPECT_TRUE(idle["dynamic"].is_null());
  call(caller({"operator.write"}), "chat.send",
       {{"sessionKey", "s"}, {"message", "m"}, {"idempotencyKey", "k"}});
  auto busy = std::get<nlohmann::json>(call(caller({"operator.read"}), "diagnostics.lanes", {}));
  ASSERT_EQ(busy["lanes"].size(), 1u);
  EXPECT_EQ(busy["lanes"][0]["lane"], "session:s");
  EXPECT_EQ(busy["lanes"][0]["activeCount"], 1);
  EXPECT_EQ(busy["lanes"][0]["runs"][0]["runId"], "k");
  EXPECT_EQ(busy["dynamic"]["laneCount"], 1);
  agent_.complete(0, "done");
  executor_.run_ready();
  EXPECT_EQ(std::get<nlohmann::json>(call(caller({"operator.read"}), "diagnostics.lanes", {}))
                ["lanes"].size(),
            0u);
}

TEST(ChannelKind, SplitsTheAccountOffTheChannelId) {
  EXPECT_EQ(channel_kind_and_account("telegram"), std::make_pair(std::string("telegram"),
                                                                 std::string("default")));
  EXPECT_EQ(channel_kind_and_account("irc:libera").second, "libera");
  EXPECT_EQ(channel_kind_and_account("irc:").first, "irc:");
}

}  // namespace
}  // namespace drawbridge::server
