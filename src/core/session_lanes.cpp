#include "core/session_lanes.h"

#include <algorithm>

namespace drawbridge::core {

bool SessionLanes::enqueue(const std::string& session, Item item) {
  Lane& lane = lanes_[session];
  if (!lane.active) {
    lane.active = item;
    ++active_count_;
    return true;
  }
  lane.waiting.push_back(item);
  ++waiting_count_;
  return false;
}

std::optional<SessionLanes::Item> SessionLanes::finish(const std::string& session) {
  auto it = lanes_.find(session);
  if (it == lanes_.end() || !it->second.active) return std::nullopt;
  Lane& lane = it->second;
  if (lane.waiting.empty()) {
    // Drop idle lanes so a long-running gateway does not keep one entry per session ever seen.
    lanes_.erase(it);
    --active_count_;
    return std::nullopt;
  }
  lane.active = lane.waiting.front();
  lane.waiting.pop_front();
  --waiting_count_;
  return lane.active;
}

bool SessionLanes::remove_waiting(const std::string& session, Item item) {
  auto it = lanes_.find(session);
  if (it == lanes_.end()) return false;
  auto& w = it->second.waiting;
  auto pos = std::find(w.begin(), w.end(), item);
  if (pos == w.end()) return false;
  w.erase(pos);
  --waiting_count_;
  return true;
}

std::optional<SessionLanes::Item> SessionLanes::active(const std::string& session) const {
  auto it = lanes_.find(session);
  if (it == lanes_.end()) return std::nullopt;
  return it->second.active;
}

std::vector<SessionLanes::Item> SessionLanes::waiting(const std::string& session) const {
  auto it = lanes_.find(session);
  if (it == lanes_.end()) return {};
  return {it->second.waiting.begin(), it->second.waiting.end()};
}

void SessionLanes::clear() {
  lanes_.clear();
  active_count_ = 0;
  waiting_count_ = 0;
}

}  // namespace drawbridge::core
