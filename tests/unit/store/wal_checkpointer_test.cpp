#include "store/wal_checkpointer.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <string>

#include "store/sqlite_store.h"
#include "unit/store/temp_dir.h"

// The WAL is copied back by the checkpointer's own connection while the writer's automatic
// checkpoint stays out of the way; the data stays readable and the WAL restarts.

namespace drawbridge::store {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

using test_support::TempDir;

NewInbound message(int i) {
  NewInbound m;
  m.channel = "local";
  m.external_id = "e" + std::to_string(i);
  m.chat_id = "alice";
  m.session_key = "local:alice";
  m.sender = "alice";
  m.text = std::string(2000, 'x');
  m.run_id = "run-" + std::to_string(i);
  return m;
}

TEST(WalCheckpointer, CopiesTheWalWhileTheWriterNeverCheckpoints) {
  TempDir dir;
  const std::string db = (dir.path / "drawbridge.db").string();
  auto writer = SqliteStore::open(db, Durability::process, WalCheckpointer::kBackstopPages);
  WalCheckpointer checkpointer(db, std::chrono::hours(1));  // only checkpoint_now() runs
  for (int i = 0; i < 200; ++i) writer->insert_inbound(message(i), i);
  const auto wal = dir.path / "drawbridge.db-wal";
  const auto grown = fs::file_size(wal);
  EXPECT_GT(grown, 200u * 2000u) << "the writer checkpointed by itself";
  EXPECT_EQ(checkpointer.frames_copied(), 0u);

  checkpointer.checkpoint_now();
  EXPECT_EQ(checkpointer.runs(), 1u);
  EXPECT_GT(checkpointer.frames_copied(), 0u);
  // Copied: the next write starts the WAL over instead of growing it.
  for (int i = 200; i < 210; ++i) writer->insert_inbound(message(i), i);
  checkpointer.checkpoint_now();
  for (int i = 210; i < 220; ++i) writer->insert_inbound(message(i), i);
  EXPECT_EQ(fs::file_size(wal), grown) << "the WAL kept growing past its first size";
  EXPECT_EQ(writer->counts().inbox_total, 220);

  // Everything is in the database file: a store opened after the WAL is gone sees it all.
  writer.reset();
  auto reader = SqliteStore::open(db);
  EXPECT_EQ(reader->counts().inbox_total, 220);
}

TEST(WalCheckpointer, ItsThreadCheckpointsOnItsInterval) {
  TempDir dir;
  const std::string db = (dir.path / "drawbridge.db").string();
  auto writer = SqliteStore::open(db, Durability::process, WalCheckpointer::kBackstopPages);
  WalCheckpointer checkpointer(db, 5ms);
  for (int i = 0; i < 50; ++i) writer->insert_inbound(message(i), i);
  // Waits for the thread's checkpoint (an event), failing after 10 s.
  EXPECT_TRUE(checkpointer.wait_for_frames(1, 10s)) << "no checkpoint from the thread in 10 s";
  EXPECT_GT(checkpointer.frames_copied(), 0u);
}

}  // namespace
}  // namespace drawbridge::store
