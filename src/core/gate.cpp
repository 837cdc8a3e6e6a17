#include "core/gate.h"

#include <utility>

namespace drawbridge::core {

bool Gate::leave() {
  if (count_ == 0) return false;
  --count_;
  wake_if_idle();
  return true;
}

void Gate::when_idle(std::function<void()> fn) {
  if (count_ == 0) {
    fn();
    return;
  }
  waiters_.push_back(std::move(fn));
}

void Gate::wake_if_idle() {
  // Taken out before it runs, the count checked again before each: a waiter may enter work,
  // leave, add waiters or reset the gate.
  while (count_ == 0 && !waiters_.empty()) {
    auto fn = std::move(waiters_.front());
    waiters_.pop_front();
    fn();
  }
}

void Gate::reset() {
  count_ = 0;
  waiters_.clear();
}

}  // namespace drawbridge::core
