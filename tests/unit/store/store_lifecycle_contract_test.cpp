// The Store contract, run against every driver (store_drivers.h): group-commit batches, the
// session lifecycle (repair after a crash, restart loops, suspension), turns cut short and
// debounce merges.

#include <gtest/gtest.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "unit/store/store_drivers.h"

namespace drawbridge::store {
namespace {

using namespace test_support;

class StoreBatch : public StoreTest {};
class StoreLifecycle : public StoreTest {};
class StoreInterrupted : public StoreTest {};
class StoreMerged : public StoreTest {};

NewInbound batch_msg(const std::string& key) {
  return NewInbound{"local", key, "s", "s", "u", "text " + key, "run-" + key};
}

int interrupts_of(Store& s, const std::string& session) {
  for (const auto& i : s.sessions_interrupted(1)) {
    if (i.session_key == session) return i.interrupts;
  }
  return 0;
}

TEST_P(StoreBatch, WritesOfABatchBecomeVisibleToOtherConnectionsOnlyAtCommit) {
  auto& writer = store;
  auto reader = db->open();
  writer->begin_batch();
  auto a = writer->insert_inbound(batch_msg("a"), 1);
  writer->insert_inbound(batch_msg("b"), 2);
  EXPECT_TRUE(writer->inbound(a.record.id).has_value());  // its own writes
  EXPECT_EQ(reader->counts().inbox_total, 0);
  writer->commit_batch();
  EXPECT_EQ(reader->counts().inbox_total, 2);
}

TEST_P(StoreBatch, AFailedOperationInsideABatchRollsTheWholeBatchBack) {
  store->insert_inbound(batch_msg("before"), 1);
  store->begin_batch();
  store->insert_inbound(batch_msg("a"), 2);
  // It throws at once, or (a driver that sends without waiting: postgres) the batch fails at
  // the commit at the latest; nothing of it is committed either way.
  try {
    store->set_inbound_state(9999, InboxState::done);
  } catch (const StoreError&) {
  }
  EXPECT_THROW(store->commit_batch(), StoreError);
  store->rollback_batch();
  EXPECT_EQ(store->counts().inbox_total, 1);
  // The store is usable again, with or without a batch.
  store->insert_inbound(batch_msg("after"), 3);
  store->begin_batch();
  store->insert_inbound(batch_msg("batched"), 4);
  store->commit_batch();
  EXPECT_EQ(store->counts().inbox_total, 3);
}

TEST_P(StoreBatch, ADuplicateInsideABatchDoesNotSpoilIt) {
  store->insert_inbound(batch_msg("a"), 1);
  store->begin_batch();
  EXPECT_TRUE(store->insert_inbound(batch_msg("a"), 2).duplicate);
  store->insert_inbound(batch_msg("b"), 3);
  EXPECT_FALSE(store->stage_outbound({"send:k", "local", "c", "s", "r", "t"}, 4).second == false);
  EXPECT_FALSE(store->stage_outbound({"send:k", "local", "c", "s", "r", "t"}, 5).second);
  store->commit_batch();
  EXPECT_EQ(store->counts().inbox_total, 2);
}

// Reads inside a batch see its writes and spoil nothing (a read that rolled back would have
// undone the batch).
TEST_P(StoreBatch, ReadsInsideABatchSeeItsWritesAndSpoilNothing) {
  store->begin_batch();
  const auto in = store->insert_inbound(batch_msg("a"), 1).record;
  store->set_value("k", "v");
  EXPECT_TRUE(store->inbound(in.id).has_value());
  EXPECT_EQ(store->unfinished_inbound().size(), 1u);
  EXPECT_TRUE(store->pending_outbox().empty());
  EXPECT_EQ(store->transcript("s", 10).size(), 1u);
  EXPECT_EQ(store->transcript_page("s", 10, 1000, 0).entries.size(), 1u);
  EXPECT_EQ(store->counts().inbox_total, 1);
  EXPECT_EQ(store->sessions_in_state("idle"), std::vector<std::string>{"s"});
  EXPECT_TRUE(store->sessions_interrupted(1).empty());
  EXPECT_EQ(store->list_sessions(10, 0, 10).size(), 1u);
  EXPECT_TRUE(store->session_summary("s", 10).has_value());
  EXPECT_TRUE(store->input_receipt("local", "a").has_value());
  EXPECT_EQ(store->get_value("k"), "v");
  EXPECT_NO_THROW(store->commit_batch());
  auto other = db->open();
  EXPECT_EQ(other->counts().inbox_total, 1);
  EXPECT_EQ(other->get_value("k"), "v");
}

TEST_P(StoreBatch, RollbackDropsTheWholeBatch) {
  store->insert_inbound(batch_msg("kept"), 1);
  store->begin_batch();
  store->insert_inbound(batch_msg("dropped"), 2);
  store->rollback_batch();
  EXPECT_EQ(store->counts().inbox_total, 1);
  EXPECT_FALSE(store->insert_inbound(batch_msg("dropped"), 3).duplicate);
}

TEST_P(StoreBatch, DuplicateInsideOneBatchIsRecognised) {
  store->begin_batch();
  auto first = store->insert_inbound(batch_msg("a"), 1);
  auto again = store->insert_inbound(batch_msg("a"), 2);
  store->commit_batch();
  EXPECT_FALSE(first.duplicate);
  EXPECT_TRUE(again.duplicate);
  EXPECT_EQ(again.record.id, first.record.id);
}

TEST_P(StoreLifecycle, SessionStateIsKeptAndListed) {
  auto& s = store;
  s->insert_inbound(message("a", "x", "s1"), 1);
  s->insert_inbound(message("b", "x", "s2"), 1);
  EXPECT_TRUE(s->sessions_in_state("resume_pending").empty());
  s->set_session_state("s2", "resume_pending", 5);
  s->set_session_state("unknown", "resume_pending", 5);  // no row: nothing written
  EXPECT_EQ(s->sessions_in_state("resume_pending"), std::vector<std::string>{"s2"});
  s->set_session_state("s2", "idle", 6);
  EXPECT_TRUE(s->sessions_in_state("resume_pending").empty());
}

TEST_P(StoreLifecycle, RepairRemovesWhatAnUnfinishedTurnLeftInTheTranscript) {
  std::int64_t open_row = 0;
  {
    auto& s = store;
    auto done = s->insert_inbound(message("a", "answered", "s1"), 1).record.id;
    s->stage_reply(done, {"reply"}, 2);
    open_row = s->insert_inbound(message("b", "cut off", "s2"), 3).record.id;
  }
  store.reset();
  // A writer that put a partial assistant entry (and a tool call) for a turn that never ended.
  db->sql(
      "INSERT INTO transcript (session_key, role, text, run_id, inbound_id, created_at_ms) "
      "VALUES ('s2', 'assistant', 'half a rep', 'run-b', " +
      std::to_string(open_row) + ", 4), ('s2', 'tool', '{\"call\":1}', 'run-b', " +
      std::to_string(open_row) + ", 4)");

  auto s = db->open();
  auto repair = s->repair_interrupted();
  EXPECT_EQ(repair.sessions, std::vector<std::string>{"s2"});
  EXPECT_EQ(repair.removed_entries, 2);
  auto t2 = s->transcript("s2", 10);
  ASSERT_EQ(t2.size(), 1u);
  EXPECT_EQ(t2[0].role, "user");
  EXPECT_EQ(s->transcript("s1", 10).size(), 2u) << "finished turns are left alone";
  EXPECT_EQ(s->repair_interrupted().removed_entries, 0);
}

TEST_P(StoreLifecycle, StaleMarksOnlyPendingPartsAndTakesThemOffThePendingList) {
  auto& s = store;
  const auto id = s->insert_inbound(message("a"), 1).record.id;
  const auto parts = s->stage_reply(id, {"one", "two"}, 2);
  s->mark_sent(parts[0].id, 3);
  EXPECT_EQ(s->mark_stale({parts[0].id, parts[1].id}, 4), 1) << "a sent part stays sent";
  EXPECT_TRUE(s->pending_outbox().empty());
  const auto again = s->stage_reply(id, {"ignored"}, 5);
  ASSERT_EQ(again.size(), 2u);
  EXPECT_EQ(again[0].state, OutboxState::sent);
  EXPECT_EQ(again[1].state, OutboxState::stale);
  EXPECT_EQ(s->inbound(id)->state, InboxState::done) << "answered: it never runs again";
  EXPECT_EQ(s->counts().outbox_stale, 1);
}

TEST_P(StoreLifecycle, RepairCountsOneInterruptPerSessionWithUnfinishedRows) {
  auto& s = store;
  s->insert_inbound(message("a1", "x", "s1"), 1);
  s->insert_inbound(message("a2", "y", "s1"), 1);  // two rows, one session: one interrupt
  const auto b = s->insert_inbound(message("b", "x", "s2"), 1).record.id;
  s->stage_reply(b, {"answered"}, 2);
  s->repair_interrupted();
  EXPECT_EQ(interrupts_of(*s, "s1"), 1);
  EXPECT_EQ(interrupts_of(*s, "s2"), 0) << "nothing of s2 was running";
  s->repair_interrupted();
  s->repair_interrupted();
  const auto loops = s->sessions_interrupted(3);
  ASSERT_EQ(loops.size(), 1u);
  EXPECT_EQ(loops[0].session_key, "s1");
  EXPECT_EQ(loops[0].interrupts, 3);
}

// A replica repairs the sessions it takes over, not the others' (they may be mid-turn on
// another replica), and counts an interrupt only for those a dead holder left.
TEST_P(StoreLifecycle, RepairOfNamedSessionsLeavesTheOthersAlone) {
  auto& s = store;
  std::int64_t rows[3] = {};
  int i = 0;
  for (const char* key : {"s1", "s2", "s3"}) {
    rows[i] = s->insert_inbound(message(key, "x", key), 1).record.id;
    db->sql("INSERT INTO transcript (session_key, role, text, run_id, inbound_id, created_at_ms) "
            "VALUES ('" + std::string(key) + "', 'assistant', 'half', 'run', " +
            std::to_string(rows[i]) + ", 2)");
    ++i;
  }
  const auto repair = s->repair_sessions({"s1", "s2", "none"}, {"s1"});
  EXPECT_EQ(repair.sessions, (std::vector<std::string>{"s1", "s2"}));
  EXPECT_EQ(repair.removed_entries, 2);
  EXPECT_EQ(s->transcript("s1", 10).size(), 1u);
  EXPECT_EQ(s->transcript("s2", 10).size(), 1u);
  EXPECT_EQ(s->transcript("s3", 10).size(), 2u) << "not named: left alone";
  EXPECT_EQ(interrupts_of(*s, "s1"), 1);
  EXPECT_EQ(interrupts_of(*s, "s2"), 0) << "handed over, not left by a dead holder";
  EXPECT_EQ(interrupts_of(*s, "s3"), 0);
  s->begin_batch();  // the pipeline repairs inside its fenced batch
  EXPECT_EQ(s->repair_sessions({"s1"}, {"s1"}).removed_entries, 0);
  s->commit_batch();
  EXPECT_EQ(interrupts_of(*s, "s1"), 2);
}

TEST_P(StoreLifecycle, AFinishedTurnEndsTheRunOfInterruptedRestarts) {
  auto& s = store;
  const auto a = s->insert_inbound(message("a", "x", "s1"), 1).record.id;
  s->repair_interrupted();
  s->repair_interrupted();
  EXPECT_EQ(interrupts_of(*s, "s1"), 2);
  s->stage_reply(a, {"done at last"}, 2);
  EXPECT_EQ(interrupts_of(*s, "s1"), 0);
  EXPECT_TRUE(s->sessions_interrupted(1).empty());
}

TEST_P(StoreLifecycle, ARestartIsCountedOnceWhenItsDrainAbortedATurnAndRowsWereLeft) {
  auto& s = store;
  s->insert_inbound(message("a", "aborted by the drain", "s1"), 1);
  s->insert_inbound(message("b", "waits for the next generation", "s1"), 1);
  s->mark_interrupted("s1", 2);
  EXPECT_EQ(s->sessions_in_state("resume_pending"), std::vector<std::string>{"s1"});
  EXPECT_EQ(interrupts_of(*s, "s1"), 1);
  // The drain left no clean-shutdown marker: the next start repairs, without a second count.
  s->repair_interrupted();
  EXPECT_EQ(interrupts_of(*s, "s1"), 1);
  // A later crash is a restart of its own.
  s->repair_interrupted();
  EXPECT_EQ(interrupts_of(*s, "s1"), 2);
  s->mark_interrupted("unknown", 3);  // no row: nothing written
  EXPECT_EQ(s->sessions_interrupted(1).size(), 1u);
}

TEST_P(StoreLifecycle, SuspendClosesTheUnfinishedRowsAndStagesOneNoticeToTheChat) {
  auto& s = store;
  const auto done = s->insert_inbound(message("a", "fine", "s1"), 1).record.id;
  s->mark_sent(s->stage_reply(done, {"ok"}, 2).at(0).id, 2);
  const auto p1 = s->insert_inbound(message("b", "poison", "s1"), 3).record.id;
  const auto p2 = s->insert_inbound(message("c", "after it", "s1"), 4).record.id;
  const auto other = s->insert_inbound(message("d", "x", "s2"), 5).record.id;
  for (int i = 0; i < 3; ++i) s->repair_interrupted();

  const auto r = s->suspend_session("s1", "paused", 6);
  ASSERT_EQ(r.closed.size(), 2u);
  EXPECT_EQ(r.closed[0].id, p1);
  EXPECT_EQ(r.closed[1].id, p2);
  EXPECT_EQ(s->inbound(p1)->state, InboxState::aborted);
  EXPECT_EQ(s->inbound(p2)->state, InboxState::aborted);
  EXPECT_EQ(s->inbound(other)->state, InboxState::pending) << "other sessions are left alone";
  ASSERT_TRUE(r.notice);
  EXPECT_EQ(r.notice->idem_key, "suspended:s1:" + std::to_string(p2));
  EXPECT_EQ(r.notice->chat_id, "chat-s1");
  EXPECT_EQ(r.notice->text, "paused");
  const auto pending = s->pending_outbox();
  ASSERT_EQ(pending.size(), 1u);
  EXPECT_EQ(pending[0].id, r.notice->id);
  EXPECT_EQ(s->transcript("s1", 10).back().text, "paused");
  EXPECT_EQ(s->sessions_in_state("suspended"), std::vector<std::string>{"s1"});
  EXPECT_EQ(interrupts_of(*s, "s1"), 0);
  EXPECT_EQ(s->counts().sessions_suspended, 1);

  // Suspending it again (a start that crashed before it was told) sends no second notice.
  const auto again = s->suspend_session("s1", "paused", 7);
  EXPECT_TRUE(again.closed.empty());
  EXPECT_FALSE(again.notice);
}

TEST_P(StoreLifecycle, SuspendWithoutUnfinishedRowsTellsTheChatOfTheLastMessage) {
  auto& s = store;
  s->insert_inbound(message("a", "x", "s1"), 1);
  const auto b = s->insert_inbound(message("b", "y", "s1"), 2).record.id;
  s->set_inbound_state(b - 1, InboxState::aborted);
  s->set_inbound_state(b, InboxState::aborted);
  const auto r = s->suspend_session("s1", "paused", 3);
  EXPECT_TRUE(r.closed.empty());
  ASSERT_TRUE(r.notice);
  EXPECT_EQ(r.notice->idem_key, "suspended:s1:" + std::to_string(b));
  EXPECT_FALSE(s->suspend_session("never-seen", "paused", 4).notice);
}

TEST_P(StoreLifecycle, ANewMessageResumesASuspendedSession) {
  auto& s = store;
  s->insert_inbound(message("a", "x", "s1"), 1);
  s->suspend_session("s1", "paused", 2);
  s->insert_inbound(message("a", "x", "s1"), 3);  // a duplicate is no new message
  EXPECT_EQ(s->sessions_in_state("suspended"), std::vector<std::string>{"s1"});
  s->insert_inbound(message("b", "continue", "s1"), 4);
  EXPECT_TRUE(s->sessions_in_state("suspended").empty());
  EXPECT_EQ(s->sessions_in_state("idle"), std::vector<std::string>{"s1"});
}

TEST_P(StoreInterrupted, ClosesTheRowAndKeepsThePartialMarkedInterrupted) {
  auto& s = store;
  const auto in = s->insert_inbound(message("k1", "tell me"), 1000).record;
  const auto id = s->close_interrupted(in.id, "Once upon", 2000);
  EXPECT_GT(id, 0);
  EXPECT_EQ(s->inbound(in.id)->state, InboxState::aborted);
  const auto t = s->transcript("local:alice", 10);
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[0].role, "user");
  EXPECT_EQ(t[0].state, TranscriptState::complete);
  EXPECT_EQ(t[1].id, id);
  EXPECT_EQ(t[1].role, "assistant");
  EXPECT_EQ(t[1].text, "Once upon");
  EXPECT_EQ(t[1].run_id, "run-k1");
  EXPECT_EQ(t[1].inbound_id, in.id);
  EXPECT_EQ(t[1].created_at_ms, 2000);
  EXPECT_EQ(t[1].state, TranscriptState::interrupted);
  const auto page = s->transcript_page("local:alice", 10, 1 << 20, 0);
  ASSERT_EQ(page.entries.size(), 2u);
  EXPECT_EQ(page.entries[1].state, TranscriptState::interrupted);
}

TEST_P(StoreInterrupted, AClosedRowIsLeftAloneAndALateReplyAddsNothing) {
  auto& s = store;
  const auto in = s->insert_inbound(message("k1", "tell me"), 1000).record;
  ASSERT_GT(s->close_interrupted(in.id, "", 2000), 0);
  EXPECT_EQ(s->close_interrupted(in.id, "more", 3000), 0) << "no second entry";
  EXPECT_TRUE(s->stage_reply(in.id, {"the whole reply, too late"}, 4000).empty());
  const auto t = s->transcript("local:alice", 10);
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[1].text, "");
  EXPECT_EQ(t[1].state, TranscriptState::interrupted);
  EXPECT_TRUE(s->pending_outbox().empty());

