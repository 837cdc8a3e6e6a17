#include "core/shutdown_budget.h"

#include <gtest/gtest.h>

namespace drawbridge::core {
namespace {

using namespace std::chrono_literals;

TEST(ShutdownBudget, StopGetsTwentyFiveSeconds) {
  EXPECT_EQ(shutdown_budget(ShutdownKind::stop, Duration(300'000), std::nullopt), Duration(25'000));
  EXPECT_EQ(shutdown_budget(ShutdownKind::stop, std::nullopt, std::nullopt), Duration(25'000));
}

TEST(ShutdownBudget, RestartGetsTheDrainBudgetPlusTwentyFiveSeconds) {
  EXPECT_EQ(shutdown_budget(ShutdownKind::restart, Duration(300'000), std::nullopt),
            Duration(325'000));
  EXPECT_EQ(shutdown_budget(ShutdownKind::restart, Duration(0), std::nullopt), Duration(25'000));
}

TEST(ShutdownBudget, RestartWithoutDeferralLimitHasNoWatchdogOutsideSystemd) {
  EXPECT_EQ(shutdown_budget(ShutdownKind::restart, std::nullopt, std::nullopt), std::nullopt);
}

TEST(ShutdownBudget, SystemdStopTimeoutMinusFiveSecondsCapsIt) {
  // systemd's default TimeoutStopSec is 90 s.
  EXPECT_EQ(shutdown_budget(ShutdownKind::restart, Duration(300'000), Duration(90'000)),
            Duration(85'000));
  EXPECT_EQ(shutdown_budget(ShutdownKind::restart, std::nullopt, Duration(90'000)),
            Duration(85'000));
  EXPECT_EQ(shutdown_budget(ShutdownKind::restart, Duration(10'000), Duration(90'000)),
            Duration(35'000));
  EXPECT_EQ(shutdown_budget(ShutdownKind::stop, std::nullopt, Duration(90'000)), Duration(25'000));
  EXPECT_EQ(shutdown_budget(ShutdownKind::stop, std::nullopt, Duration(20'000)), Duration(15'000));
}

TEST(ShutdownBudget, ShortSystemdTimeoutUsesHalfOfIt) {
  EXPECT_EQ(shutdown_budget(ShutdownKind::stop, std::nullopt, Duration(6'000)), Duration(3'000));
  EXPECT_EQ(shutdown_budget(ShutdownKind::stop, std::nullopt, Duration(10'000)), Duration(5'000));
}

TEST(ShutdownBudget, ZeroSystemdTimeoutMeansNoCap) {
  EXPECT_EQ(shutdown_budget(ShutdownKind::restart, Duration(300'000), Duration(0)),
            Duration(325'000));
}

}  // namespace
}  // namespace drawbridge::core
