#include "store/sqlite_store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace drawbridge::store {
namespace {

namespace fs = std::filesystem;

// A fresh folder per test, removed with everything in it (permissions restored first).
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "drawbridge-store-XXXXXX").string();
    EXPECT_NE(mkdtemp(pattern.data()), nullptr) << "mkdtemp failed";
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    fs::permissions(path_, fs::perms::owner_all, ec);
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

NewInbound message(const std::string& external_id, const std::string& text = "hello",
                   const std::string& session_key = "local:alice") {
  NewInbound m;
  m.channel = "local";
  m.external_id = external_id;
  m.session_key = session_key;
  m.chat_id = "chat-" + session_key;
  m.sender = "alice";
  m.text = text;
  m.run_id = "run-" + external_id;
  return m;
}

NewOutbound send_request(const std::string& key, const std::string& text = "ping") {
  NewOutbound m;
  m.idem_key = "send:" + key;
  m.channel = "local";
  m.chat_id = "chat-bob";
  m.session_key = "local:bob";
  m.run_id = "run-send";
  m.text = text;
  return m;
}

std::string open_error(const std::string& path) {
  try {
    SqliteStore::open(path);
  } catch (const StoreError& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// Runs a pragma through a connection of the test's own and returns its first value, if any.
std::string raw_pragma(const std::string& path, const std::string& pragma) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  std::string value;
  if (sqlite3_prepare_v2(db, ("PRAGMA " + pragma).c_str(), -1, &stmt, nullptr) == SQLITE_OK &&
      sqlite3_step(stmt) == SQLITE_ROW) {
    value = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
  }
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return value;
}

// The first column of the first row of `sql` on a connection of its own ("" when none);
// `error` gets SQLite's message when the statement fails.
std::string raw_sql(const std::string& path, const std::string& sql, std::string* error = nullptr) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  std::string value;
  int rc = sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr);
  if (rc == SQLITE_OK) rc = sqlite3_step(stmt);
  if (rc == SQLITE_ROW && sqlite3_column_text(stmt, 0) != nullptr) {
    value = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
  }
  if (error != nullptr && rc != SQLITE_ROW && rc != SQLITE_DONE) *error = sqlite3_errmsg(db);
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return value;
}

TEST(SqliteStore, NewInboundIsPendingAndStartsTheSessionHistory) {
  auto store = SqliteStore::open(":memory:");
  const auto result = store->insert_inbound(message("m1", "hi there"), 1000);

  EXPECT_FALSE(result.duplicate);
  EXPECT_GT(result.record.id, 0);
  EXPECT_EQ(result.record.state, InboxState::pending);
  EXPECT_EQ(result.record.received_at_ms, 1000);
  EXPECT_EQ(result.record.run_id, "run-m1");

  const auto stored = store->inbound(result.record.id);
  ASSERT_TRUE(stored.has_value());
  EXPECT_EQ(stored->text, "hi there");
  EXPECT_EQ(stored->chat_id, "chat-local:alice");
  EXPECT_EQ(stored->sender, "alice");

  const auto history = store->transcript("local:alice", 10);
  ASSERT_EQ(history.size(), 1u);
  EXPECT_EQ(history[0].role, "user");
  EXPECT_EQ(history[0].text, "hi there");
  EXPECT_EQ(history[0].inbound_id, result.record.id);
  EXPECT_EQ(history[0].run_id, "run-m1");
  EXPECT_EQ(store->counts().sessions, 1);
}

TEST(SqliteStore, DuplicateInboundIsNotWrittenTwice) {
  auto store = SqliteStore::open(":memory:");
  const auto first = store->insert_inbound(message("m1", "original"), 1000);
  auto again = message("m1", "redelivered");
  again.run_id = "run-other";
  const auto second = store->insert_inbound(again, 2000);

  EXPECT_TRUE(second.duplicate);
  EXPECT_EQ(second.record.id, first.record.id);
  EXPECT_EQ(second.record.text, "original");
  EXPECT_EQ(second.record.run_id, "run-m1");
  EXPECT_EQ(second.record.received_at_ms, 1000);
  EXPECT_EQ(store->counts().inbox_total, 1);
  EXPECT_EQ(store->transcript("local:alice", 10).size(), 1u);
}

TEST(SqliteStore, DuplicateOfAClosedInboundIsStillADuplicate) {
  auto store = SqliteStore::open(":memory:");
  const auto first = store->insert_inbound(message("m1"), 1000);
  store->stage_reply(first.record.id, {"answer"}, 1100);

  const auto second = store->insert_inbound(message("m1"), 5000);
  EXPECT_TRUE(second.duplicate);
  EXPECT_EQ(second.record.state, InboxState::done);
  EXPECT_TRUE(store->unfinished_inbound().empty());
}

TEST(SqliteStore, SameExternalIdOnAnotherChannelIsANewMessage) {
  auto store = SqliteStore::open(":memory:");
  store->insert_inbound(message("42"), 1000);
  auto other = message("42");
  other.channel = "telegram";
  EXPECT_FALSE(store->insert_inbound(other, 1000).duplicate);
  EXPECT_EQ(store->counts().inbox_total, 2);
}

