#include "core/inbound_debouncer.h"

#include <gtest/gtest.h>

#include <chrono>

namespace drawbridge::core {
namespace {

using namespace std::chrono_literals;
using Items = std::vector<InboundDebouncer::Item>;

std::vector<std::string> keys_of(const std::vector<InboundDebouncer::Batch>& batches) {
  std::vector<std::string> keys;
  for (const auto& b : batches) keys.push_back(b.key);
  return keys;
}

TEST(InboundDebouncer, ZeroWindowPassesEachItemThroughAtOnce) {
  ManualClock clock;
  InboundDebouncer d(0ms);
  auto batch = d.add("chat", 7, clock.now());
  ASSERT_TRUE(batch.has_value());
  EXPECT_EQ(batch->key, "chat");
  EXPECT_EQ(batch->items, Items{7});
  EXPECT_EQ(batch->deadline, clock.now());
  EXPECT_EQ(d.size(), 0u);
  EXPECT_EQ(d.buffered_items(), 0u);
  EXPECT_EQ(d.next_deadline(), std::nullopt);
}

TEST(InboundDebouncer, NegativeWindowCountsAsZero) {
  ManualClock clock;
  InboundDebouncer d(-5ms);
  EXPECT_EQ(d.window(), 0ms);
  auto batch = d.add("chat", 1, clock.now());
  ASSERT_TRUE(batch.has_value());
  EXPECT_EQ(batch->items, Items{1});
}

TEST(InboundDebouncer, RapidMessagesOfOneChatBecomeOneBatch) {
  ManualClock clock;
  const TimePoint t0 = clock.now();
  InboundDebouncer d(1000ms);
  EXPECT_EQ(d.add("chat", 1, clock.now()), std::nullopt);
  clock.advance(400ms);
  EXPECT_EQ(d.add("chat", 2, clock.now()), std::nullopt);
  clock.advance(400ms);
  EXPECT_EQ(d.add("chat", 3, clock.now()), std::nullopt);
  // Every message re-arms the window: due 1000 ms after the last one, not the first.
  EXPECT_EQ(d.next_deadline(), t0 + 1800ms);
  EXPECT_EQ(d.size(), 1u);
  EXPECT_EQ(d.buffered_items(), 3u);

  clock.advance(999ms);
  EXPECT_TRUE(d.due(clock.now()).empty());
  clock.advance(1ms);
  auto due = d.due(clock.now());
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].key, "chat");
  EXPECT_EQ(due[0].items, (Items{1, 2, 3}));
  EXPECT_EQ(due[0].deadline, t0 + 1800ms);
  EXPECT_EQ(d.size(), 0u);
  EXPECT_EQ(d.buffered_items(), 0u);
  EXPECT_EQ(d.next_deadline(), std::nullopt);
  EXPECT_TRUE(d.due(clock.now()).empty());
}

TEST(InboundDebouncer, AQuietGapLongerThanTheWindowStartsANewBatch) {
  ManualClock clock;
  InboundDebouncer d(500ms);
  d.add("chat", 1, clock.now());
  clock.advance(500ms);
  auto first = d.due(clock.now());
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].items, Items{1});
  clock.advance(100ms);
  d.add("chat", 2, clock.now());
  clock.advance(500ms);
  auto second = d.due(clock.now());
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].items, Items{2});
}

TEST(InboundDebouncer, ChatsAreBatchedApartAndReleasedInDeadlineOrder) {
  ManualClock clock;
  const TimePoint t0 = clock.now();
  InboundDebouncer d(1000ms);
  d.add("a", 1, clock.now());  // a due at 1000
  clock.advance(100ms);
  d.add("b", 2, clock.now());  // b due at 1100
  clock.advance(100ms);
  d.add("c", 3, clock.now());  // c due at 1200
  clock.advance(100ms);
  d.add("a", 4, clock.now());  // a re-armed: due at 1300, now last
  EXPECT_EQ(d.size(), 3u);
  EXPECT_EQ(d.buffered_items(), 4u);
  EXPECT_EQ(d.next_deadline(), t0 + 1100ms);

  clock.advance(2000ms);
  auto due = d.due(clock.now());
  EXPECT_EQ(keys_of(due), (std::vector<std::string>{"b", "c", "a"}));
  ASSERT_EQ(due.size(), 3u);
  EXPECT_EQ(due[0].items, Items{2});
  EXPECT_EQ(due[1].items, Items{3});
  EXPECT_EQ(due[2].items, (Items{1, 4}));
  EXPECT_EQ(due[2].deadline, t0 + 1300ms);
}

TEST(InboundDebouncer, DueReleasesOnlyWhatIsDue) {
  ManualClock clock;
  const TimePoint t0 = clock.now();
  InboundDebouncer d(1000ms);
  d.add("a", 1, clock.now());
  clock.advance(600ms);
  d.add("b", 2, clock.now());
  clock.advance(400ms);
  auto due = d.due(clock.now());
  EXPECT_EQ(keys_of(due), std::vector<std::string>{"a"});
  EXPECT_EQ(d.size(), 1u);
  EXPECT_EQ(d.next_deadline(), t0 + 1600ms);
}

