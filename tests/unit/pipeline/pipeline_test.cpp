#include "pipeline/pipeline.h"

#include <gtest/gtest.h>

#include "core/manual_executor.h"
#include "unit/pipeline/fakes.h"
#include "store/sqlite_store.h"

namespace drawbridge::pipeline {
namespace {

using testing::FakeAgent;
using testing::FakeChannel;
using testing::RecordingListener;

class PipelineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = store::SqliteStore::open(":memory:");
    writer_ = std::make_unique<InlineBatchRunner>(*store_);
  }

  std::unique_ptr<Pipeline> make_pipeline(int max_chars = 0) {
    auto p = std::make_unique<Pipeline>(clock_, executor_, *store_, *writer_);
    p->add_channel(&channel_, &agent_, max_chars);
    p->add_listener(&listener_);
    return p;
  }

  InboundMessage msg(const std::string& key, const std::string& session, const std::string& text) {
    return InboundMessage{"local", key, session, "", "tester", text, key};
  }

  // Accepts and runs the round, so the commit and its callbacks have happened.
  AcceptResult accept(Pipeline& p, const InboundMessage& m) {
    AcceptResult out;
    bool called = false;
    p.accept(m, [&](AcceptResult r) {
      out = std::move(r);
      called = true;
    });
    EXPECT_FALSE(called) << "acknowledged before the commit";
    executor_.run_ready();
    EXPECT_TRUE(called);
    return out;
  }
  SendResult send(Pipeline& p, SendRequest r) {
    SendResult out;
    p.send(r, [&](SendResult res) { out = std::move(res); });
    executor_.run_ready();
    return out;
  }
  void complete(std::size_t i, const std::string& text) {
    agent_.complete(i, text);
    executor_.run_ready();
  }
  void finish(std::size_t i, TurnOutcome::Kind kind, const std::string& text,
              const std::string& error = {}) {
    agent_.finish(i, kind, text, error);
    executor_.run_ready();
  }

  std::size_t assistant_entries(const std::string& session) {
    std::size_t n = 0;
    for (const auto& e : store_->transcript(session, 1000)) n += e.role == "assistant";
    return n;
  }

  core::ManualClock clock_;
  core::ManualExecutor executor_{clock_};
  std::unique_ptr<store::SqliteStore> store_;
  std::unique_ptr<InlineBatchRunner> writer_;
  FakeAgent agent_;
  FakeChannel channel_;
  RecordingListener listener_;
};

TEST_F(PipelineTest, AcceptedMessageIsInTheInboxBeforeItsTurnRuns) {
  auto p = make_pipeline();
  auto res = accept(*p, msg("k1", "s", "hello"));
  EXPECT_EQ(res.status, "started");
  EXPECT_FALSE(res.duplicate);
  auto row = store_->inbound(res.inbound_id);
  ASSERT_TRUE(row);
  EXPECT_EQ(row->state, store::InboxState::pending);  // until the reply closes it
  ASSERT_EQ(agent_.calls.size(), 1u);
  EXPECT_EQ(agent_.calls[0]->request.text, "hello");
  EXPECT_EQ(agent_.calls[0]->request.history.back().text, "hello");
}

TEST_F(PipelineTest, CompletedTurnIsRepliedOnceAndClosesTheInboxRow) {
  auto p = make_pipeline();
  auto res = accept(*p, msg("k1", "s", "hello"));
  complete(0, "hi!");
  ASSERT_EQ(channel_.sent.size(), 1u);
  EXPECT_EQ(channel_.sent[0].text, "hi!");
  EXPECT_EQ(channel_.sent[0].idem_key, std::to_string(res.inbound_id) + ":0");
  EXPECT_EQ(store_->inbound(res.inbound_id)->state, store::InboxState::done);
  EXPECT_TRUE(store_->pending_outbox().empty());
  EXPECT_EQ(p->work().total(), 0u);
  EXPECT_EQ(p->metrics().replies_sent, 1u);
}

