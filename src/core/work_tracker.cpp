#include "core/work_tracker.h"

#include <cassert>
#include <utility>

namespace drawbridge::core {

void WorkTracker::begin() {
  ++anonymous_;
  gate_.enter();
}

void WorkTracker::end() {
  assert(anonymous_ > 0);
  if (anonymous_ == 0) return;
  --anonymous_;
  gate_.leave();
}

WorkId WorkTracker::start(WorkKind kind, WorkInfo info) {
  const WorkId id = next_id_++;
  if (info.task_id.empty()) info.task_id = "w" + std::to_string(id);
  entries_.emplace(id, WorkEntry{id, kind, std::move(info), false});
  gate_.enter();
  return id;
}

bool WorkTracker::finish(WorkId id) {
  auto it = entries_.find(id);
  if (it == entries_.end()) return false;
  const bool counted = !it->second.exempt;
  entries_.erase(it);
  // An exempt entry no longer counts: finishing it changes the listing only.
  if (counted) gate_.leave();
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
    ++exempted;
  }
  // After the loop: a waiter woken by the last leave() may start or finish work.
  for (std::size_t i = 0; i < exempted; ++i) gate_.leave();
  return exempted;
}

std::vector<WorkEntry> WorkTracker::list() const {
  std::vector<WorkEntry> out;
  out.reserve(entries_.size());
  for (const auto& [id, e] : entries_) out.push_back(e);
  return out;
}

}  // namespace drawbridge::core