TEST(InboundDebouncer, KeysDueAtTheSameInstantComeOutInArmOrder) {
  ManualClock clock;
  InboundDebouncer d(1000ms);
  d.add("z", 1, clock.now());
  d.add("a", 2, clock.now());
  d.add("m", 3, clock.now());
  clock.advance(1000ms);
  EXPECT_EQ(keys_of(d.due(clock.now())), (std::vector<std::string>{"z", "a", "m"}));
}

TEST(InboundDebouncer, FlushReleasesOneKeyBeforeItsDeadline) {
  ManualClock clock;
  const TimePoint t0 = clock.now();
  InboundDebouncer d(1000ms);
  d.add("a", 1, clock.now());
  d.add("a", 2, clock.now());
  clock.advance(10ms);
  d.add("b", 3, clock.now());
  auto a = d.flush("a");
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->key, "a");
  EXPECT_EQ(a->items, (Items{1, 2}));
  EXPECT_EQ(a->deadline, t0 + 1000ms);
  EXPECT_EQ(d.size(), 1u);
  EXPECT_EQ(d.buffered_items(), 1u);
  EXPECT_EQ(d.next_deadline(), t0 + 1010ms);
  EXPECT_EQ(d.flush("a"), std::nullopt);
  EXPECT_EQ(d.flush("unknown"), std::nullopt);
}

TEST(InboundDebouncer, FlushAllReleasesEverythingEarliestDeadlineFirst) {
  ManualClock clock;
  InboundDebouncer d(1000ms);
  d.add("a", 1, clock.now());
  clock.advance(10ms);
  d.add("b", 2, clock.now());
  clock.advance(10ms);
  d.add("a", 3, clock.now());
  auto all = d.flush_all();
  EXPECT_EQ(keys_of(all), (std::vector<std::string>{"b", "a"}));
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[1].items, (Items{1, 3}));
  EXPECT_EQ(d.size(), 0u);
  EXPECT_EQ(d.buffered_items(), 0u);
  EXPECT_EQ(d.next_deadline(), std::nullopt);
  // Nothing comes out twice: the timer that was armed for them now finds nothing.
  clock.advance(5000ms);
  EXPECT_TRUE(d.due(clock.now()).empty());
  EXPECT_TRUE(d.flush_all().empty());
}

TEST(InboundDebouncer, AKeyReleasedEarlyStartsAFreshBatchAndWindow) {
  ManualClock clock;
  const TimePoint t0 = clock.now();
  InboundDebouncer d(1000ms);
  d.add("a", 1, clock.now());
  d.flush("a");
  clock.advance(200ms);
  d.add("a", 2, clock.now());
  EXPECT_EQ(d.next_deadline(), t0 + 1200ms);
  clock.advance(1000ms);
  auto due = d.due(clock.now());
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].items, Items{2});
}

TEST(InboundDebouncer, LoweringTheWindowToZeroReleasesWhatWasBufferedFirst) {
  ManualClock clock;
  InboundDebouncer d(1000ms);
  d.add("a", 1, clock.now());
  d.add("a", 2, clock.now());
  d.add("b", 3, clock.now());
  d.set_window(0ms);
  clock.advance(10ms);
  auto batch = d.add("a", 4, clock.now());
  ASSERT_TRUE(batch.has_value());
  EXPECT_EQ(batch->items, (Items{1, 2, 4}));
  EXPECT_EQ(batch->deadline, clock.now());
  // Other keys keep the deadline they were armed with.
  EXPECT_EQ(d.size(), 1u);
  EXPECT_EQ(d.buffered_items(), 1u);
}

TEST(InboundDebouncer, ChangingTheWindowAppliesToLaterMessages) {
  ManualClock clock;
  const TimePoint t0 = clock.now();
  InboundDebouncer d(1000ms);
  d.add("a", 1, clock.now());
  d.set_window(300ms);
  EXPECT_EQ(d.next_deadline(), t0 + 1000ms);
  clock.advance(100ms);
  d.add("a", 2, clock.now());
  EXPECT_EQ(d.next_deadline(), t0 + 400ms);
}

TEST(InboundDebouncer, DebounceKeyKeepsChannelAndChatApart) {
  EXPECT_NE(debounce_key("a:b", "c"), debounce_key("a", "b:c"));
  EXPECT_EQ(debounce_key("telegram", "42"), debounce_key("telegram", "42"));
  EXPECT_NE(debounce_key("telegram", "42"), debounce_key("irc", "42"));
}

