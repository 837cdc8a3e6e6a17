#include "core/restart_scheduler.h"

#include <gtest/gtest.h>

#include <vector>

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
  EXPECT_FALSE(s.on_timer(at(5s), r.cycle).begin);
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

TEST(RestartScheduler, ForceLeavesTheDrainNoBudget) {
  RestartScheduler s;
  auto req = restart("operator --force");
  req.force = true;
  s.request(req, at(0s));
  const auto r = s.on_timer(at(2s), 1);
  ASSERT_TRUE(r.begin);
  EXPECT_EQ(r.begin->at, at(2s));
  EXPECT_TRUE(r.begin->force);
  EXPECT_EQ(r.begin->drain_budget, Duration(0));
}

// The budget the restart leaves its drain: the intent's wait over the configured timeout,
// where zero means no limit.
TEST(RestartScheduler, IntentWaitAndZeroTimeoutSetTheDrainBudget) {
  RestartScheduler s;
  auto req = restart("rpc");
  req.wait = 20s;
  s.request(req, at(0s));
  const auto r = s.on_timer(at(2s), 1);
  ASSERT_TRUE(r.begin);
  EXPECT_EQ(r.begin->drain_budget, Duration(20'000));

  RestartScheduler unlimited({.deferral_timeout = Duration(0)});
  unlimited.request(restart("sigusr1"), at(0s));
  const auto u = unlimited.on_timer(at(2s), 1);
  ASSERT_TRUE(u.begin);
  EXPECT_EQ(u.begin->drain_budget, std::nullopt);
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
