// Replicas on one store (docs/DECISIONS.md "Replicas on PostgreSQL"): each pipeline runs the
// sessions whose lease it holds. A message of a session held elsewhere is journaled and
// acknowledged, and its holder adopts it, each row once; a free session is claimed by the
// replica that accepts it; a dead replica's sessions are taken, repaired and run once.
// The leases are the SQLite driver's, which keeps the same contract as PostgreSQL's
// (lease_contract_test.cpp), claimed on the store at once (runtime::Cluster does it on a
// thread of its own) and answered a loop turn later.

#include <gtest/gtest.h>

#include <deque>
#include <set>

#include "pipeline/pipeline.h"
#include "store/fault_injecting_store.h"
#include "unit/pipeline/pipeline_fixture.h"

namespace drawbridge::pipeline {
namespace {

constexpr std::int64_t kTtl = 3000;

class StoreSessionLeases final : public SessionLeases {
 public:
  StoreSessionLeases(store::Store& store, core::Clock& clock, core::Executor& ex, std::string id)
      : store_(store), clock_(clock), ex_(ex), id_(std::move(id)) {
    EXPECT_TRUE(store_.claim_lease("replica:" + id_, id_, kTtl, clock_.wall_ms()).held);
  }
  bool holds(const std::string& session) const override { return held.count(session) != 0; }
  std::vector<std::string> held_sessions() const override { return {held.begin(), held.end()}; }
  void claim_sessions(std::vector<std::string> sessions,
                      std::function<void(std::vector<Taken>)> done, std::int64_t up_to_row = 0,
                      std::vector<std::string> not_channels = {}) override {
    ++claims;
    const auto limit = sessions.empty() ? std::size_t{64} : sessions.size();
    std::vector<Taken> out;
    for (const auto& l : store_.claim_sessions_with_work(id_, kTtl, limit, clock_.wall_ms(),
                                                         sessions, up_to_row, not_channels)) {
      const auto key = l.name.substr(std::string("session:").size());
      held.insert(key);
      out.push_back({key, !l.taken_from.empty()});
    }
    ex_.post([done = std::move(done), out = std::move(out)] { done(out); });
  }
  void claim_session(const std::string& session,
                     std::function<void(bool held, std::string holder)> done) override {
    const auto l = store_.claim_lease("session:" + session, id_, kTtl, clock_.wall_ms());
    if (l.held) held.insert(session);
    ex_.post([done = std::move(done), l] { done(l.held, l.held ? std::string() : l.holder); });
  }
  void release_sessions(const std::vector<std::string>& sessions, bool announce) override {
    announced += announce;
    for (const auto& s : sessions) {
      held.erase(s);
      for (const auto& l : store_.list_leases("session:" + s)) {
        if (l.name == "session:" + s) store_.release_lease(l.name, id_, l.epoch, clock_.wall_ms());
      }
    }
  }
  const std::string& replica_id() const override { return id_; }
  // The heartbeat of a replica that lives on.
  void renew() { store_.renew_leases(id_, kTtl, clock_.wall_ms()); }

  std::set<std::string> held;
  int claims = 0;
  int announced = 0;  // releases that told the other replicas

 private:
  store::Store& store_;
  core::Clock& clock_;
  core::Executor& ex_;
  std::string id_;
};

class ReplicaPipelineTest : public PipelineTest {
 protected:
  void SetUp() override {
    PipelineTest::SetUp();
    a_leases_ = std::make_unique<StoreSessionLeases>(*store_, clock_, executor_, "a");
    b_leases_ = std::make_unique<StoreSessionLeases>(*store_, clock_, executor_, "b");
  }

  // What a replica does every leaseMs / 2 (runtime::Replica): claims free and dead replicas'
  // sessions with work, then runs the rows of its own sessions it does not run yet.
  void look(Pipeline& p) {
    p.claim_free_sessions();
    executor_.run_ready();
    p.adopt_unfinished();
    executor_.run_ready();
  }

