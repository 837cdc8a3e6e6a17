#include "store/fault_injecting_store.h"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

#include "pipeline/batch_runner.h"
#include "store/sqlite_store.h"

namespace drawbridge::store {
namespace {

NewInbound message(const std::string& id) {
  return NewInbound{"local", id, "s", "s", "alice", "text " + id, "run-" + id};
}

// One batch inserting `ids`, as the pipeline's writer runs it; returns its error.
std::string insert_batch(Store& s, std::initializer_list<std::string> ids) {
  std::vector<pipeline::StoreOp> ops;
  for (const auto& id : ids)
    ops.push_back([m = message(id)](Store& st) { st.insert_inbound(m, 1); });
  return pipeline::run_batch(s, ops);
}

class FaultInjectingStoreTest : public ::testing::Test {
 protected:
  std::unique_ptr<SqliteStore> inner_ = SqliteStore::open(":memory:");
  FaultInjectingStore store_{*inner_};
};

TEST_F(FaultInjectingStoreTest, ForwardsEveryCallWhenNoFaultIsProgrammed) {
  EXPECT_EQ(insert_batch(store_, {"a", "b"}), "");
  EXPECT_EQ(inner_->counts().inbox_total, 2);
  store_.set_value("k", "v");
  EXPECT_EQ(inner_->get_value("k"), "v");
  EXPECT_EQ(store_.transcript("s", 10).size(), 2u);
  EXPECT_EQ(store_.batches_begun(), 1u);
  EXPECT_EQ(store_.batches_committed(), 1u);
  EXPECT_EQ(store_.batches_failed(), 0u);
}

TEST_F(FaultInjectingStoreTest, FailedBatchWritesNothingAndOnlyThatBatchFails) {
  store_.fail_batch(2);
  EXPECT_EQ(insert_batch(store_, {"a"}), "");
  EXPECT_NE(insert_batch(store_, {"b", "c"}), "");
  EXPECT_EQ(insert_batch(store_, {"d"}), "");
  EXPECT_EQ(inner_->counts().inbox_total, 2);
  EXPECT_EQ(store_.batches_failed(), 1u);
  EXPECT_EQ(store_.batches_committed(), 2u);
}

TEST_F(FaultInjectingStoreTest, FailedCommitRunsTheOperationsThenRollsThemBack) {
  store_.fail_commit(1);
  InsertInboundResult seen;
  std::vector<pipeline::StoreOp> ops{[&](Store& s) { seen = s.insert_inbound(message("a"), 1); }};
  EXPECT_NE(pipeline::run_batch(store_, ops), "");
  EXPECT_NE(seen.record.id, 0) << "the operation itself succeeded";
  EXPECT_EQ(inner_->counts().inbox_total, 0);
  EXPECT_FALSE(inner_->inbound(seen.record.id));
}

TEST_F(FaultInjectingStoreTest, LostBatchReportsSuccessButNothingOfItOrAfterItReachesTheStore) {
  store_.lose_batch(2);
  EXPECT_EQ(insert_batch(store_, {"a"}), "");
  EXPECT_FALSE(store_.crashed());
  EXPECT_EQ(insert_batch(store_, {"b"}), "") << "the caller believes it committed";
  EXPECT_TRUE(store_.crashed());
  EXPECT_EQ(insert_batch(store_, {"c"}), "");
  EXPECT_THROW(store_.set_value("k", "v"), StoreError);
  EXPECT_EQ(inner_->counts().inbox_total, 1);
  EXPECT_FALSE(inner_->get_value("k"));
  EXPECT_EQ(store_.batches_committed(), 1u);
}

TEST_F(FaultInjectingStoreTest, NamedOperationFailsOnItsNthCallOnly) {
  store_.fail_operation("set_value", 2);
  store_.set_value("k1", "v");
  EXPECT_THROW(store_.set_value("k2", "v"), StoreError);
  store_.set_value("k3", "v");
  EXPECT_TRUE(inner_->get_value("k1"));
  EXPECT_FALSE(inner_->get_value("k2"));
  EXPECT_TRUE(inner_->get_value("k3"));
  EXPECT_THROW(store_.fail_operation("no_such_method"), std::invalid_argument);
}

TEST_F(FaultInjectingStoreTest, NamedOperationFailingInsideABatchFailsTheWholeBatch) {
  store_.fail_operation("insert_inbound", 2);
  EXPECT_NE(insert_batch(store_, {"a", "b"}), "");
  EXPECT_EQ(inner_->counts().inbox_total, 0) << "the first insert went with the batch";
  EXPECT_EQ(store_.batches_failed(), 1u);
}

}  // namespace
}  // namespace drawbridge::store
