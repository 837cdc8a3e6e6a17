#include "runtime/drain_runner.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include "core/clock.h"
#include "core/lifecycle.h"
#include "core/manual_executor.h"
#include "unit/runtime/fake_drain_target.h"

// The drain driver in simulated time: a fake target records what the drain asks of the
// pipeline, the channels and the server; the test finishes turns, deliveries and closes when
// it wants to, and moves the clock.

namespace drawbridge::runtime {
namespace {

using namespace std::chrono_literals;

using fakes::FakeTarget;

struct Fixture {
  core::ManualClock clock;
  core::ManualExecutor executor{clock};
  core::Lifecycle lifecycle;
  FakeTarget target;
  DrainRunner runner{clock, executor, lifecycle, target};

  Fixture() { lifecycle.generation_started({"127.0.0.1", 18789}, "h1"); }

  void settle() { fakes::settle(executor, target); }
  void restart(std::optional<core::Duration> budget = 300s) {
    runner.begin({core::DrainKind::restart, core::RestartPath::in_process, "test", budget,
                  clock.now() + 325s});
    executor.run_ready();
  }
};

TEST(DrainRunner, ARestartWithoutTurnsRunsToTheNextGeneration) {
  Fixture f;
  f.restart();
  f.settle();
  ASSERT_TRUE(f.target.done);
  EXPECT_EQ(*f.target.done, core::AfterDrain::next_generation);
  EXPECT_EQ(f.target.calls, (std::vector<std::string>{"set_draining", "stop_channels",
                                                      "close_server", "clean_marker"}));
  EXPECT_FALSE(f.runner.active());
  EXPECT_FALSE(f.runner.interrupted());
}

TEST(DrainRunner, WaitsForTheTurnThenTearsDown) {
  Fixture f;
  f.target.running = {{"t1", "r1", "chat-1", "running", "echo turn"}};
  f.restart();
  EXPECT_EQ(f.target.notices.size(), 1u);  // "will finish your reply first"
  f.executor.advance(10s);
  EXPECT_FALSE(f.target.done);
  EXPECT_TRUE(f.runner.status().is_object());
  EXPECT_EQ(f.runner.status()["waitingOn"][0].value("runId", ""), "r1");
  f.target.finish_turns();
  f.settle();
  ASSERT_TRUE(f.target.done);
  EXPECT_EQ(*f.target.done, core::AfterDrain::next_generation);
  ASSERT_TRUE(f.runner.after_last_reply_ms());
}

TEST(DrainRunner, TheBudgetAbortsAStuckTurnAndTellsItsChat) {
  Fixture f;
  f.target.running = {{"t1", "r1", "chat-1", "running", "exec turn"}};
  f.restart(60s);
  f.executor.advance(59'999ms);
  EXPECT_EQ(std::count(f.target.calls.begin(), f.target.calls.end(), "abort_for_drain"), 0);
  EXPECT_EQ(std::count(f.target.calls.begin(), f.target.calls.end(), "slow"), 1);  // at 30 s
  f.executor.advance(1ms);
  EXPECT_EQ(std::count(f.target.calls.begin(), f.target.calls.end(), "abort_for_drain"), 1);
  ASSERT_EQ(f.target.notices.size(), 2u);
  EXPECT_EQ(f.target.notices[1].second, core::DrainNotice::interrupted);
  f.settle();
  ASSERT_TRUE(f.target.done);
  EXPECT_TRUE(f.runner.interrupted());
  // No clean marker after aborted turns: the next start repairs them.
  EXPECT_EQ(std::count(f.target.calls.begin(), f.target.calls.end(), "clean_marker"), 0);
}

// Issue 17 (2.), at the runtime's level: the stop takes the restart's drain over.
TEST(DrainRunner, AStopDuringARestartDrainInterruptsAtTheStopBudgetAndExits) {
  Fixture f;
  f.target.running = {{"t1", "r1", "chat-1", "running", "exec turn"}};
  f.restart();
  f.executor.advance(1s);
  auto d = f.lifecycle.on_stop(f.clock.now(), {core::Duration{4'000}, core::Duration{3'200}});
  ASSERT_EQ(d.what, core::StopDecision::What::take_over_drain);
  ASSERT_TRUE(d.turns_end);
  f.runner.cut(*d.turns_end);
  f.executor.advance(3'199ms);
  EXPECT_EQ(std::count(f.target.calls.begin(), f.target.calls.end(), "interrupt_all"), 0);
  f.executor.advance(1ms);
  // A stop's abort: interrupted (re-run at the next start), not a restart's abort.
  EXPECT_EQ(std::count(f.target.calls.begin(), f.target.calls.end(), "interrupt_all"), 1);
  EXPECT_EQ(std::count(f.target.calls.begin(), f.target.calls.end(), "abort_for_drain"), 0);
  f.settle();
  EXPECT_TRUE(f.target.closed_as_stop);
  // The process ends: no channel keeps its connection for a next generation.
  EXPECT_EQ(f.target.kept_connections, std::optional<bool>(false));
  ASSERT_TRUE(f.target.done);
  EXPECT_EQ(*f.target.done, core::AfterDrain::exit_process);
  EXPECT_EQ(f.runner.status(), nullptr);
}

// A restart that goes on in this process or in a successor it starts lets channels keep their
// connections (an IRC connection outlives it); a supervised restart and a stop stop them all.
TEST(DrainRunner, ChannelsKeepTheirConnectionsOnlyWhenTheGatewayGoesOn) {
  const std::vector<std::pair<core::DrainKind, core::RestartPath>> cases = {
      {core::DrainKind::restart, core::RestartPath::in_process},
      {core::DrainKind::restart, core::RestartPath::reexec},
      {core::DrainKind::restart, core::RestartPath::supervised},
      {core::DrainKind::stop, core::RestartPath::in_process}};
  for (const auto& [kind, path] : cases) {
    Fixture f;
    f.runner.begin({kind, path, "test", 300s, f.clock.now() + 325s});
    f.settle();
    ASSERT_TRUE(f.target.kept_connections) << static_cast<int>(path);
    EXPECT_EQ(*f.target.kept_connections,
              kind == core::DrainKind::restart && path != core::RestartPath::supervised)
        << static_cast<int>(path);
  }
}

TEST(DrainRunner, ACutAfterTheTurnWaitChangesNothing) {
  Fixture f;
  f.restart();
  f.settle();
  ASSERT_TRUE(f.target.done);
  const auto calls = f.target.calls;
  f.runner.cut(f.clock.now());
  f.executor.advance(1s);
  EXPECT_EQ(f.target.calls, calls);
}

TEST(DrainRunner, ADestroyedRunnerLeavesNoTimerBehind) {
  core::ManualClock clock;
  core::ManualExecutor executor{clock};
  core::Lifecycle lifecycle;
  FakeTarget target;
  target.running = {{"t1", "r1", "chat-1", "running", "exec turn"}};
  {
    DrainRunner runner{clock, executor, lifecycle, target};
    runner.begin({core::DrainKind::restart, core::RestartPath::in_process, "x", 60s, {}});
    executor.run_ready();
    EXPECT_GT(executor.pending_timers(), 0u);
  }
  EXPECT_EQ(executor.pending_timers(), 0u);
  executor.advance(120s);  // nothing fires into the destroyed runner
  EXPECT_EQ(std::count(target.calls.begin(), target.calls.end(), "abort_for_drain"), 0);
}

}  // namespace
}  // namespace drawbridge::runtime
