// The openai agent in the real gateway, against the fake OpenAI-compatible server: the stream
// reaches WebSocket clients as deltas, the reply is stored once, a failure is said, and a
// gateway killed mid-stream answers the message after its restart, never half of it as final.

#include <gtest/gtest.h>

#include "e2e/harness.h"
#include "fakes/openai_fake.h"

namespace drawbridge::e2e {
namespace {

using testing::OpenAiFake;
using Script = OpenAiFake::Script;

json openai_config(const OpenAiFake& fake) {
  return {{"agents",
           {{"main",
             {{"type", "openai"},
              {"baseUrl", fake.base_url()},
              {"model", "fake-model"},
              {"apiKeyEnv", "E2E_OPENAI_KEY"},
              {"systemPrompt", "be brief"},
              {"firstTokenTimeoutMs", 5000},
              {"idleTimeoutMs", 5000},
              {"timeoutMs", 20000}}}}},
          {"channels", {{"local", {{"maxMessageChars", 0}}}}}};
}

struct OpenAiAgentTest : ::testing::Test {
  TempDir dir;
  OpenAiFake fake;
  std::unique_ptr<Gateway> gw;
  void SetUp() override { fake.set_api_key("sk-e2e-0123456789"); }
  void make(json cfg) {
    gw = std::make_unique<Gateway>(dir, std::move(cfg));
    gw->set_env("E2E_OPENAI_KEY", "sk-e2e-0123456789");
  }
};

TEST_F(OpenAiAgentTest, DeltasReachTheClientAndTheReplyAndHistoryAreStored) {
  make(openai_config(fake));
  gw->start();
  auto c = gw->client();
  fake.push(Script::stream_reply({"Hel", "lo ", "there"}));
  json ack = c->request("chat.send",
                        {{"sessionKey", "ai"}, {"message", "first"}, {"idempotencyKey", "ai-1"}});
  ChatRun run = await_run(*c, ack.value("runId", ""), 10s);
  ASSERT_EQ(run.state(), "final") << run.terminal.dump() << gw->log();
  EXPECT_EQ(run.text(), "Hello there");
  EXPECT_EQ(run.deltas.size(), 3u) << "each delta of the stream is forwarded";
  // The second turn carries the first exchange from the store.
  json ack2 = c->request("chat.send",
                         {{"sessionKey", "ai"}, {"message", "second"}, {"idempotencyKey", "ai-2"}});
  ChatRun run2 = await_run(*c, ack2.value("runId", ""), 10s);
  ASSERT_EQ(run2.state(), "final") << run2.terminal.dump();
  EXPECT_EQ(run2.text(), "echo: second");
  const auto reqs = fake.requests();
  ASSERT_EQ(reqs.size(), 2u);
  const json& messages = reqs[1].body["messages"];
  ASSERT_EQ(messages.size(), 4u) << messages.dump();
  EXPECT_EQ(messages[0], (json{{"role", "system"}, {"content", "be brief"}}));
  EXPECT_EQ(messages[1], (json{{"role", "user"}, {"content", "first"}}));
  EXPECT_EQ(messages[2], (json{{"role", "assistant"}, {"content", "Hello there"}}));
  EXPECT_EQ(messages[3], (json{{"role", "user"}, {"content", "second"}}));
  EXPECT_EQ(gw->log().find("sk-e2e-0123456789"), std::string::npos) << "the key is in the log";
  const json status = c->request("status", json::object());
  ASSERT_EQ(status["agents"].size(), 1u) << status.dump();
  const json& agent = status["agents"][0];
  EXPECT_EQ(agent["endpoint"], "http://127.0.0.1:" + std::to_string(fake.port())) << agent;
  EXPECT_EQ(agent["model"], "fake-model");
  EXPECT_TRUE(agent["lastError"].is_null()) << agent;
  EXPECT_TRUE(agent["latencyMs"].is_number_integer()) << agent;
}

TEST_F(OpenAiAgentTest, AFailureIsTheReplyAndSaysWhatHappened) {
  make(openai_config(fake));
  gw->start();
  fake.push(Script::error_reply(404, "The model `fake-model` does not exist",
                                "invalid_request_error", "model_not_found"));
  auto c = gw->client();
  json ack = c->request(
      "chat.send", {{"sessionKey", "ai-404"}, {"message", "hi"}, {"idempotencyKey", "ai-404"}});
  ChatRun run = await_run(*c, ack.value("runId", ""), 10s);
  ASSERT_EQ(run.state(), "final") << run.terminal.dump();
  EXPECT_EQ(run.text(),
            "Sorry, I could not answer that: the model endpoint returned 404: The model "
            "`fake-model` does not exist (model_not_found) - check agents.main.model and "
            "agents.main.baseUrl");
  const json status = c->request("status", json::object());
  EXPECT_NE(status["agents"][0].value("lastError", "").find("returned 404"), std::string::npos)
      << status["agents"];
}

TEST_F(OpenAiAgentTest, AReplyCutMidStreamIsMarkedCutNotPassedOffAsComplete) {
  make(openai_config(fake));
  gw->start();
  fake.push(Script::drop_after_deltas({"The first half", " and"}));
  auto c = gw->client();
  json ack =
      c->request("chat.send",
                 {{"sessionKey", "ai-cut"}, {"message", "tell me"}, {"idempotencyKey", "ai-cut"}});
  ChatRun run = await_run(*c, ack.value("runId", ""), 10s);
  ASSERT_EQ(run.state(), "final") << run.terminal.dump();
  EXPECT_EQ(run.text().rfind("The first half and\n\n[reply cut short: the connection to the model "
                             "endpoint was lost mid-reply",
                             0),
            0u)
      << run.text();
}

TEST_F(OpenAiAgentTest, AGatewayKilledMidStreamAnswersAfterItsRestartAndStoresNoHalfReply) {
  make(openai_config(fake));
  gw->start();
  fake.push(Script::slow_stream({"one ", "two ", "three ", "four ", "five"}, 400ms));
  auto c = gw->client();
  json ack =
      c->request("chat.send",
                 {{"sessionKey", "ai-kill"}, {"message", "count"}, {"idempotencyKey", "ai-kill"}});
  ASSERT_TRUE(fake.wait_for(
      [&] {
        auto r = fake.requests();
        return !r.empty() && r[0].first_delta_written.has_value();
      },
      10s));
  // The next start's attempt streams slowly, so a client can subscribe before it ends.
  fake.push(Script::slow_stream({"echo: ", "count"}, 300ms));
  gw->kill9();
  c.reset();
  // The killed gateway's stream is closed by the kernel; the next start runs the turn again.
  gw->start();
  ASSERT_TRUE(fake.wait_for([&] { return fake.requests().size() == 2; }, 10s)) << gw->log();
  auto c2 = gw->client();
  c2->request("chat.history", {{"sessionKey", "ai-kill"}});  // subscribes to the session
  ChatRun rerun = await_run(*c2, ack.value("runId", ""), 10s);
  ASSERT_EQ(rerun.state(), "final") << rerun.terminal.dump() << gw->log();
  EXPECT_EQ(rerun.text(), "echo: count");
  const json history = gw->history("ai-kill");
  const auto replies = entries_of_run(history, "assistant", ack.value("runId", ""));
  ASSERT_EQ(replies.size(), 1u) << history.dump(2) << gw->log();
  EXPECT_EQ(replies[0].dump().find("one two"), std::string::npos)
      << "the half reply of the killed run was stored: " << history.dump(2);
  EXPECT_NE(replies[0].dump().find("echo: count"), std::string::npos) << history.dump(2);
}

TEST_F(OpenAiAgentTest, AnUnsetKeyVariableRefusesTheConfigNamingIt) {
  json cfg = openai_config(fake);
  cfg["agents"]["main"]["apiKeyEnv"] = "E2E_UNSET_KEY_VAR";
  make(cfg);
  EXPECT_ANY_THROW(gw->start());
  EXPECT_NE(gw->log().find("agents.main.apiKeyEnv: the environment variable E2E_UNSET_KEY_VAR is "
                           "not set"),
            std::string::npos)
      << gw->log();
}

// --- drawbridge agents probe ------------------------------------------------------------------

std::string describe(const CliResult& r) {
  return r.status.describe() + "\nstdout:\n" + r.out + "\nstderr:\n" + r.err;
}

bool exited_with(const CliResult& r, int code) {
  return r.status.exited && r.status.code == code;
}

CliResult agents_probe(const TempDir& dir, const json& cfg, const std::string& key,
                       std::vector<std::string> args = {}) {
  dir.write("drawbridge.json", cfg.dump(2));
  std::vector<std::string> argv = {"--config", (dir.path() / "drawbridge.json").string(), "agents",
                                   "probe", "main"};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_cli(dir, argv, 20s, {{"E2E_OPENAI_KEY", key}});
}

TEST(AgentsProbe, AWorkingEndpointIsOkWithItsModelAndLatency) {
  OpenAiFake fake;
  fake.set_api_key("sk-probe-000111");
  TempDir dir;
  auto r = agents_probe(dir, openai_config(fake), "sk-probe-000111", {"--json"});
  ASSERT_TRUE(exited_with(r, 0)) << describe(r);
  const json out = json::parse(r.out, nullptr, false);
  EXPECT_EQ(out.value("ok", false), true) << r.out;
  EXPECT_EQ(out.value("modelListed", false), true) << r.out;
  EXPECT_TRUE(out["latencyMs"].is_number_integer()) << r.out;
  const auto reqs = fake.requests();
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_EQ(reqs[0].target, "/v1/models");
  EXPECT_EQ(reqs[1].target, "/v1/chat/completions");
  EXPECT_EQ((r.out + r.err).find("sk-probe-000111"), std::string::npos);
}

TEST(AgentsProbe, AWrongKeyOrModelSaysWhatToCheck) {
  OpenAiFake fake;
  fake.set_api_key("sk-the-right-key");
  TempDir dir;
  auto r = agents_probe(dir, openai_config(fake), "sk-a-wrong-key-1");
  EXPECT_TRUE(exited_with(r, 1)) << describe(r);
  EXPECT_NE(r.err.find("main: GET /models returned 401"), std::string::npos) << describe(r);
  EXPECT_NE(r.err.find("check agents.main.apiKeyEnv"), std::string::npos) << describe(r);
  json cfg = openai_config(fake);
  cfg["agents"]["main"]["model"] = "no-such-model";
  r = agents_probe(dir, cfg, "sk-the-right-key");
  EXPECT_TRUE(exited_with(r, 1)) << describe(r);
  EXPECT_NE(r.err.find("returned 404"), std::string::npos) << describe(r);
  EXPECT_NE(r.err.find("check agents.main.model"), std::string::npos) << describe(r);
  dir.write("drawbridge.json", openai_config(fake).dump());
  auto missing = run_cli(
      dir, {"--config", (dir.path() / "drawbridge.json").string(), "agents", "probe", "nope"});
  EXPECT_TRUE(exited_with(missing, 64)) << describe(missing);
}

}  // namespace
}  // namespace drawbridge::e2e
