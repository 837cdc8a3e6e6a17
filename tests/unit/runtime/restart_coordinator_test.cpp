#include "runtime/restart_coordinator.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "core/clock.h"
#include "core/lifecycle.h"
#include "core/manual_executor.h"
#include "unit/runtime/fake_drain_target.h"

// Restart and stop requests in simulated time: the real coordinator, lifecycle and drain runner
// over a fake drain target; the hooks record what the root would do (the watchdog, systemd,
// the next generation, the exit).

namespace drawbridge::runtime {
namespace {

using namespace std::chrono_literals;
using fakes::FakeTarget;

bool has(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

struct Fixture {
  core::ManualClock clock;
  core::ManualExecutor executor{clock};
  core::Lifecycle lifecycle;
  FakeTarget target;
  DrainRunner drain{clock, executor, lifecycle, target};
  std::vector<std::string> log;  // what the root was asked to do
  std::vector<core::TimePoint> watchdog_armed;
  std::vector<std::string> detachable;  // runs the pipeline knows
  RestartCoordinator restarts{clock, executor, lifecycle, drain, options(), hooks()};

  Fixture() {
    lifecycle.generation_started({"127.0.0.1", 18789}, "h1");
    target.done.reset();
  }

  static core::RestartSchedulerOptions options() {
    core::RestartSchedulerOptions o;
    o.default_delay = 2s;
    o.cooldown = 0s;
    o.deferral_timeout = 300s;
    return o;
  }

  RestartCoordinator::Hooks hooks() {
    RestartCoordinator::Hooks h;
    h.detach_run = [this](const std::string& run) {
      log.push_back("detach " + run);
      return has(detachable, run);
    };
    h.arm_watchdog = [this](core::TimePoint at) { watchdog_armed.push_back(at); };
    h.restart_mode = [](bool fresh) {
      return fresh ? RestartMode::reexec : RestartMode::in_process;
    };
    h.notify_stopping = [this](const std::string& s) { log.push_back("STOPPING " + s); };
    h.notify_reloading = [this](const std::string& s) { log.push_back("RELOADING " + s); };
    h.describe_work = [] { return std::string("0 turn(s) running"); };
    h.close_and_exit = [this] { log.push_back("close_and_exit"); };
    h.finish_process = [this] { log.push_back("finish_process"); };
    h.start_next_generation = [this] { log.push_back("start_next_generation"); };
    return h;
  }

  void settle() { fakes::settle(executor, target); }
  bool draining() const { return has(target.calls, "set_draining"); }
};

core::RestartRequest restart(const std::string& reason,
                             std::optional<core::Duration> delay = std::nullopt) {
  core::RestartRequest r;
  r.reason = reason;
  r.delay = delay;
  return r;
}

TEST(RestartCoordinator, ARestartBeginsItsDrainExactlyWhenItsDelayEnds) {
  Fixture f;
  auto a = f.restarts.request(restart("operator"));
  EXPECT_EQ(a.status, "scheduled");
  EXPECT_EQ(a.due_in_ms, 2000);
  f.executor.advance(1999ms);
  EXPECT_FALSE(f.draining()) << "the drain began before the restart's delay ended";
  EXPECT_EQ(f.lifecycle.state(), core::LifecycleState::running);
  f.executor.advance(1ms);
  EXPECT_TRUE(f.draining());
  EXPECT_TRUE(has(f.log, "RELOADING restarting (operator)"));
  f.settle();
  ASSERT_TRUE(f.target.done);
  EXPECT_EQ(*f.target.done, core::AfterDrain::next_generation);
  // The restart's watchdog: its drain budget (300 s) plus the teardown's share.
  ASSERT_EQ(f.watchdog_armed.size(), 1u);
  EXPECT_GT(f.watchdog_armed[0], f.clock.now() + 300s);
}

TEST(RestartCoordinator, ASecondRequestJoinsTheScheduledRestart) {
  Fixture f;
  auto first = f.restarts.request(restart("one"));
  f.executor.advance(500ms);
  auto second = f.restarts.request(restart("two"));
  EXPECT_EQ(second.status, "coalesced");
  EXPECT_EQ(second.cycle, first.cycle);
  f.executor.advance(1499ms);
  EXPECT_FALSE(f.draining());
  f.executor.advance(1ms);
  EXPECT_TRUE(f.draining());
  EXPECT_EQ(std::count(f.target.calls.begin(), f.target.calls.end(), "set_draining"), 1);
}

TEST(RestartCoordinator, AStopWhileIdleDrainsAsAStopAndExits) {
  Fixture f;
  auto a = f.restarts.request_stop("");
  EXPECT_EQ(a.status, "stopping");
  EXPECT_TRUE(a.note.empty());
  EXPECT_FALSE(f.draining()) << "the stop runs after its answer, not inside it";
  f.executor.run_ready();
  EXPECT_TRUE(f.draining());
  EXPECT_TRUE(has(f.log, "STOPPING stopping (requested)"));
  f.settle();
  EXPECT_TRUE(f.target.closed_as_stop);
  ASSERT_TRUE(f.target.done);
  EXPECT_EQ(*f.target.done, core::AfterDrain::exit_process);
  EXPECT_EQ(f.restarts.request_stop("again").status, "already-stopping");
  EXPECT_EQ(f.restarts.request(restart("late")).status, "ignored");
}

TEST(RestartCoordinator, AStopDuringARestartDrainTakesItOverAndTheProcessExits) {
  Fixture f;
  f.target.running = {{"t1", "r1", "chat-1", "running", "echo turn"}};
  f.restarts.request(restart("operator", 0ms));
  f.executor.advance(0ms);
  ASSERT_TRUE(f.draining());
  EXPECT_EQ(f.lifecycle.state(), core::LifecycleState::draining);
  f.executor.advance(1s);
  f.restarts.stop("SIGTERM");
  EXPECT_TRUE(f.lifecycle.stop_pending());
  EXPECT_TRUE(has(f.log, "STOPPING stopping (SIGTERM)"));
  EXPECT_EQ(f.restarts.reason(), "SIGTERM (during operator)");
  // The stop's watchdog (25 s from now) is sooner than the restart's: armed again.
  ASSERT_EQ(f.watchdog_armed.size(), 2u);
  EXPECT_EQ(f.watchdog_armed[1], f.clock.now() + 25s);
  // The stop's turn budget (20 s) ends the stuck turn; the restart's (300 s) would not have.
  f.executor.advance(19'999ms);
  EXPECT_FALSE(has(f.target.calls, "interrupt_all") || has(f.target.calls, "abort_for_drain"));
  f.executor.advance(1ms);
  EXPECT_TRUE(has(f.target.calls, "interrupt_all") || has(f.target.calls, "abort_for_drain"));
  f.settle();
  ASSERT_TRUE(f.target.done);
  EXPECT_EQ(*f.target.done, core::AfterDrain::exit_process)
      << "the drain went on to the next generation: the stop was lost";
  EXPECT_FALSE(has(f.log, "start_next_generation"));
}

TEST(RestartCoordinator, AForcedRequestShortensTheRunningDrain) {
  Fixture f;
  f.target.running = {{"t1", "r1", "chat-1", "running", "slow turn"}};
  f.restarts.request(restart("first", 0ms));
  f.executor.advance(0ms);
  ASSERT_TRUE(f.draining());
  f.executor.advance(5s);
  EXPECT_FALSE(has(f.target.calls, "abort_for_drain"));
  auto r = restart("urgent");
  r.force = true;
  auto a = f.restarts.request(r);
  EXPECT_EQ(a.status, "shortened");
  EXPECT_FALSE(a.note.empty());
  f.executor.run_ready();
  EXPECT_TRUE(has(f.target.calls, "abort_for_drain"));
  // Not more urgent: ignored, with the reason.
  EXPECT_EQ(f.restarts.request(restart("later", 0ms)).status, "ignored");
}

TEST(RestartCoordinator, ARequestAfterAFailedStartRetriesAtOnce) {
  Fixture f;
  f.lifecycle.generation_starting();
  f.lifecycle.generation_failed();
  ASSERT_EQ(f.lifecycle.state(), core::LifecycleState::failed);
  auto a = f.restarts.request(restart("retry"));
  EXPECT_EQ(a.status, "scheduled");
  EXPECT_EQ(a.due_in_ms, 0);
  EXPECT_EQ(a.note, "retrying the failed start");
  EXPECT_FALSE(has(f.log, "start_next_generation"));
  f.executor.run_ready();
  EXPECT_TRUE(has(f.log, "start_next_generation"));
  EXPECT_FALSE(f.draining()) << "a failed generation has nothing to drain";
}

TEST(RestartCoordinator, AStopAfterAFailedStartClosesAndExits) {
  Fixture f;
  f.lifecycle.generation_starting();
  f.lifecycle.generation_failed();
  f.restarts.stop("SIGTERM");
  EXPECT_TRUE(has(f.log, "close_and_exit"));
  EXPECT_FALSE(f.draining());
}

TEST(RestartCoordinator, AHotReloadCancelsTheConfigRestartItMadeUnnecessary) {
  Fixture f;
  auto r = restart("config change");
  r.source = core::RestartSource::config;
  f.restarts.request(r);
  EXPECT_TRUE(f.restarts.cancel_config_restart());
  f.executor.advance(10s);
  EXPECT_FALSE(f.draining()) << "the cancelled restart still ran";
  // An operator's restart is not the hot reload's to cancel.
  f.restarts.request(restart("operator"));
  EXPECT_FALSE(f.restarts.cancel_config_restart());
  f.executor.advance(2s);
  EXPECT_TRUE(f.draining());
}

TEST(RestartCoordinator, TheTurnThatAskedIsNotWaitedFor) {
  Fixture f;
  f.detachable = {"run-7"};
  f.restarts.request(restart("from a turn"), "run-7");
  EXPECT_TRUE(has(f.log, "detach run-7"));
}

TEST(RestartCoordinator, AnUpdateToAMissingBinaryIsRefusedWithoutADrain) {
  Fixture f;
  auto a = f.restarts.request_update("/nonexistent/drawbridge-next", "");
  EXPECT_FALSE(a.ok);
  EXPECT_EQ(a.status, "refused");
  EXPECT_FALSE(a.note.empty());
  EXPECT_FALSE(a.cycle.has_value());
  f.executor.advance(10s);
  EXPECT_FALSE(f.draining());
}

TEST(RestartCoordinator, AnUpdateBeginsAReexecDrainAtOnce) {
  Fixture f;
  auto a = f.restarts.request_update("/bin/true", "");
  ASSERT_TRUE(a.ok) << a.note;
  EXPECT_EQ(a.due_in_ms, 0);
  f.executor.advance(0ms);
  EXPECT_TRUE(f.draining());
  EXPECT_EQ(f.restarts.mode(), RestartMode::reexec);
  EXPECT_TRUE(f.restarts.is_update());
  EXPECT_EQ(f.restarts.binary(), "/bin/true");
  f.settle();
  ASSERT_TRUE(f.target.done);
  EXPECT_EQ(*f.target.done, core::AfterDrain::hand_off);
}

}  // namespace
}  // namespace drawbridge::runtime
