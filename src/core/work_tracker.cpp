#include "core/work_tracker.h"

#include <cassert>
#include <utility>

namespace drawbridge::core {

const char* to_string(WorkKind k) {
  switch (k) {
    case WorkKind::turn: return "turn";
    case WorkKind::delivery: return "delivery";
    case WorkKind::task: return "task";
  }
  return "?";
}

void WorkTracker::begin(WorkKind kind) { ++counts_[static_cast<std::size_t>(kind)]; }

void WorkTracker::end(WorkKind kind) {
  auto& c = counts_[static_cast<std::size_t>(kind)];
  assert(c > 0);
  if (c > 0) --c;
  if (total() == 0 && !idle_waiters_.empty()) {
    auto waiters = std::exchange(idle_waiters_, {});
    for (auto& w : waiters) w();
  }
}

std::size_t WorkTracker::total() const {
  std::size_t t = 0;
  for (auto c : counts_) t += c;
  return t;
}

void WorkTracker::when_idle(std::function<void()> fn) {
  if (total() == 0) {
    fn();
    return;
  }
  idle_waiters_.push_back(std::move(fn));
}

}  // namespace drawbridge::core