TEST_F(PipelineTest, DuplicateMessageIsNotRunTwice) {
  auto p = make_pipeline();
  auto first = accept(*p, msg("k1", "s", "hello"));
  auto again = accept(*p, msg("k1", "s", "hello"));
  EXPECT_TRUE(again.duplicate);
  EXPECT_EQ(again.run_id, first.run_id);
  EXPECT_EQ(again.status, "in_flight");
  complete(0, "hi");
  auto after = accept(*p, msg("k1", "s", "hello"));
  EXPECT_EQ(after.status, "done");
  EXPECT_EQ(agent_.calls.size(), 1u);
  EXPECT_EQ(channel_.sent.size(), 1u);
  EXPECT_EQ(p->metrics().inbound_duplicates, 2u);
}

TEST_F(PipelineTest, OneTurnPerSessionInArrivalOrder) {
  auto p = make_pipeline();
  EXPECT_EQ(accept(*p, msg("k1", "s", "one")).status, "started");
  EXPECT_EQ(accept(*p, msg("k2", "s", "two")).status, "queued");
  EXPECT_EQ(accept(*p, msg("k3", "other", "x")).status, "started");
  ASSERT_EQ(agent_.calls.size(), 2u);
  complete(0, "r1");
  ASSERT_EQ(agent_.calls.size(), 3u);
  EXPECT_EQ(agent_.calls[2]->request.text, "two");
  // The second turn sees the first exchange, and not messages accepted after it.
  const auto& h = agent_.calls[2]->request.history;
  ASSERT_EQ(h.size(), 3u);
  EXPECT_EQ(h[0].text, "one");
  EXPECT_EQ(h[1].text, "r1");
  EXPECT_EQ(h[2].text, "two");
}

TEST_F(PipelineTest, HistoryOfAQueuedTurnLeavesOutLaterMessages) {
  auto p = make_pipeline();
  accept(*p, msg("k1", "s", "one"));
  accept(*p, msg("k2", "s", "two"));
  accept(*p, msg("k3", "s", "three"));
  complete(0, "r1");
  const auto& h = agent_.calls[1]->request.history;
  for (const auto& e : h) EXPECT_NE(e.text, "three");
}

TEST_F(PipelineTest, FailedTurnTellsTheUserWhy) {
  auto p = make_pipeline();
  accept(*p, msg("k1", "s", "hello"));
  finish(0, TurnOutcome::Kind::failed, "", "command exited with status 2");
  ASSERT_EQ(channel_.sent.size(), 1u);
  EXPECT_EQ(channel_.sent[0].text,
            "Sorry, I could not answer that: command exited with status 2");
  EXPECT_EQ(p->metrics().turns_failed, 1u);
}

TEST_F(PipelineTest, DeltasAreStreamedWithIncreasingSeqThenTheFinal) {
  auto p = make_pipeline();
  // The fake channel does not publish; listen to the pipeline's own events.
  auto res = accept(*p, msg("k1", "s", "hello"));
  agent_.stream(0, "he");
  agent_.stream(0, "llo");
  ASSERT_EQ(listener_.events.size(), 2u);
  EXPECT_EQ(listener_.events[0].seq, 0);
  EXPECT_EQ(listener_.events[1].seq, 1);
  EXPECT_EQ(listener_.events[1].accumulated, "hello");
  EXPECT_EQ(listener_.events[1].run_id, res.run_id);
  ChatEvent fin;
  fin.state = ChatEvent::State::final;
  fin.run_id = res.run_id;
  fin.session_key = "s";
  p->publish(fin);
  EXPECT_EQ(listener_.events.back().seq, 2);
}

TEST_F(PipelineTest, AbortingTheActiveRunPublishesAbortedAndStartsTheNext) {
  auto p = make_pipeline();
  auto first = accept(*p, msg("k1", "s", "slow"));
  accept(*p, msg("k2", "s", "next"));
  auto aborted = p->abort("s", "");
  executor_.run_ready();
  ASSERT_EQ(aborted, std::vector<std::string>{first.run_id});
  EXPECT_EQ(store_->inbound(first.inbound_id)->state, store::InboxState::aborted);
  ASSERT_FALSE(listener_.events.empty());
  EXPECT_EQ(listener_.events.back().state, ChatEvent::State::aborted);
  ASSERT_EQ(agent_.calls.size(), 2u);
  EXPECT_EQ(agent_.calls[1]->request.text, "next");
  EXPECT_TRUE(channel_.sent.empty());
}