  // A message of `session` through `a`, which claims the session and starts its turn.
  void run_on_a(Pipeline& a, const std::string& key, const std::string& session,
                const std::string& text) {
    accept(a, msg(key, session, text));
    executor_.run_ready();
    ASSERT_TRUE(a_leases_->holds(session));
  }

  // `leases` holds `session` (claimed in the store too).
  void hold(StoreSessionLeases& leases, const std::string& session) {
    ASSERT_TRUE(
        store_->claim_lease("session:" + session, leases.replica_id(), kTtl, clock_.wall_ms())
            .held);
    leases.held.insert(session);
  }

  // Replica "a" (the fixture's agent and channel) and replica "b".
  std::unique_ptr<Pipeline> make_a() {
    auto p = make_pipeline();
    p->set_session_leases(a_leases_.get());
    p->start();
    return p;
  }
  std::unique_ptr<Pipeline> make_b() {
    auto p = std::make_unique<Pipeline>(clock_, executor_, *store_, *writer_);
    p->configure({});
    p->set_session_leases(b_leases_.get());
    p->add_channel(&b_channel_, &b_agent_, 0);
    p->add_listener(&b_listener_);
    p->start();
    return p;
  }

  // An IRC channel on `p`, its turns run by `agent`; `elsewhere`: another replica keeps its
  // connection. Owned here: it outlives the test's pipelines.
  FakeChannel& irc_on(Pipeline& p, FakeAgent& agent, bool elsewhere) {
    auto& channel = irc_channels_.emplace_back("irc");
    channel.elsewhere = elsewhere;
    p.add_channel(&channel, &agent, 0);
    return channel;
  }

