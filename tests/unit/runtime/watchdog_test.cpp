#include "runtime/watchdog.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>

namespace drawbridge::runtime {
namespace {

using namespace std::chrono_literals;

TEST(Watchdog, FiresOnceWhenTheDeadlinePassesWithoutADisarm) {
  std::atomic<int> fired{0};
  std::promise<void> first;
  Watchdog w([&] {
    if (fired.fetch_add(1) == 0) first.set_value();
  });
  w.arm(Watchdog::Clock::now() + 20ms);
  ASSERT_EQ(first.get_future().wait_for(5s), std::future_status::ready);
  EXPECT_FALSE(w.armed()) << "one arm, one fire";
  EXPECT_EQ(fired.load(), 1);
}

TEST(Watchdog, DisarmedBeforeTheDeadlineNeverFires) {
  std::atomic<int> fired{0};
  std::promise<void> later;
  std::atomic<bool> second_armed{false};
  Watchdog w([&] {
    ++fired;
    if (second_armed) later.set_value();
  });
  w.arm(Watchdog::Clock::now() + 1h);
  EXPECT_TRUE(w.armed());
  w.disarm();
  EXPECT_FALSE(w.armed());
  // A second, short arm proves the thread is alive and would have fired the first one.
  second_armed = true;
  w.arm(Watchdog::Clock::now() + 10ms);
  ASSERT_EQ(later.get_future().wait_for(5s), std::future_status::ready);
  EXPECT_EQ(fired.load(), 1);
}

TEST(Watchdog, RearmingMovesTheDeadline) {
  std::promise<Watchdog::Clock::time_point> when;
  Watchdog w([&] { when.set_value(Watchdog::Clock::now()); });
  const auto t0 = Watchdog::Clock::now();
  w.arm(t0 + 1h);
  w.arm(t0 + 30ms);
  auto f = when.get_future();
  ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
  EXPECT_GE(f.get(), t0 + 30ms);
}

}  // namespace
}  // namespace drawbridge::runtime
