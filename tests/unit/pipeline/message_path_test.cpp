// The shorter message path of issue 11: two commits for a local message, the history of a turn
// from memory, one ingress builder for the local channel.
#include <gtest/gtest.h>

#include "core/manual_executor.h"
#include "pipeline/local_chat.h"
#include "pipeline/pipeline.h"
#include "pipeline/session_history.h"
#include "store/sqlite_store.h"
#include "unit/pipeline/fakes.h"

namespace drawbridge::pipeline {
namespace {

// Counts the batches handed over: with an inline runner, one batch is one commit.
class CountingRunner final : public BatchRunner {
 public:
  explicit CountingRunner(store::Store& store) : inner_(store) {}
  void run(std::vector<StoreOp> ops, std::function<void(std::string)> done) override {
    ++batches;
    inner_.run(std::move(ops), std::move(done));
  }
  void wait_idle() override {}
  int batches = 0;

 private:
  InlineBatchRunner inner_;
};

// A channel like the local one: its send cannot fail.
class PublishOnlyChannel final : public Channel {
 public:
  const std::string& id() const override { return id_; }
  void start() override {}
  void stop(std::function<void()> done) override { done(); }
  bool ready() const override { return true; }
  bool send_cannot_fail() const override { return true; }
  void send(const OutboundPart&, std::function<void(SendStatus, std::string)> done) override {
    ++sends;
    done(SendStatus::sent, {});
  }
  int sends = 0;

 private:
  std::string id_ = "local";
};

class MessagePathTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = store::SqliteStore::open(":memory:");
    runner_ = std::make_unique<CountingRunner>(*store_);
    pipeline_ = std::make_unique<Pipeline>(clock_, executor_, *store_, *runner_);
    pipeline_->configure({});
    pipeline_->add_channel(&channel_, &agent_, 0, "fake-agent");
    pipeline_->add_listener(&listener_);
  }
  AcceptResult accept(const std::string& key, const std::string& session,
                      const std::string& text) {
    AcceptResult out;
    pipeline_->accept(local_chat_message({"local", session, "tester", text, key, true}),
                      [&](AcceptResult r) { out = std::move(r); });
    executor_.run_ready();
    return out;
  }
  void complete(std::size_t i, const std::string& text) {
    agent_.complete(i, text);
    executor_.run_ready();
  }

  core::ManualClock clock_;
  core::ManualExecutor executor_{clock_};
  std::unique_ptr<store::SqliteStore> store_;
  std::unique_ptr<CountingRunner> runner_;
  testing::FakeAgent agent_;
  PublishOnlyChannel channel_;
  testing::RecordingListener listener_;
  std::unique_ptr<Pipeline> pipeline_;
};

TEST(LocalChat, BuildsTheInboundMessageOfBothControlPlaneRoutes) {
  auto rpc = local_chat_message({"local", "s", "client-1", "hi", "key-1", true});
  EXPECT_EQ(rpc.channel, "local");
  EXPECT_EQ(rpc.external_id, "key-1");
  EXPECT_EQ(rpc.run_id, "key-1");
  EXPECT_EQ(rpc.session_key, "s");
  EXPECT_EQ(rpc.sender, "client-1");
  EXPECT_EQ(rpc.text, "hi");
  EXPECT_TRUE(rpc.chat_id.empty());
  auto http = local_chat_message({"local", "main", "http", "hi", "key-2", false});
  EXPECT_EQ(http.external_id, "key-2");
  EXPECT_TRUE(http.run_id.empty()) << "HTTP messages get a generated run id";
}

TEST_F(MessagePathTest, ALocalMessageTakesTwoCommitsAndItsReplyIsNotLeftPending) {
  accept("k0", "s", "warm up");  // the session's first turn reads its history once
  complete(0, "ok");
  const int b0 = runner_->batches;
  auto res = accept("k1", "s", "hello");
  EXPECT_EQ(runner_->batches, b0 + 1) << "the accept";
  ASSERT_EQ(agent_.calls.size(), 2u);
  complete(1, "hi!");
  EXPECT_EQ(runner_->batches, b0 + 2) << "the reply, staged as sent: no third commit";
  EXPECT_EQ(channel_.sends, 2);
  EXPECT_TRUE(store_->pending_outbox().empty()) << "a restart must not send it again";
  EXPECT_EQ(store_->inbound(res.inbound_id)->state, store::InboxState::done);
  EXPECT_EQ(pipeline_->metrics().replies_sent, 2u);
  ASSERT_FALSE(listener_.events.empty());
  const auto& fin = listener_.events.back();
  EXPECT_EQ(fin.state, ChatEvent::State::final) << "the pipeline publishes the reply itself";
  EXPECT_EQ(fin.text, "hi!");
  EXPECT_EQ(fin.run_id, "k1");
  EXPECT_EQ(fin.message_id, std::to_string(res.inbound_id) + ":0");
  executor_.run_ready();
  EXPECT_EQ(runner_->batches, b0 + 2);
  EXPECT_EQ(pipeline_->work().total(), 0u);
}

