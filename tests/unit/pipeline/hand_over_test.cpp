// A drain does not wait for a reply its channel cannot take now (a send answered "retry": the
// channel is down, or rate-limited): the part stays pending in the outbox and the next start
// sends it. Before, the drain waited for the retry's backoff (up to 30 s a retry, until the
// drain's budget), so a channel that was down held every restart and stop.

#include <gtest/gtest.h>

#include "unit/pipeline/pipeline_fixture.h"

namespace drawbridge::pipeline {
namespace {

TEST_F(PipelineTest, ADrainLeavesAReplyWaitingForARetryToTheNextStart) {
  {
    auto p = make_pipeline();
    channel_.script = {SendStatus::retry};
    accept(*p, msg("k1", "s", "hello"));
    complete(0, "hi");
    ASSERT_EQ(channel_.attempts.size(), 1u);
    ASSERT_EQ(p->pending_deliveries(), 1u);  // waiting 500 ms for its retry
    bool idle = false;
    p->when_deliveries_idle([&] { idle = true; });
    EXPECT_FALSE(idle);
    p->set_draining(true);
    EXPECT_TRUE(idle) << "the drain waits for the retry";
    EXPECT_EQ(p->pending_deliveries(), 0u);
    executor_.advance(core::Duration(60000));
    EXPECT_EQ(channel_.attempts.size(), 1u) << "retried in the draining generation";
    EXPECT_EQ(store_->pending_outbox().size(), 1u) << "the part must stay pending";
  }
  channel_.attempts.clear();
  auto next = make_pipeline();
  next->start();
  ASSERT_EQ(channel_.sent.size(), 1u);
  EXPECT_EQ(channel_.sent[0].text, "hi");
  executor_.run_ready();  // the round that marks it sent
  EXPECT_TRUE(store_->pending_outbox().empty());
  EXPECT_EQ(assistant_entries("s"), 1u);
}

TEST_F(PipelineTest, DuringADrainAPartTheChannelCannotTakeIsLeftAtOnce) {
  auto p = make_pipeline();
  accept(*p, msg("k1", "s", "hello"));
  p->set_draining(true);  // the turn runs on; its reply comes during the drain
  channel_.script = {SendStatus::retry};
  bool idle = false;
  p->when_deliveries_idle([&] { idle = true; });
  complete(0, "hi");
  EXPECT_TRUE(idle);
  EXPECT_EQ(channel_.attempts.size(), 1u);
  EXPECT_EQ(executor_.pending_timers(), 0u) << "a retry was scheduled";
  EXPECT_EQ(store_->pending_outbox().size(), 1u);
  p->start();  // the next generation (in-process restart) sends it, once
  ASSERT_EQ(channel_.sent.size(), 1u);
  EXPECT_EQ(channel_.sent[0].text, "hi");
  EXPECT_EQ(channel_.attempts.size(), 2u);
}

TEST_F(PipelineTest, WithoutADrainAChannelThatCannotSendIsRetriedAsBefore) {
  auto p = make_pipeline();
  channel_.script = {SendStatus::retry};
  accept(*p, msg("k1", "s", "hello"));
  complete(0, "hi");
  executor_.advance(core::Duration(500));
  ASSERT_EQ(channel_.sent.size(), 1u);
  EXPECT_TRUE(store_->pending_outbox().empty());
}

}  // namespace
}  // namespace drawbridge::pipeline
