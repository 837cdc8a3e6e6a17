#pragma once

#include <chrono>
#include <cstdint>

namespace drawbridge::core {

using Duration = std::chrono::milliseconds;
using TimePoint = std::chrono::steady_clock::time_point;

// The only source of time in drawbridge. Lifecycle code takes `now` from here so that tests
// can run a 300 s drain in microseconds with ManualClock.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual TimePoint now() const = 0;
  // Wall-clock milliseconds since the epoch, for timestamps shown to users and stored rows.
  virtual std::int64_t wall_ms() const = 0;
};

class SystemClock final : public Clock {
 public:
  TimePoint now() const override { return std::chrono::steady_clock::now(); }
  std::int64_t wall_ms() const override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
};

class ManualClock final : public Clock {
 public:
  explicit ManualClock(std::int64_t wall_start_ms = 1'700'000'000'000)
      : wall_start_ms_(wall_start_ms) {}
  TimePoint now() const override { return now_; }
  std::int64_t wall_ms() const override {
    return wall_start_ms_ +
           std::chrono::duration_cast<std::chrono::milliseconds>(now_.time_since_epoch()).count();
  }
  void advance(Duration d) { now_ += d; }

 private:
  TimePoint now_{};
  std::int64_t wall_start_ms_;
};

}  // namespace drawbridge::core
