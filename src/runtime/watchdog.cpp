#include "runtime/watchdog.h"

#include <utility>

namespace drawbridge::runtime {

Watchdog::Watchdog(std::function<void()> on_fire)
    : on_fire_(std::move(on_fire)), thread_([this] { loop(); }) {}

Watchdog::~Watchdog() {
  {
    std::lock_guard lock(mutex_);
    quit_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void Watchdog::arm(Clock::time_point deadline) {
  {
    std::lock_guard lock(mutex_);
    deadline_ = deadline;
  }
  cv_.notify_all();
}

void Watchdog::disarm() {
  {
    std::lock_guard lock(mutex_);
    deadline_.reset();
  }
  cv_.notify_all();
}

bool Watchdog::armed() const {
  std::lock_guard lock(mutex_);
  return deadline_.has_value();
}

void Watchdog::loop() {
  std::unique_lock lock(mutex_);
  while (!quit_) {
    if (!deadline_) {
      cv_.wait(lock, [this] { return quit_ || deadline_.has_value(); });
      continue;
    }
    const auto deadline = *deadline_;
    if (cv_.wait_until(lock, deadline, [this, deadline] {
          return quit_ || !deadline_ || *deadline_ != deadline;
        })) {
      continue;  // quit, disarmed or re-armed
    }
    deadline_.reset();
    lock.unlock();
    on_fire_();
    lock.lock();
  }
}

}  // namespace drawbridge::runtime