  std::deque<FakeChannel> irc_channels_;
  std::unique_ptr<StoreSessionLeases> a_leases_, b_leases_;
  FakeAgent b_agent_;
  FakeChannel b_channel_;
  RecordingListener b_listener_;
};

TEST_F(ReplicaPipelineTest, AReplicaClaimsAFreeSessionItAcceptsAndRunsIt) {
  auto a = make_a();
  auto r = accept(*a, msg("k1", "s1", "hello"));
  EXPECT_TRUE(r.error.empty());
  EXPECT_EQ(r.status, "queued");
  EXPECT_EQ(r.reason, "cluster") << "acknowledged before the claim";
  executor_.run_ready();
  EXPECT_TRUE(a_leases_->holds("s1"));
  ASSERT_EQ(agent_.calls.size(), 1u);
  EXPECT_EQ(agent_.calls[0]->request.text, "hello");
  // Held now: the next message runs at once, without a claim.
  complete(0, "hi");
  const int claims = a_leases_->claims;
  accept(*a, msg("k2", "s1", "again"));
  EXPECT_EQ(a_leases_->claims, claims);
  EXPECT_EQ(agent_.calls.size(), 2u);
}

TEST_F(ReplicaPipelineTest, AMessageOfASessionHeldElsewhereWaitsForItsHolderAndRunsOnce) {
  auto a = make_a();
  auto b = make_b();
  run_on_a(*a, "k1", "s1", "first, on a");
  auto r = accept(*b, msg("k2", "s1", "second, through b"));
  EXPECT_EQ(r.reason, "cluster");
  executor_.run_ready();
  EXPECT_FALSE(b_leases_->holds("s1")) << "a lives: its session stays its own";
  EXPECT_TRUE(b_agent_.calls.empty());
  EXPECT_EQ(b->adopt_unfinished(), 0u) << "not b's to run";
  // a hears the notice (the row's id) while its turn runs: in the lane, after the first.
  EXPECT_EQ(a->adopt({r.inbound_id}), 1u);
  EXPECT_EQ(a->adopt({r.inbound_id}), 0u) << "announced again: already held";
  ASSERT_EQ(agent_.calls.size(), 1u) << "one turn per session at a time";
  complete(0, "one");
  ASSERT_EQ(agent_.calls.size(), 2u);
  EXPECT_EQ(agent_.calls[1]->request.text, "second, through b");
  EXPECT_TRUE(has_history(agent_.calls[1]->request, "user", "first, on a"));
  complete(1, "two");
  EXPECT_EQ(a->adopt_unfinished(), 0u);
  EXPECT_TRUE(store_->unfinished_inbound().empty());
  EXPECT_EQ(assistant_entries("s1"), 2u);
  EXPECT_EQ(channel_.sent.size(), 2u);
  EXPECT_TRUE(b_channel_.sent.empty());
}

TEST_F(ReplicaPipelineTest, ANoticeNamesRowsAndOnlyUnfinishedRowsOfHeldSessionsRun) {
  auto a = make_a();
  auto b = make_b();
  hold(*a_leases_, "s1");
  hold(*a_leases_, "s2");
  auto r1 = accept(*b, msg("k1", "s1", "one"));
  auto r2 = accept(*b, msg("k2", "s2", "two"));
  auto r3 = accept(*b, msg("k3", "s3", "b's own"));
  executor_.run_ready();
  // Out of order, twice, one that does not exist, one of a session b claimed: each of a's
  // rows runs once, in order.
  EXPECT_EQ(a->adopt({r2.inbound_id, 999999, r3.inbound_id, r1.inbound_id, r2.inbound_id}), 2u);
  executor_.run_ready();
  ASSERT_EQ(agent_.calls.size(), 2u);
  EXPECT_EQ(agent_.calls[0]->request.text, "one");
  ASSERT_EQ(b_agent_.calls.size(), 1u);
  EXPECT_EQ(b_agent_.calls[0]->request.text, "b's own");
  agent_.complete_all_open();
  executor_.run_ready();
  EXPECT_EQ(a->adopt({r1.inbound_id, r2.inbound_id}), 0u) << "finished rows";
  EXPECT_EQ(a->adopt_unfinished(), 0u);
  EXPECT_EQ(agent_.calls.size(), 2u);
  EXPECT_EQ(channel_.sent.size(), 2u);
}

TEST_F(ReplicaPipelineTest, ARowAcceptedHereIsNotAdoptedAgain) {
  auto active = make_pipeline();
  active->start();
  accept(*active, msg("k1", "s1", "local"));
  ASSERT_EQ(agent_.calls.size(), 1u);
  EXPECT_EQ(active->adopt_unfinished(), 0u);
  complete(0, "done");
  EXPECT_EQ(agent_.calls.size(), 1u);
  EXPECT_EQ(channel_.sent.size(), 1u);
}

// Commits at once and reports a loop turn later, as the store thread does: the window in which
// another replica's notice can make the holder read a row before its commit callback runs.
class LateReports final : public BatchRunner {
 public:
  LateReports(store::Store& store, core::Executor& executor) : store_(store), ex_(executor) {}
  void run(std::vector<StoreOp> ops, std::function<void(std::string)> done) override {
    auto error = run_batch(store_, ops);
    ex_.post([done = std::move(done), error] { done(error); });
  }
  void wait_idle() override {}

