// The openai agent in the real gateway, against the fake OpenAI-compatible server: the stream
// reaches WebSocket clients as deltas, the reply is stored once, a failure is said, and a
// gateway killed mid-stream answers the message after its restart, never half of it as final.

#include <gtest/gtest.h>

#include <signal.h>

#include "e2e/harness.h"
#include "e2e/lifecycle_helpers.h"
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

// Reads events until a delta of `run_id` carries `text` as its accumulated message.
bool await_accumulated(server::GatewayClient& c, const std::string& run_id,
                       const std::string& text, Millis timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const auto left =
        std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    auto ev = c.next_event(left);
    if (!ev) return false;
    const json& p = ev->contains("payload") ? (*ev)["payload"] : json();
    if (ev->value("event", "") == "chat" && p.is_object() && p.value("runId", "") == run_id &&
        p.value("state", "") == "delta" && entry_text(p["message"]) == text) {
      return true;
    }
  }
}

const json* last_message(const json& history_payload) {
  const json& m = history_payload["messages"];
  return m.is_array() && !m.empty() ? &m.back() : nullptr;
}

bool has_message(const json& messages, const std::string& role, const std::string& content) {
  for (const auto& m : messages) {
    if (m.value("role", "") == role && m.value("content", "") == content) return true;
  }
  return false;
}

TEST_F(OpenAiAgentTest, AnAbortMidStreamCancelsTheRequestAndKeepsThePartMarkedInterrupted) {
  make(openai_config(fake));
  gw->start();
  fake.push(Script::stall_after_deltas({"Once upon", " a time"}));
  auto c = gw->client();
  json ack = c->request("chat.send", {{"sessionKey", "ai-abort"},
                                      {"message", "tell me a story"},
                                      {"idempotencyKey", "ai-abort-1"}});
  const std::string run_id = ack.value("runId", "");
  ASSERT_TRUE(await_accumulated(*c, run_id, "Once upon a time", 10s)) << gw->log();
  c->request("chat.abort", {{"sessionKey", "ai-abort"}, {"runId", run_id}});
  ChatRun run = await_run(*c, run_id, 10s);
  EXPECT_EQ(run.state(), "aborted") << run.terminal.dump();
  EXPECT_TRUE(fake.wait_for([&] { return fake.streams_cancelled_by_client() == 1; }, 5s))
      << "the HTTP stream is closed at once, not left to the idle timeout";

  const json history = c->request("chat.history", {{"sessionKey", "ai-abort"}});
  const json* cut = last_message(history);
  ASSERT_NE(cut, nullptr) << history.dump(2);
  EXPECT_EQ(cut->value("role", ""), "assistant") << history.dump(2);
  EXPECT_EQ(entry_text(*cut), "Once upon a time") << history.dump(2);
  EXPECT_EQ(cut->value("stopReason", ""), "aborted") << history.dump(2);

  // The next request carries the part, marked as cut; the endpoint gets a valid conversation.
  fake.push(Script::stream_reply({"The end."}));
  json ack2 = c->request("chat.send", {{"sessionKey", "ai-abort"},
                                       {"message", "go on"},
                                       {"idempotencyKey", "ai-abort-2"}});
  ChatRun run2 = await_run(*c, ack2.value("runId", ""), 10s);
  ASSERT_EQ(run2.state(), "final") << run2.terminal.dump();
  const auto reqs = fake.requests();
  ASSERT_EQ(reqs.size(), 2u);
  const json& messages = reqs[1].body["messages"];
  EXPECT_TRUE(has_message(messages, "assistant",
                          "Once upon a time\n\n[interrupted: this reply was cut short]"))
      << messages.dump(2);
  EXPECT_EQ(messages.back(), (json{{"role", "user"}, {"content", "go on"}}));
}

