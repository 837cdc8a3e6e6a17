#include "store/wal_write_buffer.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>

#include "store/sqlite.h"
#include "store/sqlite_store.h"
#include "unit/store/temp_dir.h"

// The store's connections write the WAL through the gathering VFS: a commit's frames reach the
// file in a few writes, and a connection that does not use the VFS (SQLite's default, as the
// sqlite3 shell or a backup tool would) sees every commit the moment it returns.

namespace drawbridge::store {
namespace {

namespace fs = std::filesystem;

using test_support::TempDir;

// A connection with SQLite's default VFS, for reading behind the store's back.
struct PlainConnection {
  sqlite3* db = nullptr;
  explicit PlainConnection(const std::string& path) {
    EXPECT_EQ(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr), SQLITE_OK);
  }
  ~PlainConnection() { sqlite3_close_v2(db); }
  std::int64_t scalar(const std::string& sql) {
    sqlite3_stmt* stmt = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr), SQLITE_OK)
        << sqlite3_errmsg(db);
    std::int64_t v = -1;
    if (sqlite3_step(stmt) == SQLITE_ROW) v = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    return v;
  }
  std::string text(const std::string& sql) {
    sqlite3_stmt* stmt = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr), SQLITE_OK);
    std::string v;
    if (sqlite3_step(stmt) == SQLITE_ROW) {
      v = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
    }
    sqlite3_finalize(stmt);
    return v;
  }
};

NewInbound message(int i, std::size_t bytes = 32) {
  NewInbound m;
  m.channel = "local";
  m.external_id = "e" + std::to_string(i);
  m.session_key = "local:s" + std::to_string(i % 100);
  m.chat_id = "s" + std::to_string(i % 100);
  m.sender = m.chat_id;
  m.text = std::string(bytes, 'x');
  m.run_id = "run-" + std::to_string(i);
  return m;
}

TEST(WalWriteBuffer, ACommitsFramesReachTheFileInAFewWritesBeforeItReturns) {
  ASSERT_NE(wal_write_buffer_vfs(), nullptr);
  TempDir dir;
  const std::string db = (dir.path / "drawbridge.db").string();
  auto store = SqliteStore::open(db);
  PlainConnection plain(db);
  for (int round = 0; round < 3; ++round) {
    const auto before = wal_write_counts();
    store->begin_batch();
    for (int i = 0; i < 100; ++i) {
      const int n = round * 100 + i;
      auto res = store->insert_inbound(message(n), n);
      store->stage_reply_as_sent(res.record.id, {"reply " + std::to_string(n)}, n);
    }
    store->commit_batch();
    const auto after = wal_write_counts();
    const auto sqlite_writes = after.sqlite_writes - before.sqlite_writes;
    const auto file_writes = after.file_writes - before.file_writes;
    // Inbox, outbox, transcript and their indexes: over ten frames of two writes each.
    EXPECT_GE(sqlite_writes, 20u) << "the store's WAL is not written through the VFS";
    EXPECT_GE(file_writes, 1u);
    EXPECT_LE(file_writes * 10, sqlite_writes) << "the frames were not gathered";
    // The commit is in the file: a connection without the VFS reads all of it.
    EXPECT_EQ(plain.scalar("SELECT count(*) FROM inbox"), (round + 1) * 100);
    EXPECT_EQ(plain.scalar("SELECT count(*) FROM outbox WHERE state = 'sent'"), (round + 1) * 100);
  }
  EXPECT_EQ(plain.text("PRAGMA integrity_check"), "ok");
}

TEST(WalWriteBuffer, EveryCommitOfAPowerSafeStoreIsReadableByAnotherConnection) {
  TempDir dir;
  const std::string db = (dir.path / "drawbridge.db").string();
  auto store = SqliteStore::open(db, Durability::power);
  PlainConnection plain(db);
  for (int i = 0; i < 50; ++i) {
    store->insert_inbound(message(i), i);  // one commit (and fsync) each
    EXPECT_EQ(plain.scalar("SELECT count(*) FROM inbox"), i + 1);
  }
  EXPECT_EQ(plain.text("PRAGMA integrity_check"), "ok");
}

TEST(WalWriteBuffer, ATransactionLargerThanTheCacheSpillsCommitsAndRollsBack) {
  TempDir dir;
  const std::string db = (dir.path / "drawbridge.db").string();
  sqlite::Database writer(db);
  writer.exec("PRAGMA journal_mode = WAL");
  writer.exec("PRAGMA cache_size = 20");  // 20 pages: a large transaction spills to the WAL
  writer.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)");
  PlainConnection plain(db);
  const std::string row(3000, 'y');

  // 12 MB in one transaction: spilled frames, gathered past the 4 MB cap, then the commit.
  writer.exec("BEGIN");
  for (int i = 0; i < 4000; ++i) {
    writer.exec("INSERT INTO t (v) VALUES ('" + row + "')");
  }
  // The writer reads back pages it spilled (through the VFS, which writes out first).
  sqlite::Statement count = writer.prepare("SELECT count(*), sum(length(v)) FROM t");
  sqlite::Cursor c = count.query();
  ASSERT_TRUE(c.next());
  EXPECT_EQ(c.int64(0), 4000);
  EXPECT_EQ(c.int64(1), 4000 * 3000);
  writer.exec("COMMIT");
  EXPECT_EQ(plain.scalar("SELECT count(*) FROM t"), 4000);

  // A spilled transaction rolled back leaves nothing; the next commit lands after it.
  writer.exec("BEGIN");
  for (int i = 0; i < 2000; ++i)
    writer.exec("UPDATE t SET v = 'z' WHERE id = " + std::to_string(i + 1));
  writer.exec("ROLLBACK");
  writer.exec("INSERT INTO t (v) VALUES ('last')");
  EXPECT_EQ(plain.scalar("SELECT count(*) FROM t"), 4001);
  EXPECT_EQ(plain.scalar("SELECT count(*) FROM t WHERE v = 'z'"), 0);
  EXPECT_EQ(plain.text("PRAGMA integrity_check"), "ok");
}

TEST(WalWriteBuffer, TheDataSurvivesTheWalBeingReplayedByAPlainConnection) {
  TempDir dir;
  const std::string db = (dir.path / "drawbridge.db").string();
  {
    auto store = SqliteStore::open(db, Durability::process, 1000000);  // no checkpoint
    store->begin_batch();
    for (int i = 0; i < 300; ++i) store->insert_inbound(message(i, 500), i);
    store->commit_batch();
    // Copy the files as they are while the writer still runs, as a crash would leave them.
    fs::create_directory(dir.path / "crash");
    fs::copy_file(db, dir.path / "crash" / "drawbridge.db");
    fs::copy_file(db + "-wal", dir.path / "crash" / "drawbridge.db-wal");
  }
  // Recovery reads the WAL frame by frame and checks each checksum: all 300 rows are there.
  PlainConnection recovered((dir.path / "crash" / "drawbridge.db").string());
  EXPECT_EQ(recovered.scalar("SELECT count(*) FROM inbox"), 300);
  EXPECT_EQ(recovered.text("PRAGMA integrity_check"), "ok");
}

}  // namespace
}  // namespace drawbridge::store
