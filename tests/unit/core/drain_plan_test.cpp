#include "core/drain_plan.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/restart_scheduler.h"

namespace drawbridge::core {
namespace {

using namespace std::chrono_literals;
using A = DrainActionType;
using E = DrainEventType;

TimePoint at(Duration d) {
  return TimePoint{} + d;
}

std::vector<A> types(const DrainStep& s) {
  std::vector<A> out;
  for (const auto& a : s.actions) out.push_back(a.type);
  return out;
}

std::vector<DrainBlocker> blockers(int n) {
  std::vector<DrainBlocker> out;
  for (int i = 0; i < n; ++i) {
    const auto k = std::to_string(i);
    out.push_back({"t" + k, "r" + k, "chat-" + k, "running", "job " + k});
  }
  return out;
}

TEST(DrainPlan, HappyPathRunsEveryPhaseInOrder) {
  DrainPlan plan;
  EXPECT_EQ(plan.phase(), DrainPhase::not_started);

  // Queued followups are durable and go to the next generation: no wait on them, the drain
  // waits for the turns running now.
  auto s = plan.step({E::start}, at(100ms));
  EXPECT_EQ(types(s), (std::vector<A>{A::set_not_ready, A::flush_debouncers, A::mark_draining,
                                      A::await_turns}));
  EXPECT_EQ(s.actions[2].notice, DrainNotice::will_finish);
  EXPECT_EQ(s.phase, DrainPhase::wait_turns);
  EXPECT_EQ(s.next_deadline, at(30100ms));  // first blocker log

  s = plan.step({E::turns_idle}, at(4s));
  EXPECT_EQ(types(s), (std::vector<A>{A::await_deliveries}));
  EXPECT_EQ(s.phase, DrainPhase::wait_deliveries);
  EXPECT_EQ(s.next_deadline, std::nullopt);

  s = plan.step({E::deliveries_idle}, at(5s));
  EXPECT_EQ(types(s), (std::vector<A>{A::stop_channels}));
  EXPECT_EQ(s.phase, DrainPhase::stop_channels);

  s = plan.step({E::channels_stopped}, at(6s));
  EXPECT_EQ(types(s), (std::vector<A>{A::close_server}));
  EXPECT_EQ(s.phase, DrainPhase::close_server);

  s = plan.step({E::server_closed}, at(7s));
  EXPECT_EQ(types(s), (std::vector<A>{A::write_clean_marker, A::finished}));
  EXPECT_EQ(s.phase, DrainPhase::done);

  EXPECT_FALSE(plan.report().interrupted);
  EXPECT_TRUE(plan.report().clean_marker);
}

TEST(DrainPlan, EventsOutOfPhaseAreIgnored) {
  DrainPlan plan;
  EXPECT_TRUE(plan.step({E::turns_idle}, at(0s)).actions.empty());
  EXPECT_EQ(plan.phase(), DrainPhase::not_started);
  plan.step({E::start}, at(0s));
  EXPECT_TRUE(plan.step({E::deliveries_idle}, at(1s)).actions.empty());
  EXPECT_TRUE(plan.step({E::server_closed}, at(1s)).actions.empty());
  EXPECT_TRUE(plan.step({E::start}, at(1s)).actions.empty());
  EXPECT_EQ(plan.phase(), DrainPhase::wait_turns);
}

TEST(DrainPlan, TurnsAtTheBudgetAreAbortedAndNoCleanMarkerIsWritten) {
  DrainPlan plan({.turn_budget = Duration(60'000)});
  auto s = plan.step({E::start}, at(1s));
  EXPECT_EQ(s.next_deadline, at(31s));

  const auto stuck = blockers(10);
  s = plan.step({E::timer, stuck}, at(31s));
  EXPECT_EQ(types(s), (std::vector<A>{A::log_blockers}));
  EXPECT_EQ(s.next_deadline, at(61s));  // the budget end and the second log coincide

  EXPECT_TRUE(plan.step({E::timer, stuck}, at(60999ms)).actions.empty());
  s = plan.step({E::timer, stuck}, at(61s));
  EXPECT_EQ(types(s), (std::vector<A>{A::abort_turns, A::await_deliveries}));
  // Every remaining turn is aborted, not only the first eight.
  EXPECT_EQ(s.actions[0].blockers, stuck);
  EXPECT_EQ(s.actions[0].waited, Duration(60'000));
  EXPECT_EQ(s.phase, DrainPhase::wait_deliveries);
  EXPECT_EQ(s.next_deadline, std::nullopt);

  plan.step({E::deliveries_idle}, at(62s));
  plan.step({E::channels_stopped}, at(63s));
  s = plan.step({E::server_closed}, at(64s));
  EXPECT_EQ(types(s), (std::vector<A>{A::finished}));
  EXPECT_TRUE(plan.report().interrupted);
  EXPECT_EQ(plan.report().aborted, stuck);
  EXPECT_FALSE(plan.report().clean_marker);
}

TEST(DrainPlan, ZeroDeferralTimeoutNeverAbortsButStillLogsEveryThirtySeconds) {
  DrainPlan plan({.turn_budget = deferral_budget(Duration(0), std::nullopt, false)});
  plan.step({E::start}, at(0s));

  const auto stuck = blockers(2);
  int logs = 0;
  for (auto t = 30s; t <= 3600s; t += 30s) {
    auto s = plan.step({E::timer, stuck}, at(t));
    ASSERT_EQ(types(s), (std::vector<A>{A::log_blockers})) << "at " << t.count() << " s";
    EXPECT_EQ(s.actions[0].waited, Duration(t));
    EXPECT_EQ(s.next_deadline, at(t + 30s));
    ++logs;
  }
  EXPECT_EQ(logs, 120);
  auto s = plan.step({E::turns_idle}, at(3601s));
  EXPECT_EQ(types(s), (std::vector<A>{A::await_deliveries}));
  EXPECT_FALSE(plan.report().interrupted);
}

TEST(DrainPlan, BlockersAreLoggedEveryThirtySecondsAtMostEightThenMore) {
  DrainPlan plan;
  plan.step({E::start}, at(0s));
  const auto stuck = blockers(11);

  EXPECT_TRUE(plan.step({E::timer, stuck}, at(29999ms)).actions.empty());
  auto s = plan.step({E::timer, stuck}, at(30s));
  ASSERT_EQ(types(s), (std::vector<A>{A::log_blockers}));
  const auto& log = s.actions[0];
  EXPECT_EQ(log.blockers, std::vector<DrainBlocker>(stuck.begin(), stuck.begin() + 8));
  EXPECT_EQ(log.more, 3u);
  EXPECT_EQ(log.waited, Duration(30'000));
  const std::string text = format_blockers(log);
  EXPECT_EQ(text.rfind("task=t0 run=r0 status=running label=\"job 0\"; task=t1 ", 0), 0u) << text;
  EXPECT_NE(text.find("task=t7 "), std::string::npos) << text;
  EXPECT_EQ(text.find("task=t8 "), std::string::npos) << text;
  EXPECT_TRUE(text.ends_with("label=\"job 7\"; +3 more")) << text;

  EXPECT_TRUE(plan.step({E::timer, stuck}, at(45s)).actions.empty());
  s = plan.step({E::timer, blockers(3)}, at(60s));
  ASSERT_EQ(types(s), (std::vector<A>{A::log_blockers}));
  EXPECT_EQ(s.actions[0].blockers.size(), 3u);
  EXPECT_EQ(s.actions[0].more, 0u);
  EXPECT_EQ(format_blockers(s.actions[0]).find("more"), std::string::npos);
  // The elapsed time of a blocker is shown when known.
  DrainAction timed;
  timed.blockers = {{"t0", "r0", "chat-0", "running", "openai gpt-4o turn", 61'250}};
  EXPECT_EQ(format_blockers(timed),
            "task=t0 run=r0 status=running label=\"openai gpt-4o turn\" elapsed=61.2s");

  // A late timer logs once and stays on the 30 s grid.
  s = plan.step({E::timer, stuck}, at(125s));
  EXPECT_EQ(types(s), (std::vector<A>{A::log_blockers}));
  EXPECT_EQ(s.next_deadline, at(150s));
}

TEST(DrainPlan, ForcedDrainAbortsAtOnceAndSaysInterrupted) {
  DrainPlan plan({.turn_budget = deferral_budget(Duration(300'000), std::nullopt, true)});
  auto s = plan.step({E::start}, at(200ms));
  EXPECT_EQ(s.actions[2].type, A::mark_draining);
  EXPECT_EQ(s.actions[2].notice, DrainNotice::interrupted);
  EXPECT_EQ(s.next_deadline, at(200ms));
  s = plan.step({E::timer, blockers(1)}, at(200ms));
  EXPECT_EQ(types(s), (std::vector<A>{A::abort_turns, A::await_deliveries}));
  EXPECT_TRUE(plan.report().interrupted);
}

TEST(DrainPlan, ForcedDrainWithNoTurnsAbortsNothing) {
  DrainPlan plan({.turn_budget = Duration(0)});
  plan.step({E::start}, at(0s));
  // await_turns answers at once when nothing runs, before the zero-delay timer.
  auto s = plan.step({E::turns_idle}, at(0s));
  EXPECT_EQ(types(s), (std::vector<A>{A::await_deliveries}));
  EXPECT_TRUE(plan.step({E::timer}, at(0s)).actions.empty());
  EXPECT_FALSE(plan.report().interrupted);
}

TEST(DrainPlan, StopNoticeSaysShuttingDown) {
  DrainPlan plan({.kind = DrainKind::stop});
  auto s = plan.step({E::start}, at(0s));
  ASSERT_EQ(s.actions[2].type, A::mark_draining);
  EXPECT_EQ(s.actions[2].notice, DrainNotice::shutting_down);
}

}  // namespace
}  // namespace drawbridge::core