  const auto answered = s->insert_inbound(message("k2", "hi"), 5000).record;
  s->stage_reply(answered.id, {"hello"}, 6000);
  EXPECT_EQ(s->close_interrupted(answered.id, "hel", 7000), 0) << "an answered row stays done";
  EXPECT_EQ(s->inbound(answered.id)->state, InboxState::done);
  EXPECT_EQ(s->transcript("local:alice", 10).back().state, TranscriptState::complete);
  EXPECT_THROW(s->close_interrupted(9999, "x", 8000), StoreError);
}

TEST_P(StoreInterrupted, ARestartRepairKeepsInterruptedEntriesAndTheSchemaRefusesOtherStates) {
  std::int64_t row = 0;
  {
    auto& s = store;
    row = s->insert_inbound(message("k1", "tell me"), 1000).record.id;
    s->close_interrupted(row, "Once", 2000);
    s->insert_inbound(message("k2", "and then?"), 3000);  // unfinished at the "crash"
  }
  store.reset();
  auto s = db->open();
  const auto repair = s->repair_interrupted();
  EXPECT_EQ(repair.removed_entries, 0);
  const auto t = s->transcript("local:alice", 10);
  ASSERT_EQ(t.size(), 3u);
  EXPECT_EQ(t[1].state, TranscriptState::interrupted);
  EXPECT_EQ(t[1].text, "Once");

  EXPECT_THROW(db->sql("INSERT INTO transcript (session_key, role, text, run_id, "
                       "created_at_ms, state) VALUES ('local:alice', 'assistant', 'x', "
                       "'r', 1, 'half')"),
               std::runtime_error);
}

TEST_P(StoreMerged, AMergeIsKeptWithTheRowsAndSurvivesAReopen) {
  std::int64_t a = 0, b = 0, lead = 0;
  {
    auto& s = store;
    a = s->insert_inbound(message("k1", "one"), 1000).record.id;
    b = s->insert_inbound(message("k2", "two"), 1001).record.id;
    lead = s->insert_inbound(message("k3", "three"), 1002).record.id;
    s->set_merged(lead, {a, b, 9999});  // an unknown row is skipped
    s->set_merged(lead, {lead});        // a row is never merged into itself
  }
  store.reset();
  auto s = db->open();
  const auto rows = s->unfinished_inbound();
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].merged_into, lead);
  EXPECT_EQ(rows[1].merged_into, lead);
  EXPECT_EQ(rows[2].merged_into, 0);
  EXPECT_EQ(s->inbound(a)->merged_into, lead);
}

INSTANTIATE_STORE_DRIVERS(StoreBatch);
INSTANTIATE_STORE_DRIVERS(StoreLifecycle);
INSTANTIATE_STORE_DRIVERS(StoreInterrupted);
INSTANTIATE_STORE_DRIVERS(StoreMerged);

}  // namespace
}  // namespace drawbridge::store
