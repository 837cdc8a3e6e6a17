#include "core/lifecycle.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/drain_plan.h"

// The lifecycle's decisions in simulated time, together with the DrainPlan they steer: each
// scenario is one of issue 17's defects, replayed the way the runtime feeds both machines.

namespace drawbridge::core {
namespace {

using namespace std::chrono_literals;
using A = DrainActionType;
using E = DrainEventType;
using S = LifecycleState;

TimePoint at(Duration d) { return TimePoint{} + d; }

std::vector<A> types(const DrainStep& s) {
  std::vector<A> out;
  for (const auto& a : s.actions) out.push_back(a.type);
  return out;
}

bool has(const DrainStep& s, A type) {
  for (const auto& a : s.actions) {
    if (a.type == type) return true;
  }
  return false;
}

const std::vector<DrainBlocker> kStuck{{"t1", "r1", "main", "running", "exec turn"}};
const ListenAddress kP{"127.0.0.1", 18001};
const ListenAddress kQ{"127.0.0.1", 18002};

// A restart drain at t=0 with the default 300 s turn budget, waiting on one stuck turn.
struct RestartDrain {
  Lifecycle life;
  DrainPlan plan;
  RestartDrain(RestartPath path = RestartPath::in_process)
      : plan(DrainOptions{.kind = DrainKind::restart, .turn_budget = Duration{300'000}}) {
    life.generation_started(kP, "h1");
    life.drain_began(DrainKind::restart, path, at(300s), at(325s));
    auto s = plan.step({E::start}, at(0s));
    EXPECT_EQ(s.phase, DrainPhase::wait_turns);
  }
};

TEST(Lifecycle, FirstStartRunsAndAccepts) {
  Lifecycle life;
  EXPECT_EQ(life.state(), S::starting);
  life.generation_started(kP, "h1");
  EXPECT_EQ(life.state(), S::running);
  EXPECT_TRUE(life.accepting());
  EXPECT_EQ(life.listening(), kP);
  EXPECT_EQ(life.applied_hash(), "h1");
}

TEST(Lifecycle, RestartDrainEndsInTheNextGenerationByItsPath) {
  for (auto [path, after] : {std::pair{RestartPath::in_process, AfterDrain::next_generation},
                             std::pair{RestartPath::reexec, AfterDrain::hand_off},
                             std::pair{RestartPath::supervised, AfterDrain::supervised_exit}}) {
    Lifecycle life;
    life.generation_started(kP, "h1");
    life.drain_began(DrainKind::restart, path, at(300s), at(325s));
    EXPECT_EQ(life.state(), S::draining);
    EXPECT_TRUE(life.accepting());
    life.closing();
    EXPECT_EQ(life.state(), S::restarting);
    EXPECT_FALSE(life.accepting());
    EXPECT_EQ(life.drain_finished(), after) << to_string(after);
  }
}

// Defect 1: a failed start is retried on the old port. The attempt's address and hash must
// not become the running ones; the retry compares with what listens, so it binds Q.
TEST(Lifecycle, FailedStartKeepsTheRunningAddressAndTheRetryBindsTheNewOne) {
  Lifecycle life;
  life.generation_started(kP, "h1");
  life.drain_began(DrainKind::restart, RestartPath::in_process, at(300s), at(325s));
  life.closing();
  ASSERT_EQ(life.drain_finished(), AfterDrain::next_generation);
  life.generation_starting();
  ASSERT_TRUE(life.needs_relisten(kQ));  // the attempt on Q: "Address already in use"
  life.generation_failed();
  EXPECT_EQ(life.state(), S::failed);
  EXPECT_TRUE(life.accepting());  // status and health stay reachable
  EXPECT_EQ(life.listening(), kP);
  EXPECT_EQ(life.applied_hash(), "h1");  // config.get shows the file (h2) as pending

  // `drawbridge restart` after Q was freed: the same config again, so the same question.
  life.generation_starting();
  EXPECT_TRUE(life.needs_relisten(kQ));
  EXPECT_FALSE(life.needs_relisten(kP));
  life.generation_started(kQ, "h2");
  EXPECT_EQ(life.state(), S::running);
  EXPECT_EQ(life.listening(), kQ);
  EXPECT_FALSE(life.needs_relisten(kQ));
}

// Defect 2: SIGTERM during a restart drain waits out the restart's 300 s budget. The stop
// takes the drain over: turns end at the stop's budget, the watchdog is the stop's, and the
// process exits after the drain instead of starting a generation.
TEST(Lifecycle, SigtermDuringARestartDrainIsBoundedByTheStopBudget) {
  RestartDrain d;
  // DRAWBRIDGE_STOP_TIMEOUT_MS=8000: watchdog 4 s, turns 4/5 of it.
  const StopBudget stop{Duration{4'000}, Duration{3'200}};
  auto dec = d.life.on_stop(at(1s), stop);
  EXPECT_EQ(dec.what, StopDecision::What::take_over_drain);
  ASSERT_TRUE(dec.turns_end);
  EXPECT_EQ(*dec.turns_end, at(4200ms));
  ASSERT_TRUE(dec.watchdog_at);
  EXPECT_EQ(*dec.watchdog_at, at(5s));
  EXPECT_EQ(d.life.state(), S::stopping);
  EXPECT_TRUE(d.life.stop_pending());

  auto s = d.plan.cut_turns(*dec.turns_end, at(1s), kStuck);
  EXPECT_TRUE(s.actions.empty());
  ASSERT_TRUE(s.next_deadline);
  EXPECT_EQ(*s.next_deadline, at(4200ms));  // not 30 s (a blocker log), not 300 s

  s = d.plan.step({E::timer, kStuck}, at(4200ms));
  EXPECT_EQ(types(s), (std::vector<A>{A::abort_turns, A::await_deliveries}));
  d.life.turns_done();
  d.plan.step({E::deliveries_idle}, at(4300ms));
  d.plan.step({E::channels_stopped}, at(4300ms));
  d.life.closing();
  s = d.plan.step({E::server_closed}, at(4400ms));
  EXPECT_TRUE(has(s, A::finished));
  EXPECT_EQ(d.life.drain_finished(), AfterDrain::exit_process);

  // A second SIGTERM changes nothing.
  EXPECT_EQ(d.life.on_stop(at(4500ms), stop).what, StopDecision::What::already_stopping);
}

TEST(Lifecycle, AStopNeverLengthensAShorterRestartDrain) {
  Lifecycle life;
  life.generation_started(kP, "h1");
  life.drain_began(DrainKind::restart, RestartPath::reexec, at(1s), at(26s));
  auto dec = life.on_stop(at(0s), {Duration{25'000}, Duration{20'000}});
  EXPECT_EQ(dec.what, StopDecision::What::take_over_drain);
  EXPECT_FALSE(dec.turns_end);    // 1 s is sooner than 20 s
  EXPECT_EQ(dec.watchdog_at, at(25s));  // 25 s is sooner than 26 s
  EXPECT_EQ(life.drain_finished(), AfterDrain::exit_process);  // not a hand-off
}

TEST(Lifecycle, StopWhenRunningDrainsAndWhenFailedClosesAtOnce) {
  Lifecycle running;
  running.generation_started(kP, "h1");
  EXPECT_EQ(running.on_stop(at(0s), {}).what, StopDecision::What::begin_drain);
  running.drain_began(DrainKind::stop, RestartPath::in_process, at(20s), at(25s));
  EXPECT_EQ(running.state(), S::stopping);
  EXPECT_EQ(running.drain_finished(), AfterDrain::exit_process);

  Lifecycle failed;
  failed.generation_started(kP, "h1");
  failed.generation_starting();
  failed.generation_failed();
  EXPECT_EQ(failed.on_stop(at(0s), {}).what, StopDecision::What::close_and_exit);
}

// Defect 3: a more urgent restart request answered "ignored: already restarting".
TEST(Lifecycle, AForcedRestartCutsTheRunningDrainShort) {
  RestartDrain d;
  auto dec = d.life.on_urgent_restart(at(2s), {.force = true});
  ASSERT_TRUE(dec.shortened) << dec.note;
  ASSERT_TRUE(dec.turns_end);
  EXPECT_EQ(*dec.turns_end, at(2s));
  auto s = d.plan.cut_turns(*dec.turns_end, at(2s), kStuck);
  EXPECT_EQ(types(s), (std::vector<A>{A::abort_turns, A::await_deliveries}));
  ASSERT_EQ(s.actions[0].blockers.size(), 1u);
  EXPECT_EQ(s.actions[0].blockers[0].run_id, "r1");
  EXPECT_EQ(d.life.watchdog_at(), at(27s));  // 2 s + the teardown grace, not 325 s
}

TEST(Lifecycle, AShorterWaitCutsTheDrainAndALongerOneCoalesces) {
  RestartDrain d;
  auto longer = d.life.on_urgent_restart(at(1s), {.wait = Duration{600'000}});
  EXPECT_FALSE(longer.shortened);
  EXPECT_NE(longer.note.find("ends sooner"), std::string::npos);
  auto plain = d.life.on_urgent_restart(at(1s), {});
  EXPECT_FALSE(plain.shortened);
  EXPECT_EQ(plain.note, "already restarting");

  auto dec = d.life.on_urgent_restart(at(1s), {.wait = Duration{1'000}});
  ASSERT_TRUE(dec.shortened) << dec.note;
  auto s = d.plan.cut_turns(*dec.turns_end, at(1s), kStuck);
  EXPECT_TRUE(s.actions.empty());
  EXPECT_EQ(s.next_deadline, at(2s));
  s = d.plan.step({E::timer, kStuck}, at(1999ms));
  EXPECT_FALSE(has(s, A::abort_turns));
  s = d.plan.step({E::timer, kStuck}, at(2s));
  EXPECT_TRUE(has(s, A::abort_turns));
  d.life.turns_done();
  // Past the wait on turns there is nothing left to shorten.
  EXPECT_FALSE(d.life.on_urgent_restart(at(3s), {.force = true}).shortened);
}

TEST(Lifecycle, ACutBeforeTheTurnWaitAppliesWhenItBegins) {
  DrainPlan plan(DrainOptions{.kind = DrainKind::restart, .turn_budget = Duration{300'000}});
  auto s = plan.cut_turns(at(1s), at(0s), kStuck);  // before the drain's first step
  EXPECT_TRUE(s.actions.empty());
  s = plan.step({E::start}, at(500ms));
  EXPECT_EQ(s.next_deadline, at(1s));  // the turns get what is left of the cut, not 300 s
  s = plan.step({E::timer, kStuck}, at(1s));
  EXPECT_TRUE(has(s, A::abort_turns));
}

TEST(Lifecycle, UrgentRequestsDuringAStopAreNotRestarts) {
  Lifecycle life;
  life.generation_started(kP, "h1");
  life.drain_began(DrainKind::stop, RestartPath::in_process, at(20s), at(25s));
  auto dec = life.on_urgent_restart(at(1s), {.force = true});
  EXPECT_FALSE(dec.shortened);
  EXPECT_EQ(dec.note, "stopping");
}

}  // namespace
}  // namespace drawbridge::core
