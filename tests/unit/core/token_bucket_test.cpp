#include "core/token_bucket.h"

#include <gtest/gtest.h>

namespace drawbridge::core {
namespace {

using namespace std::chrono_literals;

TEST(TokenBucket, ABurstUpToCapacityGoesAtOnceThenTheRateSpreadsTheRest) {
  TokenBucket b(3, 1.0);  // 3 at once, then one a second
  const TimePoint t0 = TimePoint{} + 1h;
  EXPECT_EQ(b.take(t0), 0ms);
  EXPECT_EQ(b.take(t0), 0ms);
  EXPECT_EQ(b.take(t0), 0ms);
  EXPECT_EQ(b.take(t0), 1000ms);  // booked: the next slot
  EXPECT_EQ(b.take(t0), 2000ms);
  EXPECT_FALSE(b.idle(t0));
  // Five seconds on, the two booked slots are used up and 3 tokens are back (capped).
  EXPECT_EQ(b.take(t0 + 5s), 0ms);
  EXPECT_FALSE(b.idle(t0 + 5s));
  EXPECT_TRUE(b.idle(t0 + 6s));
}

TEST(TokenBucket, AFastRateBooksFractionsOfASecond) {
  TokenBucket b(1, 30.0);
  const TimePoint t0 = TimePoint{} + 1h;
  EXPECT_EQ(b.take(t0), 0ms);
  EXPECT_EQ(b.take(t0), 33ms);
  EXPECT_EQ(b.take(t0), 66ms);
  EXPECT_EQ(b.take(t0 + 100ms), 0ms);  // the booked 66 ms were repaid by 100 ms of refill
}

}  // namespace
}  // namespace drawbridge::core
