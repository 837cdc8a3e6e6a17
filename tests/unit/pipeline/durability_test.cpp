// The promise, proved through the real Pipeline on a real SqliteStore with the storage seam
// (store::FaultInjectingStore) failing or losing batches: "accepted means durable" and "each
// inbound message is answered once" (shared/DESIGN.md). A crash is a lost batch: the process
// dies as that batch commits, nothing it does afterwards is recorded, and the next "process"
// (a new pipeline, loop, agent and channel) starts on the same database and replays it.

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core/manual_executor.h"
#include "pipeline/pipeline.h"
#include "store/fault_injecting_store.h"
#include "store/sqlite_store.h"
#include "unit/pipeline/fakes.h"

namespace drawbridge::pipeline {
namespace {

using store::FaultInjectingStore;
using testing::FakeAgent;
using testing::FakeChannel;

// What the outside world saw across every process: the acknowledgements clients got and the
// reply parts chat users received. Only a live process adds to it.
struct Ledger {
  std::map<std::string, AcceptResult> acked;  // external id -> the acknowledgement
  std::set<std::string> refused;              // external ids answered with an error
  std::map<std::string, int> delivered;       // reply idem key -> times a user received it
};

// The channel of one process: a FakeChannel whose deliveries count in the ledger while the
// process is alive (after a lost batch the process is dead: what it still does never happens).
class LedgerChannel final : public Channel {
 public:
  LedgerChannel(Ledger& ledger, FaultInjectingStore& faults) : ledger_(ledger), faults_(faults) {}
  const std::string& id() const override { return fake.id(); }
  void start() override { fake.start(); }
  void stop(std::function<void()> done) override { fake.stop(std::move(done)); }
  bool ready() const override { return fake.ready(); }
  void send(const OutboundPart& part, std::function<void(SendStatus, std::string)> done) override {
    fake.send(part, [this, key = part.idem_key, done = std::move(done)](SendStatus st,
                                                                        std::string error) {
      if (st == SendStatus::sent && !faults_.crashed()) ++ledger_.delivered[key];
      done(st, std::move(error));
    });
  }
  FakeChannel fake;

 private:
  Ledger& ledger_;
  FaultInjectingStore& faults_;
};

// One gateway process on the shared database: its own loop, agent, channel and pipeline,
// reading and writing through the fault-injecting wrapper.
struct Process {
  Process(core::ManualClock& clock, store::Store& db, Ledger& ledger)
      : executor(clock), faults(db), writer(faults), channel(ledger, faults), ledger(ledger) {
    pipeline = std::make_unique<Pipeline>(clock, executor, faults, writer);
    pipeline->configure({});
    pipeline->add_channel(&channel, &agent, 0);
  }

  // The client sends a message; its acknowledgement counts once the round has committed.
  void deliver(const std::string& key, const std::string& session, const std::string& text) {
    pipeline->accept(InboundMessage{"local", key, session, "", "user", text, ""},
                     [this, key](AcceptResult r) {
                       if (faults.crashed()) return;  // died before the ack went out
                       if (r.error.empty()) {
                         ledger.acked[key] = r;
                         ledger.refused.erase(key);
                       } else {
                         ledger.refused.insert(key);
                       }
                     });
  }
  void complete_open_turns() {
    agent.complete_all_open();
    executor.run_ready();
  }
  // Runs turns, retries and deliveries until nothing is left to do.
  void settle() {
    for (int i = 0; i < 20; ++i) {
      executor.advance(std::chrono::seconds(31));  // past the longest send retry delay
      complete_open_turns();
    }
  }

  core::ManualExecutor executor;
  FaultInjectingStore faults;
  InlineBatchRunner writer;
  FakeAgent agent;
  LedgerChannel channel;
  Ledger& ledger;
  std::unique_ptr<Pipeline> pipeline;  // last: destroyed first
};

struct Message {
  std::string key;
  std::string session;
};

class DurabilityTest : public ::testing::Test {
 protected:
  void SetUp() override { db_ = store::SqliteStore::open(":memory:"); }

  std::unique_ptr<Process> start_process() {
    auto p = std::make_unique<Process>(clock_, *db_, ledger_);
    p->pipeline->start();
    p->executor.run_ready();
    return p;
  }
  // The next process after a crash: the store is repaired as the runtime does without the
  // clean-shutdown marker, then the pipeline replays it.
  std::unique_ptr<Process> restart_after_crash(std::unique_ptr<Process> dead) {
    dead.reset();
    db_->repair_interrupted();
    return start_process();
  }
  std::size_t assistant_entries(const std::string& session) {
    std::size_t n = 0;
    for (const auto& e : db_->transcript(session, 1000)) n += e.role == "assistant";
    return n;
  }
  std::string reply_key(const std::string& external_id) {
    return std::to_string(ledger_.acked.at(external_id).inbound_id) + ":0";
  }

