#include "core/lease_keeper.h"

#include <gtest/gtest.h>

namespace drawbridge::core {
namespace {

using std::chrono::milliseconds;

TEST(LeaseKeeper, ALeaseIsUsableUntilTheSendTimePlusTtlLessAMargin) {
  ManualClock clock;
  LeaseKeeper keeper(milliseconds(5000));
  const auto sent = clock.now();
  clock.advance(milliseconds(300));  // the answer took a while
  keeper.granted("channel:telegram:1", 3, sent);
  EXPECT_TRUE(keeper.usable("channel:telegram:1", clock.now()));
  EXPECT_EQ(keeper.remaining("channel:telegram:1", clock.now()), milliseconds(3700));
  EXPECT_EQ(keeper.epoch("channel:telegram:1"), 3);
  clock.advance(milliseconds(3700));  // sent + 4000: the margin is a fifth of ttl
  EXPECT_FALSE(keeper.usable("channel:telegram:1", clock.now()));
  EXPECT_EQ(keeper.remaining("channel:telegram:1", clock.now()), milliseconds(0));
  EXPECT_EQ(keeper.heartbeat_interval(), milliseconds(1666));
}

TEST(LeaseKeeper, AHeartbeatExtendsWhatItRenewedAndReportsWhatWasLost) {
  ManualClock clock;
  LeaseKeeper keeper(milliseconds(3000));
  keeper.granted("a", 1, clock.now());
  keeper.granted("b", 1, clock.now());
  keeper.granted("c", 4, clock.now());
  clock.advance(milliseconds(1000));
  // b is gone; c came back at another epoch (taken and given back meanwhile): lost too.
  auto lost = keeper.renewed({{"a", 1}, {"c", 5}}, clock.now());
  EXPECT_EQ(lost, (std::vector<std::string>{"b", "c"}));
  EXPECT_TRUE(keeper.usable("a", clock.now()));
  EXPECT_FALSE(keeper.usable("b", clock.now()));
  EXPECT_EQ(keeper.epoch("c"), std::nullopt);
  EXPECT_EQ(keeper.remaining("a", clock.now()), milliseconds(2400));
}

TEST(LeaseKeeper, ALeaseClaimedAfterTheHeartbeatWasSentIsNotJudgedByIt) {
  ManualClock clock;
  LeaseKeeper keeper(milliseconds(3000));
  const auto heartbeat_sent = clock.now();
  clock.advance(milliseconds(10));
  keeper.granted("session:s", 1, clock.now());
  EXPECT_TRUE(keeper.renewed({}, heartbeat_sent).empty());
  EXPECT_TRUE(keeper.usable("session:s", clock.now()));
}

TEST(LeaseKeeper, APausedReplicaFindsItsLeasesUnusableWhenItWakes) {
  ManualClock clock;
  LeaseKeeper keeper(milliseconds(2000));
  keeper.granted("channel:irc:bot", 2, clock.now());
  clock.advance(milliseconds(60'000));  // SIGSTOP ... SIGCONT: the steady clock ran on
  EXPECT_FALSE(keeper.usable("channel:irc:bot", clock.now()));
  // A late heartbeat answer for a request sent before the pause cannot revive it.
  keeper.renewed({{"channel:irc:bot", 2}}, clock.now() - milliseconds(59'000));
  EXPECT_FALSE(keeper.usable("channel:irc:bot", clock.now()));
  keeper.forget("channel:irc:bot");
  EXPECT_TRUE(keeper.held().empty());
}

}  // namespace
}  // namespace drawbridge::core