 private:
  store::Store& store_;
  core::Executor& ex_;
};

TEST_F(ReplicaPipelineTest, AnAdoptionBetweenTheCommitAndItsCallbackRunsTheRowOnce) {
  LateReports late(*store_, executor_);
  Pipeline active(clock_, executor_, *store_, late);
  active.configure({});
  active.add_channel(&channel_, &agent_, 0);
  active.start();
  bool acked = false;
  active.accept(msg("k1", "s1", "raced"), [&](AcceptResult) { acked = true; });
  active.flush();  // committed; its callback waits in the loop's queue
  EXPECT_FALSE(acked);
  EXPECT_EQ(active.adopt_unfinished(), 1u);
  executor_.run_ready();
  EXPECT_TRUE(acked);
  ASSERT_EQ(agent_.calls.size(), 1u) << "run once, not again by its own commit callback";
  complete(0, "once");
  EXPECT_EQ(agent_.calls.size(), 1u);
  EXPECT_EQ(channel_.sent.size(), 1u);
}

// a dies mid-turn (no heartbeat, its turn never ends); after its lease b takes the session,
// counts the interrupted turn, and runs it and what waited behind it, once each.
TEST_F(ReplicaPipelineTest, ADeadReplicasSessionsAreTakenOverAndRunOnce) {
  auto a = make_a();
  auto b = make_b();
  run_on_a(*a, "k1", "s1", "cut short");
  ASSERT_EQ(agent_.calls.size(), 1u);
  accept(*b, msg("k2", "s1", "waiting"));
  executor_.run_ready();
  look(*b);  // b's first look sees the rows, and leaves the newest to who accepted them
  look(*b);
  EXPECT_TRUE(b_agent_.calls.empty()) << "a's lease still runs";
  clock_.advance(std::chrono::milliseconds(kTtl / 2));
  b_leases_->renew();  // b lives on; a does not
  clock_.advance(std::chrono::milliseconds(kTtl / 2 + 1));
  look(*b);
  ASSERT_TRUE(b_leases_->holds("s1"));
  ASSERT_EQ(b_agent_.calls.size(), 1u);
  EXPECT_EQ(b_agent_.calls[0]->request.text, "cut short");
  const auto loops = store_->sessions_interrupted(1);
  ASSERT_EQ(loops.size(), 1u) << "a dead holder's turn counts as interrupted";
  EXPECT_EQ(loops[0].session_key, "s1");
  b_agent_.complete(0, "one");
  executor_.run_ready();
  ASSERT_EQ(b_agent_.calls.size(), 2u);
  EXPECT_EQ(b_agent_.calls[1]->request.text, "waiting");
  b_agent_.complete(1, "two");
  executor_.run_ready();
  EXPECT_EQ(b_channel_.sent.size(), 2u);
  EXPECT_EQ(assistant_entries("s1"), 2u);
  EXPECT_TRUE(store_->unfinished_inbound().empty());
}

TEST_F(ReplicaPipelineTest, AStartRunsOnlyTheSessionsThisReplicaHolds) {
  hold(*a_leases_, "s1");
  ASSERT_TRUE(store_->claim_lease("replica:c", "c", kTtl, clock_.wall_ms()).held);
  ASSERT_TRUE(store_->claim_lease("session:s2", "c", kTtl, clock_.wall_ms()).held);
  {
    auto b = make_b();  // accepts a message of each; both sessions are held (a, c)
    accept(*b, msg("k1", "s1", "mine"));
    accept(*b, msg("k2", "s2", "not mine"));
  }
  auto a = make_a();
  executor_.run_ready();
  ASSERT_EQ(agent_.calls.size(), 1u);
  EXPECT_EQ(agent_.calls[0]->request.text, "mine");
}

TEST_F(ReplicaPipelineTest, ASendGoesThroughTheReplicaThatHoldsTheSession) {
  auto a = make_a();
  auto b = make_b();
  run_on_a(*a, "k1", "chat", "hello");
  auto refused = send(*b, SendRequest{"local", "chat", "hi", "idem-1", ""});
  executor_.run_ready();
  EXPECT_NE(refused.error.find("replica a"), std::string::npos) << refused.error;
  EXPECT_TRUE(store_->pending_outbox().empty());
  auto sent = send(*b, SendRequest{"local", "other", "hi there", "idem-2", ""});
  executor_.run_ready();
  EXPECT_TRUE(sent.error.empty()) << sent.error;
  EXPECT_TRUE(b_leases_->holds("other"));
  ASSERT_EQ(b_channel_.sent.size(), 1u);
  EXPECT_EQ(b_channel_.sent[0].text, "hi there");
}

// A reply whose commit failed leaves its row unfinished: the replica's next look at the inbox
// runs it again (a single gateway waits for its next start).
TEST_F(ReplicaPipelineTest, ATurnWhoseCommitFailedRunsAgainAtTheNextLook) {
  store::FaultInjectingStore faulty(*store_);
  InlineBatchRunner writer(faulty);
  Pipeline a(clock_, executor_, *store_, writer);
  a.configure({});
  a.set_session_leases(a_leases_.get());
  a.add_channel(&channel_, &agent_, 0);
  a.start();
  hold(*a_leases_, "s1");
  accept(a, msg("k1", "s1", "retry me"));
  ASSERT_EQ(agent_.calls.size(), 1u);
  faulty.fail_operation("stage_reply");
  complete(0, "lost");
  EXPECT_TRUE(channel_.sent.empty());
  ASSERT_EQ(store_->unfinished_inbound().size(), 1u);
  EXPECT_EQ(a.adopt_unfinished(), 1u);
  executor_.run_ready();
  ASSERT_EQ(agent_.calls.size(), 2u);
  complete(1, "kept");
  ASSERT_EQ(channel_.sent.size(), 1u);
  EXPECT_EQ(channel_.sent[0].text, "kept");
  EXPECT_EQ(assistant_entries("s1"), 1u);
}

// A replica gives back the sessions that did nothing for a while (what it holds, and renews,
// stays bounded by its recent sessions); another replica may then claim them at once.
TEST_F(ReplicaPipelineTest, IdleSessionsAreGivenBackAndAnotherReplicaTakesThemAtOnce) {
  auto a = make_a();
  auto b = make_b();
  accept(*a, msg("k1", "quiet", "one"));
  accept(*a, msg("k2", "busy", "two"));
  executor_.run_ready();
  ASSERT_EQ(agent_.calls.size(), 2u);
  complete(0, "done");  // "quiet" is idle from now; "busy" still runs its turn
  const auto idle_for = std::chrono::seconds(60);
  EXPECT_EQ(a->release_idle_sessions(idle_for, 10), 0u) << "not idle long enough";
  clock_.advance(std::chrono::seconds(61));
  a_leases_->renew();
  b_leases_->renew();
  EXPECT_EQ(a->release_idle_sessions(idle_for, 10), 1u);
  EXPECT_FALSE(a_leases_->holds("quiet"));
  EXPECT_TRUE(a_leases_->holds("busy")) << "its turn still runs";
  auto r = accept(*b, msg("k3", "quiet", "three"));
  executor_.run_ready();
  EXPECT_TRUE(b_leases_->holds("quiet")) << "given back: claimed by the replica that accepted";
  ASSERT_EQ(b_agent_.calls.size(), 1u);
  EXPECT_TRUE(has_history(b_agent_.calls[0]->request, "assistant", "done"));
  EXPECT_EQ(a->adopt({r.inbound_id}), 0u) << "not a's any more";
}

// chat.abort through a replica that does not run the session goes to its holder as a notice;
// only the holder acts on it, and a notice that makes no sense is ignored.
TEST_F(ReplicaPipelineTest, AnAbortOfASessionHeldElsewhereIsPassedOnToItsHolder) {
  auto a = make_a();
  auto b = make_b();
  run_on_a(*a, "k1", "s1", "long");
  ASSERT_EQ(agent_.calls.size(), 1u);
  EXPECT_TRUE(b->runs_elsewhere("s1"));
  EXPECT_TRUE(b->abort("s1", "").empty()) << "nothing runs on b";
  const auto notice = Pipeline::passed_on_notice("abort", "s1", "");
  ASSERT_TRUE(notice.has_value());
  EXPECT_FALSE(b->act_on_notice(*notice)) << "not b's session";
  for (const std::string bad : {"abort", "abort x", "abort 99 s1", "abort -1 s1", "reset 2",
                                "abort 123456789012 s1", "stop 2 s1", "free"}) {
    EXPECT_FALSE(a->act_on_notice(bad)) << bad;
  }
  EXPECT_FALSE(agent_.calls[0]->cancelled);
  EXPECT_TRUE(a->act_on_notice(*notice));
  executor_.run_ready();
  EXPECT_TRUE(agent_.calls[0]->cancelled);
  EXPECT_FALSE(Pipeline::passed_on_notice("abort", std::string(8000, 's'), "").has_value());
}

TEST_F(ReplicaPipelineTest, NothingIsAdoptedWhileDraining) {
  auto a = make_a();
  auto b = make_b();
  hold(*a_leases_, "s1");
  accept(*b, msg("k1", "s1", "during the drain"));
  a->set_draining(true);
  EXPECT_EQ(a->adopt_unfinished(), 0u);
  EXPECT_TRUE(agent_.calls.empty());
  EXPECT_EQ(store_->unfinished_inbound().size(), 1u) << "it waits for the next start";
}

// IRC keeps one connection per account, on the replica that holds its lease: the sessions of
// its chats run there (replies cannot go out from another replica). Another replica neither
// claims them nor runs their rows; one that holds such a session gives it back, announced.
TEST_F(ReplicaPipelineTest, SessionsOfAConnectionKeptElsewhereRunOnItsHolder) {
  auto a = make_a();
  auto b = make_b();
  irc_on(*a, agent_, true);  // b keeps the connection
  irc_on(*b, b_agent_, false);
  auto& irc_agent_b = b_agent_;
  const auto now = clock_.wall_ms();
  store_->insert_inbound({"irc", "x1", "irc:#x", "#x", "alice", "to x", "run-x1"}, now);
  a->claim_free_sessions(true);
  executor_.run_ready();
  EXPECT_FALSE(a_leases_->holds("irc:#x")) << "claimed without the connection";
  b->claim_free_sessions(true);
  executor_.run_ready();
  EXPECT_TRUE(b_leases_->holds("irc:#x"));
  ASSERT_EQ(irc_agent_b.calls.size(), 1u);
  EXPECT_EQ(irc_agent_b.calls[0]->request.text, "to x");
  // a holds a session (from a message through its local channel); a message of it comes in
  // by IRC (through b): a does not run it, but gives the session back and says so.
  hold(*a_leases_, "irc:#y");
  store_->insert_inbound({"irc", "y1", "irc:#y", "#y", "alice", "to y", "run-y1"}, now);
  a->adopt_unfinished();
  executor_.run_ready();
  EXPECT_TRUE(agent_.calls.empty()) << "run where its reply cannot go out";
  EXPECT_FALSE(a_leases_->holds("irc:#y"));
  EXPECT_EQ(a_leases_->announced, 1);
  b->claim_free_sessions(true);  // what the announcement makes b do
  executor_.run_ready();
  ASSERT_EQ(irc_agent_b.calls.size(), 2u);
  EXPECT_EQ(irc_agent_b.calls[1]->request.text, "to y");
}

// A send to a chat of a connection another replica keeps is refused here (its part could
// never go out from this replica), naming why.
TEST_F(ReplicaPipelineTest, ASendToAConnectionKeptElsewhereIsRefused) {
  auto a = make_a();
  auto& irc_a = irc_on(*a, agent_, true);
  auto refused = send(*a, SendRequest{"irc", "#ops", "hi", "idem-irc", ""});
  EXPECT_NE(refused.error.find("kept by another replica"), std::string::npos) << refused.error;
  EXPECT_TRUE(store_->pending_outbox().empty());
  EXPECT_TRUE(irc_a.attempts.empty());
  irc_a.elsewhere = false;
  auto sent = send(*a, SendRequest{"irc", "#ops", "hi", "idem-irc2", ""});
  EXPECT_TRUE(sent.error.empty()) << sent.error;
}

// A replica that takes the connection over claims what waited for it and runs it.
TEST_F(ReplicaPipelineTest, TakingTheConnectionOverRunsWhatWaitedForIt) {
  auto a = make_a();
  auto& irc_a = irc_on(*a, agent_, true);
  store_->insert_inbound({"irc", "z1", "irc:#z", "#z", "alice", "to z", "run-z1"},
                         clock_.wall_ms());
  look(*a);
  look(*a);
  EXPECT_TRUE(agent_.calls.empty());
  irc_a.elsewhere = false;  // the lease was granted: the connection is a's now
  a->connection_taken();
  executor_.run_ready();
  EXPECT_TRUE(a_leases_->holds("irc:#z"));
  ASSERT_EQ(agent_.calls.size(), 1u);
  EXPECT_EQ(agent_.calls[0]->request.text, "to z");
}

}  // namespace
}  // namespace drawbridge::pipeline