TEST(DebouncerRegistry, FlushSeveralDebouncersAndCountThem) {
  ManualClock clock;
  DebouncerRegistry registry;
  auto& a = registry.add("telegram", 5000ms);
  auto& b = registry.add("irc", 5000ms);
  a.add("session-1", 1, clock.now());
  a.add("session-1", 2, clock.now());
  clock.advance(10ms);
  b.add("session-2", 3, clock.now());
  clock.advance(10ms);
  a.add("session-3", 4, clock.now());
  EXPECT_EQ(registry.size(), 2u);
  EXPECT_EQ(registry.buffered_items(), 4u);

  auto flushed = registry.flush_all();
  EXPECT_EQ(flushed.count(), 3u);
  EXPECT_EQ(flushed.items(), 4u);
  ASSERT_EQ(flushed.batches.size(), 3u);
  EXPECT_EQ(flushed.batches[0].debouncer, "telegram");
  EXPECT_EQ(flushed.batches[0].batch.key, "session-1");
  EXPECT_EQ(flushed.batches[0].batch.items, (Items{1, 2}));
  EXPECT_EQ(flushed.batches[1].debouncer, "irc");
  EXPECT_EQ(flushed.batches[1].batch.items, Items{3});
  EXPECT_EQ(flushed.batches[2].debouncer, "telegram");
  EXPECT_EQ(flushed.batches[2].batch.items, Items{4});
  EXPECT_EQ(registry.buffered_items(), 0u);
  EXPECT_EQ(registry.next_deadline(), std::nullopt);
  // The debouncers stay registered for the messages that arrive while draining.
  EXPECT_EQ(registry.size(), 2u);
}

TEST(DebouncerRegistry, CountsBuffersNotRegisteredDebouncers) {
  ManualClock clock;
  DebouncerRegistry registry;
  auto& active = registry.add("active", 5000ms);
  registry.add("quiet", 5000ms);
  active.add("session-1", 1, clock.now());
  active.add("session-2", 2, clock.now());
  EXPECT_EQ(registry.flush_all().count(), 2u);
}

TEST(DebouncerRegistry, FlushAllWithNothingBufferedCountsZero) {
  DebouncerRegistry registry;
  EXPECT_EQ(registry.flush_all().count(), 0u);
  registry.add("a", 1000ms);
  auto flushed = registry.flush_all();
  EXPECT_EQ(flushed.count(), 0u);
  EXPECT_EQ(flushed.items(), 0u);
}

TEST(DebouncerRegistry, AddingAnExistingNameKeepsItsBufferAndChangesTheWindow) {
  ManualClock clock;
  DebouncerRegistry registry;
  auto& first = registry.add("telegram", 1000ms);
  first.add("chat", 1, clock.now());
  auto& again = registry.add("telegram", 200ms);
  EXPECT_EQ(&first, &again);
  EXPECT_EQ(again.window(), 200ms);
  EXPECT_EQ(registry.size(), 1u);
  EXPECT_EQ(registry.buffered_items(), 1u);
  EXPECT_EQ(registry.find("telegram"), &first);
  EXPECT_EQ(registry.find("irc"), nullptr);
}

TEST(DebouncerRegistry, RemovingADebouncerHandsBackWhatItBuffered) {
  ManualClock clock;
  DebouncerRegistry registry;
  registry.add("irc", 1000ms).add("chat", 5, clock.now());
  auto left = registry.remove("irc");
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(left[0].key, "chat");
  EXPECT_EQ(left[0].items, Items{5});
  EXPECT_EQ(registry.size(), 0u);
  EXPECT_EQ(registry.find("irc"), nullptr);
  EXPECT_TRUE(registry.remove("irc").empty());
}

TEST(DebouncerRegistry, DueAndNextDeadlineSpanEveryDebouncer) {
  ManualClock clock;
  const TimePoint t0 = clock.now();
  DebouncerRegistry registry;
  auto& slow = registry.add("slow", 1000ms);
  auto& fast = registry.add("fast", 100ms);
  slow.add("x", 1, clock.now());
  clock.advance(50ms);
  fast.add("y", 2, clock.now());
  EXPECT_EQ(registry.next_deadline(), t0 + 150ms);

  clock.advance(100ms);
  auto first = registry.due(clock.now());
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].debouncer, "fast");
  EXPECT_EQ(first[0].batch.items, Items{2});
  EXPECT_EQ(registry.next_deadline(), t0 + 1000ms);

  clock.advance(850ms);
  auto second = registry.due(clock.now());
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].debouncer, "slow");
  EXPECT_EQ(registry.next_deadline(), std::nullopt);
}

TEST(DebouncerRegistry, DueAcrossDebouncersIsEarliestDeadlineFirst) {
  ManualClock clock;
  DebouncerRegistry registry;
  auto& a = registry.add("a", 300ms);
  auto& b = registry.add("b", 100ms);
  a.add("k", 1, clock.now());  // due at 300
  b.add("k", 2, clock.now());  // due at 100
  clock.advance(1000ms);
  auto due = registry.due(clock.now());
  ASSERT_EQ(due.size(), 2u);
  EXPECT_EQ(due[0].debouncer, "b");
  EXPECT_EQ(due[1].debouncer, "a");
}

}  // namespace
}  // namespace drawbridge::core
