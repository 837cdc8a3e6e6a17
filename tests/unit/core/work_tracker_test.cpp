#include "core/work_tracker.h"

#include <gtest/gtest.h>

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
  w.begin(WorkKind::turn);
  w.begin(WorkKind::delivery);
  int woken = 0;
  w.when_idle([&] { ++woken; });
  w.end(WorkKind::turn);
  EXPECT_EQ(woken, 0);
  EXPECT_EQ(w.count(WorkKind::delivery), 1u);
  w.end(WorkKind::delivery);
  EXPECT_EQ(woken, 1);
  // A waiter fires once, not at every later idle moment.
  w.begin(WorkKind::task);
  w.end(WorkKind::task);
  EXPECT_EQ(woken, 1);
}

TEST(WorkTracker, CountsByKind) {
  WorkTracker w;
  w.begin(WorkKind::turn);
  w.begin(WorkKind::turn);
  w.begin(WorkKind::task);
  EXPECT_EQ(w.count(WorkKind::turn), 2u);
  EXPECT_EQ(w.count(WorkKind::task), 1u);
  EXPECT_EQ(w.total(), 3u);
}

}  // namespace
}  // namespace drawbridge::core