TEST(SqliteStore, InboundWithoutDedupeKeyIsRejected) {
  auto store = SqliteStore::open(":memory:");
  EXPECT_THROW(store->insert_inbound(message(""), 1000), StoreError);
  EXPECT_EQ(store->counts().inbox_total, 0);
}

TEST(SqliteStore, StageReplyWritesEveryPartWithItsKeyAndClosesTheRow) {
  auto store = SqliteStore::open(":memory:");
  const auto in = store->insert_inbound(message("m1"), 1000).record;

  const auto rows = store->stage_reply(in.id, {"one ", "two ", "three"}, 2000);

  ASSERT_EQ(rows.size(), 3u);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    EXPECT_GT(rows[i].id, 0);
    EXPECT_EQ(rows[i].idem_key, std::to_string(in.id) + ":" + std::to_string(i));
    EXPECT_EQ(rows[i].part, static_cast<int>(i));
    EXPECT_EQ(rows[i].final_part, i == 2);
    EXPECT_EQ(rows[i].inbound_id, in.id);
    EXPECT_EQ(rows[i].channel, "local");
    EXPECT_EQ(rows[i].chat_id, in.chat_id);
    EXPECT_EQ(rows[i].session_key, in.session_key);
    EXPECT_EQ(rows[i].run_id, in.run_id);
    EXPECT_EQ(rows[i].state, OutboxState::pending);
    EXPECT_EQ(rows[i].created_at_ms, 2000);
  }
  EXPECT_EQ(rows[1].text, "two ");
  EXPECT_EQ(store->inbound(in.id)->state, InboxState::done);

  const auto pending = store->pending_outbox();
  ASSERT_EQ(pending.size(), 3u);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(pending[i].id, rows[i].id);
    EXPECT_EQ(pending[i].idem_key, rows[i].idem_key);
    EXPECT_EQ(pending[i].final_part, rows[i].final_part);
    EXPECT_EQ(pending[i].text, rows[i].text);
  }

  const auto history = store->transcript(in.session_key, 10);
  ASSERT_EQ(history.size(), 2u);
  EXPECT_EQ(history[1].role, "assistant");
  EXPECT_EQ(history[1].text, "one two three");
  EXPECT_EQ(history[1].inbound_id, in.id);
  EXPECT_EQ(history[1].run_id, in.run_id);
}

TEST(SqliteStore, StageReplyTwiceReturnsTheFirstPartsAndWritesNothing) {
  auto store = SqliteStore::open(":memory:");
  const auto in = store->insert_inbound(message("m1"), 1000).record;
  const auto first = store->stage_reply(in.id, {"a", "b"}, 2000);

  const auto second = store->stage_reply(in.id, {"something", "else", "entirely"}, 3000);

  ASSERT_EQ(second.size(), 2u);
  EXPECT_EQ(second[0].id, first[0].id);
  EXPECT_EQ(second[1].id, first[1].id);
  EXPECT_EQ(second[0].text, "a");
  EXPECT_TRUE(second[1].final_part);
  EXPECT_EQ(store->pending_outbox().size(), 2u);
  EXPECT_EQ(store->transcript(in.session_key, 10).size(), 2u);
}

TEST(SqliteStore, StageReplyAfterAPartWasSentReturnsItsState) {
  auto store = SqliteStore::open(":memory:");
  const auto in = store->insert_inbound(message("m1"), 1000).record;
  const auto first = store->stage_reply(in.id, {"a", "b"}, 2000);
  store->mark_sent(first[0].id, 2100);

  const auto again = store->stage_reply(in.id, {"a", "b"}, 3000);
  ASSERT_EQ(again.size(), 2u);
  EXPECT_EQ(again[0].state, OutboxState::sent);
  EXPECT_EQ(again[0].sent_at_ms, 2100);
  EXPECT_EQ(again[1].state, OutboxState::pending);
}

