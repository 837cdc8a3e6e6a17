#include "core/saturating.h"

#include <gtest/gtest.h>

#include <limits>

#include "core/drain_plan.h"
#include "core/restart_scheduler.h"
#include "core/shutdown_budget.h"

namespace drawbridge::core {
namespace {

using namespace std::chrono_literals;

// `gateway.restart.request {"waitMs": 9223372036854775807}`, as the runtime passes it on.
constexpr Duration kEnormous{std::numeric_limits<std::int64_t>::max()};

bool has(const DrainStep& step, DrainActionType type) {
  for (const auto& a : step.actions) {
    if (a.type == type) return true;
  }
  return false;
}

TEST(Saturating, SumsThatFitAreExact) {
  EXPECT_EQ(saturating_add(Duration(300'000), Duration(25'000)), Duration(325'000));
  EXPECT_EQ(saturating_add(TimePoint{} + 5s, Duration(2'000)), TimePoint{} + 7s);
  EXPECT_EQ(saturating_add(TimePoint{} + 5s, Duration(-2'000)), TimePoint{} + 3s);
}

TEST(Saturating, EnormousDurationsSaturateInsteadOfWrapping) {
  EXPECT_EQ(saturating_add(kEnormous, Duration(25'000)), Duration::max());
  EXPECT_EQ(saturating_add(TimePoint{} + 1h, kEnormous), TimePoint::max());
  EXPECT_EQ(saturating_add(TimePoint{} + 1h, kMaxWait), TimePoint::max());
  EXPECT_EQ(saturating_add(TimePoint::max() - 1s, Duration(2'000)), TimePoint::max());
  EXPECT_GT(saturating_add(TimePoint{} + 1h, kMaxWait - 2h), TimePoint{} + 1h);
}

TEST(ShutdownBudget, EnormousDrainBudgetIsAWatchdogThatNeverFiresNotANegativeOne) {
  // Once: `watchdog -9223372036854750809 ms`.
  const auto b = shutdown_budget(ShutdownKind::restart, kEnormous, std::nullopt);
  ASSERT_TRUE(b);
  EXPECT_EQ(*b, Duration::max());
  EXPECT_EQ(shutdown_budget(ShutdownKind::restart, kEnormous, Duration(90'000)), Duration(85'000));
}

// The whole path in simulated time: the restart begins with the enormous wait as its drain's
// budget, and the drain waits for the turn instead of aborting it at once.
TEST(Saturating, EnormousWaitMsWaitsForTheTurnInsteadOfAbortingIt) {
  RestartScheduler s;
  RestartRequest req;
  req.reason = "rpc";
  req.wait = kEnormous;
  req.delay = Duration(0);
  const TimePoint t0 = TimePoint{} + 10s;
  const auto r = s.request(req, t0);
  ASSERT_EQ(r.status, ScheduleStatus::scheduled);

  // The timer fires an hour late: the rest of the (enormous) budget goes to the drain.
  const auto fired = s.on_timer(t0 + 1h, r.cycle);
  ASSERT_TRUE(fired.begin);
  const auto& action = fired.begin;
  ASSERT_TRUE(action->drain_budget);
  EXPECT_GT(*action->drain_budget, 24h * 365 * 100)
      << "the budget wrapped: the drain would abort the turn at once";

  const auto watchdog = shutdown_budget(ShutdownKind::restart, action->drain_budget, std::nullopt);
  ASSERT_TRUE(watchdog);
  EXPECT_GT(*watchdog, Duration::zero());

  // A turn runs: the drain waits for it (logs, never aborts).
  DrainOptions o;
  o.turn_budget = action->drain_budget;
  DrainPlan plan(o);
  TimePoint now = t0 + 1h;
  auto step = plan.step({DrainEventType::start}, now);
  ASSERT_EQ(plan.phase(), DrainPhase::wait_turns);
  EXPECT_FALSE(has(step, DrainActionType::abort_turns));
  ASSERT_TRUE(step.next_deadline);
  EXPECT_EQ(*step.next_deadline, now + 30s) << "the next blocker log, not an abort";
  const std::vector<DrainBlocker> blockers = {{"t1", "r1", "main", "running", "slow"}};
  for (int i = 0; i < 3; ++i) {
    now = *step.next_deadline;
    step = plan.step({DrainEventType::timer, blockers}, now);
    EXPECT_TRUE(has(step, DrainActionType::log_blockers));
    EXPECT_FALSE(has(step, DrainActionType::abort_turns));
  }
  step = plan.step({DrainEventType::timer, blockers}, now + 24h * 365);
  EXPECT_FALSE(has(step, DrainActionType::abort_turns)) << "a year later it still waits";
  EXPECT_FALSE(plan.report().interrupted);
  step = plan.step({DrainEventType::turns_idle}, now + 24h * 365);
  EXPECT_EQ(plan.phase(), DrainPhase::wait_deliveries);
}

TEST(Saturating, EnormousCooldownAndDeferralTimeoutDoNotWrap) {
  RestartSchedulerOptions o;
  o.cooldown = kEnormous;
  o.deferral_timeout = kEnormous;
  RestartScheduler s(o);
  RestartRequest req;
  req.reason = "first";
  req.delay = Duration(0);
  const TimePoint t0 = TimePoint{} + 1s;
  auto r = s.request(req, t0);
  ASSERT_TRUE(s.on_timer(t0, r.cycle).begin);
  s.on_restart_finished();
  // The cooldown never ends rather than ending before it began.
  r = s.request(req, t0 + 1s);
  EXPECT_EQ(r.deadline, TimePoint::max());
  EXPECT_FALSE(s.on_timer(t0 + 24h, r.cycle).begin);
}

}  // namespace
}  // namespace drawbridge::core
