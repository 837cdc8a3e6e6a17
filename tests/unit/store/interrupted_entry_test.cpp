// SqliteStore::close_interrupted: a turn cut short closes its row and keeps what it said,
// marked interrupted, once. SqliteStore::set_merged: a debounce merge outlives a restart.

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <string>

#include "store/sqlite_store.h"
#include "unit/store/temp_dir.h"

namespace drawbridge::store {
namespace {

NewInbound message(const std::string& external_id, const std::string& text) {
  NewInbound m;
  m.channel = "local";
  m.external_id = external_id;
  m.session_key = "local:alice";
  m.chat_id = "alice";
  m.sender = "alice";
  m.text = text;
  m.run_id = "run-" + external_id;
  return m;
}

TEST(SqliteStoreInterrupted, ClosesTheRowAndKeepsThePartialMarkedInterrupted) {
  auto s = SqliteStore::open(":memory:");
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

TEST(SqliteStoreInterrupted, AClosedRowIsLeftAloneAndALateReplyAddsNothing) {
  auto s = SqliteStore::open(":memory:");
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

TEST(SqliteStoreInterrupted, ARestartRepairKeepsInterruptedEntriesAndTheSchemaRefusesOtherStates) {
  test_support::TempDir dir;
  const auto path = (dir.path / "db.sqlite").string();
  std::int64_t row = 0;
  {
    auto s = SqliteStore::open(path);
    row = s->insert_inbound(message("k1", "tell me"), 1000).record.id;
    s->close_interrupted(row, "Once", 2000);
    s->insert_inbound(message("k2", "and then?"), 3000);  // unfinished at the "crash"
  }
  auto s = SqliteStore::open(path);
  const auto repair = s->repair_interrupted();
  EXPECT_EQ(repair.removed_entries, 0);
  const auto t = s->transcript("local:alice", 10);
  ASSERT_EQ(t.size(), 3u);
  EXPECT_EQ(t[1].state, TranscriptState::interrupted);
  EXPECT_EQ(t[1].text, "Once");

  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  const int rc = sqlite3_exec(db,
                              "INSERT INTO transcript (session_key, role, text, run_id, "
                              "created_at_ms, state) VALUES ('local:alice', 'assistant', 'x', "
                              "'r', 1, 'half')",
                              nullptr, nullptr, nullptr);
  sqlite3_close(db);
  EXPECT_EQ(rc, SQLITE_CONSTRAINT);
}

TEST(SqliteStoreMerged, AMergeIsKeptWithTheRowsAndSurvivesAReopen) {
  test_support::TempDir dir;
  const auto path = (dir.path / "db.sqlite").string();
  std::int64_t a = 0, b = 0, lead = 0;
  {
    auto s = SqliteStore::open(path);
    a = s->insert_inbound(message("k1", "one"), 1000).record.id;
    b = s->insert_inbound(message("k2", "two"), 1001).record.id;
    lead = s->insert_inbound(message("k3", "three"), 1002).record.id;
    s->set_merged(lead, {a, b, 9999});  // an unknown row is skipped
    s->set_merged(lead, {lead});        // a row is never merged into itself
  }
  auto s = SqliteStore::open(path);
  const auto rows = s->unfinished_inbound();
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].merged_into, lead);
  EXPECT_EQ(rows[1].merged_into, lead);
  EXPECT_EQ(rows[2].merged_into, 0);
  EXPECT_EQ(s->inbound(a)->merged_into, lead);
}

}  // namespace
}  // namespace drawbridge::store
