#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

namespace drawbridge::store {

namespace sqlite {
class Database;
}

// Copies the WAL back into the database on a thread and connection of its own, so the writer
// never stops committing for a checkpoint. SQLite's automatic checkpoint runs inside the commit
// that crosses the threshold: every message in that batch, and every batch queued behind it,
// waited for a 16 MB copy and an fsync (the p90 of the closed loop). A PASSIVE checkpoint
// neither blocks nor is blocked by the writer and the readers; the writer restarts the WAL
// from its beginning once a checkpoint has copied all of it. Durability is unchanged: commits
// reach the WAL as before; the checkpoint only moves committed pages into the database file.
// The writer keeps a high automatic threshold as a backstop for a checkpointer that falls
// behind (kBackstopPages).
class WalCheckpointer {
 public:
  static constexpr int kBackstopPages = 16000;  // ~64 MB of WAL
  // Opens its own connection to `path`. Throws StoreError when it cannot.
  WalCheckpointer(const std::string& path, std::chrono::milliseconds interval);
  ~WalCheckpointer();
  WalCheckpointer(const WalCheckpointer&) = delete;
  WalCheckpointer& operator=(const WalCheckpointer&) = delete;

  // Checkpoints run so far, and WAL frames copied by them (for tests and status).
  std::uint64_t runs() const;
  std::uint64_t frames_copied() const;
  // Runs one checkpoint now, on the caller's thread (tests).
  void checkpoint_now();
  // Blocks until a checkpoint has copied at least `frames` frames in all, or `timeout` passed;
  // whether it had (tests: waits on the event, not a fixed time).
  bool wait_for_frames(std::uint64_t frames, std::chrono::milliseconds timeout);

 private:
  void loop();

  std::unique_ptr<sqlite::Database> db_;
  std::chrono::milliseconds interval_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;       // quit
  std::condition_variable copied_;   // after each checkpoint
  bool quit_ = false;
  std::uint64_t runs_ = 0;
  std::uint64_t frames_ = 0;
  std::thread thread_;
};

}  // namespace drawbridge::store