// stage_reply_as_sent writes new parts sent at once; it must return and store exactly what
// stage_reply followed by mark_sent of the pending parts (the Store default) does.
TEST(SqliteStore, StageReplyAsSentEqualsStageReplyThenMarkSent) {
  auto fused = SqliteStore::open(":memory:");
  auto composed = SqliteStore::open(":memory:");
  std::vector<std::vector<OutboxRecord>> got[2];
  for (int i = 0; i < 2; ++i) {
    SqliteStore& s = i == 0 ? *fused : *composed;
    auto call = [&](std::int64_t id, const std::vector<std::string>& parts, std::int64_t now) {
      got[i].push_back(i == 0 ? s.stage_reply_as_sent(id, parts, now)
                              : s.Store::stage_reply_as_sent(id, parts, now));
    };
    const auto fresh = s.insert_inbound(message("m1"), 1000).record;
    call(fresh.id, {"one ", "two"}, 2000);  // new parts: returned pending, stored sent
    call(fresh.id, {"again"}, 3000);        // closed row, parts sent: returned sent, untouched
    // A closed row whose part was staged pending (before this call existed): marked now.
    const auto old = s.insert_inbound(message("m2"), 4000).record;
    s.stage_reply(old.id, {"legacy"}, 5000);
    call(old.id, {"legacy"}, 6000);
  }
  ASSERT_EQ(got[0].size(), got[1].size());
  for (std::size_t c = 0; c < got[0].size(); ++c) {
    ASSERT_EQ(got[0][c].size(), got[1][c].size()) << "call " << c;
    for (std::size_t r = 0; r < got[0][c].size(); ++r) {
      const auto& a = got[0][c][r];
      const auto& b = got[1][c][r];
      EXPECT_EQ(a.id, b.id);
      EXPECT_EQ(a.idem_key, b.idem_key);
      EXPECT_EQ(a.state, b.state) << "call " << c << " part " << r;
      EXPECT_EQ(a.sent_at_ms, b.sent_at_ms);
      EXPECT_EQ(a.text, b.text);
    }
  }
  EXPECT_EQ(got[0][0].at(0).state, OutboxState::pending);
  EXPECT_EQ(got[0][1].at(0).state, OutboxState::sent);
  EXPECT_EQ(got[0][1].at(0).sent_at_ms, 2000);
  EXPECT_EQ(got[0][2].at(0).state, OutboxState::pending);
  EXPECT_TRUE(fused->pending_outbox().empty());
  EXPECT_TRUE(composed->pending_outbox().empty());
  const auto counts = fused->counts();
  EXPECT_EQ(counts.outbox_sent, 3);
  EXPECT_EQ(counts.outbox_sent, composed->counts().outbox_sent);
  EXPECT_EQ(fused->transcript("local:alice", 10).size(),
            composed->transcript("local:alice", 10).size());
}

TEST(SqliteStore, StageReplyWithNoPartsClosesTheRowSilently) {
  auto store = SqliteStore::open(":memory:");
  const auto in = store->insert_inbound(message("m1"), 1000).record;

  EXPECT_TRUE(store->stage_reply(in.id, {}, 2000).empty());
  EXPECT_EQ(store->inbound(in.id)->state, InboxState::done);
  EXPECT_TRUE(store->pending_outbox().empty());
  EXPECT_EQ(store->transcript(in.session_key, 10).size(), 1u);
  EXPECT_TRUE(store->stage_reply(in.id, {"late"}, 3000).empty());
}

TEST(SqliteStore, StageReplyForAnAbortedRowWritesNothing) {
  auto store = SqliteStore::open(":memory:");
  const auto in = store->insert_inbound(message("m1"), 1000).record;
  store->set_inbound_state(in.id, InboxState::aborted);

  EXPECT_TRUE(store->stage_reply(in.id, {"too late"}, 2000).empty());
  EXPECT_EQ(store->inbound(in.id)->state, InboxState::aborted);
  EXPECT_EQ(store->counts().outbox_pending, 0);
  EXPECT_EQ(store->transcript(in.session_key, 10).size(), 1u);
}

TEST(SqliteStore, StageReplyForAnUnknownInboundThrows) {
  auto store = SqliteStore::open(":memory:");
  EXPECT_THROW(store->stage_reply(999, {"x"}, 1000), StoreError);
}

TEST(SqliteStore, FailedStageReplyRollsEverythingBack) {
  auto store = SqliteStore::open(":memory:");
  const auto in = store->insert_inbound(message("m1"), 1000).record;
  // Something else took the key of part 1, so the reply cannot be staged as a whole.
  auto squatter = send_request("x");
  squatter.idem_key = std::to_string(in.id) + ":1";
  squatter.session_key = in.session_key;
  store->stage_outbound(squatter, 1500);

  EXPECT_THROW(store->stage_reply(in.id, {"a", "b"}, 2000), StoreError);

  EXPECT_EQ(store->inbound(in.id)->state, InboxState::pending);
  const auto pending = store->pending_outbox();
  ASSERT_EQ(pending.size(), 1u);
  EXPECT_EQ(pending[0].idem_key, squatter.idem_key);
  EXPECT_EQ(store->transcript(in.session_key, 10).size(), 2u);  // user + the squatter
  // The connection is usable afterwards.
  EXPECT_FALSE(store->insert_inbound(message("m2"), 3000).duplicate);
}

TEST(SqliteStore, UnfinishedInboundListsPendingAndRunningOldestFirst) {
  auto store = SqliteStore::open(":memory:");
  std::vector<std::int64_t> ids;
  for (int i = 0; i < 5; ++i) {
    ids.push_back(store->insert_inbound(message("m" + std::to_string(i)), 1000 + i).record.id);
  }
  store->set_inbound_state(ids[0], InboxState::running);
  store->set_inbound_state(ids[1], InboxState::failed);
  store->stage_reply(ids[2], {"done"}, 2000);
  store->set_inbound_state(ids[4], InboxState::aborted);

  const auto rows = store->unfinished_inbound();
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].id, ids[0]);
  EXPECT_EQ(rows[0].state, InboxState::running);
  EXPECT_EQ(rows[1].id, ids[3]);
  EXPECT_EQ(rows[1].state, InboxState::pending);
}

TEST(SqliteStore, UnknownIdsAreErrors) {
  auto store = SqliteStore::open(":memory:");
  EXPECT_FALSE(store->inbound(7).has_value());
  EXPECT_THROW(store->set_inbound_state(7, InboxState::done), StoreError);
  EXPECT_THROW(store->mark_sent(7, 1000), StoreError);
  EXPECT_THROW(store->mark_failed(7, 1000), StoreError);
}

