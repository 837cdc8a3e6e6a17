#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "agents/openai/openai_agent.h"
#include "core/manual_executor.h"
#include "unit/agents/openai/scripted_transport.h"

namespace drawbridge::agents::openai {
namespace {

using namespace std::chrono_literals;
using Kind = pipeline::TurnOutcome::Kind;
using nlohmann::json;

// A turn against a scripted endpoint, in simulated time: every timeout, backoff and
// Retry-After is a timer of the injected executor.
class OpenAiTurnTest : public ::testing::Test {
 protected:
  OpenAiSettings settings() {
    OpenAiSettings s;
    s.agent_id = "main";
    s.model = "m";
    s.api_key = "sk-test-key-123456";
    s.connect_timeout = 1s;
    s.first_token_timeout = 10s;
    s.idle_timeout = 5s;
    s.total_timeout = 60s;
    s.max_retries = 3;
    s.retry_base = 500ms;
    return s;
  }
  void start(OpenAiSettings s, std::string text = "hi") {
    agent_ = std::make_unique<OpenAiAgent>(transport_, executor_, clock_, std::move(s),
                                           [this] { return jitter_; });
    pipeline::TurnRequest request;
    request.text = std::move(text);
    turn_ = agent_->start(std::move(request),
                          {[this](std::string_view d) { deltas_.emplace_back(d); },
                           [this](pipeline::TurnOutcome o) { outcomes_.push_back(std::move(o)); }});
    executor_.run_ready();
  }
  ScriptedTransport& t() { return *transport_; }
  std::string text() const {
    std::string all;
    for (const auto& d : deltas_) all += d;
    return all;
  }

  core::ManualClock clock_;
  core::ManualExecutor executor_{clock_};
  std::shared_ptr<ScriptedTransport> transport_ = std::make_shared<ScriptedTransport>();
  double jitter_ = 0;
  std::unique_ptr<OpenAiAgent> agent_;
  std::unique_ptr<pipeline::Turn> turn_;
  std::vector<std::string> deltas_;
  std::vector<pipeline::TurnOutcome> outcomes_;
};

TEST_F(OpenAiTurnTest, AStreamIsForwardedDeltaByDeltaAndCompletesAtDone) {
  start(settings());
  ASSERT_EQ(t().sent.size(), 1u);
  const json body = json::parse(t().last().request.body);
  EXPECT_EQ(body["model"], "m");
  EXPECT_EQ(body["stream"], true);
  EXPECT_EQ(body["messages"].back()["content"], "hi");
  t().head(200);
  t().body(ScriptedTransport::chunk("Hel"));
  EXPECT_EQ(deltas_, std::vector<std::string>{"Hel"});
  t().body(ScriptedTransport::chunk("lo") + ScriptedTransport::chunk("", "stop"));
  t().body("data: [DONE]\n\n");
  EXPECT_TRUE(outcomes_.empty()) << "ended before the body did";
  t().end();
  ASSERT_EQ(outcomes_.size(), 1u);
  EXPECT_EQ(outcomes_[0].kind, Kind::completed);
  EXPECT_EQ(outcomes_[0].text, "Hello");
  EXPECT_EQ(text(), "Hello");
}

TEST_F(OpenAiTurnTest, BytesCutInsideAnEventAndInsideAUtf8CharacterMakeTheSameReply) {
  start(settings());
  t().head(200);
  const std::string all = ScriptedTransport::chunk("h\xC3\xA9llo \xE2\x82\xAC") +
                          ScriptedTransport::chunk("", "stop") + "data: [DONE]\r\n\r\n";
  for (char c : all) t().body(std::string(1, c));  // one byte at a time
  t().end();
  ASSERT_EQ(outcomes_.size(), 1u);
  EXPECT_EQ(outcomes_[0].kind, Kind::completed);
  EXPECT_EQ(outcomes_[0].text, "h\xC3\xA9llo \xE2\x82\xAC");
}

TEST_F(OpenAiTurnTest, A429IsRetriedAfterItsRetryAfterAndNotBefore) {
  start(settings());
  t().head(429, {{"retry-after", "7"}});
  t().body(
      R"({"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}})");
  t().end();
  EXPECT_EQ(t().sent.size(), 1u);
  executor_.advance(6999ms);
  EXPECT_EQ(t().sent.size(), 1u) << "retried before Retry-After";
  executor_.advance(1ms);
  ASSERT_EQ(t().sent.size(), 2u);
  t().head(200);
  t().body(ScriptedTransport::chunk("ok", "stop"));
  t().end();
  ASSERT_EQ(outcomes_.size(), 1u);
  EXPECT_EQ(outcomes_[0].kind, Kind::completed);
  EXPECT_EQ(outcomes_[0].text, "ok");
}

