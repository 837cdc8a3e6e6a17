// Two replicas on one store (docs/DECISIONS.md "Replicas on PostgreSQL"): a standby's pipeline
// in ingress mode journals and acknowledges but runs nothing; the active one adopts what the
// standby accepted, each row once, and a standby that takes over runs what was left.

#include <gtest/gtest.h>

#include "pipeline/pipeline.h"
#include "unit/pipeline/pipeline_fixture.h"

namespace drawbridge::pipeline {
namespace {

class ReplicaPipelineTest : public PipelineTest {
 protected:
  std::unique_ptr<Pipeline> make_standby() {
    auto p = std::make_unique<Pipeline>(clock_, executor_, *store_, *writer_);
    p->configure({});
    p->set_ingress(true);
    p->add_channel(&standby_channel_, &standby_agent_, 0);
    p->add_listener(&standby_listener_);
    p->start();
    return p;
  }

  FakeAgent standby_agent_;
  FakeChannel standby_channel_;
  RecordingListener standby_listener_;
};

TEST_F(ReplicaPipelineTest, StandbyJournalsAndAcknowledgesButRunsNothing) {
  auto standby = make_standby();
  auto r = accept(*standby, msg("k1", "s1", "hello"));
  EXPECT_TRUE(r.error.empty());
  EXPECT_FALSE(r.duplicate);
  EXPECT_EQ(r.status, "queued");
  EXPECT_EQ(r.reason, "cluster");
  EXPECT_TRUE(standby_agent_.calls.empty());
  auto rows = store_->unfinished_inbound();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].state, store::InboxState::pending);
  EXPECT_EQ(standby->adopt_unfinished(), 0u) << "a standby adopts nothing";
}

TEST_F(ReplicaPipelineTest, StandbyRefusesSendsAndLeavesTheCleanStartToTheActive) {
  auto standby = make_standby();
  auto res = send(*standby, SendRequest{"local", "chat", "hi", "idem-1", ""});
  EXPECT_NE(res.error.find("standby"), std::string::npos) << res.error;
  EXPECT_TRUE(store_->pending_outbox().empty());
}

TEST_F(ReplicaPipelineTest, ActiveAdoptsWhatTheStandbyAcceptedOnceAndRepliesOnce) {
  auto active = make_pipeline();
  active->start();
  auto standby = make_standby();
  accept(*standby, msg("k1", "s1", "from the standby"));
  accept(*standby, msg("k2", "s1", "second"));
  EXPECT_EQ(active->adopt_unfinished(), 2u);
  executor_.run_ready();
  ASSERT_EQ(agent_.calls.size(), 1u) << "one turn per session at a time";
  EXPECT_EQ(active->adopt_unfinished(), 0u) << "announced again: already held";
  complete(0, "one");
  ASSERT_EQ(agent_.calls.size(), 2u);
  EXPECT_EQ(active->adopt_unfinished(), 0u);
  complete(1, "two");
  EXPECT_EQ(active->adopt_unfinished(), 0u);
  EXPECT_EQ(agent_.calls.size(), 2u);
  EXPECT_TRUE(store_->unfinished_inbound().empty());
  EXPECT_EQ(assistant_entries("s1"), 2u);
  EXPECT_EQ(channel_.sent.size(), 2u);
  EXPECT_TRUE(standby_agent_.calls.empty());
}

TEST_F(ReplicaPipelineTest, AdoptedTurnSeesTheUserEntryTheStandbyWrote) {
  auto active = make_pipeline();
  active->start();
  accept(*active, msg("k0", "s1", "earlier on the active"));
  complete(0, "answer");
  auto standby = make_standby();
  accept(*standby, msg("k1", "s1", "later on the standby"));
  EXPECT_EQ(active->adopt_unfinished(), 1u);
  executor_.run_ready();
  ASSERT_EQ(agent_.calls.size(), 2u);
  EXPECT_TRUE(has_history(agent_.calls[1]->request, "user", "earlier on the active"));
  EXPECT_EQ(agent_.calls[1]->request.text, "later on the standby");
}

TEST_F(ReplicaPipelineTest, ANoticeNamesRowsAndOnlyUnfinishedRowsNotHeldRun) {
  auto active = make_pipeline();
  active->start();
  auto standby = make_standby();
  auto r1 = accept(*standby, msg("k1", "s1", "one"));
  auto r2 = accept(*standby, msg("k2", "s2", "two"));
  // Out of order, twice, and one that does not exist: each real row runs once, in order.
  EXPECT_EQ(active->adopt({r2.inbound_id, 999999, r1.inbound_id, r2.inbound_id}), 2u);
  executor_.run_ready();
  ASSERT_EQ(agent_.calls.size(), 2u);
  EXPECT_EQ(agent_.calls[0]->request.text, "one");
  EXPECT_EQ(active->adopt({r1.inbound_id}), 0u);
  agent_.complete_all_open();
  executor_.run_ready();
  EXPECT_EQ(active->adopt({r1.inbound_id, r2.inbound_id}), 0u) << "finished rows";
  EXPECT_EQ(active->adopt_unfinished(), 0u);
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
// another replica's notice can make the active one read a row before its commit callback runs.
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

TEST_F(ReplicaPipelineTest, AStandbyThatTakesOverRunsWhatWasLeft) {
  auto standby = make_standby();
  accept(*standby, msg("k1", "s1", "waiting"));
  accept(*standby, msg("k2", "s2", "also waiting"));
  EXPECT_TRUE(standby_agent_.calls.empty());
  standby->take_over();
  executor_.run_ready();
  EXPECT_FALSE(standby->ingress());
  ASSERT_EQ(standby_agent_.calls.size(), 2u);
  // Accepted now: run here, as on any active replica.
  accept(*standby, msg("k3", "s3", "after"));
  EXPECT_EQ(standby_agent_.calls.size(), 3u);
  EXPECT_EQ(standby->adopt_unfinished(), 0u);
  standby_agent_.complete_all_open();
  executor_.run_ready();
  EXPECT_TRUE(store_->unfinished_inbound().empty());
  EXPECT_EQ(standby_channel_.sent.size(), 3u);
}

TEST_F(ReplicaPipelineTest, NothingIsAdoptedWhileDraining) {
  auto active = make_pipeline();
  active->start();
  auto standby = make_standby();
  accept(*standby, msg("k1", "s1", "during the drain"));
  active->set_draining(true);
  EXPECT_EQ(active->adopt_unfinished(), 0u);
  EXPECT_TRUE(agent_.calls.empty());
  EXPECT_EQ(store_->unfinished_inbound().size(), 1u) << "it waits for the next start";
}

}  // namespace
}  // namespace drawbridge::pipeline
