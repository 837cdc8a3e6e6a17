#include "core/restart_scheduler.h"

#include <gtest/gtest.h>

#include <functional>
#include <vector>

#include "core/manual_executor.h"
#include "core/work_tracker.h"

namespace drawbridge::core {
namespace {

using namespace std::chrono_literals;

TimePoint at(Duration d) {
  return TimePoint{} + d;
}

RestartRequest restart(std::string reason) {
  RestartRequest r;
  r.reason = std::move(reason);
  return r;
}

TEST(RestartScheduler, DefaultDelayIsTwoSeconds) {
  RestartScheduler s;
  const auto r = s.request(restart("sigusr1"), at(1s));
  EXPECT_EQ(r.status, ScheduleStatus::scheduled);
  EXPECT_EQ(r.deadline, at(3s));
  EXPECT_EQ(r.cycle, 1u);
  EXPECT_EQ(s.next_deadline(), at(3s));

  EXPECT_FALSE(s.on_timer(at(2999ms), r.cycle).begin);
  const auto fired = s.on_timer(at(3s), r.cycle);
  ASSERT_TRUE(fired.begin);
  EXPECT_EQ(fired.begin->at, at(3s));
  EXPECT_EQ(fired.begin->reason, "sigusr1");
  EXPECT_EQ(fired.begin->cycle, 1u);
  EXPECT_FALSE(fired.begin->timed_out);
  EXPECT_EQ(fired.begin->drain_budget, Duration(300'000));
  EXPECT_EQ(s.state(), RestartScheduler::State::restarting);
  EXPECT_EQ(s.next_deadline(), std::nullopt);
}

TEST(RestartScheduler, DelayIsClampedBetweenZeroAndSixtySeconds) {
  auto deadline_for = [](Duration delay) {
    RestartScheduler s;
    auto req = restart("rpc");
    req.delay = delay;
    return s.request(req, at(10s)).deadline;
  };
  EXPECT_EQ(deadline_for(120s), at(70s));
  EXPECT_EQ(deadline_for(60s), at(70s));
  EXPECT_EQ(deadline_for(-5s), at(10s));
  EXPECT_EQ(deadline_for(0s), at(10s));
  EXPECT_EQ(deadline_for(500ms), at(10500ms));
}

TEST(RestartScheduler, SecondRequestCoalescesIntoOneRestart) {
  RestartScheduler s;
  auto slow = restart("config changed");
  slow.delay = 10s;
  const auto first = s.request(slow, at(0s));
  auto urgent = restart("operator");
  urgent.force = true;
  const auto second = s.request(urgent, at(1s));

  EXPECT_EQ(second.status, ScheduleStatus::coalesced);
  EXPECT_EQ(second.cycle, first.cycle);
  // The earliest deadline wins.
  EXPECT_EQ(second.deadline, at(3s));
  auto late = restart("later");
  late.delay = 30s;
  EXPECT_EQ(s.request(late, at(2s)).deadline, at(3s));

  // The runtime armed a timer for each answer; only one restart comes out of them.
  std::vector<RestartAction> begun;
  for (auto t : {at(3s), at(10s), at(32s)}) {
    if (auto r = s.on_timer(t, first.cycle); r.begin) begun.push_back(*r.begin);
  }
  ASSERT_EQ(begun.size(), 1u);
  EXPECT_EQ(begun[0].at, at(3s));
  EXPECT_EQ(begun[0].requests, 3u);
  EXPECT_TRUE(begun[0].force);  // force is OR-ed
  EXPECT_EQ(begun[0].reason, "config changed");
}

TEST(RestartScheduler, UpdateReasonWinsOverPlainRestart) {
  RestartScheduler s;
  auto cfg = restart("config changed");
  cfg.source = RestartSource::config;
  s.request(cfg, at(0s));
  auto upd = restart("update to 0.2.0");
  upd.kind = RestartKind::update;
  upd.source = RestartSource::rpc;
  s.request(upd, at(100ms));
  s.request(restart("sigusr1"), at(200ms));

  const auto r = s.on_timer(at(2s), 1);
  ASSERT_TRUE(r.begin);
  EXPECT_EQ(r.begin->kind, RestartKind::update);
  EXPECT_EQ(r.begin->reason, "update to 0.2.0");
  EXPECT_EQ(r.begin->source, RestartSource::rpc);
}

TEST(RestartScheduler, RequestDuringCooldownIsScheduledAtCooldownEnd) {
  RestartScheduler s;
  s.request(restart("first"), at(0s));
  ASSERT_TRUE(s.on_timer(at(2s), 1).begin);  // began at 2 s
  s.on_restart_finished();

  const auto r = s.request(restart("second"), at(10s));
  EXPECT_EQ(r.status, ScheduleStatus::scheduled);
  EXPECT_EQ(r.deadline, at(32s));
  EXPECT_EQ(r.note, "cooldown");
  EXPECT_FALSE(s.on_timer(at(12s), r.cycle).begin);
  const auto fired = s.on_timer(at(32s), r.cycle);
  ASSERT_TRUE(fired.begin);
  EXPECT_EQ(fired.begin->reason, "second");
  s.on_restart_finished();

  // Once the cooldown is over the normal delay applies again.
  const auto third = s.request(restart("third"), at(70s));
  EXPECT_EQ(third.deadline, at(72s));
  EXPECT_EQ(third.note, "");
}

TEST(RestartScheduler, RequestWhileRestartingIsIgnored) {
  RestartScheduler s;
  s.request(restart("first"), at(0s));
  ASSERT_TRUE(s.on_timer(at(2s), 1).begin);

  const auto r = s.request(restart("second sigusr1"), at(3s));
  EXPECT_EQ(r.status, ScheduleStatus::ignored);
  EXPECT_EQ(r.note, "already restarting");
  EXPECT_EQ(s.next_wakeup(), std::nullopt);
  // Nor can the config watcher begin a second teardown.
  EXPECT_EQ(s.consume_cycle(at(3s)), std::nullopt);
  EXPECT_FALSE(s.on_timer(at(5s), r.cycle).begin);
}

TEST(RestartScheduler, ConsumedCycleMakesTheStaleTimerANoOp) {
  RestartScheduler s;
  const auto first = s.request(restart("config changed"), at(0s));
  EXPECT_EQ(first.cycle, 1u);
  // The config watcher restarts on its own before the timer fires.
  EXPECT_EQ(s.consume_cycle(at(1s)), 1u);
  EXPECT_EQ(s.state(), RestartScheduler::State::restarting);
  s.on_restart_finished();
  const auto second = s.request(restart("sigusr1"), at(5s));
  EXPECT_EQ(second.cycle, 2u);
  EXPECT_EQ(second.deadline, at(31s));

  EXPECT_FALSE(s.on_timer(at(2s), first.cycle).begin);
  EXPECT_FALSE(s.on_timer(at(31s), first.cycle).begin);
  EXPECT_EQ(s.state(), RestartScheduler::State::scheduled);
  const auto fired = s.on_timer(at(31s), second.cycle);
  ASSERT_TRUE(fired.begin);
  EXPECT_EQ(fired.begin->cycle, 2u);
  EXPECT_EQ(fired.begin->reason, "sigusr1");
}

TEST(RestartScheduler, HotReloadCancelsTheScheduledRestart) {
  RestartScheduler s;
  const auto r = s.request(restart("config changed"), at(0s));
  EXPECT_TRUE(s.cancel("hot reload applied"));
  EXPECT_EQ(s.last_cancel_reason(), "hot reload applied");
  EXPECT_EQ(s.state(), RestartScheduler::State::idle);
  EXPECT_EQ(s.next_wakeup(), std::nullopt);
  EXPECT_FALSE(s.on_timer(at(2s), r.cycle).begin);
  EXPECT_FALSE(s.cancel("again"));

  // No restart began, so no cooldown; the old timer stays stale for the new request.
  const auto next = s.request(restart("sigusr1"), at(500ms));
  EXPECT_EQ(next.status, ScheduleStatus::scheduled);
  EXPECT_EQ(next.deadline, at(2500ms));
  EXPECT_NE(next.cycle, r.cycle);
  EXPECT_FALSE(s.on_timer(at(2500ms), r.cycle).begin);
  EXPECT_TRUE(s.on_timer(at(2500ms), next.cycle).begin);
}

TEST(RestartScheduler, CancelDoesNotStopARestartUnderWay) {
  RestartScheduler s;
  s.request(restart("x"), at(0s));
  ASSERT_TRUE(s.on_timer(at(2s), 1).begin);
  EXPECT_FALSE(s.cancel("hot reload applied"));
  EXPECT_EQ(s.state(), RestartScheduler::State::restarting);
}

TEST(RestartScheduler, IdleAndBusyBeforeTheDeadlineChangeNothing) {
  RestartScheduler s;
  s.request(restart("x"), at(0s));
  s.on_work_busy();
  EXPECT_FALSE(s.on_work_idle(at(1s)));
  EXPECT_EQ(s.state(), RestartScheduler::State::scheduled);
  const auto r = s.on_timer(at(2s), 1);
  ASSERT_TRUE(r.begin);
  EXPECT_EQ(r.begin->at, at(2s));
}

// The runtime's wiring, in simulated time: one timer at next_wakeup(), the work tracker's
// idle event, no polling.
TEST(RestartScheduler, DeferredRestartBeginsExactlyAtTheIdleEvent) {
  ManualClock clock;
  ManualExecutor ex(clock);
  WorkTracker work;
  RestartScheduler s;
  std::vector<RestartAction> begun;
  int deferred = 0;

  std::function<void()> arm = [&] {
    if (auto w = s.next_wakeup()) {
      ex.schedule(std::chrono::duration_cast<Duration>(w->at - clock.now()), [&, c = w->cycle] {
        auto r = s.on_timer(clock.now(), c);
        if (r.begin) begun.push_back(*r.begin);
        if (r.deferred) {
          ++deferred;
          work.when_idle([&] {
            if (auto a = s.on_work_idle(clock.now())) begun.push_back(*a);
          });
          arm();
        }
      });
    }
  };

  const TimePoint start = clock.now();
  work.begin(WorkKind::delivery);
  s.on_work_busy();
  const auto r = s.request(restart("sigusr1"), clock.now());
  EXPECT_EQ(r.status, ScheduleStatus::scheduled);
  arm();

  ex.advance(2s);
  EXPECT_EQ(deferred, 1);
  EXPECT_EQ(s.state(), RestartScheduler::State::deferred);
  EXPECT_EQ(s.next_deadline(), start + 302s);
  EXPECT_EQ(s.request(restart("again"), clock.now()).status, ScheduleStatus::deferred);

  ex.advance(5300ms);
  EXPECT_TRUE(begun.empty());
  work.end(WorkKind::delivery);  // the last reply is delivered at 7.3 s
  ASSERT_EQ(begun.size(), 1u);
  EXPECT_EQ(begun[0].at, start + 7300ms);
  EXPECT_FALSE(begun[0].timed_out);
  EXPECT_EQ(begun[0].requests, 2u);
  // The drain gets what the deferral left of the 300 s budget.
  EXPECT_EQ(begun[0].drain_budget, Duration(300'000 - 5'300));

  // The deferral timer armed for that cycle fires later and does nothing.
  ex.advance(400s);
  EXPECT_EQ(begun.size(), 1u);
}

TEST(RestartScheduler, DeferralTimeoutBeginsWithTimedOut) {
  RestartScheduler s;
  s.on_work_busy();
  s.request(restart("sigusr1"), at(0s));
  const auto d = s.on_timer(at(2s), 1);
  EXPECT_TRUE(d.deferred);
  EXPECT_FALSE(d.begin);
  EXPECT_EQ(s.next_deadline(), at(302s));

  EXPECT_FALSE(s.on_timer(at(301999ms), 1).begin);
  const auto r = s.on_timer(at(302s), 1);
  ASSERT_TRUE(r.begin);
  EXPECT_TRUE(r.begin->timed_out);
  EXPECT_EQ(r.begin->at, at(302s));
  EXPECT_EQ(r.begin->drain_budget, Duration(0));
  // Work that goes idle afterwards does not begin a second restart.
  EXPECT_FALSE(s.on_work_idle(at(303s)));
}

TEST(RestartScheduler, IntentWaitOverridesTheDeferralBudget) {
  RestartScheduler s;
  s.on_work_busy();
  auto req = restart("rpc");
  req.wait = 20s;
  s.request(req, at(0s));
  EXPECT_TRUE(s.on_timer(at(2s), 1).deferred);
  EXPECT_EQ(s.next_deadline(), at(22s));
  const auto r = s.on_timer(at(22s), 1);
  ASSERT_TRUE(r.begin);
  EXPECT_TRUE(r.begin->timed_out);
}

TEST(RestartScheduler, ZeroDeferralTimeoutWaitsWithoutLimit) {
  RestartScheduler s({.deferral_timeout = Duration(0)});
  s.on_work_busy();
  s.request(restart("sigusr1"), at(0s));
  EXPECT_TRUE(s.on_timer(at(2s), 1).deferred);
  EXPECT_EQ(s.next_wakeup(), std::nullopt);
  EXPECT_FALSE(s.on_timer(at(10h), 1).begin);
  const auto a = s.on_work_idle(at(10h + 1s));
  ASSERT_TRUE(a);
  EXPECT_EQ(a->at, at(10h + 1s));
  EXPECT_FALSE(a->timed_out);
  EXPECT_EQ(a->drain_budget, std::nullopt);
}

TEST(RestartScheduler, ForceSkipsWaitingForWork) {
  RestartScheduler s;
  s.on_work_busy();
  auto req = restart("operator --force");
  req.force = true;
  s.request(req, at(0s));
  const auto r = s.on_timer(at(2s), 1);
  EXPECT_FALSE(r.deferred);
  ASSERT_TRUE(r.begin);
  EXPECT_EQ(r.begin->at, at(2s));
  EXPECT_TRUE(r.begin->force);
  EXPECT_FALSE(r.begin->timed_out);
  EXPECT_EQ(r.begin->drain_budget, Duration(0));
}

TEST(RestartScheduler, ForceMergedIntoADeferredRestartBeginsAtOnce) {
  RestartScheduler s;
  s.on_work_busy();
  s.request(restart("sigusr1"), at(0s));
  ASSERT_TRUE(s.on_timer(at(2s), 1).deferred);
  auto force = restart("operator --force");
  force.force = true;
  EXPECT_EQ(s.request(force, at(10s)).status, ScheduleStatus::deferred);
  // The deferral has no time left: the runtime arms its timer for now.
  EXPECT_EQ(s.next_deadline(), at(2s));
  const auto r = s.on_timer(at(10s), 1);
  ASSERT_TRUE(r.begin);
  EXPECT_EQ(r.begin->at, at(10s));
  EXPECT_TRUE(r.begin->force);
}

TEST(RestartScheduler, DeferralBudgetPrecedence) {
  EXPECT_EQ(deferral_budget(300s, std::nullopt, false), Duration(300'000));
  EXPECT_EQ(deferral_budget(0s, std::nullopt, false), std::nullopt);
  EXPECT_EQ(deferral_budget(300s, 20s, false), Duration(20'000));
  EXPECT_EQ(deferral_budget(0s, 20s, false), Duration(20'000));
  EXPECT_EQ(deferral_budget(300s, 0s, false), Duration(0));
  EXPECT_EQ(deferral_budget(300s, 20s, true), Duration(0));
  EXPECT_EQ(deferral_budget(0s, std::nullopt, true), Duration(0));
}

}  // namespace
}  // namespace drawbridge::core