TEST(SqliteStore, MarkSentAndMarkFailedTakeRowsOffThePendingList) {
  auto store = SqliteStore::open(":memory:");
  const auto in = store->insert_inbound(message("m1"), 1000).record;
  const auto rows = store->stage_reply(in.id, {"a", "b", "c"}, 2000);

  store->mark_sent(rows[0].id, 2100);
  store->mark_failed(rows[1].id, 2200);

  const auto pending = store->pending_outbox();
  ASSERT_EQ(pending.size(), 1u);
  EXPECT_EQ(pending[0].id, rows[2].id);
  EXPECT_EQ(pending[0].sent_at_ms, 0);
  const auto all = store->stage_reply(in.id, {}, 3000);
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].state, OutboxState::sent);
  EXPECT_EQ(all[0].sent_at_ms, 2100);
  EXPECT_EQ(all[1].state, OutboxState::failed);
  EXPECT_EQ(all[1].sent_at_ms, 2200);
}

TEST(SqliteStore, SendIsDedupedByIdempotencyKey) {
  auto store = SqliteStore::open(":memory:");
  const auto [first, inserted] = store->stage_outbound(send_request("k1", "ping"), 1000);
  EXPECT_TRUE(inserted);
  EXPECT_GT(first.id, 0);
  EXPECT_EQ(first.inbound_id, 0);
  EXPECT_EQ(first.part, 0);
  EXPECT_TRUE(first.final_part);
  EXPECT_EQ(first.state, OutboxState::pending);

  const auto [second, inserted_again] = store->stage_outbound(send_request("k1", "pong"), 2000);
  EXPECT_FALSE(inserted_again);
  EXPECT_EQ(second.id, first.id);
  EXPECT_EQ(second.text, "ping");
  EXPECT_EQ(second.created_at_ms, 1000);

  const auto pending = store->pending_outbox();
  ASSERT_EQ(pending.size(), 1u);
  EXPECT_EQ(pending[0].inbound_id, 0);
  EXPECT_EQ(pending[0].idem_key, "send:k1");

  const auto history = store->transcript("local:bob", 10);
  ASSERT_EQ(history.size(), 1u);
  EXPECT_EQ(history[0].role, "assistant");
  EXPECT_EQ(history[0].text, "ping");
  EXPECT_EQ(history[0].inbound_id, 0);
}

TEST(SqliteStore, SendWithoutSessionHasNoHistory) {
  auto store = SqliteStore::open(":memory:");
  auto m = send_request("k1");
  m.session_key.clear();
  EXPECT_TRUE(store->stage_outbound(m, 1000).second);
  EXPECT_EQ(store->counts().sessions, 0);
  EXPECT_TRUE(store->transcript("", 10).empty());
}

TEST(SqliteStore, SendWithoutIdempotencyKeyIsRejected) {
  auto store = SqliteStore::open(":memory:");
  auto m = send_request("k1");
  m.idem_key.clear();
  EXPECT_THROW(store->stage_outbound(m, 1000), StoreError);
  EXPECT_TRUE(store->pending_outbox().empty());
}

TEST(SqliteStore, TranscriptReturnsTheNewestEntriesOldestFirst) {
  auto store = SqliteStore::open(":memory:");
  for (int i = 1; i <= 5; ++i) {
    store->insert_inbound(message("a" + std::to_string(i), "text " + std::to_string(i)), i);
  }
  store->insert_inbound(message("b1", "elsewhere", "local:carol"), 10);

  const auto last3 = store->transcript("local:alice", 3);
  ASSERT_EQ(last3.size(), 3u);
  EXPECT_EQ(last3[0].text, "text 3");
  EXPECT_EQ(last3[1].text, "text 4");
  EXPECT_EQ(last3[2].text, "text 5");
  EXPECT_LT(last3[0].id, last3[1].id);

  EXPECT_EQ(store->transcript("local:alice", 100).size(), 5u);
  EXPECT_EQ(store->transcript("local:alice", SIZE_MAX).size(), 5u);
  EXPECT_TRUE(store->transcript("local:alice", 0).empty());
  EXPECT_TRUE(store->transcript("local:nobody", 10).empty());
  ASSERT_EQ(store->transcript("local:carol", 10).size(), 1u);
  EXPECT_EQ(store->transcript("local:carol", 10)[0].created_at_ms, 10);
}

TEST(SqliteStore, CountsReflectEveryTable) {
  auto store = SqliteStore::open(":memory:");
  const auto a = store->insert_inbound(message("m1"), 1000).record;
  store->insert_inbound(message("m1"), 1000);
  const auto b = store->insert_inbound(message("m2"), 1000).record;
  store->insert_inbound(message("m3", "hi", "local:carol"), 1000);
  store->set_inbound_state(b.id, InboxState::running);
  const auto rows = store->stage_reply(a.id, {"x", "y"}, 2000);
  store->mark_sent(rows[0].id, 2100);
  store->stage_outbound(send_request("k1"), 2200);

  const auto n = store->counts();
  EXPECT_EQ(n.inbox_total, 3);
  EXPECT_EQ(n.inbox_unfinished, 2);
  EXPECT_EQ(n.outbox_pending, 2);
  EXPECT_EQ(n.outbox_sent, 1);
  EXPECT_EQ(n.sessions, 3);  // alice, carol, and bob from the send
}

