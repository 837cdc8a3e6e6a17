#include "store/wal_checkpointer.h"

#include <sqlite3.h>

#include <spdlog/spdlog.h>

#include "store/sqlite.h"

namespace drawbridge::store {

WalCheckpointer::WalCheckpointer(const std::string& path, std::chrono::milliseconds interval)
    : db_(std::make_unique<sqlite::Database>(path)), interval_(interval) {
  db_->set_busy_timeout(0);  // PASSIVE never waits; nothing else here may either
  // A connection learns that the database is in WAL mode when it first reads it; until then a
  // checkpoint is a no-op.
  db_->exec("SELECT count(*) FROM sqlite_schema");
  thread_ = std::thread([this] { loop(); });
}

WalCheckpointer::~WalCheckpointer() {
  {
    std::lock_guard lock(mutex_);
    quit_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::uint64_t WalCheckpointer::runs() const {
  std::lock_guard lock(mutex_);
  return runs_;
}

std::uint64_t WalCheckpointer::frames_copied() const {
  std::lock_guard lock(mutex_);
  return frames_;
}

void WalCheckpointer::checkpoint_now() {
  int log = 0;
  int copied = 0;
  const int rc = sqlite3_wal_checkpoint_v2(db_->handle(), nullptr, SQLITE_CHECKPOINT_PASSIVE,
                                           &log, &copied);
  std::lock_guard lock(mutex_);
  ++runs_;
  if (rc == SQLITE_OK && copied > 0) frames_ += static_cast<std::uint64_t>(copied);
  copied_.notify_all();
  if (rc != SQLITE_OK && rc != SQLITE_BUSY && rc != SQLITE_LOCKED) {
    // Not fatal: the writer's backstop threshold checkpoints if this keeps failing.
    spdlog::warn("WAL checkpoint failed: {}", sqlite3_errmsg(db_->handle()));
  }
}

bool WalCheckpointer::wait_for_frames(std::uint64_t frames, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  return copied_.wait_for(lock, timeout, [&] { return frames_ >= frames; });
}

void WalCheckpointer::loop() {
  std::unique_lock lock(mutex_);
  while (!quit_) {
    cv_.wait_for(lock, interval_, [this] { return quit_; });
    if (quit_) break;
    lock.unlock();
    checkpoint_now();
    lock.lock();
  }
}

}  // namespace drawbridge::store
