// A reply cut short (chat.abort, /stop, a drain's timeout) is kept in the transcript marked
// interrupted, shown so by the history, and sent to the agent marked as cut, never as a
// complete answer.

#include <gtest/gtest.h>

#include "unit/pipeline/pipeline_fixture.h"

namespace drawbridge::pipeline {
namespace {

const store::TranscriptEntry* last_assistant(const std::vector<store::TranscriptEntry>& t) {
  for (auto it = t.rbegin(); it != t.rend(); ++it) {
    if (it->role == "assistant") return &*it;
  }
  return nullptr;
}

TEST_F(PipelineTest, AnAbortedStreamIsKeptInTheTranscriptMarkedInterrupted) {
  auto p = make_pipeline();
  p->start();
  auto a = accept(*p, msg("k1", "s", "tell me a story"));
  agent_.stream(0, "Once upon ");
  agent_.stream(0, "a time");
  p->abort("s", "");
  executor_.run_ready();

  EXPECT_EQ(store_->inbound(a.inbound_id)->state, store::InboxState::aborted);
  const auto t = store_->transcript("s", 10);
  const auto* e = last_assistant(t);
  ASSERT_NE(e, nullptr) << "the partial reply is kept";
  EXPECT_EQ(e->text, "Once upon a time");
  EXPECT_EQ(e->state, store::TranscriptState::interrupted);
  EXPECT_EQ(e->run_id, a.run_id);
  EXPECT_TRUE(channel_.sent.empty()) << "a cut reply is not delivered as if it were whole";
  ASSERT_FALSE(listener_.events.empty());
  EXPECT_EQ(listener_.events.back().state, ChatEvent::State::aborted);

  const auto page = p->history_page("s", 10, 1 << 20, 0);
  ASSERT_EQ(page.messages.size(), 2u);
  EXPECT_FALSE(page.messages[0].interrupted);
  EXPECT_TRUE(page.messages[1].interrupted);
  EXPECT_EQ(page.messages[1].text, "Once upon a time");
}

TEST_F(PipelineTest, TheNextTurnSendsTheCutReplyMarkedAsCut) {
  auto p = make_pipeline();
  p->start();
  accept(*p, msg("k1", "s", "tell me a story"));
  agent_.stream(0, "Once upon a time");
  p->abort("s", "");
  executor_.run_ready();
  // From the in-memory tail of the session...
  accept(*p, msg("k2", "s", "go on"));
  ASSERT_EQ(agent_.calls.size(), 2u);
  const auto& h = agent_.calls[1]->request.history;
  ASSERT_EQ(h.size(), 3u);
  EXPECT_EQ(h[0].text, "tell me a story");
  EXPECT_EQ(h[1].role, "assistant");
  EXPECT_EQ(h[1].text, "Once upon a time\n\n[interrupted: this reply was cut short]");
  EXPECT_EQ(h[2].text, "go on");
  complete(1, "the end");

  // ...and from the store, as a new generation (a restart) reads it.
  p->reset();
  p->add_channel(&channel_, &agent_, 0);
  p->start();
  accept(*p, msg("k3", "s", "again"));
  ASSERT_EQ(agent_.calls.size(), 3u);
  EXPECT_TRUE(has_history(agent_.calls[2]->request, "assistant",
                          "Once upon a time\n\n[interrupted: this reply was cut short]"));
}

TEST_F(PipelineTest, AnAbortBeforeAnyWordLeavesAnEmptyInterruptedEntryTheAgentDoesNotSee) {
  auto p = make_pipeline();
  p->start();
  accept(*p, msg("k1", "s", "hello"));
  p->abort("s", "");
  executor_.run_ready();
  const auto t = store_->transcript("s", 10);
  const auto* e = last_assistant(t);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->text, "");
  EXPECT_EQ(e->state, store::TranscriptState::interrupted);

  accept(*p, msg("k2", "s", "still there?"));
  ASSERT_EQ(agent_.calls.size(), 2u);
  const auto& h = agent_.calls[1]->request.history;
  ASSERT_EQ(h.size(), 2u) << "no empty assistant message is sent";
  EXPECT_EQ(h[0].role, "user");
  EXPECT_EQ(h[1].text, "still there?");
}

TEST_F(PipelineTest, ADrainTimeoutKeepsThePartialReplyInterruptedAndTheNextTurnHearsOfIt) {
  auto p = make_pipeline();
  p->start();
  auto a = accept(*p, msg("k1", "s", "long task"));
  agent_.stream(0, "step 1 done, ");
  p->set_draining(true);
  p->abort_for_drain("budget");
  executor_.run_ready();
  EXPECT_EQ(store_->inbound(a.inbound_id)->state, store::InboxState::aborted);
  const auto t = store_->transcript("s", 10);
  const auto* e = last_assistant(t);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->text, "step 1 done, ");
  EXPECT_EQ(e->state, store::TranscriptState::interrupted);

  p->reset();
  p->add_channel(&channel_, &agent_, 0);
  p->start();
  EXPECT_EQ(agent_.calls.size(), 1u) << "an aborted row is not run again";
  accept(*p, msg("k2", "s", "continue"));
  ASSERT_EQ(agent_.calls.size(), 2u);
  EXPECT_TRUE(has_history(agent_.calls[1]->request, "assistant",
                          "step 1 done, \n\n[interrupted: this reply was cut short]"));
  EXPECT_TRUE(has_history(agent_.calls[1]->request, "system", "interrupted by a gateway restart"));
}

TEST_F(PipelineTest, AStopThatInterruptsKeepsNothingPartialAndTheRowRunsAgain) {
  auto p = make_pipeline();
  p->start();
  auto a = accept(*p, msg("k1", "s", "hello"));
  agent_.stream(0, "hal");
  p->set_draining(true);
  EXPECT_EQ(p->interrupt_all("stop"), 1u);
  executor_.run_ready();
  EXPECT_EQ(store_->inbound(a.inbound_id)->state, store::InboxState::pending);
  const auto t = store_->transcript("s", 10);
  EXPECT_EQ(last_assistant(t), nullptr)
      << "the turn runs again whole at the next start: no partial entry";
}

}  // namespace
}  // namespace drawbridge::pipeline