TEST(SqliteStore, KeyValueRoundTrip) {
  auto store = SqliteStore::open(":memory:");
  EXPECT_FALSE(store->get_value("telegram.offset").has_value());
  store->set_value("telegram.offset", "100");
  store->set_value("telegram.offset", "101");
  store->set_value("empty", "");
  EXPECT_EQ(store->get_value("telegram.offset"), "101");
  EXPECT_EQ(store->get_value("empty"), "");
  store->erase_value("telegram.offset");
  store->erase_value("never-set");
  EXPECT_FALSE(store->get_value("telegram.offset").has_value());
}

TEST(SqliteStore, PendingOutboxIsReplayedAfterReopen) {
  TempDir dir;
  const auto path = dir.file("drawbridge.sqlite");
  std::int64_t replied = 0;
  std::int64_t waiting = 0;
  std::vector<OutboxRecord> parts;
  {
    auto store = SqliteStore::open(path);
    replied = store->insert_inbound(message("m1"), 1000).record.id;
    waiting = store->insert_inbound(message("m2"), 1100).record.id;
    parts = store->stage_reply(replied, {"first", "second"}, 2000);
    store->mark_sent(parts[0].id, 2100);
    store->set_value("clean-shutdown", "no");
  }

  auto store = SqliteStore::open(path);
  const auto pending = store->pending_outbox();
  ASSERT_EQ(pending.size(), 1u);
  EXPECT_EQ(pending[0].id, parts[1].id);
  EXPECT_EQ(pending[0].idem_key, std::to_string(replied) + ":1");
  EXPECT_TRUE(pending[0].final_part);
  EXPECT_EQ(pending[0].text, "second");

  const auto unfinished = store->unfinished_inbound();
  ASSERT_EQ(unfinished.size(), 1u);
  EXPECT_EQ(unfinished[0].id, waiting);
  EXPECT_TRUE(store->insert_inbound(message("m1"), 9000).duplicate);
  EXPECT_EQ(store->stage_reply(replied, {"again"}, 9000).size(), 2u);
  EXPECT_EQ(store->transcript("local:alice", 10).size(), 3u);
  EXPECT_EQ(store->get_value("clean-shutdown"), "no");
}

TEST(SqliteStore, CommitsAreVisibleToASecondConnectionOnTheSameFile) {
  TempDir dir;
  const auto path = dir.file("drawbridge.sqlite");
  auto first = SqliteStore::open(path);
  const auto in = first->insert_inbound(message("m1"), 1000).record;

  auto second = SqliteStore::open(path);
  ASSERT_TRUE(second->inbound(in.id).has_value());
  EXPECT_TRUE(second->insert_inbound(message("m1"), 2000).duplicate);
  second->stage_reply(in.id, {"from the second"}, 2000);

  EXPECT_EQ(first->inbound(in.id)->state, InboxState::done);
  EXPECT_EQ(first->stage_reply(in.id, {"from the first"}, 3000).at(0).text, "from the second");
}

TEST(SqliteStore, OpenCreatesTheSchemaInWalMode) {
  TempDir dir;
  const auto path = dir.file("drawbridge.sqlite");
  SqliteStore::open(path);
  SqliteStore::open(path);  // a second open finds the schema current and leaves it alone

  EXPECT_EQ(raw_pragma(path, "user_version"), "4");
  EXPECT_EQ(raw_pragma(path, "journal_mode"), "wal");
}

// The state CHECKs are OR chains, not `IN (...)` lists (SQLite builds a temporary b-tree for
// those on every write), with the same schema version, and they still refuse unknown states.
TEST(SqliteStore, StateChecksAreOrChainsAndStillEnforced) {
  TempDir dir;
  const auto path = dir.file("drawbridge.sqlite");
  SqliteStore::open(path);
  const auto inbox = raw_sql(path, "SELECT sql FROM sqlite_schema WHERE name = 'inbox'");
  const auto outbox = raw_sql(path, "SELECT sql FROM sqlite_schema WHERE name = 'outbox'");
  EXPECT_TRUE(contains(inbox, "CHECK (state = 'pending' OR state = 'running' OR state = 'done' OR "
                              "state = 'aborted' OR state = 'failed')"))
      << inbox;
  EXPECT_TRUE(contains(outbox, "CHECK (state = 'pending' OR state = 'sent' OR state = 'failed' OR "
                               "state = 'stale')"))
      << outbox;
  EXPECT_FALSE(contains(inbox + outbox, "state IN ('pending', 'running', 'done'")) << inbox;
  EXPECT_FALSE(contains(inbox + outbox, "state IN ('pending', 'sent'")) << outbox;
  EXPECT_EQ(raw_pragma(path, "user_version"), "4");

  std::string error;
  raw_sql(path,
          "INSERT INTO inbox (channel, external_id, session_key, chat_id, sender, text, run_id, "
          "state, received_at_ms) VALUES ('c', 'x', 's', 's', 'u', 't', 'r', 'bogus', 1)",
          &error);
  EXPECT_TRUE(contains(error, "CHECK constraint failed")) << error;
  error.clear();
  raw_sql(path,
          "INSERT INTO outbox (idem_key, part, final_part, channel, chat_id, session_key, run_id, "
          "text, state, created_at_ms) VALUES ('k', 0, 1, 'c', 's', 's', 'r', 't', 'bogus', 1)",
          &error);
  EXPECT_TRUE(contains(error, "CHECK constraint failed")) << error;

  // A second open finds nothing to rewrite and leaves the schema alone.
  const auto version = raw_pragma(path, "schema_version");
  SqliteStore::open(path)->insert_inbound(message("m1"), 1000);
  EXPECT_EQ(raw_pragma(path, "schema_version"), version);
  EXPECT_EQ(raw_pragma(path, "integrity_check"), "ok");
}

