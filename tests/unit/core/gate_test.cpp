#include "core/gate.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace drawbridge::core {
namespace {

TEST(Gate, WaiterRunsAtOnceWhenIdle) {
  Gate g;
  int runs = 0;
  g.when_idle([&] { ++runs; });
  EXPECT_EQ(runs, 1);
  EXPECT_EQ(g.waiters(), 0u);
}

TEST(Gate, LastLeaveWakesWaitersInOrder) {
  Gate g;
  g.enter();
  g.enter();
  std::vector<std::string> order;
  g.when_idle([&] { order.push_back("a"); });
  g.when_idle([&] { order.push_back("b"); });
  EXPECT_TRUE(g.leave());
  EXPECT_TRUE(order.empty());
  EXPECT_TRUE(g.leave());
  EXPECT_EQ(order, (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(g.idle());
}

TEST(Gate, UnmatchedLeaveIsIgnored) {
  Gate g;
  EXPECT_FALSE(g.leave());
  EXPECT_EQ(g.count(), 0u);
}

TEST(Gate, WaiterThatEntersHoldsLaterWaiters) {
  Gate g;
  g.enter();
  int second = 0;
  g.when_idle([&] {
    g.enter();  // new work started by the first waiter
    g.when_idle([&] { ++second; });
  });
  g.leave();
  EXPECT_EQ(second, 0);
  EXPECT_EQ(g.count(), 1u);
  g.leave();
  EXPECT_EQ(second, 1);
}

TEST(Gate, WaiterThatEntersHoldsBackWaitersAlreadyQueued) {
  Gate g;
  g.enter();
  std::vector<std::string> order;
  g.when_idle([&] {
    order.push_back("first");
    g.enter();  // the first waiter starts work: the second must wait for it too
  });
  g.when_idle([&] { order.push_back("second"); });
  g.leave();
  EXPECT_EQ(order, (std::vector<std::string>{"first"}));
  EXPECT_EQ(g.waiters(), 1u);
  g.leave();
  EXPECT_EQ(order, (std::vector<std::string>{"first", "second"}));
}

TEST(Gate, WaiterThatLeavesDoesNotRunOthersTwice) {
  Gate g;
  g.enter();
  int others = 0;
  g.when_idle([&] {
    g.enter();
    g.leave();  // wakes the others from inside the first waiter
  });
  g.when_idle([&] { ++others; });
  g.when_idle([&] { ++others; });
  g.leave();
  EXPECT_EQ(others, 2);
  g.enter();
  g.leave();
  EXPECT_EQ(others, 2);
}

TEST(Gate, ResetForgetsWithoutRunning) {
  Gate g;
  g.enter();
  int runs = 0;
  g.when_idle([&] { ++runs; });
  g.reset();
  EXPECT_EQ(runs, 0);
  EXPECT_TRUE(g.idle());
  g.wake_if_idle();
  EXPECT_EQ(runs, 0);
}

}  // namespace
}  // namespace drawbridge::core