TEST_F(PipelineTest, AbortingAWaitingRunDropsItWithoutRunningIt) {
  auto p = make_pipeline();
  accept(*p, msg("k1", "s", "one"));
  auto second = accept(*p, msg("k2", "s", "two"));
  EXPECT_EQ(p->abort("s", second.run_id), std::vector<std::string>{second.run_id});
  executor_.run_ready();
  complete(0, "r1");
  EXPECT_EQ(agent_.calls.size(), 1u);
  EXPECT_EQ(store_->inbound(second.inbound_id)->state, store::InboxState::aborted);
}

TEST_F(PipelineTest, ChannelAskingForRetryIsRetriedWithBackoffInSimulatedTime) {
  auto p = make_pipeline();
  channel_.script = {SendStatus::retry, SendStatus::retry, SendStatus::sent};
  accept(*p, msg("k1", "s", "hello"));
  complete(0, "hi");
  EXPECT_EQ(channel_.attempts.size(), 1u);
  EXPECT_EQ(p->pending_deliveries(), 1u);
  executor_.advance(core::Duration(499));
  EXPECT_EQ(channel_.attempts.size(), 1u);
  executor_.advance(core::Duration(1));
  EXPECT_EQ(channel_.attempts.size(), 2u);
  executor_.advance(core::Duration(999));
  EXPECT_EQ(channel_.attempts.size(), 2u);
  executor_.advance(core::Duration(1));
  EXPECT_EQ(channel_.attempts.size(), 3u);
  EXPECT_EQ(channel_.sent.size(), 1u);
  EXPECT_EQ(p->pending_deliveries(), 0u);
  EXPECT_TRUE(store_->pending_outbox().empty());
}

TEST_F(PipelineTest, LongReplyIsSentAsOrderedPartsWithTheirOwnKeys) {
  auto p = make_pipeline(10);
  auto res = accept(*p, msg("k1", "s", "hello"));
  complete(0, "aaaa bbbb cccc dddd eeee");
  ASSERT_GE(channel_.sent.size(), 3u);
  std::string joined;
  for (std::size_t i = 0; i < channel_.sent.size(); ++i) {
    EXPECT_EQ(channel_.sent[i].part, static_cast<int>(i));
    EXPECT_EQ(channel_.sent[i].idem_key, std::to_string(res.inbound_id) + ":" + std::to_string(i));
    EXPECT_EQ(channel_.sent[i].final_part, i + 1 == channel_.sent.size());
    EXPECT_LE(channel_.sent[i].text.size(), 10u);
    joined += channel_.sent[i].text;
  }
  EXPECT_EQ(joined, "aaaa bbbb cccc dddd eeee");
}

TEST_F(PipelineTest, NewGenerationReplaysUnfinishedTurnsAndUndeliveredParts) {
  std::int64_t unanswered = 0;
  {
    auto p = make_pipeline();
    accept(*p, msg("k1", "a", "delivered later"));
    unanswered = accept(*p, msg("k2", "b", "never answered")).inbound_id;
    channel_.script = {SendStatus::retry};
    complete(0, "reply a");
    EXPECT_EQ(channel_.sent.size(), 0u);  // waiting for a retry when the "crash" comes
  }
  agent_.calls.clear();
  channel_.attempts.clear();
  auto p = make_pipeline();
  p->start();
  // The undelivered part of "a" goes out again, "b" runs again; nothing runs twice.
  ASSERT_EQ(channel_.sent.size(), 1u);
  EXPECT_EQ(channel_.sent[0].text, "reply a");
  ASSERT_EQ(agent_.calls.size(), 1u);
  EXPECT_EQ(agent_.calls[0]->request.text, "never answered");
  complete(0, "reply b");
  EXPECT_EQ(channel_.sent.size(), 2u);
  EXPECT_EQ(store_->inbound(unanswered)->state, store::InboxState::done);
  EXPECT_EQ(assistant_entries("a"), 1u);
  EXPECT_EQ(assistant_entries("b"), 1u);
}

