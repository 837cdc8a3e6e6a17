#include "core/session_lanes.h"

#include <gtest/gtest.h>

namespace drawbridge::core {
namespace {

TEST(SessionLanes, FirstMessageOfAnIdleSessionStartsAtOnce) {
  SessionLanes lanes;
  EXPECT_TRUE(lanes.enqueue("a", 1));
  EXPECT_EQ(lanes.active("a"), 1);
  EXPECT_EQ(lanes.active_count(), 1u);
}

TEST(SessionLanes, LaterMessagesWaitInOrderBehindTheActiveTurn) {
  SessionLanes lanes;
  lanes.enqueue("a", 1);
  EXPECT_FALSE(lanes.enqueue("a", 2));
  EXPECT_FALSE(lanes.enqueue("a", 3));
  EXPECT_EQ(lanes.waiting("a"), (std::vector<SessionLanes::Item>{2, 3}));
  EXPECT_EQ(lanes.finish("a"), 2);
  EXPECT_EQ(lanes.finish("a"), 3);
  EXPECT_EQ(lanes.finish("a"), std::nullopt);
  EXPECT_EQ(lanes.active_count(), 0u);
  EXPECT_EQ(lanes.waiting_count(), 0u);
}

TEST(SessionLanes, SessionsDoNotBlockEachOther) {
  SessionLanes lanes;
  EXPECT_TRUE(lanes.enqueue("a", 1));
  EXPECT_TRUE(lanes.enqueue("b", 2));
  EXPECT_EQ(lanes.active_count(), 2u);
}

TEST(SessionLanes, RemovingAWaitingItemKeepsTheRestInOrder) {
  SessionLanes lanes;
  lanes.enqueue("a", 1);
  lanes.enqueue("a", 2);
  lanes.enqueue("a", 3);
  EXPECT_TRUE(lanes.remove_waiting("a", 2));
  EXPECT_FALSE(lanes.remove_waiting("a", 1));  // active, not waiting
  EXPECT_EQ(lanes.finish("a"), 3);
  EXPECT_EQ(lanes.waiting_count(), 0u);
}

TEST(SessionLanes, FinishingAnUnknownSessionIsHarmless) {
  SessionLanes lanes;
  EXPECT_EQ(lanes.finish("nope"), std::nullopt);
  EXPECT_EQ(lanes.active_count(), 0u);
}

TEST(SessionLanes, ClearForgetsEverything) {
  SessionLanes lanes;
  lanes.enqueue("a", 1);
  lanes.enqueue("a", 2);
  lanes.clear();
  EXPECT_EQ(lanes.active("a"), std::nullopt);
  EXPECT_TRUE(lanes.enqueue("a", 3));
  EXPECT_EQ(lanes.waiting_count(), 0u);
}

}  // namespace
}  // namespace drawbridge::core
