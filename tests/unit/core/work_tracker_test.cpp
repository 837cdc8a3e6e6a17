#include "core/work_tracker.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace drawbridge::core {
namespace {

TEST(WorkTracker, WaiterRunsAtOnceWhenIdle) {
  WorkTracker w;
  int woken = 0;
  w.when_idle([&] { ++woken; });
  EXPECT_EQ(woken, 1);
}

TEST(WorkTracker, LastFinisherWakesTheWaiterAndNothingEarlier) {
  WorkTracker w;
  w.begin();
  w.begin();
  int woken = 0;
  w.when_idle([&] { ++woken; });
  w.end();
  EXPECT_EQ(woken, 0);
  EXPECT_EQ(w.total(), 1u);
  w.end();
  EXPECT_EQ(woken, 1);
  // A waiter fires once, not at every later idle moment.
  w.begin();
  w.end();
  EXPECT_EQ(woken, 1);
}

std::vector<WorkId> ids_of(const std::vector<WorkEntry>& entries) {
  std::vector<WorkId> ids;
  for (const auto& e : entries) ids.push_back(e.id);
  return ids;
}

TEST(WorkTracker, ListsEntriesInStartOrder) {
  WorkTracker w;
  WorkId a = w.start(WorkKind::turn, {.task_id = "t-a", .session = "s1", .label = "echo turn"});
  WorkId b = w.start(WorkKind::turn, {.label = "reply 3 parts"});
  WorkId c = w.start(WorkKind::turn);
  WorkId d = w.start(WorkKind::turn);
  w.finish(c);

  EXPECT_EQ(ids_of(w.list()), (std::vector<WorkId>{a, b, d}));
  EXPECT_EQ(w.total(), 3u);
  const auto all = w.list();
  EXPECT_EQ(all[0].kind, WorkKind::turn);
  EXPECT_EQ(all[0].info.task_id, "t-a");
  EXPECT_EQ(all[0].info.session, "s1");
  EXPECT_EQ(all[0].info.label, "echo turn");
  // Without a task id of its own, an entry is named by the tracker's id.
  EXPECT_EQ(all[1].info.task_id, "w" + std::to_string(b));
  EXPECT_FALSE(all[1].exempt);
}

TEST(WorkTracker, SetStatusUpdatesTheListedEntryOnly) {
  WorkTracker w;
  WorkId a = w.start(WorkKind::turn, {.status = "running"});
  WorkId b = w.start(WorkKind::turn, {.status = "running"});
  EXPECT_TRUE(w.set_status(b, "delivering"));
  const auto all = w.list();
  EXPECT_EQ(all[0].info.status, "running");
  EXPECT_EQ(all[1].info.status, "delivering");
  w.finish(a);
  EXPECT_FALSE(w.set_status(a, "gone"));
  EXPECT_FALSE(w.set_status(9999, "never started"));
  EXPECT_EQ(w.total(), 1u);
}

TEST(WorkTracker, ExemptRunStopsWaitingForTheTurnThatAskedForTheRestart) {
  WorkTracker w;
  WorkId self = w.start(WorkKind::turn, {.run_id = "r1", .status = "running"});
  WorkId other = w.start(WorkKind::turn, {.run_id = "r2"});
  int woken = 0;
  w.when_idle([&] { ++woken; });

  EXPECT_EQ(w.exempt_run("r1"), 1u);
  EXPECT_EQ(woken, 0);  // r2's turn still runs
  EXPECT_EQ(w.total(), 1u);

  EXPECT_TRUE(w.finish(other));
  EXPECT_EQ(woken, 1);
  // Still listed, shown as exempt, until it finishes; finishing it counts nothing down again.
  const auto all = w.list();
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].id, self);
  EXPECT_TRUE(all[0].exempt);
  EXPECT_TRUE(w.finish(self));
  EXPECT_TRUE(w.list().empty());
  EXPECT_EQ(w.total(), 0u);
}

TEST(WorkTracker, ExemptRunWakesIdleWaitersAtOnce) {
  WorkTracker w;
  w.start(WorkKind::turn, {.run_id = "r1"});
  w.start(WorkKind::turn, {.run_id = "r1"});
  int woken = 0;
  w.when_idle([&] { ++woken; });
  EXPECT_EQ(w.exempt_run("r1"), 2u);
  EXPECT_EQ(woken, 1);
  EXPECT_EQ(w.total(), 0u);
}