TEST_F(PipelineTest, WhileDrainingMessagesAreJournaledAndRunInTheNextGeneration) {
  auto p = make_pipeline();
  p->set_draining(true);
  auto res = accept(*p, msg("k1", "s", "during drain"));
  EXPECT_EQ(res.status, "queued");
  EXPECT_EQ(res.reason, "gateway-restarting");
  EXPECT_TRUE(agent_.calls.empty());
  EXPECT_EQ(store_->inbound(res.inbound_id)->state, store::InboxState::pending);
  p->start();
  ASSERT_EQ(agent_.calls.size(), 1u);
  EXPECT_EQ(agent_.calls[0]->request.text, "during drain");
}

TEST_F(PipelineTest, InterruptedTurnGoesBackToPendingWithoutAReply) {
  auto p = make_pipeline();
  auto res = accept(*p, msg("k1", "s", "long"));
  EXPECT_EQ(p->interrupt_all("test"), 1u);
  EXPECT_EQ(store_->inbound(res.inbound_id)->state, store::InboxState::pending);
  EXPECT_TRUE(channel_.sent.empty());
  EXPECT_EQ(p->work().total(), 0u);
}

TEST_F(PipelineTest, IdleWaiterWakesWhenTheLastReplyIsDelivered) {
  auto p = make_pipeline();
  channel_.script = {SendStatus::retry};
  accept(*p, msg("k1", "s", "x"));
  bool idle = false;
  p->work().when_idle([&] { idle = true; });
  complete(0, "y");
  EXPECT_FALSE(idle);  // turn done, delivery still waiting for its retry
  executor_.advance(core::Duration(500));
  EXPECT_TRUE(idle);
}

TEST_F(PipelineTest, SendIsDeliveredOnceForOneIdempotencyKey) {
  auto p = make_pipeline();
  auto first = send(*p, {"local", "chat-1", "notice", "key-1", ""});
  auto again = send(*p, {"local", "chat-1", "notice", "key-1", ""});
  EXPECT_FALSE(first.duplicate);
  EXPECT_TRUE(again.duplicate);
  EXPECT_EQ(first.message_id, again.message_id);
  ASSERT_EQ(channel_.sent.size(), 1u);
  EXPECT_EQ(channel_.sent[0].chat_id, "chat-1");
}

TEST_F(PipelineTest, UnknownChannelIsRefusedAndNothingIsWritten) {
  auto p = make_pipeline();
  InboundMessage m = msg("k1", "s", "x");
  m.channel = "telegram";
  EXPECT_THROW(p->accept(m, [](AcceptResult) {}), std::invalid_argument);
  EXPECT_EQ(store_->counts().inbox_total, 0);
}

TEST(SplitReply, ShortTextIsOnePartAndEmptyTextNone) {
  EXPECT_EQ(Pipeline::split_reply("hello", 0), std::vector<std::string>{"hello"});
  EXPECT_EQ(Pipeline::split_reply("hello", 5), std::vector<std::string>{"hello"});
  EXPECT_TRUE(Pipeline::split_reply("", 5).empty());
}

TEST(SplitReply, NeverCutsAUtf8Character) {
  const std::string text = "\xC3\xA9\xC3\xA9\xC3\xA9";  // three two-byte characters
  auto parts = Pipeline::split_reply(text, 3);
  std::string joined;
  for (const auto& p : parts) {
    EXPECT_LE(p.size(), 3u);
    EXPECT_EQ(p.size() % 2, 0u);
    joined += p;
  }
  EXPECT_EQ(joined, text);
}

TEST(SplitReply, PrefersNewlinesThenSpaces) {
  auto parts = Pipeline::split_reply("first line\nsecond", 14);
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[0], "first line\n");
  EXPECT_EQ(parts[1], "second");
}

}  // namespace
}  // namespace drawbridge::pipeline