  core::ManualClock clock_;
  std::unique_ptr<store::SqliteStore> db_;
  Ledger ledger_;
};

enum class Fault { fail_batch, fail_commit, fail_operation };

void PrintTo(Fault f, std::ostream* os) {
  *os << (f == Fault::fail_batch    ? "fail_batch"
          : f == Fault::fail_commit ? "fail_commit"
                                    : "fail_operation");
}

std::string fault_name(const ::testing::TestParamInfo<Fault>& info) {
  switch (info.param) {
    case Fault::fail_batch:
      return "FailBatch";
    case Fault::fail_commit:
      return "FailCommit";
    case Fault::fail_operation:
      return "FailOperation";
  }
  return "?";
}

// Programs `fault` for the batch `ahead` batches from now, whose first operation is `op`.
void program(FaultInjectingStore& faults, Fault fault, const std::string& op, int ahead = 1) {
  const auto next = faults.batches_begun() + static_cast<std::uint64_t>(ahead);
  switch (fault) {
    case Fault::fail_batch:
      faults.fail_batch(next);
      break;
    case Fault::fail_commit:
      faults.fail_commit(next);
      break;
    case Fault::fail_operation:
      faults.fail_operation(op);
      break;
  }
}

class FailedBatchTest : public DurabilityTest, public ::testing::WithParamInterface<Fault> {};

// Accepted means durable: a message whose batch fails is refused (not acknowledged), nothing
// of it stays behind, and the client's retry with the same idempotency key is accepted once.
TEST_P(FailedBatchTest, MessageWhoseBatchFailsIsRefusedAndItsRetryIsAcceptedOnce) {
  auto p = start_process();
  program(p->faults, GetParam(), "insert_inbound");
  p->deliver("k1", "a", "hello");
  p->deliver("k2", "b", "hi");  // same round, same batch
  p->executor.run_ready();
  EXPECT_EQ(ledger_.refused, (std::set<std::string>{"k1", "k2"}));
  EXPECT_TRUE(ledger_.acked.empty());
  EXPECT_TRUE(p->agent.calls.empty());
  const auto counts = db_->counts();
  EXPECT_EQ(counts.inbox_total, 0);
  EXPECT_EQ(counts.sessions, 0);
  EXPECT_TRUE(db_->transcript("a", 10).empty());

  p->deliver("k1", "a", "hello");
  p->executor.run_ready();
  ASSERT_EQ(ledger_.acked.count("k1"), 1u);
  EXPECT_FALSE(ledger_.acked["k1"].duplicate);
  EXPECT_EQ(ledger_.acked["k1"].status, "started");
  const auto first = ledger_.acked["k1"];
  p->deliver("k1", "a", "hello");
  p->executor.run_ready();
  EXPECT_TRUE(ledger_.acked["k1"].duplicate);
  EXPECT_EQ(ledger_.acked["k1"].inbound_id, first.inbound_id);
  p->settle();
  EXPECT_EQ(p->agent.calls.size(), 1u);
  EXPECT_EQ(ledger_.delivered, (std::map<std::string, int>{{reply_key("k1"), 1}}));
  EXPECT_EQ(db_->counts().inbox_total, 1);
}

// Answered once: a reply whose batch fails is not sent; the row stays unfinished and the next
// start runs it again and sends its reply exactly once.
TEST_P(FailedBatchTest, ReplyWhoseBatchFailsIsNotSentAndIsAnsweredOnceAfterTheRestart) {
  auto p = start_process();
  p->deliver("k1", "a", "hello");
  p->executor.run_ready();
  ASSERT_EQ(p->agent.calls.size(), 1u);
  program(p->faults, GetParam(), "stage_reply");
  p->complete_open_turns();
  EXPECT_TRUE(p->channel.fake.attempts.empty()) << "a reply that is not committed is not sent";
  EXPECT_EQ(db_->inbound(ledger_.acked["k1"].inbound_id)->state, store::InboxState::pending);
  EXPECT_EQ(assistant_entries("a"), 0u);
  EXPECT_TRUE(db_->pending_outbox().empty());
  p->settle();
  EXPECT_TRUE(ledger_.delivered.empty());

  // A clean restart (the pipeline goes away without a crash) replays the row.
  p.reset();
  p = start_process();
  ASSERT_EQ(p->agent.calls.size(), 1u);
  EXPECT_EQ(p->agent.calls[0]->request.text, "hello");
  p->settle();
  EXPECT_EQ(ledger_.delivered, (std::map<std::string, int>{{reply_key("k1"), 1}}));
  EXPECT_EQ(db_->inbound(ledger_.acked["k1"].inbound_id)->state, store::InboxState::done);
  EXPECT_EQ(assistant_entries("a"), 1u);
  p.reset();
  p = start_process();  // and nothing goes out again
  p->settle();
  EXPECT_EQ(ledger_.delivered, (std::map<std::string, int>{{reply_key("k1"), 1}}));
}

// A part the channel delivered whose mark_sent fails to commit is marked sent later: the next
// start does not send it a second time (the one documented duplicate is a crash, not an error).
TEST_P(FailedBatchTest, DeliveredPartWhoseMarkSentFailsIsNotSentAgainAtTheNextStart) {
  auto p = start_process();
  p->deliver("k1", "a", "hello");
  p->executor.run_ready();
  // The reply's batch commits, the part goes out, and its mark_sent is the batch after.
  program(p->faults, GetParam(), "mark_sent", 2);
  p->complete_open_turns();
  EXPECT_EQ(p->faults.batches_failed(), 1u);
  EXPECT_EQ(ledger_.delivered, (std::map<std::string, int>{{reply_key("k1"), 1}}));
  p->settle();
  EXPECT_GE(p->faults.batches_failed(), 1u);
  EXPECT_EQ(ledger_.delivered, (std::map<std::string, int>{{reply_key("k1"), 1}}));
  EXPECT_TRUE(db_->pending_outbox().empty()) << "the delivered part is still pending";
  p.reset();
  p = start_process();
  p->settle();
  EXPECT_EQ(ledger_.delivered, (std::map<std::string, int>{{reply_key("k1"), 1}}));
}

INSTANTIATE_TEST_SUITE_P(Faults, FailedBatchTest,
                         ::testing::Values(Fault::fail_batch, Fault::fail_commit,
                                           Fault::fail_operation),
                         fault_name);

// A scripted conversation of four sessions. Each step is one event-loop round or more; the
// process stops at the first step after it died.
const std::vector<Message> kMessages = {{"a1", "a"}, {"b1", "b"}, {"c1", "c"}, {"a2", "a"},
                                        {"d1", "d"}, {"b2", "b"}, {"c2", "c"}, {"a3", "a"},
                                        {"d2", "d"}, {"b3", "b"}, {"c3", "c"}, {"d3", "d"}};

void run_script(Process& p) {
  auto deliver = [&](std::initializer_list<std::size_t> which) {
    for (auto i : which)
      p.deliver(kMessages[i].key, kMessages[i].session, "text " + kMessages[i].key);
    p.executor.run_ready();
  };
  auto complete = [&] { p.complete_open_turns(); };
  const std::vector<std::function<void()>> steps = {
      [&] {
        deliver({0, 1, 2});
      },                      // a1 b1 c1 in one round
      [&] { deliver({3}); },  // a2 waits behind a1
      [&] { p.channel.fake.script = {SendStatus::retry}; },
      complete,
      [&] { deliver({4}); },
      [&] { deliver({5}); },
      [&] { p.executor.advance(std::chrono::seconds(1)); },  // the retried part goes out
      complete,
      [&] { deliver({6}); },
      [&] { deliver({7}); },
      complete,
      [&] { deliver({8}); },
      [&] { deliver({9}); },
      complete,
      [&] { deliver({10}); },
      [&] { deliver({11}); },
      complete,
      complete,
      complete,
  };
  for (const auto& step : steps) {
    if (p.faults.crashed()) return;
    step();
  }
  // The client sends again what was refused.
  for (std::size_t i = 0; i < kMessages.size(); ++i) {
    if (p.faults.crashed()) return;
    if (p.ledger.refused.count(kMessages[i].key)) deliver({i});
  }
  if (!p.faults.crashed()) p.settle();
}

// Every process the test ran is over: the upstream delivers every message again (as Telegram
// redelivers what was not acknowledged), the last process runs to the end, and then each
// message was acknowledged, is in the store once and was answered once. `window`: parts the
// dead process delivered whose mark_sent died with it, the one documented duplicate.
void expect_answered_once(Process& p, Ledger& ledger, store::Store& db,
                          const std::set<std::string>& window, const std::string& trace) {
  SCOPED_TRACE(trace);
  for (const auto& m : kMessages) {
    p.deliver(m.key, m.session, "text " + m.key);
    p.executor.run_ready();
  }
  p.settle();
  EXPECT_EQ(db.counts().inbox_total, static_cast<std::int64_t>(kMessages.size()));
  EXPECT_EQ(db.counts().inbox_unfinished, 0);
  EXPECT_TRUE(db.pending_outbox().empty());
  std::set<std::string> expected_keys;
  for (const auto& m : kMessages) {
    ASSERT_EQ(ledger.acked.count(m.key), 1u) << m.key << " was never acknowledged";
    const auto id = ledger.acked[m.key].inbound_id;
    const auto row = db.inbound(id);
    ASSERT_TRUE(row) << m.key;
    EXPECT_EQ(row->external_id, m.key);
    EXPECT_EQ(row->state, store::InboxState::done) << m.key;
    expected_keys.insert(std::to_string(id) + ":0");
  }
  std::set<std::string> delivered_keys;
  for (const auto& [key, times] : ledger.delivered) {
    delivered_keys.insert(key);
    EXPECT_EQ(times, window.count(key) ? 2 : 1)
        << "reply " << key << " delivered " << times << " times";
  }
  EXPECT_EQ(delivered_keys, expected_keys) << "each message answered, by its own reply";
  for (const std::string s : {"a", "b", "c", "d"}) {
    std::size_t users = 0, assistants = 0;
    for (const auto& e : db.transcript(s, 1000)) (e.role == "user" ? users : assistants)++;
    EXPECT_EQ(users, 3u) << s;
    EXPECT_EQ(assistants, 3u) << s;
  }
}

TEST_F(DurabilityTest, CleanRunOfTheScriptAnswersEveryMessageOnceInOverTwentyBatches) {
  auto p = start_process();
  run_script(*p);
  EXPECT_GE(p->faults.batches_begun(), 20u);
  EXPECT_EQ(p->faults.batches_failed(), 0u);
  expect_answered_once(*p, ledger_, *db_, {}, "clean");
}

// A crash at any batch N: every message acknowledged before it is in the store, the messages
// of the lost batch were never acknowledged, and after the next process replays the store each
// message is answered exactly once across both processes.
TEST_F(DurabilityTest, CrashAtAnyBatchLosesNoAcknowledgedMessageAndAnswersEachOnce) {
  std::uint64_t total = 0;
  {
    auto p = start_process();
    run_script(*p);
    total = p->faults.batches_begun();
  }
  ASSERT_GE(total, 20u);
  for (std::uint64_t n = 1; n <= total; ++n) {
    SetUp();
    ledger_ = {};
    const std::string trace = "crash at batch " + std::to_string(n);
    SCOPED_TRACE(trace);
    auto p = start_process();
    p->faults.lose_batch(n);
    run_script(*p);
    ASSERT_TRUE(p->faults.crashed());
    // Acknowledged means durable: what the clients were told is in the store now.
    for (const auto& [key, ack] : ledger_.acked) {
      const auto row = db_->inbound(ack.inbound_id);
      ASSERT_TRUE(row) << key << " was acknowledged but is not in the store";
      EXPECT_EQ(row->external_id, key);
    }
    EXPECT_EQ(db_->counts().inbox_total, static_cast<std::int64_t>(ledger_.acked.size()))
        << "the store holds a message no client was told about";
    // Parts delivered whose mark_sent was in the lost batch: the documented duplicate window.
    std::set<std::string> window;
    for (const auto& row : db_->pending_outbox()) {
      if (ledger_.delivered.count(row.idem_key)) window.insert(row.idem_key);
    }
    p = restart_after_crash(std::move(p));
    expect_answered_once(*p, ledger_, *db_, window, trace);
  }
}

// The same script with batch N failing (the process lives on): refused messages are retried by
// the client, and after a clean restart each message was answered exactly once, no duplicate
// at all since nothing crashed.
TEST_F(DurabilityTest, FailedBatchAtAnyPointNeverAnswersAMessageTwice) {
  std::uint64_t total = 0;
  {
    auto p = start_process();
    run_script(*p);
    total = p->faults.batches_begun();
  }
  for (std::uint64_t n = 1; n <= total; ++n) {
    SetUp();
    ledger_ = {};
    const std::string trace = "batch " + std::to_string(n) + " fails";
    SCOPED_TRACE(trace);
    auto p = start_process();
    p->faults.fail_commit(n);
    run_script(*p);
    EXPECT_EQ(p->faults.batches_failed(), 1u);
    p.reset();
    p = start_process();
    expect_answered_once(*p, ledger_, *db_, {}, trace);
  }
}

}  // namespace
}  // namespace drawbridge::pipeline
