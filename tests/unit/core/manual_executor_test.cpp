#include "core/manual_executor.h"

#include <gtest/gtest.h>

#include <vector>

namespace drawbridge::core {
namespace {

TEST(ManualExecutor, TimersFireInDeadlineOrderOnlyWhenTimeIsAdvanced) {
  ManualClock clock;
  ManualExecutor ex(clock);
  std::vector<int> fired;
  ex.schedule(Duration(300), [&] { fired.push_back(300); });
  ex.schedule(Duration(100), [&] { fired.push_back(100); });
  ex.advance(Duration(99));
  EXPECT_TRUE(fired.empty());
  ex.advance(Duration(1));
  EXPECT_EQ(fired, (std::vector<int>{100}));
  ex.advance(Duration(1000));
  EXPECT_EQ(fired, (std::vector<int>{100, 300}));
}

TEST(ManualExecutor, ATimerOverdueBecauseTheClockMovedAloneRunsLateAndTimeNeverGoesBack) {
  ManualClock clock;
  ManualExecutor ex(clock);
  const auto start = clock.now();
  Duration seen{};
  ex.schedule(Duration(50), [&] { seen = std::chrono::duration_cast<Duration>(clock.now() - start); });
  clock.advance(Duration(175));  // a stalled loop: time passed, no timer ran
  ex.advance(Duration(0));
  EXPECT_EQ(seen, Duration(175));
  EXPECT_EQ(clock.now() - start, Duration(175));
}

TEST(ManualExecutor, ClockShowsTheDeadlineWhileATimerRuns) {
  ManualClock clock;
  ManualExecutor ex(clock);
  const auto start = clock.now();
  Duration seen{};
  ex.schedule(Duration(250), [&] { seen = std::chrono::duration_cast<Duration>(clock.now() - start); });
  ex.advance(Duration(10000));
  EXPECT_EQ(seen, Duration(250));
  EXPECT_EQ(clock.now() - start, Duration(10000));
}

TEST(ManualExecutor, CancelledTimerNeverFires) {
  ManualClock clock;
  ManualExecutor ex(clock);
  bool fired = false;
  auto id = ex.schedule(Duration(5), [&] { fired = true; });
  ex.cancel(id);
  ex.advance(Duration(10));
  EXPECT_FALSE(fired);
  EXPECT_EQ(ex.pending_timers(), 0u);
}

}  // namespace
}  // namespace drawbridge::core
