// Chat events across replicas (runtime/event_relay.h), in simulated time: what one replica's
// relay sends, another's puts together and publishes, with deltas coalesced and bounded.

#include "runtime/event_relay.h"

#include <gtest/gtest.h>

#include "core/manual_executor.h"

namespace drawbridge::runtime {
namespace {

using pipeline::ChatEvent;

ChatEvent event(ChatEvent::State state, const std::string& run, const std::string& text) {
  ChatEvent ev;
  ev.state = state;
  ev.run_id = run;
  ev.session_key = "agent:main:s1";
  ev.text = text;
  ev.ts_ms = 1234;
  return ev;
}

class EventRelayTest : public ::testing::Test {
 protected:
  // Replica "a" sends, replica "b" receives what "a" sent (and its own notices back too, as
  // PostgreSQL delivers them to every listener).
  EventRelay a_{executor_, "a",
                [this](std::vector<std::string> p) {
                  ++sends_;
                  for (auto& n : p) wire_.push_back(std::move(n));
                },
                [](ChatEvent) { FAIL() << "a receives nothing here"; }};
  EventRelay b_{executor_, "b", [this](std::vector<std::string>) { ++b_sends_; },
                [this](ChatEvent ev) {
                  got_.push_back(ev);
                  b_.on_chat_event(ev);  // as the pipeline hands it to every listener
                }};

  void deliver() {
    for (const auto& n : wire_) {
      a_.on_notice(n);
      b_.on_notice(n);
    }
    wire_.clear();
  }

