#include "core/reply_dispatcher.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

namespace drawbridge::core {
namespace {

using Part = ReplyDispatcher::Part;

TEST(ReplyDispatcher, ReservationHoldsRestartUntilTheLastPartIsSettled) {
  // OpenClaw's scenario: a restart asked for while a turn runs, before its reply parts exist.
  ReplyDispatcher d;
  auto r = d.reserve("chat-1");
  EXPECT_EQ(d.pending(), 1u);
  int restarted = 0;
  d.when_idle([&] { ++restarted; });
  EXPECT_EQ(restarted, 0);

  auto first = d.enqueue("chat-1", {{10, 0}, {11, 1}}, r);
  ASSERT_EQ(first, (Part{10, 0}));
  EXPECT_EQ(d.reservations(), 0u);
  EXPECT_EQ(restarted, 0);
  EXPECT_EQ(d.settled("chat-1", 10), (Part{11, 1}));
  EXPECT_EQ(restarted, 0);
  EXPECT_EQ(d.settled("chat-1", 11), std::nullopt);
  EXPECT_EQ(restarted, 1);
  EXPECT_TRUE(d.idle());
}

TEST(ReplyDispatcher, PartsGoOutInPartOrderOneAtATime) {
  ReplyDispatcher d;
  auto now = d.enqueue("k", {{12, 2}, {10, 0}, {11, 1}});
  ASSERT_EQ(now, (Part{10, 0}));
  EXPECT_EQ(d.in_flight(), 1u);
  EXPECT_EQ(d.queued(), 2u);
  EXPECT_EQ(d.in_flight_part("k"), (Part{10, 0}));
  EXPECT_EQ(d.settled("k", 10), (Part{11, 1}));
  EXPECT_EQ(d.in_flight(), 1u);
  EXPECT_EQ(d.queued(), 1u);
  EXPECT_EQ(d.settled("k", 11), (Part{12, 2}));
  EXPECT_EQ(d.settled("k", 12), std::nullopt);
  EXPECT_EQ(d.pending(), 0u);
  EXPECT_EQ(d.in_flight_part("k"), std::nullopt);
}

TEST(ReplyDispatcher, EnqueueToABusyKeyAppendsAfterWhatIsQueued) {
  ReplyDispatcher d;
  ASSERT_EQ(d.enqueue("k", {{1, 0}, {2, 1}}), (Part{1, 0}));
  // The next reply of the same chat: its part 0 must not jump ahead of the first reply's part 1.
  EXPECT_EQ(d.enqueue("k", {{4, 1}, {3, 0}}), std::nullopt);
  EXPECT_EQ(d.queued(), 3u);
  EXPECT_EQ(d.settled("k", 1), (Part{2, 1}));
  EXPECT_EQ(d.settled("k", 2), (Part{3, 0}));
  EXPECT_EQ(d.settled("k", 3), (Part{4, 1}));
  EXPECT_EQ(d.settled("k", 4), std::nullopt);
}

TEST(ReplyDispatcher, TwoKeysInterleave) {
  ReplyDispatcher d;
  EXPECT_EQ(d.enqueue("a", {{1, 0}, {2, 1}}), (Part{1, 0}));
  EXPECT_EQ(d.enqueue("b", {{3, 0}, {4, 1}}), (Part{3, 0}));
  EXPECT_EQ(d.in_flight(), 2u);
  EXPECT_EQ(d.settled("b", 3), (Part{4, 1}));
  EXPECT_EQ(d.in_flight_part("a"), (Part{1, 0}));
  EXPECT_EQ(d.settled("a", 1), (Part{2, 1}));
  EXPECT_EQ(d.settled("a", 2), std::nullopt);
  EXPECT_EQ(d.pending_keys(), (std::vector<std::string>{"b"}));
  EXPECT_EQ(d.settled("b", 4), std::nullopt);
  EXPECT_TRUE(d.idle());
}

TEST(ReplyDispatcher, ReleaseWithoutPartsWakesWaiters) {
  ReplyDispatcher d;
  auto r1 = d.reserve("a");
  auto r2 = d.reserve("b");
  int woken = 0;
  d.when_idle([&] { ++woken; });
  d.release(r1);
  EXPECT_EQ(woken, 0);
  d.release(r1);  // already released: must not count r2 down
  EXPECT_EQ(d.reservations(), 1u);
  EXPECT_EQ(woken, 0);
  d.release(r2);
  EXPECT_EQ(woken, 1);
  EXPECT_TRUE(d.idle());
}

TEST(ReplyDispatcher, SettledWithAWrongIdIsIgnored) {
  ReplyDispatcher d;
  ASSERT_EQ(d.enqueue("k", {{1, 0}, {2, 1}}), (Part{1, 0}));
  EXPECT_EQ(d.settled("k", 2), std::nullopt);  // queued, not in flight
  EXPECT_EQ(d.settled("k", 99), std::nullopt);
  EXPECT_EQ(d.settled("other", 1), std::nullopt);
  EXPECT_EQ(d.in_flight_part("k"), (Part{1, 0}));
  EXPECT_EQ(d.in_flight(), 1u);
  EXPECT_EQ(d.queued(), 1u);
  EXPECT_EQ(d.settled("k", 1), (Part{2, 1}));
}

TEST(ReplyDispatcher, EnqueueWithReservationNeverLetsPendingReachZero) {
  ReplyDispatcher d;
  auto r = d.reserve("k");
  std::optional<std::size_t> pending_when_woken;
  d.when_idle([&] { pending_when_woken = d.pending(); });
  auto now = d.enqueue("k", {{1, 0}}, r);
  EXPECT_EQ(pending_when_woken, std::nullopt);  // not even for a moment inside enqueue
  EXPECT_EQ(d.pending(), 1u);
  ASSERT_EQ(now, (Part{1, 0}));
  d.settled("k", 1);
  EXPECT_EQ(pending_when_woken, 0u);
}

TEST(ReplyDispatcher, EnqueueWithReservationAndNoPartsReleasesIt) {
  ReplyDispatcher d;
  auto r = d.reserve("k");
  int woken = 0;
  d.when_idle([&] { ++woken; });
  EXPECT_EQ(d.enqueue("k", {}, r), std::nullopt);
  EXPECT_EQ(woken, 1);
  EXPECT_TRUE(d.pending_keys().empty());
}

TEST(ReplyDispatcher, PartAlreadyQueuedOrInFlightIsNotQueuedTwice) {
  ReplyDispatcher d;
  ASSERT_EQ(d.enqueue("k", {{1, 0}, {2, 1}}), (Part{1, 0}));
  EXPECT_EQ(d.enqueue("k", {{1, 0}, {2, 1}, {3, 2}}), std::nullopt);
  EXPECT_EQ(d.queued(), 2u);
  EXPECT_EQ(d.settled("k", 1), (Part{2, 1}));
  EXPECT_EQ(d.settled("k", 2), (Part{3, 2}));
  EXPECT_EQ(d.settled("k", 3), std::nullopt);
}

TEST(ReplyDispatcher, WaiterThatReservesHoldsBackTheNextWaiter) {
  ReplyDispatcher d;
  auto r = d.reserve("k");
  std::optional<ReplyDispatcher::ReservationId> taken;
  int second = 0;
  d.when_idle([&] { taken = d.reserve("k"); });
  d.when_idle([&] { ++second; });
  d.release(r);
  ASSERT_TRUE(taken.has_value());
  EXPECT_EQ(second, 0);
  d.release(*taken);
  EXPECT_EQ(second, 1);
}

TEST(ReplyDispatcher, WaiterMayRegisterWaiters) {
  ReplyDispatcher d;
  auto r = d.reserve("k");
  std::vector<std::string> order;
  d.when_idle([&] {
    order.push_back("outer");
    d.when_idle([&] { order.push_back("idle now"); });
    auto again = d.reserve("k");
    d.when_idle([&] { order.push_back("after release"); });
    d.release(again);
  });
  d.release(r);
  EXPECT_EQ(order, (std::vector<std::string>{"outer", "idle now", "after release"}));
  d.when_idle([&] { order.push_back("at once"); });
  EXPECT_EQ(order.back(), "at once");
  EXPECT_EQ(order.size(), 4u);
}

TEST(ReplyDispatcher, PendingKeysCoverReservationsQueuedAndInFlight) {
  ReplyDispatcher d;
  d.reserve("c");
  d.enqueue("a", {{1, 0}});
  d.reserve("a");
  d.enqueue("b", {{2, 0}, {3, 1}});
  EXPECT_EQ(d.pending_keys(), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(d.pending(), 5u);
}

TEST(ReplyDispatcher, ClearForgetsEverythingOfTheOldGeneration) {
  ReplyDispatcher d;
  auto stale = d.reserve("a");
  d.enqueue("b", {{1, 0}, {2, 1}});
  int woken = 0;
  d.when_idle([&] { ++woken; });
  d.clear();
  EXPECT_TRUE(d.idle());
  EXPECT_TRUE(d.pending_keys().empty());
  EXPECT_EQ(woken, 0);  // the old generation's waiters are dropped, not run

  // A reservation of the new generation is not released by the old one's id.
  auto fresh = d.reserve("a");
  EXPECT_NE(fresh, stale);
  d.release(stale);
  EXPECT_EQ(d.reservations(), 1u);
  // The outbox rows come back from the store and go out from the first part again.
  EXPECT_EQ(d.enqueue("b", {{1, 0}, {2, 1}}, fresh), (Part{1, 0}));
  EXPECT_EQ(d.settled("b", 1), (Part{2, 1}));
  EXPECT_EQ(woken, 0);
}

TEST(ReplyDispatcher, AnAbandonedReplyNoLongerHoldsIdleAndIsNotAdvanced) {
  ReplyDispatcher d;
  ASSERT_EQ(d.enqueue("left", {{10, 0}, {11, 1}, {12, 2}}), (Part{10, 0}));
  ASSERT_EQ(d.enqueue("kept", {{20, 0}}), (Part{20, 0}));
  int idle = 0;
  d.when_idle([&] { ++idle; });
  EXPECT_EQ(d.abandon("left"), 3u);  // one in flight, two queued
  EXPECT_EQ(d.pending(), 1u);
  EXPECT_EQ(idle, 0);
  EXPECT_EQ(d.settled("left", 10), std::nullopt) << "an abandoned part came back";
  EXPECT_EQ(d.abandon("left"), 0u);
  EXPECT_EQ(d.settled("kept", 20), std::nullopt);
  EXPECT_EQ(idle, 1);
  EXPECT_TRUE(d.idle());
  EXPECT_EQ(d.abandon("unknown"), 0u);
}

}  // namespace
}  // namespace drawbridge::core
