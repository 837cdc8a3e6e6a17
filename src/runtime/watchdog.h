#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>

namespace drawbridge::runtime {

// The force-exit watchdog of a drain. It runs on a thread of its own so that it fires even
// when the event loop is stuck (a blocking call, a deadlock): that is the case it exists for.
// `on_fire` runs on the watchdog thread, once per arm() that is not disarmed in time; it is
// expected to write the diagnostic bundle and exit the process.
class Watchdog {
 public:
  using Clock = std::chrono::steady_clock;

  explicit Watchdog(std::function<void()> on_fire);
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  void arm(Clock::time_point deadline);
  void disarm();
  bool armed() const;

 private:
  void loop();

  std::function<void()> on_fire_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::optional<Clock::time_point> deadline_;
  bool quit_ = false;
  std::thread thread_;
};

}  // namespace drawbridge::runtime