TEST(SqliteStore, NewerSchemaIsRefused) {
  TempDir dir;
  const auto path = dir.file("drawbridge.sqlite");
  SqliteStore::open(path);
  raw_pragma(path, "user_version = 99");

  const auto error = open_error(path);
  EXPECT_TRUE(contains(error, path)) << error;
  EXPECT_TRUE(contains(error, "newer")) << error;
}

TEST(SqliteStore, OpenDoesNotCreateTheDataFolder) {
  TempDir dir;
  const auto path = dir.file("missing/drawbridge.sqlite");
  EXPECT_TRUE(contains(open_error(path), path));
  EXPECT_FALSE(fs::exists(dir.path() / "missing"));
}

TEST(SqliteStore, OpeningInAnUnwritableFolderNamesThePathAndTheReason) {
  TempDir dir;
  std::string path;
  if (geteuid() == 0) {
    // Root writes through a 0500 folder; a "folder" that is a regular file stops everyone.
    std::ofstream(dir.file("not-a-folder")) << "x";
    path = dir.file("not-a-folder/drawbridge.sqlite");
  } else {
    fs::permissions(dir.path(), fs::perms::owner_read | fs::perms::owner_exec);
    path = dir.file("drawbridge.sqlite");
  }

  const auto error = open_error(path);
  EXPECT_TRUE(contains(error, "\"" + path + "\"")) << error;
  EXPECT_TRUE(contains(error, "unable to open database file")) << error;
}

TEST(SqliteStore, StateNames) {
  EXPECT_STREQ(to_string(InboxState::pending), "pending");
  EXPECT_STREQ(to_string(InboxState::running), "running");
  EXPECT_STREQ(to_string(InboxState::done), "done");
  EXPECT_STREQ(to_string(InboxState::aborted), "aborted");
  EXPECT_STREQ(to_string(InboxState::failed), "failed");
  EXPECT_STREQ(to_string(OutboxState::pending), "pending");
  EXPECT_STREQ(to_string(OutboxState::sent), "sent");
  EXPECT_STREQ(to_string(OutboxState::failed), "failed");
  EXPECT_STREQ(to_string(OutboxState::stale), "stale");
}

}  // namespace
}  // namespace drawbridge::store

namespace drawbridge::store {
namespace {

NewInbound batch_msg(const std::string& key) {
  return NewInbound{"local", key, "s", "s", "u", "text " + key, "run-" + key};
}

TEST(SqliteStoreBatch, WritesOfABatchBecomeVisibleToOtherConnectionsOnlyAtCommit) {
  char tmpl[] = "/tmp/drawbridge-batch-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string path = std::string(tmpl) + "/db.sqlite";
  {
    auto writer = SqliteStore::open(path);
    auto reader = SqliteStore::open(path);
    writer->begin_batch();
    auto a = writer->insert_inbound(batch_msg("a"), 1);
    writer->insert_inbound(batch_msg("b"), 2);
    EXPECT_TRUE(writer->inbound(a.record.id).has_value());  // its own writes
    EXPECT_EQ(reader->counts().inbox_total, 0);
    writer->commit_batch();
    EXPECT_EQ(reader->counts().inbox_total, 2);
  }
  std::filesystem::remove_all(tmpl);
}

TEST(SqliteStoreBatch, AFailedOperationInsideABatchRollsTheWholeBatchBack) {
  auto store = SqliteStore::open(":memory:");
  store->insert_inbound(batch_msg("before"), 1);
  store->begin_batch();
  store->insert_inbound(batch_msg("a"), 2);
  EXPECT_THROW(store->set_inbound_state(9999, InboxState::done), StoreError);
  EXPECT_THROW(store->commit_batch(), StoreError);
  EXPECT_EQ(store->counts().inbox_total, 1);
  // The store is usable again, with or without a batch.
  store->insert_inbound(batch_msg("after"), 3);
  store->begin_batch();
  store->insert_inbound(batch_msg("batched"), 4);
  store->commit_batch();
  EXPECT_EQ(store->counts().inbox_total, 3);
}

TEST(SqliteStoreBatch, ADuplicateInsideABatchDoesNotSpoilIt) {
  auto store = SqliteStore::open(":memory:");
  store->insert_inbound(batch_msg("a"), 1);
  store->begin_batch();
  EXPECT_TRUE(store->insert_inbound(batch_msg("a"), 2).duplicate);
  store->insert_inbound(batch_msg("b"), 3);
  EXPECT_FALSE(store->stage_outbound({"send:k", "local", "c", "s", "r", "t"}, 4).second == false);
  EXPECT_FALSE(store->stage_outbound({"send:k", "local", "c", "s", "r", "t"}, 5).second);
  store->commit_batch();
  EXPECT_EQ(store->counts().inbox_total, 2);
}

TEST(SqliteStoreBatch, RollbackDropsTheWholeBatch) {
  auto store = SqliteStore::open(":memory:");
  store->insert_inbound(batch_msg("kept"), 1);
  store->begin_batch();
  store->insert_inbound(batch_msg("dropped"), 2);
  store->rollback_batch();
  EXPECT_EQ(store->counts().inbox_total, 1);
  EXPECT_FALSE(store->insert_inbound(batch_msg("dropped"), 3).duplicate);
}

TEST(SqliteStoreBatch, DuplicateInsideOneBatchIsRecognised) {
  auto store = SqliteStore::open(":memory:");
  store->begin_batch();
  auto first = store->insert_inbound(batch_msg("a"), 1);
  auto again = store->insert_inbound(batch_msg("a"), 2);
  store->commit_batch();
  EXPECT_FALSE(first.duplicate);
  EXPECT_TRUE(again.duplicate);
  EXPECT_EQ(again.record.id, first.record.id);
}

}  // namespace
}  // namespace drawbridge::store

