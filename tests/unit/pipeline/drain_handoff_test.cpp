// What a drain hands to the next generation instead of waiting for it: queued messages, with
// their debounce merges (Store::set_merged), run after the restart as they would have before.

#include <gtest/gtest.h>

#include "unit/pipeline/pipeline_fixture.h"

namespace drawbridge::pipeline {
namespace {

TEST_F(PipelineTest, ADebouncedBatchQueuedAtTheDrainRunsAsOneTurnAfterTheRestart) {
  auto p = make_pipeline(0, debounced(core::Duration(1000)));
  p->start();
  accept(*p, msg("k1", "s", "long task"));
  executor_.advance(core::Duration(1000));
  ASSERT_EQ(agent_.calls.size(), 1u);
  // Two more while the turn runs, still in the debounce window when the drain begins.
  auto a = accept(*p, msg("k2", "s", "and also"));
  auto b = accept(*p, msg("k3", "s", "one more thing"));
  EXPECT_EQ(p->flush_debouncers(), 1u);
  executor_.run_ready();
  p->set_draining(true);
  EXPECT_EQ(p->waiting_count(), 1u) << "the batch waits behind the running turn";
  complete(0, "done");
  EXPECT_EQ(agent_.calls.size(), 1u) << "while draining, nothing queued starts";
  EXPECT_EQ(store_->inbound(b.inbound_id)->merged_into, 0);
  EXPECT_EQ(store_->inbound(a.inbound_id)->merged_into, b.inbound_id) << "the merge is durable";

  // The next generation: one turn for the batch, as the debounce made it.
  p->reset();
  p->add_channel(&channel_, &agent_, 0);
  p->start();
  ASSERT_EQ(agent_.calls.size(), 2u);
  EXPECT_EQ(agent_.calls[1]->request.text, "and also\none more thing");
  EXPECT_EQ(agent_.calls[1]->request.run_id, "k3");
  complete(1, "both");
  EXPECT_EQ(store_->inbound(a.inbound_id)->state, store::InboxState::done);
  EXPECT_EQ(store_->inbound(b.inbound_id)->state, store::InboxState::done);
  EXPECT_EQ(agent_.calls.size(), 2u) << "the member row is not run on its own";
}

TEST_F(PipelineTest, AFlushedBatchThatStartsATurnIsCountedBeforeItsStartRuns) {
  auto p = make_pipeline(0, debounced(core::Duration(1000)));
  p->start();
  accept(*p, msg("k1", "s", "hello"));
  EXPECT_EQ(p->flush_debouncers(), 1u);
  // The turn's start is posted; the drain that flushed it and now waits for turns sees it.
  EXPECT_EQ(p->work().total(), 1u);
  bool idle = false;
  p->work().when_idle([&] { idle = true; });
  executor_.run_ready();
  ASSERT_EQ(agent_.calls.size(), 1u);
  EXPECT_FALSE(idle) << "the count went from the start to the turn without touching zero";
  complete(0, "hi");
  EXPECT_TRUE(idle);
}

}  // namespace
}  // namespace drawbridge::pipeline