TEST_F(OpenAiTurnTest, FiveHundredsBackOffExponentiallyWithJitterThenFailSayingWhat) {
  jitter_ = 1.0;  // the most jitter: 25% on top
  start(settings());
  const std::vector<std::chrono::milliseconds> waits = {625ms, 1250ms, 2500ms};
  for (std::size_t i = 0; i < 4; ++i) {
    ASSERT_EQ(t().sent.size(), i + 1);
    t().head(503);
    t().body(
        R"({"error":{"message":"The server is overloaded","type":"server_error","code":null}})");
    t().end();
    if (i == 3) break;
    executor_.advance(waits[i] - 1ms);
    EXPECT_EQ(t().sent.size(), i + 1) << "attempt " << i + 2 << " came early";
    executor_.advance(1ms);
  }
  ASSERT_EQ(outcomes_.size(), 1u);
  EXPECT_EQ(outcomes_[0].kind, Kind::failed);
  EXPECT_EQ(outcomes_[0].error,
            "the model endpoint returned 503: The server is overloaded (server_error) (after 4 "
            "attempts)");
}

TEST_F(OpenAiTurnTest, A401IsNotRetriedAndNamesTheKeyToCheckWithoutShowingIt) {
  start(settings());
  t().head(401);
  t().body(
      R"({"error":{"message":"Incorrect API key provided: sk-test-key-123456.","type":"invalid_request_error","code":"invalid_api_key"}})");
  t().end();
  ASSERT_EQ(outcomes_.size(), 1u);
  EXPECT_EQ(outcomes_[0].kind, Kind::failed);
  EXPECT_EQ(t().sent.size(), 1u);
  EXPECT_EQ(outcomes_[0].error,
            "the model endpoint returned 401: Incorrect API key provided: ***. (invalid_api_key) "
            "- check agents.main.apiKeyEnv");
  EXPECT_EQ(agent_->stats().last_error, outcomes_[0].error);
}

TEST_F(OpenAiTurnTest, AStallBeforeTheFirstTokenFailsAtFirstTokenTimeout) {
  start(settings());
  t().head(200);  // headers, then nothing
  executor_.advance(4999ms);
  EXPECT_TRUE(outcomes_.empty());
  executor_.advance(1ms);  // the idle timeout (5 s) comes before the first-token one (10 s)
  ASSERT_EQ(outcomes_.size(), 1u);
  EXPECT_EQ(outcomes_[0].kind, Kind::failed);
  EXPECT_EQ(outcomes_[0].error,
            "the model endpoint answered, then sent nothing for agents.main.idleTimeoutMs "
            "(5000 ms)");
  EXPECT_TRUE(t().last().cancelled) << "the stalled request is not closed";
}

TEST_F(OpenAiTurnTest, NoHeadersAtAllFailsAtTheFirstTokenTimeout) {
  start(settings());
  executor_.advance(9999ms);
  EXPECT_TRUE(outcomes_.empty());
  executor_.advance(1ms);
  ASSERT_EQ(outcomes_.size(), 1u);
  EXPECT_EQ(outcomes_[0].error,
            "the model endpoint sent no reply within agents.main.firstTokenTimeoutMs (10000 ms)");
  EXPECT_TRUE(t().last().cancelled);
}

TEST_F(OpenAiTurnTest, AStreamThatGoesQuietMidReplyFailsWithTheReplySoFar) {
  start(settings());
  t().head(200);
  t().body(ScriptedTransport::chunk("The answer is"));
  executor_.advance(4s);
  t().body(": comment keeps it warm\n\n");  // any byte is life
  executor_.advance(4s);
  EXPECT_TRUE(outcomes_.empty());
  executor_.advance(1s);
  ASSERT_EQ(outcomes_.size(), 1u);
  EXPECT_EQ(outcomes_[0].kind, Kind::failed);
  EXPECT_EQ(outcomes_[0].text, "The answer is");
  EXPECT_EQ(outcomes_[0].error,
            "the model endpoint stopped sending mid-reply for agents.main.idleTimeoutMs (5000 ms)");
}

TEST_F(OpenAiTurnTest, AConnectionLostBeforeTheFirstTokenIsRetriedAfterItIsNot) {
  start(settings());
  t().end("connect: Connection refused");
  executor_.advance(500ms);
  ASSERT_EQ(t().sent.size(), 2u) << "a refused connection is tried again";
  t().head(200);
  t().body(ScriptedTransport::chunk("par"));
  t().end("answer: the connection was closed before the answer ended");
  ASSERT_EQ(outcomes_.size(), 1u);
  EXPECT_EQ(outcomes_[0].kind, Kind::failed);
  EXPECT_EQ(outcomes_[0].text, "par");
  EXPECT_EQ(t().sent.size(), 2u) << "retried after a token: the user would see it twice";
  EXPECT_EQ(outcomes_[0].error,
            "the connection to the model endpoint was lost mid-reply (answer: the connection was "
            "closed before the answer ended)");
}

TEST_F(OpenAiTurnTest, AStreamThatEndsWithoutFinishIsNotComplete) {
  start(settings());
  t().head(200);
  t().body(ScriptedTransport::chunk("half a sen"));
  t().end();  // the body ended cleanly, but no finish_reason and no [DONE]
  ASSERT_EQ(outcomes_.size(), 1u);
  EXPECT_EQ(outcomes_[0].kind, Kind::failed);
  EXPECT_EQ(outcomes_[0].text, "half a sen");
}