namespace drawbridge::store {
namespace {

TEST(SqliteStoreLifecycle, SessionStateIsKeptAndListed) {
  auto s = SqliteStore::open(":memory:");
  s->insert_inbound(message("a", "x", "s1"), 1);
  s->insert_inbound(message("b", "x", "s2"), 1);
  EXPECT_TRUE(s->sessions_in_state("resume_pending").empty());
  s->set_session_state("s2", "resume_pending", 5);
  s->set_session_state("unknown", "resume_pending", 5);  // no row: nothing written
  EXPECT_EQ(s->sessions_in_state("resume_pending"), std::vector<std::string>{"s2"});
  s->set_session_state("s2", "idle", 6);
  EXPECT_TRUE(s->sessions_in_state("resume_pending").empty());
}

TEST(SqliteStoreLifecycle, RepairRemovesWhatAnUnfinishedTurnLeftInTheTranscript) {
  TempDir dir;
  const auto path = dir.file("t.db");
  std::int64_t open_row = 0;
  {
    auto s = SqliteStore::open(path);
    auto done = s->insert_inbound(message("a", "answered", "s1"), 1).record.id;
    s->stage_reply(done, {"reply"}, 2);
    open_row = s->insert_inbound(message("b", "cut off", "s2"), 3).record.id;
  }
  // A writer that put a partial assistant entry (and a tool call) for a turn that never ended.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  const std::string sql =
      "INSERT INTO transcript (session_key, role, text, run_id, inbound_id, created_at_ms) "
      "VALUES ('s2', 'assistant', 'half a rep', 'run-b', " + std::to_string(open_row) +
      ", 4), ('s2', 'tool', '{\"call\":1}', 'run-b', " + std::to_string(open_row) + ", 4)";
  ASSERT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);

