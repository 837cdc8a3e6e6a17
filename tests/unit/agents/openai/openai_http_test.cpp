#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "agents/openai/beast_transport.h"
#include "agents/openai/openai_agent.h"
#include "core/clock.h"
#include "fakes/openai_fake.h"
#include "runtime/asio_executor.h"

namespace drawbridge::agents::openai {
namespace {

using namespace std::chrono_literals;
using Kind = pipeline::TurnOutcome::Kind;
using testing::OpenAiFake;
using Script = OpenAiFake::Script;

// The agent over real HTTP against the fake endpoint on 127.0.0.1: the wire format, keep-alive,
// and what the transport sees of a server that stalls, drops or refuses. (Timing and retry
// arithmetic are tested in simulated time in openai_turn_test.cpp.)
class OpenAiHttpTest : public ::testing::Test {
 protected:
  OpenAiSettings settings() {
    OpenAiSettings s;
    s.agent_id = "main";
    s.base_url = fake_.base_url();
    s.model = "fake-model";
    s.api_key = "sk-e2e-key-0001";
    s.first_token_timeout = 3s;
    s.idle_timeout = 3s;
    s.total_timeout = 10s;
    s.retry_base = 10ms;
    return s;
  }
  void SetUp() override { fake_.set_api_key("sk-e2e-key-0001"); }

  struct Run {
    std::vector<std::string> deltas;
    std::vector<pipeline::TurnOutcome> outcomes;
    std::unique_ptr<pipeline::Turn> turn;
    std::string text() const {
      std::string all;
      for (const auto& d : deltas) all += d;
      return all;
    }
  };
  std::unique_ptr<Run> start(const std::string& text = "hello") {
    auto r = std::make_unique<Run>();
    pipeline::TurnRequest req;
    req.text = text;
    auto* raw = r.get();
    r->turn = agent_->start(std::move(req),
                            {[raw](std::string_view d) { raw->deltas.emplace_back(d); },
                             [raw](pipeline::TurnOutcome o) { raw->outcomes.push_back(o); }});
    return r;
  }
  void make(OpenAiSettings s) {
    agent_ = std::make_unique<OpenAiAgent>(io_, executor_, clock_, std::move(s));
  }
  bool run_until(const std::function<bool()>& done, std::chrono::milliseconds limit = 8000ms) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    io_.restart();
    while (!done()) {
      const auto now = std::chrono::steady_clock::now();
      if (now >= deadline) return false;
      io_.run_one_for(std::min<std::chrono::steady_clock::duration>(deadline - now, 50ms));
    }
    return true;
  }

  OpenAiFake fake_;
  boost::asio::io_context io_;
  core::SystemClock clock_;
  runtime::AsioExecutor executor_{io_};
  std::unique_ptr<OpenAiAgent> agent_;
};

TEST_F(OpenAiHttpTest, TheDefaultStreamIsAnsweredAndTheConnectionReused) {
  make(settings());
  auto a = start("hello");
  ASSERT_TRUE(run_until([&] { return !a->outcomes.empty(); }));
  EXPECT_EQ(a->outcomes[0].kind, Kind::completed) << a->outcomes[0].error;
  EXPECT_EQ(a->outcomes[0].text, "echo: hello");
  EXPECT_EQ(a->deltas.size(), 3u) << "the fake sends three deltas; each is forwarded";
  auto b = start("again");
  ASSERT_TRUE(run_until([&] { return !b->outcomes.empty(); }));
  EXPECT_EQ(b->outcomes[0].text, "echo: again");
  EXPECT_EQ(fake_.connections_accepted(), 1u) << "keep-alive: the second turn reused it";
  const auto reqs = fake_.requests();
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_EQ(reqs[0].target, "/v1/chat/completions");
  EXPECT_EQ(reqs[0].headers.at("authorization"), "Bearer sk-e2e-key-0001");
  EXPECT_EQ(reqs[0].body["stream"], true);
  EXPECT_EQ(reqs[0].body["model"], "fake-model");
}

TEST_F(OpenAiHttpTest, PiecesOfThreeBytesCutUtf8AndEventsAndMakeTheSameReply) {
  make(settings());
  const std::string reply = "h\xC3\xA9llo w\xC3\xB6rld \xE2\x82\xAC \xF0\x9F\x98\x80";
  fake_.push(Script::stream_in_pieces(OpenAiFake::split(reply, 4), 3));
  auto a = start();
  ASSERT_TRUE(run_until([&] { return !a->outcomes.empty(); }));
  EXPECT_EQ(a->outcomes[0].kind, Kind::completed) << a->outcomes[0].error;
  EXPECT_EQ(a->outcomes[0].text, reply);
  EXPECT_EQ(a->text(), reply);
}

TEST_F(OpenAiHttpTest, A429WithRetryAfterThenSuccess) {
  make(settings());
  fake_.push(Script::error_reply(429, "Rate limit reached", "requests", "rate_limit_exceeded", 1));
  fake_.push(Script::stream_reply({"after ", "the wait"}));
  const auto t0 = std::chrono::steady_clock::now();
  auto a = start();
  ASSERT_TRUE(run_until([&] { return !a->outcomes.empty(); }));
  EXPECT_EQ(a->outcomes[0].kind, Kind::completed) << a->outcomes[0].error;
  EXPECT_EQ(a->outcomes[0].text, "after the wait");
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 1s) << "Retry-After: 1 was not honoured";
  EXPECT_EQ(fake_.requests().size(), 2u);
}

