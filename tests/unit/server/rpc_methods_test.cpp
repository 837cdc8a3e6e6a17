#include "server/rpc_methods.h"

#include <gtest/gtest.h>

#include "core/manual_executor.h"
#include "unit/pipeline/fakes.h"
#include "store/sqlite_store.h"

namespace drawbridge::server {
namespace {

class FakeControl final : public Control {
 public:
  Readiness readiness() override { return {true, {}}; }
  nlohmann::json health() override { return {{"ok", true}}; }
  nlohmann::json status() override { return {{"state", "running"}}; }
  std::string metrics_text() override { return {}; }
  std::int64_t uptime_ms() override { return 1; }
};

class RpcMethodsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = store::SqliteStore::open(":memory:");
    writer_ = std::make_unique<pipeline::InlineBatchRunner>(*store_);
    pipeline_ = std::make_unique<pipeline::Pipeline>(clock_, executor_, *store_, *writer_);
    pipeline_->add_channel(&channel_, &agent_, 0);
    rpc_ = std::make_unique<RpcMethods>(control_, *pipeline_, "local");
  }

  Caller caller(std::vector<std::string> scopes) {
    Caller c;
    c.conn_id = "conn-1";
    c.client_id = "test";
    c.scopes = std::move(scopes);
    c.subscribe = [this](const std::string& s) { subscribed_.push_back(s); };
    return c;
  }

  RpcOutcome call(const Caller& c, const std::string& method, const nlohmann::json& params) {
    std::optional<RpcOutcome> out;
    rpc_->call(c, method, params, [&](RpcOutcome o) { out = std::move(o); });
    executor_.run_ready();
    EXPECT_TRUE(out.has_value()) << method << " never answered";
    return out ? *out : RpcOutcome{RpcError{"NONE", "no answer", nullptr, {}, {}}};
  }

  const RpcError& error_of(const RpcOutcome& out) {
    static RpcError none{"NONE", "no error", nullptr, {}, {}};
    auto* e = std::get_if<RpcError>(&out);
    return e ? *e : none;
  }

  core::ManualClock clock_;
  core::ManualExecutor executor_{clock_};
  std::unique_ptr<store::SqliteStore> store_;
  std::unique_ptr<pipeline::InlineBatchRunner> writer_;
  testing::FakeAgent agent_;
  testing::FakeChannel channel_;
  FakeControl control_;
  std::unique_ptr<pipeline::Pipeline> pipeline_;
  std::unique_ptr<RpcMethods> rpc_;
  std::vector<std::string> subscribed_;
};

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

}  // namespace
}  // namespace drawbridge::server