TEST(WorkTracker, ExemptRunCountsEachEntryOnceAndMatchesNoEmptyRun) {
  WorkTracker w;
  w.start(WorkKind::turn);  // no run id
  w.start(WorkKind::turn, {.run_id = "r1"});
  EXPECT_EQ(w.exempt_run(""), 0u);
  EXPECT_EQ(w.exempt_run("r1"), 1u);
  EXPECT_EQ(w.exempt_run("r1"), 0u);
  EXPECT_EQ(w.total(), 1u);
  // Work the run starts after the exemption is waited for.
  w.start(WorkKind::turn, {.run_id = "r1"});
  EXPECT_EQ(w.total(), 2u);
}

TEST(WorkTracker, WaiterThatStartsWorkHoldsBackTheNextWaiter) {
  WorkTracker w;
  WorkId turn = w.start(WorkKind::turn);
  WorkId restarted{};
  int first = 0;
  int second = 0;
  w.when_idle([&] {
    ++first;
    restarted = w.start(WorkKind::turn);
  });
  w.when_idle([&] { ++second; });

  w.finish(turn);
  EXPECT_EQ(first, 1);
  EXPECT_EQ(second, 0);  // the first waiter's turn is running
  w.finish(restarted);
  EXPECT_EQ(first, 1);
  EXPECT_EQ(second, 1);
}

TEST(WorkTracker, WaiterMayRegisterWaiters) {
  WorkTracker w;
  w.begin();
  std::vector<std::string> order;
  w.when_idle([&] {
    order.push_back("outer");
    w.when_idle([&] { order.push_back("idle now"); });
    w.begin();
    w.when_idle([&] { order.push_back("after turn"); });
  });
  w.end();
  EXPECT_EQ(order, (std::vector<std::string>{"outer", "idle now"}));
  w.end();
  EXPECT_EQ(order, (std::vector<std::string>{"outer", "idle now", "after turn"}));
}

TEST(WorkTracker, WaiterThatFinishesWorkDoesNotRunOthersTwice) {
  WorkTracker w;
  WorkId turn = w.start(WorkKind::turn);
  int others = 0;
  // A waiter whose own work comes and goes wakes the others from inside itself.
  w.when_idle([&] { w.finish(w.start(WorkKind::turn)); });
  w.when_idle([&] { ++others; });
  w.when_idle([&] { ++others; });
  w.finish(turn);
  EXPECT_EQ(others, 2);
  w.begin();
  w.end();
  EXPECT_EQ(others, 2);
}

TEST(WorkTracker, FinishOfUnknownOrFinishedIdIsIgnored) {
  WorkTracker w;
  WorkId a = w.start(WorkKind::turn);
  w.start(WorkKind::turn);
  int woken = 0;
  w.when_idle([&] { ++woken; });
  EXPECT_FALSE(w.finish(0));
  EXPECT_FALSE(w.finish(4242));
  EXPECT_TRUE(w.finish(a));
  EXPECT_FALSE(w.finish(a));  // a second finish must not count down the other turn
  EXPECT_EQ(w.total(), 1u);
  EXPECT_EQ(w.list().size(), 1u);
  EXPECT_EQ(woken, 0);
}

TEST(WorkTracker, AnonymousAndListedWorkCountTogether) {
  WorkTracker w;
  w.begin();
  WorkId listed = w.start(WorkKind::turn, {.label = "listed turn"});
  w.begin();
  EXPECT_EQ(w.total(), 3u);
  EXPECT_EQ(w.list().size(), 1u);  // anonymous work has no listing

  int woken = 0;
  w.when_idle([&] { ++woken; });
  w.end();
  // end() took anonymous work, not the listed turn.
  EXPECT_EQ(ids_of(w.list()), (std::vector<WorkId>{listed}));
  EXPECT_EQ(w.total(), 2u);
  w.end();
  EXPECT_EQ(woken, 0);
  EXPECT_TRUE(w.finish(listed));
  EXPECT_EQ(woken, 1);
}

TEST(WorkTrackerDeathTest, UnmatchedEndNeverFinishesAListedEntry) {
  WorkTracker w;
  WorkId listed = w.start(WorkKind::turn);
  // A bug in the caller: asserts in debug builds, ignored in release builds.
  EXPECT_DEBUG_DEATH(w.end(), "");
  EXPECT_EQ(w.total(), 1u);
  EXPECT_EQ(ids_of(w.list()), (std::vector<WorkId>{listed}));
}

}  // namespace
}  // namespace drawbridge::core