TEST_F(OpenAiHttpTest, A500ThenSuccess) {
  make(settings());
  fake_.push(Script::error_reply(500, "boom", "server_error", "server_error"));
  auto a = start("x");
  ASSERT_TRUE(run_until([&] { return !a->outcomes.empty(); }));
  EXPECT_EQ(a->outcomes[0].kind, Kind::completed) << a->outcomes[0].error;
  EXPECT_EQ(a->outcomes[0].text, "echo: x");
}

TEST_F(OpenAiHttpTest, AWrongKeyFailsAtOnceNamingTheSetting) {
  fake_.set_api_key("sk-the-right-one");
  make(settings());
  auto a = start();
  ASSERT_TRUE(run_until([&] { return !a->outcomes.empty(); }));
  EXPECT_EQ(a->outcomes[0].kind, Kind::failed);
  EXPECT_EQ(a->outcomes[0].error.rfind("the model endpoint returned 401: ", 0), 0u)
      << a->outcomes[0].error;
  EXPECT_NE(a->outcomes[0].error.find("check agents.main.apiKeyEnv"), std::string::npos);
  EXPECT_EQ(a->outcomes[0].error.find("sk-e2e-key-0001"), std::string::npos);
  EXPECT_EQ(fake_.requests().size(), 1u);
}

TEST_F(OpenAiHttpTest, AStallAfterTheHeadersIsCaughtAndTheConnectionClosed) {
  auto s = settings();
  s.idle_timeout = 300ms;
  make(s);
  fake_.push(Script::stall_after_headers());
  auto a = start();
  ASSERT_TRUE(run_until([&] { return !a->outcomes.empty(); }));
  EXPECT_EQ(a->outcomes[0].kind, Kind::failed);
  EXPECT_NE(a->outcomes[0].error.find("idleTimeoutMs"), std::string::npos) << a->outcomes[0].error;
  EXPECT_TRUE(fake_.wait_for([&] { return fake_.streams_cancelled_by_client() == 1; }, 3s))
      << "the stalled stream was not closed";
}

TEST_F(OpenAiHttpTest, AConnectionDroppedMidStreamFailsWithTheReplySoFar) {
  make(settings());
  fake_.push(Script::drop_after_deltas({"first ", "second"}));
  auto a = start();
  ASSERT_TRUE(run_until([&] { return !a->outcomes.empty(); }));
  EXPECT_EQ(a->outcomes[0].kind, Kind::failed);
  EXPECT_EQ(a->outcomes[0].text, "first second");
  EXPECT_NE(a->outcomes[0].error.find("lost mid-reply"), std::string::npos) << a->outcomes[0].error;
  EXPECT_EQ(fake_.requests().size(), 1u) << "retried after tokens were shown";
}

TEST_F(OpenAiHttpTest, CancelClosesTheStreamAtOnce) {
  make(settings());
  fake_.push(Script::slow_stream({"a", "b", "c", "d", "e", "f"}, 500ms));
  auto a = start();
  ASSERT_TRUE(run_until([&] { return !a->deltas.empty(); }));
  a->turn->cancel();
  ASSERT_TRUE(run_until([&] { return !a->outcomes.empty(); }));
  EXPECT_EQ(a->outcomes[0].kind, Kind::aborted);
  EXPECT_TRUE(fake_.wait_for([&] { return fake_.streams_cancelled_by_client() == 1; }, 3s));
}

TEST_F(OpenAiHttpTest, NobodyListeningIsRetriedThenSaidClearly) {
  auto s = settings();
  s.base_url = "http://127.0.0.1:1/v1";  // port 1: refused
  s.max_retries = 1;
  make(s);
  auto a = start();
  ASSERT_TRUE(run_until([&] { return !a->outcomes.empty(); }));
  EXPECT_EQ(a->outcomes[0].kind, Kind::failed);
  EXPECT_EQ(a->outcomes[0].error.rfind("cannot reach the model endpoint at http://127.0.0.1:1", 0),
            0u)
      << a->outcomes[0].error;
  EXPECT_NE(a->outcomes[0].error.find("(after 2 attempts)"), std::string::npos);
}

TEST_F(OpenAiHttpTest, ANonStreamingAnswer) {
  auto s = settings();
  s.stream = false;
  make(s);
  auto a = start("plain");
  ASSERT_TRUE(run_until([&] { return !a->outcomes.empty(); }));
  EXPECT_EQ(a->outcomes[0].kind, Kind::completed) << a->outcomes[0].error;
  EXPECT_EQ(a->outcomes[0].text, "echo: plain");
  EXPECT_EQ(a->deltas.size(), 1u);
}

TEST(BeastTransportUrl, OnlyHttpUrlsWithAHostAndAPort) {
  EXPECT_EQ(BeastTransport::check_url("https://api.openai.com/v1"), std::nullopt);
  EXPECT_EQ(BeastTransport::check_url("http://[::1]:8080/v1"), std::nullopt);
  EXPECT_NE(BeastTransport::check_url("ftp://x"), std::nullopt);
  EXPECT_NE(BeastTransport::check_url("http://"), std::nullopt);
  EXPECT_NE(BeastTransport::check_url("http://host:99999/v1"), std::nullopt);
  EXPECT_NE(BeastTransport::check_url("http://user@host/v1"), std::nullopt);
  EXPECT_NE(BeastTransport::check_url("http://host/v1 x"), std::nullopt);
}

}  // namespace
}  // namespace drawbridge::agents::openai
