#pragma once

#include <deque>
#include <map>
#include <utility>

#include "core/clock.h"
#include "core/executor.h"

namespace drawbridge::core {

// Simulated time for tests: post() queues, run_ready() drains the queue, advance() moves the
// ManualClock and fires every timer that came due, in deadline order (a timer already overdue,
// because the clock was advanced directly, runs at once, without turning the clock back).
class ManualExecutor final : public Executor {
 public:
  explicit ManualExecutor(ManualClock& clock) : clock_(clock) {}

  void post(std::function<void()> fn) override { ready_.push_back(std::move(fn)); }
  TimerId schedule(Duration delay, std::function<void()> fn) override {
    TimerId id = ++next_id_;
    timers_.emplace(std::make_pair(clock_.now() + delay, id), std::move(fn));
    return id;
  }
  void cancel(TimerId id) override {
    for (auto it = timers_.begin(); it != timers_.end(); ++it) {
      if (it->first.second == id) {
        timers_.erase(it);
        return;
      }
    }
  }

  // Runs posted work until none is left (work may post more work).
  std::size_t run_ready() {
    std::size_t n = 0;
    while (!ready_.empty()) {
      auto fn = std::move(ready_.front());
      ready_.pop_front();
      fn();
      ++n;
    }
    return n;
  }

  void advance(Duration d) {
    const TimePoint target = clock_.now() + d;
    run_ready();
    while (!timers_.empty() && timers_.begin()->first.first <= target) {
      auto it = timers_.begin();
      const TimePoint due = it->first.first;
      auto fn = std::move(it->second);
      timers_.erase(it);
      // A timer that came due while the clock was moved on its own (a test playing a stalled
      // loop: ManualClock::advance without running timers) runs late; time never goes back.
      if (due > clock_.now()) {
        clock_.advance(std::chrono::duration_cast<Duration>(due - clock_.now()));
      }
      fn();
      run_ready();
    }
    if (target > clock_.now()) {
      clock_.advance(std::chrono::duration_cast<Duration>(target - clock_.now()));
    }
  }

  std::size_t pending_timers() const { return timers_.size(); }

 private:
  ManualClock& clock_;
  std::deque<std::function<void()>> ready_;
  std::map<std::pair<TimePoint, TimerId>, std::function<void()>> timers_;
  TimerId next_id_ = 0;
};

}  // namespace drawbridge::core