  auto s = SqliteStore::open(path);
  auto repair = s->repair_interrupted();
  EXPECT_EQ(repair.sessions, std::vector<std::string>{"s2"});
  EXPECT_EQ(repair.removed_entries, 2);
  auto t2 = s->transcript("s2", 10);
  ASSERT_EQ(t2.size(), 1u);
  EXPECT_EQ(t2[0].role, "user");
  EXPECT_EQ(s->transcript("s1", 10).size(), 2u) << "finished turns are left alone";
  EXPECT_EQ(s->repair_interrupted().removed_entries, 0);
}

int interrupts_of(Store& s, const std::string& session) {
  for (const auto& i : s.sessions_interrupted(1)) {
    if (i.session_key == session) return i.interrupts;
  }
  return 0;
}

TEST(SqliteStoreLifecycle, StaleMarksOnlyPendingPartsAndTakesThemOffThePendingList) {
  auto s = SqliteStore::open(":memory:");
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

TEST(SqliteStoreLifecycle, RepairCountsOneInterruptPerSessionWithUnfinishedRows) {
  auto s = SqliteStore::open(":memory:");
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

TEST(SqliteStoreLifecycle, AFinishedTurnEndsTheRunOfInterruptedRestarts) {
  auto s = SqliteStore::open(":memory:");
  const auto a = s->insert_inbound(message("a", "x", "s1"), 1).record.id;
  s->repair_interrupted();
  s->repair_interrupted();
  EXPECT_EQ(interrupts_of(*s, "s1"), 2);
  s->stage_reply(a, {"done at last"}, 2);
  EXPECT_EQ(interrupts_of(*s, "s1"), 0);
  EXPECT_TRUE(s->sessions_interrupted(1).empty());
}

TEST(SqliteStoreLifecycle, ARestartIsCountedOnceWhenItsDrainAbortedATurnAndRowsWereLeft) {
  auto s = SqliteStore::open(":memory:");
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

TEST(SqliteStoreLifecycle, SuspendClosesTheUnfinishedRowsAndStagesOneNoticeToTheChat) {
  auto s = SqliteStore::open(":memory:");
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

TEST(SqliteStoreLifecycle, SuspendWithoutUnfinishedRowsTellsTheChatOfTheLastMessage) {
  auto s = SqliteStore::open(":memory:");
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

TEST(SqliteStoreLifecycle, ANewMessageResumesASuspendedSession) {
  auto s = SqliteStore::open(":memory:");
  s->insert_inbound(message("a", "x", "s1"), 1);
  s->suspend_session("s1", "paused", 2);
  s->insert_inbound(message("a", "x", "s1"), 3);  // a duplicate is no new message
  EXPECT_EQ(s->sessions_in_state("suspended"), std::vector<std::string>{"s1"});
  s->insert_inbound(message("b", "continue", "s1"), 4);
  EXPECT_TRUE(s->sessions_in_state("suspended").empty());
  EXPECT_EQ(s->sessions_in_state("idle"), std::vector<std::string>{"s1"});
}

// The schema of user_version 1, as the first release created it.
constexpr const char* kSchemaV1 = R"sql(
CREATE TABLE inbox (
  id INTEGER PRIMARY KEY, channel TEXT NOT NULL, external_id TEXT NOT NULL,
  session_key TEXT NOT NULL, chat_id TEXT NOT NULL, sender TEXT NOT NULL, text TEXT NOT NULL,
  run_id TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('pending', 'running', 'done', 'aborted', 'failed')),
  received_at_ms INTEGER NOT NULL, UNIQUE (channel, external_id));
CREATE INDEX inbox_unfinished ON inbox (id) WHERE state IN ('pending', 'running');
CREATE TABLE outbox (
  id INTEGER PRIMARY KEY, idem_key TEXT NOT NULL UNIQUE, inbound_id INTEGER REFERENCES inbox (id),
  part INTEGER NOT NULL, final_part INTEGER NOT NULL, channel TEXT NOT NULL,
  chat_id TEXT NOT NULL, session_key TEXT NOT NULL, run_id TEXT NOT NULL, text TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'failed')),
  created_at_ms INTEGER NOT NULL, sent_at_ms INTEGER);
CREATE INDEX outbox_by_state ON outbox (state, id);
CREATE INDEX outbox_by_inbound ON outbox (inbound_id, part) WHERE inbound_id IS NOT NULL;
CREATE TABLE sessions (
  session_key TEXT PRIMARY KEY, created_at_ms INTEGER NOT NULL, updated_at_ms INTEGER NOT NULL,
  state TEXT NOT NULL DEFAULT 'idle') WITHOUT ROWID;
CREATE TABLE transcript (
  id INTEGER PRIMARY KEY, session_key TEXT NOT NULL REFERENCES sessions (session_key),
  role TEXT NOT NULL, text TEXT NOT NULL, run_id TEXT NOT NULL,
  inbound_id INTEGER REFERENCES inbox (id), created_at_ms INTEGER NOT NULL);
CREATE INDEX transcript_by_session ON transcript (session_key, id);
CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
INSERT INTO inbox VALUES (1, 'local', 'k1', 's1', 's1', 'u', 'hello', 'run-1', 'done', 10);
INSERT INTO sessions VALUES ('s1', 10, 20, 'resume_pending');
INSERT INTO transcript VALUES (1, 's1', 'user', 'hello', 'run-1', 1, 10);
INSERT INTO transcript VALUES (2, 's1', 'assistant', 'hi', 'run-1', 1, 20);
INSERT INTO outbox VALUES (1, '1:0', 1, 0, 1, 'local', 's1', 's1', 'run-1', 'hi', 'pending', 20,
                           NULL);
PRAGMA user_version = 1;
)sql";

TEST(SqliteStoreLifecycle, AVersionOneDatabaseIsUpgradedWithItsRowsKept) {
  TempDir dir;
  const auto path = dir.file("v1.db");
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, kSchemaV1, nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);

  auto s = SqliteStore::open(path);
  EXPECT_EQ(raw_pragma(path, "user_version"), "4");
  const auto pending = s->pending_outbox();
  ASSERT_EQ(pending.size(), 1u);
  EXPECT_EQ(pending[0].idem_key, "1:0");
  EXPECT_EQ(pending[0].text, "hi");
  EXPECT_EQ(s->sessions_in_state("resume_pending"), std::vector<std::string>{"s1"});
  const auto t = s->transcript("s1", 10);
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[1].text, "hi");
  EXPECT_EQ(t[1].state, TranscriptState::complete) << "entries written before interrupted existed";
  EXPECT_EQ(s->mark_stale({pending[0].id}, 30), 1);
  EXPECT_EQ(s->stage_reply(1, {"x"}, 40).at(0).state, OutboxState::stale);
  EXPECT_EQ(raw_pragma(path, "integrity_check"), "ok");
  EXPECT_TRUE(contains(raw_sql(path, "SELECT sql FROM sqlite_schema WHERE name = 'inbox'"),
                       "state = 'pending' OR state = 'running'"));
  EXPECT_EQ(raw_pragma(path, "foreign_key_check"), "");
}

}  // namespace
}  // namespace drawbridge::store
