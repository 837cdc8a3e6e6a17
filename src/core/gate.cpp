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
  // Taken out first: a waiter may add waiters (they wait for the next zero, or run at once
  // through when_idle) or enter new work.
  while (count_ == 0 && !waiters_.empty()) {
    auto batch = std::move(waiters_);
    waiters_.clear();
    for (auto& fn : batch) fn();
  }
}

void Gate::reset() {
  count_ = 0;
  waiters_.clear();
}

}  // namespace drawbridge::core