TEST_F(MessagePathTest, TheHistoryOfLaterTurnsComesFromMemoryAndMatchesTheTranscript) {
  accept("k1", "s", "one");
  complete(0, "re one");
  const int before = runner_->batches;
  accept("k2", "s", "two");
  EXPECT_EQ(runner_->batches, before + 1) << "no read on the store thread for a held session";
  ASSERT_EQ(agent_.calls.size(), 2u);
  const auto& h = agent_.calls[1]->request.history;
  ASSERT_EQ(h.size(), 3u);
  EXPECT_EQ(h[0].role, "user");
  EXPECT_EQ(h[0].text, "one");
  EXPECT_EQ(h[1].role, "assistant");
  EXPECT_EQ(h[1].text, "re one");
  EXPECT_EQ(h[2].text, "two");
  EXPECT_EQ(store_->transcript("s", 50).size(), 3u);
}

TEST_F(MessagePathTest, AColdSessionReadsItsHistoryOnTheStoreThreadNotOnTheLoop) {
  // A session the pipeline does not hold (here: a generation reset forgets every one).
  accept("k1", "s", "one");
  complete(0, "re one");
  pipeline_->reset();
  pipeline_->add_channel(&channel_, &agent_, 0, "fake-agent");
  pipeline_->start();
  const int before = runner_->batches;
  accept("k2", "s", "two");
  EXPECT_EQ(runner_->batches, before + 2) << "the accept, then the read in a batch of its own";
  ASSERT_EQ(agent_.calls.size(), 2u);
  const auto& h = agent_.calls[1]->request.history;
  ASSERT_EQ(h.size(), 3u);
  EXPECT_EQ(h[1].text, "re one");
  EXPECT_EQ(h[2].text, "two");
}

TEST_F(MessagePathTest, TheChannelRouteIsHeldOnce) {
  EXPECT_EQ(pipeline_->agent_of("local"), "fake-agent");
  testing::FakeAgent other;
  EXPECT_TRUE(pipeline_->set_agent("local", &other, "other"));
  EXPECT_EQ(pipeline_->agent_of("local"), "other");
  pipeline_->remove_channel("local");
  EXPECT_EQ(pipeline_->agent_of("local"), "");
}

store::TranscriptEntry entry(const std::string& role, const std::string& text,
                             std::int64_t inbound = 0) {
  return store::TranscriptEntry{0, "s", role, text, "", inbound, 0};
}

TEST(SessionHistory, KeepsTheNewestEntriesOfHeldSessionsOnly) {
  SessionHistory h(2, 10, 1 << 20);
  h.append("s", entry("user", "ignored: not held"));
  EXPECT_FALSE(h.tail("s"));
  h.seed("s", {entry("user", "a")});
  h.append("s", entry("assistant", "b"));
  h.append("s", entry("user", "c"));
  auto t = h.tail("s");
  ASSERT_TRUE(t);
  ASSERT_EQ(t->size(), 2u);
  EXPECT_EQ((*t)[0].text, "b");
  EXPECT_EQ((*t)[1].text, "c");
  h.forget("s");
  EXPECT_FALSE(h.tail("s"));
}

TEST(SessionHistory, EvictsTheLeastRecentlyUsedSessionBySessionsAndBytes) {
  SessionHistory h(10, 2, 10);
  h.seed("a", {entry("user", "1234")});
  h.seed("b", {entry("user", "1234")});
  EXPECT_TRUE(h.tail("a"));  // a is now the most recently used
  h.seed("c", {entry("user", "1")});
  EXPECT_FALSE(h.tail("b")) << "over two sessions: the least recently used goes";
  EXPECT_TRUE(h.tail("a"));
  h.append("c", entry("assistant", "123456789"));  // 14 bytes held
  EXPECT_FALSE(h.tail("a")) << "over the byte budget";
  EXPECT_TRUE(h.tail("c")) << "the session in use stays";
  EXPECT_EQ(h.sessions(), 1u);
}

}  // namespace
}  // namespace drawbridge::pipeline
