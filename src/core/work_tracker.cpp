#include "core/work_tracker.h"

#include <cassert>
#include <utility>

namespace drawbridge::core {

const char* to_string(WorkKind k) {
  switch (k) {
    case WorkKind::turn:
      return "turn";
    case WorkKind::delivery:
      return "delivery";
    case WorkKind::task:
      return "task";
  }
  return "?";
}

void WorkTracker::begin(WorkKind kind) {
  const auto k = static_cast<std::size_t>(kind);
  ++anonymous_[k];
  ++counts_[k];
}

void WorkTracker::end(WorkKind kind) {
  const auto k = static_cast<std::size_t>(kind);
  assert(anonymous_[k] > 0);
  if (anonymous_[k] == 0) return;
  --anonymous_[k];
  --counts_[k];
  wake_idle_waiters();
}

WorkId WorkTracker::start(WorkKind kind, WorkInfo info) {
  const WorkId id = next_id_++;
  if (info.task_id.empty()) info.task_id = "w" + std::to_string(id);
  entries_.emplace(id, WorkEntry{id, kind, std::move(info), false});
  ++counts_[static_cast<std::size_t>(kind)];
  return id;
}

bool WorkTracker::finish(WorkId id) {
  auto it = entries_.find(id);
  if (it == entries_.end()) return false;
  const bool counted = !it->second.exempt;
  const auto k = static_cast<std::size_t>(it->second.kind);
  entries_.erase(it);
  // An exempt entry no longer counts: finishing it changes the listing only.
  if (counted) {
    --counts_[k];
    wake_idle_waiters();
  }
  return true;
}

bool WorkTracker::set_status(WorkId id, std::string status) {
  auto it = entries_.find(id);
  if (it == entries_.end()) return false;
  it->second.info.status = std::move(status);
  return true;
}

std::size_t WorkTracker::exempt_run(const std::string& run_id) {
  if (run_id.empty()) return 0;
  std::size_t exempted = 0;
  for (auto& [id, e] : entries_) {
    if (e.exempt || e.info.run_id != run_id) continue;
    e.exempt = true;
    --counts_[static_cast<std::size_t>(e.kind)];
    ++exempted;
  }
  if (exempted > 0) wake_idle_waiters();
  return exempted;
}

std::size_t WorkTracker::total() const {
  std::size_t t = 0;
  for (auto c : counts_) t += c;
  return t;
}

std::size_t WorkTracker::count(KindMask kinds) const {
  std::size_t t = 0;
  for (std::size_t k = 0; k < kWorkKinds; ++k) {
    if (kinds & (1u << k)) t += counts_[k];
  }
  return t;
}

WorkTracker::KindMask WorkTracker::mask_of(std::initializer_list<WorkKind> kinds) {
  KindMask m = 0;
  for (auto k : kinds) m |= mask_of(k);
  return m;
}

void WorkTracker::when_idle(std::function<void()> fn) {
  add_waiter((1u << kWorkKinds) - 1, std::move(fn));
}

void WorkTracker::when_idle(std::initializer_list<WorkKind> kinds, std::function<void()> fn) {
  add_waiter(mask_of(kinds), std::move(fn));
}

void WorkTracker::add_waiter(KindMask kinds, std::function<void()> fn) {
  if (count(kinds) == 0) {
    fn();
    return;
  }
  waiters_.push_back({kinds, std::move(fn)});
}

void WorkTracker::wake_idle_waiters() {
  // One waiter at a time, re-checked before each: a waiter may start work (the next waiter is
  // then no longer idle) or add waiters, so no iterator or snapshot survives a callback.
  for (;;) {
    auto it = waiters_.begin();
    while (it != waiters_.end() && count(it->kinds) != 0) ++it;
    if (it == waiters_.end()) return;
    auto fn = std::move(it->fn);
    waiters_.erase(it);
    fn();
  }
}

std::vector<WorkEntry> WorkTracker::list() const {
  std::vector<WorkEntry> out;
  out.reserve(entries_.size());
  for (const auto& [id, e] : entries_) out.push_back(e);
  return out;
}

std::vector<WorkEntry> WorkTracker::list(std::initializer_list<WorkKind> kinds) const {
  const KindMask m = mask_of(kinds);
  std::vector<WorkEntry> out;
  for (const auto& [id, e] : entries_) {
    if (m & mask_of(e.kind)) out.push_back(e);
  }
  return out;
}

}  // namespace drawbridge::core
