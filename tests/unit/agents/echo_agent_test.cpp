#include "agents/echo_agent.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "core/manual_executor.h"

namespace drawbridge::agents {
namespace {

using namespace std::chrono_literals;
using Kind = pipeline::TurnOutcome::Kind;

// The echo agent in simulated time: its delay is a timer of the injected executor.
class EchoAgentTest : public ::testing::Test {
 protected:
  std::unique_ptr<pipeline::Turn> start(EchoSettings settings, std::string text = "hi") {
    agent_ = std::make_unique<EchoAgent>(executor_, std::move(settings));
    pipeline::TurnRequest request;
    request.text = std::move(text);
    return agent_->start(std::move(request),
                         {[this](std::string_view d) { deltas_.emplace_back(d); },
                          [this](pipeline::TurnOutcome o) { outcomes_.push_back(std::move(o)); }});
  }

  core::ManualClock clock_;
  core::ManualExecutor executor_{clock_};
  std::unique_ptr<EchoAgent> agent_;
  std::vector<std::string> deltas_;
  std::vector<pipeline::TurnOutcome> outcomes_;
};

TEST_F(EchoAgentTest, DelayEndsTheTurnExactlyAtItsDeadline) {
  auto turn = start({.delay_ms = 1500, .prefix = "echo: "});
  executor_.advance(1499ms);
  EXPECT_TRUE(outcomes_.empty()) << "replied before its delay";
  executor_.advance(1ms);
  ASSERT_EQ(outcomes_.size(), 1u);
  EXPECT_EQ(outcomes_[0].kind, Kind::completed);
  EXPECT_EQ(outcomes_[0].text, "echo: hi");
}

TEST_F(EchoAgentTest, WithoutDelayTheReplyComesOnTheNextTurnOfTheLoop) {
  auto turn = start({});
  EXPECT_TRUE(outcomes_.empty()) << "start() must not call back from inside itself";
  executor_.run_ready();
  ASSERT_EQ(outcomes_.size(), 1u);
  EXPECT_EQ(outcomes_[0].text, "hi");
  EXPECT_TRUE(deltas_.empty()) << "without chunking the reply comes whole";
}

TEST_F(EchoAgentTest, ChunksStreamAsDeltasBeforeTheReply) {
  auto turn = start({.delay_ms = 10, .chunk_chars = 2}, "hello");
  executor_.advance(10ms);
  EXPECT_EQ(deltas_, (std::vector<std::string>{"he", "ll", "o"}));
  ASSERT_EQ(outcomes_.size(), 1u);
  EXPECT_EQ(outcomes_[0].text, "hello");
}

TEST_F(EchoAgentTest, CancelAbortsOnceAndTheDelayNeverFires) {
  auto turn = start({.delay_ms = 1000});
  executor_.advance(400ms);
  turn->cancel();
  turn->cancel();
  EXPECT_EQ(executor_.pending_timers(), 0u);
  executor_.advance(2s);
  ASSERT_EQ(outcomes_.size(), 1u);
  EXPECT_EQ(outcomes_[0].kind, Kind::aborted);
}

TEST_F(EchoAgentTest, DestroyingTheTurnCancelsItsTimerWithoutCallingBack) {
  auto turn = start({.delay_ms = 1000});
  turn.reset();
  EXPECT_EQ(executor_.pending_timers(), 0u);
  executor_.advance(2s);
  EXPECT_TRUE(outcomes_.empty());
}

}  // namespace
}  // namespace drawbridge::agents