  core::ManualClock clock_;
  core::ManualExecutor executor_{clock_};
  std::vector<std::string> wire_;
  std::vector<ChatEvent> got_;
  int sends_ = 0;
  int b_sends_ = 0;
};

TEST_F(EventRelayTest, AFinalCrossesAtOnceWithItsFields) {
  auto ev = event(ChatEvent::State::final, "run-1", "the answer");
  ev.message_id = "reply:1:0";
  ev.final_part = false;
  a_.on_chat_event(ev);
  EXPECT_EQ(sends_, 1);
  deliver();
  ASSERT_EQ(got_.size(), 1u);
  EXPECT_EQ(got_[0].state, ChatEvent::State::final);
  EXPECT_EQ(got_[0].run_id, "run-1");
  EXPECT_EQ(got_[0].session_key, "agent:main:s1");
  EXPECT_EQ(got_[0].text, "the answer");
  EXPECT_EQ(got_[0].message_id, "reply:1:0");
  EXPECT_FALSE(got_[0].final_part);
  EXPECT_EQ(got_[0].ts_ms, 1234);
  EXPECT_EQ(b_sends_, 0) << "an event of another replica is not sent back";
  EXPECT_EQ(a_.refused() + b_.refused(), 0u);
}

TEST_F(EventRelayTest, DeltasAreCoalescedAndComeBeforeTheirFinal) {
  a_.on_chat_event(event(ChatEvent::State::delta, "run-1", "Hel"));
  a_.on_chat_event(event(ChatEvent::State::delta, "run-1", "lo"));
  EXPECT_EQ(sends_, 0) << "held for the coalescing window";
  executor_.advance(EventRelay::kCoalesce);
  EXPECT_EQ(sends_, 1);
  a_.on_chat_event(event(ChatEvent::State::delta, "run-1", ", world"));
  a_.on_chat_event(event(ChatEvent::State::final, "run-1", "Hello, world"));
  EXPECT_EQ(sends_, 2) << "the final flushes its run's deltas with it";
  deliver();
  ASSERT_EQ(got_.size(), 3u);
  EXPECT_EQ(got_[0].text, "Hello");
  EXPECT_EQ(got_[0].accumulated, "Hello");
  EXPECT_EQ(got_[1].text, ", world");
  EXPECT_EQ(got_[1].accumulated, "Hello, world");
  EXPECT_EQ(got_[2].state, ChatEvent::State::final);
  executor_.advance(std::chrono::seconds(1));
  EXPECT_EQ(sends_, 2) << "nothing left behind";
}

TEST_F(EventRelayTest, ALargeEventIsCutIntoNoticesAndPutTogether) {
  std::string text;
  for (int i = 0; i < 3000; ++i) text += "é€\"\\\n";  // multi-byte, escaped in JSON
  a_.on_chat_event(event(ChatEvent::State::final, "run-big", text));
  ASSERT_GT(wire_.size(), 3u);
  for (const auto& n : wire_) EXPECT_LE(n.size(), store::Store::kNoticeBytes);
  deliver();
  ASSERT_EQ(got_.size(), 1u);
  EXPECT_EQ(got_[0].text, text);
}

TEST_F(EventRelayTest, NoticesAreCutBetweenCharacters) {
  std::string text(500, 'x');
  for (int i = 0; i < 500; ++i) text += "日本";
  auto notices = EventRelay::encode("a", 1, event(ChatEvent::State::final, "r", text), 200);
  ASSERT_GT(notices.size(), 10u);
  for (const auto& n : notices) {
    ASSERT_LE(n.size(), 200u);
    // Every notice is valid UTF-8 on its own (PostgreSQL refuses other text).
    std::size_t i = 0;
    while (i < n.size()) {
      const auto c = static_cast<unsigned char>(n[i]);
      const std::size_t len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
      ASSERT_NE(c & 0xC0, 0x80u) << "a continuation byte starts a character";
      i += len;
    }
    EXPECT_EQ(i, n.size());
  }
}

TEST_F(EventRelayTest, HostileNoticesAreRefusedAndCostNothing) {
  const std::vector<std::string> bad = {
      "",
      "garbage",
      "1 0 1 5:ab",                      // origin longer than the rest
      "1 2 1 1:x{}",                     // index past count
      "1 0 0 1:x{}",                     // no parts
      "1 0 1 1:x{not json",              // broken JSON
      "1 0 1 1:x[]",                     // not an object
      R"(1 0 1 1:x{"k":"nope","r":"r","s":"s"})",  // unknown state
      R"(1 0 1 1:x{"k":"final","r":"","s":"s"})",  // no run
      R"(1 0 1 1:x{"k":"final","r":5,"s":"s"})",   // wrong type
      "1 1 3 1:x{",                      // a middle part whose beginning was lost
      "99999999999999999999999 0 1 1:x{}",
  };
  for (const auto& n : bad) b_.on_notice(n);
  EXPECT_TRUE(got_.empty());
  EXPECT_EQ(b_.refused(), bad.size());
}

TEST_F(EventRelayTest, PartsOutOfOrderDropTheEvent) {
  std::string text(20000, 'y');
  auto notices = EventRelay::encode("a", 7, event(ChatEvent::State::final, "r", text));
  ASSERT_GE(notices.size(), 3u);
  b_.on_notice(notices[0]);
  b_.on_notice(notices[2]);
  b_.on_notice(notices[1]);
  EXPECT_TRUE(got_.empty());
  EXPECT_GE(b_.refused(), 1u);
  // The next event is not held up by the one that was dropped.
  for (const auto& n : EventRelay::encode("a", 8, event(ChatEvent::State::final, "r", "ok"))) {
    b_.on_notice(n);
  }
  ASSERT_EQ(got_.size(), 1u);
  EXPECT_EQ(got_[0].text, "ok");
}

TEST_F(EventRelayTest, UnfinishedAssembliesAreBounded) {
  std::string text(20000, 'z');
  for (std::uint64_t i = 0; i < EventRelay::kMaxAssemblies * 3; ++i) {
    auto notices = EventRelay::encode("a", i, event(ChatEvent::State::final, "r", text));
    b_.on_notice(notices[0]);  // only the first part of each ever arrives
  }
  // The newest ones are still being put together: one of them completes.
  const auto last = EventRelay::kMaxAssemblies * 3 - 1;
  auto notices = EventRelay::encode("a", last, event(ChatEvent::State::final, "r", text));
  for (std::size_t i = 1; i < notices.size(); ++i) b_.on_notice(notices[i]);
  ASSERT_EQ(got_.size(), 1u);
  EXPECT_EQ(b_.refused(), EventRelay::kMaxAssemblies * 2);
}

TEST_F(EventRelayTest, StreamedTextOfAFinishedRunIsForgotten) {
  a_.on_chat_event(event(ChatEvent::State::delta, "run-1", "abc"));
  a_.on_chat_event(event(ChatEvent::State::error, "run-1", ""));
  deliver();
  ASSERT_EQ(got_.size(), 2u);
  // The same run id streaming again (a replayed run) starts from nothing.
  a_.on_chat_event(event(ChatEvent::State::delta, "run-1", "x"));
  executor_.advance(EventRelay::kCoalesce);
  deliver();
  ASSERT_EQ(got_.size(), 3u);
  EXPECT_EQ(got_[2].accumulated, "x");
}

TEST_F(EventRelayTest, ALoneReplicaSendsNothingUntilAnotherSaysHello) {
  a_.set_peers(false);
  a_.on_chat_event(event(ChatEvent::State::delta, "run-1", "x"));
  a_.on_chat_event(event(ChatEvent::State::final, "run-1", "x"));
  executor_.advance(std::chrono::seconds(1));
  EXPECT_EQ(sends_, 0);
  a_.on_notice(EventRelay::hello("a"));  // its own, back from the database
  EXPECT_FALSE(a_.peers());
  a_.on_notice("hello 5:b");  // a length that does not match: refused
  EXPECT_FALSE(a_.peers());
  EXPECT_EQ(a_.refused(), 1u);
  a_.on_notice(EventRelay::hello("b"));
  EXPECT_TRUE(a_.peers());
  a_.on_chat_event(event(ChatEvent::State::final, "run-2", "y"));
  EXPECT_EQ(sends_, 1);
  deliver();
  ASSERT_EQ(got_.size(), 1u);
  EXPECT_EQ(got_[0].text, "y");
}

}  // namespace
}  // namespace drawbridge::runtime