TEST_F(OpenAiTurnTest, ALengthFinishIsSaidNotPassedOffAsTheWholeAnswer) {
  start(settings());
  t().head(200);
  t().body(ScriptedTransport::chunk("one two", "length") + "data: [DONE]\n\n");
  t().end();
  ASSERT_EQ(outcomes_.size(), 1u);
  EXPECT_EQ(outcomes_[0].kind, Kind::completed);
  EXPECT_EQ(outcomes_[0].text, "one two\n\n[reply cut short: the model reached its token limit]");
  EXPECT_EQ(text(), outcomes_[0].text) << "the note is streamed too";
}

TEST_F(OpenAiTurnTest, CancelClosesTheStreamAndAbortsWithThePartialReplyOnce) {
  start(settings());
  t().head(200);
  t().body(ScriptedTransport::chunk("partial"));
  turn_->cancel();
  EXPECT_TRUE(t().last().cancelled);
  EXPECT_TRUE(outcomes_.empty()) << "on_done ran inside cancel()";
  executor_.run_ready();
  ASSERT_EQ(outcomes_.size(), 1u);
  EXPECT_EQ(outcomes_[0].kind, Kind::aborted);
  EXPECT_EQ(outcomes_[0].text, "partial");
  turn_->cancel();
  executor_.advance(120s);  // no timer of the turn is left to fire
  EXPECT_EQ(outcomes_.size(), 1u);
}

TEST_F(OpenAiTurnTest, CancelDuringABackoffSendsNothingMore) {
  start(settings());
  t().head(500);
  t().end();
  turn_->cancel();
  executor_.advance(60s);
  EXPECT_EQ(t().sent.size(), 1u);
  ASSERT_EQ(outcomes_.size(), 1u);
  EXPECT_EQ(outcomes_[0].kind, Kind::aborted);
}

TEST_F(OpenAiTurnTest, ARetryAfterBeyondTheTurnsTimeFailsAtOnceSayingSo) {
  start(settings());
  t().head(429, {{"retry-after", "120"}});
  t().end();
  ASSERT_EQ(outcomes_.size(), 1u);
  EXPECT_EQ(outcomes_[0].kind, Kind::failed);
  EXPECT_NE(outcomes_[0].error.find("would pass agents.main.timeoutMs"), std::string::npos)
      << outcomes_[0].error;
}

TEST_F(OpenAiTurnTest, TheTotalTimeoutEndsAStreamThatNeverStops) {
  auto s = settings();
  s.total_timeout = 20s;
  start(s);
  t().head(200);
  for (int i = 0; i < 19; ++i) {
    t().body(ScriptedTransport::chunk("x"));
    executor_.advance(1s);
  }
  EXPECT_TRUE(outcomes_.empty());
  executor_.advance(1s);
  ASSERT_EQ(outcomes_.size(), 1u);
  EXPECT_EQ(outcomes_[0].kind, Kind::failed);
  EXPECT_EQ(outcomes_[0].error, "the reply took longer than agents.main.timeoutMs (20000 ms)");
  EXPECT_EQ(outcomes_[0].text, std::string(19, 'x'));
}

TEST_F(OpenAiTurnTest, ANonStreamingAnswerIsOneDelta) {
  auto s = settings();
  s.stream = false;
  start(s);
  EXPECT_EQ(json::parse(t().last().request.body)["stream"], false);
  t().head(200, {{"content-type", "application/json"}});
  t().body(R"({"object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant",)");
  t().body(R"("content":"whole"},"finish_reason":"stop"}]})");
  t().end();
  ASSERT_EQ(outcomes_.size(), 1u);
  EXPECT_EQ(outcomes_[0].kind, Kind::completed);
  EXPECT_EQ(deltas_, std::vector<std::string>{"whole"});
}

TEST_F(OpenAiTurnTest, AnErrorEventMidStreamFailsTheTurn) {
  start(settings());
  t().head(200);
  t().body(ScriptedTransport::chunk("so far"));
  t().body("data: {\"error\":{\"message\":\"upstream died\",\"type\":\"server_error\"}}\n\n");
  ASSERT_EQ(outcomes_.size(), 1u);
  EXPECT_EQ(outcomes_[0].kind, Kind::failed);
  EXPECT_EQ(outcomes_[0].error, "the model endpoint reported an error mid-stream: upstream died");
  EXPECT_TRUE(t().last().cancelled);
}

TEST_F(OpenAiTurnTest, AReplyOverTheLimitFailsInsteadOfGrowingWithoutBound) {
  auto s = settings();
  s.max_reply_bytes = 64;
  start(s);
  t().head(200);
  for (int i = 0; i < 10 && outcomes_.empty(); ++i)
    t().body(ScriptedTransport::chunk("0123456789"));
  ASSERT_EQ(outcomes_.size(), 1u);
  EXPECT_EQ(outcomes_[0].kind, Kind::failed);
  EXPECT_LE(outcomes_[0].text.size(), 64u);
}

}  // namespace
}  // namespace drawbridge::agents::openai
