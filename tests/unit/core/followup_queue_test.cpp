#include "core/followup_queue.h"

#include <gtest/gtest.h>

namespace drawbridge::core {
namespace {

using Items = std::vector<FollowupQueue::Item>;

TEST(FollowupQueue, AnIdleSessionStartsAtOnceInEveryMode) {
  FollowupQueue q;
  const std::pair<const char*, FollowupMode> cases[] = {{"s", FollowupMode::steer},
                                                        {"f", FollowupMode::followup},
                                                        {"c", FollowupMode::collect},
                                                        {"i", FollowupMode::interrupt}};
  for (const auto& [session, mode] : cases) {
    auto r = q.enqueue(session, 1, mode);
    EXPECT_EQ(r.action, EnqueueAction::start_now) << to_string(mode);
    EXPECT_TRUE(r.dropped.empty()) << to_string(mode);
    EXPECT_TRUE(q.active(session)) << to_string(mode);
  }
  EXPECT_EQ(q.active_count(), 4u);
  EXPECT_EQ(q.pending_count(), 0u);
}

TEST(FollowupQueue, FollowupRunsOneTurnPerMessageInArrivalOrder) {
  FollowupQueue q;
  EXPECT_EQ(q.enqueue("s", 1, FollowupMode::followup).action, EnqueueAction::start_now);
  EXPECT_EQ(q.enqueue("s", 2, FollowupMode::followup).action, EnqueueAction::queued);
  EXPECT_EQ(q.enqueue("s", 3, FollowupMode::followup).action, EnqueueAction::queued);
  EXPECT_EQ(q.enqueue("s", 4, FollowupMode::followup).action, EnqueueAction::queued);
  EXPECT_EQ(q.queued("s"), (Items{2, 3, 4}));
  EXPECT_EQ(q.pending_count(), 3u);

  for (FollowupQueue::Item expected : {2, 3, 4}) {
    auto next = q.on_turn_finished("s");
    ASSERT_TRUE(next.has_value());
    EXPECT_EQ(next->items, Items{expected});
    EXPECT_EQ(next->dropped_count, 0u);
    EXPECT_TRUE(q.active("s"));
  }
  EXPECT_EQ(q.pending_count(), 0u);
  EXPECT_EQ(q.on_turn_finished("s"), std::nullopt);
  EXPECT_FALSE(q.active("s"));
  EXPECT_EQ(q.active_count(), 0u);
}

TEST(FollowupQueue, CollectRunsEverythingWaitingAsOneTurn) {
  FollowupQueue q;
  q.enqueue("s", 1, FollowupMode::collect);
  EXPECT_EQ(q.enqueue("s", 2, FollowupMode::collect).action, EnqueueAction::queued);
  EXPECT_EQ(q.enqueue("s", 3, FollowupMode::collect).action, EnqueueAction::queued);
  EXPECT_EQ(q.enqueue("s", 4, FollowupMode::collect).action, EnqueueAction::queued);
  auto next = q.on_turn_finished("s");
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(next->items, (Items{2, 3, 4}));
  EXPECT_EQ(q.pending_count(), 0u);
  EXPECT_TRUE(q.active("s"));
  EXPECT_EQ(q.on_turn_finished("s"), std::nullopt);
  EXPECT_FALSE(q.active("s"));
}

TEST(FollowupQueue, ACollectBatchStopsAtAMessageQueuedAsFollowup) {
  FollowupQueue q;
  q.enqueue("s", 1, FollowupMode::collect);
  q.enqueue("s", 2, FollowupMode::collect);
  q.enqueue("s", 3, FollowupMode::collect);
  q.enqueue("s", 4, FollowupMode::followup);
  q.enqueue("s", 5, FollowupMode::collect);
  EXPECT_EQ(q.on_turn_finished("s")->items, (Items{2, 3}));
  EXPECT_EQ(q.on_turn_finished("s")->items, Items{4});
  EXPECT_EQ(q.on_turn_finished("s")->items, Items{5});
  EXPECT_EQ(q.on_turn_finished("s"), std::nullopt);
}

TEST(FollowupQueue, SteerHandsTheMessageIntoTheRunningTurn) {
  FollowupQueue q;
  q.enqueue("s", 1, FollowupMode::steer);
  auto r = q.enqueue("s", 2, FollowupMode::steer);
  EXPECT_EQ(r.action, EnqueueAction::steered);
  EXPECT_TRUE(r.dropped.empty());
  EXPECT_TRUE(q.queued("s").empty());
  EXPECT_EQ(q.pending_count(), 0u);
  // Steered messages are part of the running turn: nothing runs after it.
  EXPECT_EQ(q.on_turn_finished("s"), std::nullopt);
  EXPECT_FALSE(q.active("s"));
}

TEST(FollowupQueue, InterruptCancelsTheRunningTurnThenRunsTheNewest) {
  FollowupQueue q;
  q.enqueue("s", 1, FollowupMode::followup);
  q.enqueue("s", 2, FollowupMode::followup);
  q.enqueue("s", 3, FollowupMode::followup);
  auto r = q.enqueue("s", 4, FollowupMode::interrupt);
  EXPECT_EQ(r.action, EnqueueAction::interrupt_active);
  EXPECT_EQ(r.dropped, (Items{2, 3}));
  EXPECT_EQ(q.queued("s"), Items{4});
  EXPECT_EQ(q.pending_count(), 1u);

  // A second interrupt before the cancelled turn reports back supersedes the first.
  auto again = q.enqueue("s", 5, FollowupMode::interrupt);
  EXPECT_EQ(again.action, EnqueueAction::interrupt_active);
  EXPECT_EQ(again.dropped, Items{4});
  EXPECT_EQ(q.pending_count(), 1u);

  auto next = q.on_turn_finished("s");
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(next->items, Items{5});
  EXPECT_EQ(q.on_turn_finished("s"), std::nullopt);
}

TEST(FollowupQueue, SessionsQueueIndependently) {
  FollowupQueue q;
  q.enqueue("a", 1, FollowupMode::followup);
  q.enqueue("b", 2, FollowupMode::followup);
  q.enqueue("a", 3, FollowupMode::followup);
  q.enqueue("b", 4, FollowupMode::followup);
  EXPECT_EQ(q.queued("a"), Items{3});
  EXPECT_EQ(q.queued("b"), Items{4});
  EXPECT_EQ(q.pending_count(), 2u);
  EXPECT_EQ(q.on_turn_finished("b")->items, Items{4});
  EXPECT_EQ(q.queued("a"), Items{3});
  EXPECT_EQ(q.active_count(), 2u);
}

TEST(FollowupQueue, FinishingAnIdleOrUnknownSessionIsHarmless) {
  FollowupQueue q;
  EXPECT_EQ(q.on_turn_finished("nope"), std::nullopt);
  q.enqueue("s", 1, FollowupMode::followup);
  EXPECT_EQ(q.on_turn_finished("s"), std::nullopt);
  EXPECT_EQ(q.on_turn_finished("s"), std::nullopt);
  EXPECT_EQ(q.active_count(), 0u);
  EXPECT_EQ(q.enqueue("s", 2, FollowupMode::followup).action, EnqueueAction::start_now);
}

TEST(FollowupQueue, DefaultCapIsTwentyAndDropSummarizes) {
  FollowupQueue q;
  EXPECT_EQ(q.options().cap, 20u);
  EXPECT_EQ(q.options().drop, DropPolicy::summarize);
  q.enqueue("s", 0, FollowupMode::followup);
  for (FollowupQueue::Item i = 1; i <= 20; ++i) {
    auto r = q.enqueue("s", i, FollowupMode::followup);
    EXPECT_EQ(r.action, EnqueueAction::queued);
    EXPECT_TRUE(r.dropped.empty()) << i;
  }
  auto r = q.enqueue("s", 21, FollowupMode::followup);
  EXPECT_EQ(r.action, EnqueueAction::queued);
  EXPECT_EQ(r.dropped, Items{1});
  EXPECT_EQ(q.pending_count(), 20u);
  EXPECT_EQ(q.dropped_count("s"), 1u);
}

TEST(FollowupQueue, FullQueueWithDropOldDropsTheOldest) {
  FollowupQueue q({.cap = 3, .drop = DropPolicy::oldest});
  q.enqueue("s", 1, FollowupMode::followup);
  q.enqueue("s", 2, FollowupMode::followup);
  q.enqueue("s", 3, FollowupMode::followup);
  q.enqueue("s", 4, FollowupMode::followup);
  auto r = q.enqueue("s", 5, FollowupMode::followup);
  EXPECT_EQ(r.action, EnqueueAction::queued);
  EXPECT_EQ(r.dropped, Items{2});
  EXPECT_EQ(q.queued("s"), (Items{3, 4, 5}));
  EXPECT_EQ(q.pending_count(), 3u);
  EXPECT_EQ(q.dropped_count("s"), 0u);
  EXPECT_EQ(q.on_turn_finished("s")->dropped_count, 0u);
}

TEST(FollowupQueue, FullQueueWithDropNewRefusesTheNewest) {
  FollowupQueue q({.cap = 3, .drop = DropPolicy::newest});
  q.enqueue("s", 1, FollowupMode::collect);
  q.enqueue("s", 2, FollowupMode::collect);
  q.enqueue("s", 3, FollowupMode::collect);
  q.enqueue("s", 4, FollowupMode::collect);
  auto r = q.enqueue("s", 5, FollowupMode::collect);
  EXPECT_EQ(r.action, EnqueueAction::dropped_new);
  EXPECT_EQ(r.dropped, Items{5});
  EXPECT_EQ(q.queued("s"), (Items{2, 3, 4}));
  EXPECT_EQ(q.pending_count(), 3u);
  auto next = q.on_turn_finished("s");
  EXPECT_EQ(next->items, (Items{2, 3, 4}));
  EXPECT_EQ(next->dropped_count, 0u);
}

TEST(FollowupQueue, SummarizeDropsTheOldestAndTheNextTurnHearsHowMany) {
  FollowupQueue q({.cap = 2, .drop = DropPolicy::summarize});
  q.enqueue("s", 1, FollowupMode::followup);
  q.enqueue("s", 2, FollowupMode::followup);
  q.enqueue("s", 3, FollowupMode::followup);
  EXPECT_EQ(q.enqueue("s", 4, FollowupMode::followup).dropped, Items{2});
  EXPECT_EQ(q.enqueue("s", 5, FollowupMode::followup).dropped, Items{3});
  EXPECT_EQ(q.enqueue("s", 6, FollowupMode::followup).dropped, Items{4});
  EXPECT_EQ(q.dropped_count("s"), 3u);
  EXPECT_EQ(q.queued("s"), (Items{5, 6}));

  // One marker for all of them, carried by the next turn only.
  auto first = q.on_turn_finished("s");
  EXPECT_EQ(first->items, Items{5});
  EXPECT_EQ(first->dropped_count, 3u);
  EXPECT_EQ(q.dropped_count("s"), 0u);
  auto second = q.on_turn_finished("s");
  EXPECT_EQ(second->items, Items{6});
  EXPECT_EQ(second->dropped_count, 0u);
}

TEST(FollowupQueue, SummarizeMarkerTravelsWithACollectedTurn) {
  FollowupQueue q({.cap = 2, .drop = DropPolicy::summarize});
  q.enqueue("s", 1, FollowupMode::collect);
  q.enqueue("s", 2, FollowupMode::collect);
  q.enqueue("s", 3, FollowupMode::collect);
  q.enqueue("s", 4, FollowupMode::collect);
  auto next = q.on_turn_finished("s");
  EXPECT_EQ(next->items, (Items{3, 4}));
  EXPECT_EQ(next->dropped_count, 1u);
}

TEST(FollowupQueue, SummarizeCountsSurviveAnInterrupt) {
  FollowupQueue q({.cap = 1, .drop = DropPolicy::summarize});
  q.enqueue("s", 1, FollowupMode::followup);
  q.enqueue("s", 2, FollowupMode::followup);
  q.enqueue("s", 3, FollowupMode::followup);  // drops 2
  EXPECT_EQ(q.enqueue("s", 4, FollowupMode::interrupt).dropped, Items{3});
  auto next = q.on_turn_finished("s");
  EXPECT_EQ(next->items, Items{4});
  EXPECT_EQ(next->dropped_count, 1u);
}

TEST(FollowupQueue, CapBelowOneCountsAsOne) {
  FollowupQueue q({.cap = 0, .drop = DropPolicy::oldest});
  EXPECT_EQ(q.options().cap, 1u);
  q.enqueue("s", 1, FollowupMode::followup);
  EXPECT_TRUE(q.enqueue("s", 2, FollowupMode::followup).dropped.empty());
  EXPECT_EQ(q.enqueue("s", 3, FollowupMode::followup).dropped, Items{2});
  EXPECT_EQ(q.queued("s"), Items{3});
}

TEST(FollowupQueue, LoweringTheCapTrimsOnlyLaterEnqueues) {
  FollowupQueue q({.cap = 5, .drop = DropPolicy::oldest});
  q.enqueue("s", 1, FollowupMode::followup);
  for (FollowupQueue::Item i = 2; i <= 5; ++i) q.enqueue("s", i, FollowupMode::followup);
  q.set_options({.cap = 2, .drop = DropPolicy::newest});
  EXPECT_EQ(q.queued("s"), (Items{2, 3, 4, 5}));
  EXPECT_EQ(q.enqueue("s", 6, FollowupMode::followup).action, EnqueueAction::dropped_new);
}

TEST(FollowupQueue, ModesAndPoliciesParseFromTheirConfigSpelling) {
  EXPECT_EQ(parse_followup_mode("steer"), FollowupMode::steer);
  EXPECT_EQ(parse_followup_mode("followup"), FollowupMode::followup);
  EXPECT_EQ(parse_followup_mode("collect"), FollowupMode::collect);
  EXPECT_EQ(parse_followup_mode("interrupt"), FollowupMode::interrupt);
  EXPECT_EQ(parse_followup_mode("Steer"), std::nullopt);
  EXPECT_EQ(parse_drop_policy("old"), DropPolicy::oldest);
  EXPECT_EQ(parse_drop_policy("new"), DropPolicy::newest);
  EXPECT_EQ(parse_drop_policy("summarize"), DropPolicy::summarize);
  EXPECT_EQ(parse_drop_policy("oldest"), std::nullopt);
  EXPECT_STREQ(to_string(EnqueueAction::interrupt_active), "interrupt_active");
}

TEST(FollowupQueue, ClearForgetsSessions) {
  FollowupQueue q;
  q.enqueue("a", 1, FollowupMode::followup);
  q.enqueue("a", 2, FollowupMode::followup);
  q.clear();
  EXPECT_EQ(q.pending_count(), 0u);
  EXPECT_EQ(q.active_count(), 0u);
  EXPECT_FALSE(q.active("a"));
  EXPECT_EQ(q.enqueue("a", 3, FollowupMode::followup).action, EnqueueAction::start_now);
}

}  // namespace
}  // namespace drawbridge::core
