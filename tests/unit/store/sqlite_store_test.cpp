// What only the SQLite driver has: the file, its folder, WAL and pragmas, the schema's
// upgrades from earlier user_versions. Everything a Store promises is checked against every
// driver in the *_contract_test files.

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