TEST_F(OpenAiAgentTest, ASigtermMidStreamLetsTheStreamFinishAndNothingRunsTwice) {
  make(openai_config(fake));
  gw->start();
  fake.push(Script::slow_stream({"one ", "two ", "three"}, 300ms));
  auto c = gw->client();
  json ack = c->request("chat.send", {{"sessionKey", "ai-term"},
                                      {"message", "count"},
                                      {"idempotencyKey", "ai-term-1"}});
  const std::string run_id = ack.value("runId", "");
  ASSERT_TRUE(await_accumulated(*c, run_id, "one ", 10s)) << gw->log();
  gw->signal(SIGTERM);
  ChatRun run = await_run(*c, run_id, 10s);
  ASSERT_EQ(run.state(), "final") << run.terminal.dump() << gw->log();
  EXPECT_EQ(run.text(), "one two three");
  const ExitStatus exit = gw->wait_exit(15s);
  EXPECT_TRUE(exit.exited && exit.code == 0) << exit.describe() << gw->log();
  c.reset();

  gw->start();
  fake.push(Script::stream_reply({"four"}));
  auto c2 = gw->client();
  json ack2 = c2->request("chat.send", {{"sessionKey", "ai-term"},
                                        {"message", "and then"},
                                        {"idempotencyKey", "ai-term-2"}});
  ChatRun run2 = await_run(*c2, ack2.value("runId", ""), 10s);
  ASSERT_EQ(run2.state(), "final") << run2.terminal.dump() << gw->log();
  const auto reqs = fake.requests();
  ASSERT_EQ(reqs.size(), 2u) << "the finished turn was run again after the stop";
  EXPECT_TRUE(has_message(reqs[1].body["messages"], "assistant", "one two three"))
      << reqs[1].body.dump(2);
}

TEST_F(OpenAiAgentTest, ARestartWhoseBudgetEndsMidStreamMarksTheReplyInterrupted) {
  json cfg = lifecycle::restartable(openai_config(fake));
  cfg["gateway"]["reload"]["deferralTimeoutMs"] = 500;
  make(cfg);
  gw->start();
  fake.push(Script::stall_after_deltas({"Step one", " is done"}));
  auto c = gw->client();
  json ack = c->request("chat.send", {{"sessionKey", "ai-usr1"},
                                      {"message", "do the steps"},
                                      {"idempotencyKey", "ai-usr1-1"}});
  const std::string run_id = ack.value("runId", "");
  ASSERT_TRUE(await_accumulated(*c, run_id, "Step one is done", 10s)) << gw->log();
  gw->signal(SIGUSR1);
  ChatRun run = await_run(*c, run_id, 10s);
  EXPECT_EQ(run.state(), "aborted") << run.terminal.dump() << gw->log();
  EXPECT_TRUE(fake.wait_for([&] { return fake.streams_cancelled_by_client() == 1; }, 5s));
  c.reset();
  ASSERT_TRUE(lifecycle::wait_generation(*gw, 2)) << gw->log();

  auto c2 = gw->client();
  const json history = c2->request("chat.history", {{"sessionKey", "ai-usr1"}});
  const auto cut = entries_of_run(history["messages"], "assistant", run_id);
  ASSERT_EQ(cut.size(), 1u) << history.dump(2);
  EXPECT_EQ(entry_text(cut[0]), "Step one is done") << history.dump(2);
  EXPECT_EQ(cut[0].value("stopReason", ""), "aborted") << history.dump(2);

  fake.push(Script::stream_reply({"Step two."}));
  json ack2 = c2->request("chat.send", {{"sessionKey", "ai-usr1"},
                                        {"message", "continue"},
                                        {"idempotencyKey", "ai-usr1-2"}});
  ChatRun run2 = await_run(*c2, ack2.value("runId", ""), 10s);
  ASSERT_EQ(run2.state(), "final") << run2.terminal.dump() << gw->log();
  const auto reqs = fake.requests();
  ASSERT_EQ(reqs.size(), 2u) << "the aborted turn is not run again";
  const json& messages = reqs[1].body["messages"];
  EXPECT_TRUE(has_message(messages, "assistant",
                          "Step one is done\n\n[interrupted: this reply was cut short]"))
      << messages.dump(2);
  // The pipeline's note, as a user message (request_body: no system message mid-conversation).
  bool told = false;
  for (const auto& m : messages) {
    told |= m.value("content", "").find("interrupted by a gateway restart") != std::string::npos;
  }
  EXPECT_TRUE(told) << messages.dump(2);
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
