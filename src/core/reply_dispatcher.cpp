#include "core/reply_dispatcher.h"

#include <algorithm>
#include <utility>

namespace drawbridge::core {

ReplyDispatcher::ReservationId ReplyDispatcher::reserve(const std::string& key) {
  const ReservationId id = next_reservation_++;
  reservations_.emplace(id, key);
  gate_.enter();
  return id;
}

std::optional<ReplyDispatcher::Part> ReplyDispatcher::enqueue(
    const std::string& key, std::vector<Part> parts, std::optional<ReservationId> reservation) {
  std::stable_sort(parts.begin(), parts.end(),
                   [](const Part& a, const Part& b) { return a.part < b.part; });
  Lane& lane = lanes_[key];
  for (const Part& p : parts) {
    const bool known = (lane.in_flight && lane.in_flight->id == p.id) ||
                       std::any_of(lane.queued.begin(), lane.queued.end(),
                                   [&](const Part& q) { return q.id == p.id; });
    if (known) continue;
    lane.queued.push_back(p);
    ++queued_;
    gate_.enter();
  }
  // Only now, with the parts counted, may the reservation go: pending() stays above zero.
  const bool released = reservation && reservations_.erase(*reservation) > 0;
  std::optional<Part> now;
  if (!lane.in_flight) now = advance(key);  // also erases the lane when nothing was queued
  if (released) gate_.leave();
  return now;
}

void ReplyDispatcher::release(ReservationId id) {
  if (reservations_.erase(id) > 0) gate_.leave();
}

std::optional<ReplyDispatcher::Part> ReplyDispatcher::settled(const std::string& key,
                                                              std::int64_t part_id) {
  auto it = lanes_.find(key);
  if (it == lanes_.end() || !it->second.in_flight || it->second.in_flight->id != part_id) {
    return std::nullopt;
  }
  it->second.in_flight.reset();
  --in_flight_;
  std::optional<Part> next = advance(key);
  gate_.leave();
  return next;
}

std::size_t ReplyDispatcher::abandon(const std::string& key) {
  auto it = lanes_.find(key);
  if (it == lanes_.end()) return 0;
  const std::size_t queued = it->second.queued.size();
  const std::size_t flying = it->second.in_flight ? 1 : 0;
  queued_ -= queued;
  in_flight_ -= flying;
  lanes_.erase(it);
  for (std::size_t i = 0; i < queued + flying; ++i) gate_.leave();
  return queued + flying;
}

std::optional<ReplyDispatcher::Part> ReplyDispatcher::advance(const std::string& key) {
  auto it = lanes_.find(key);
  if (it == lanes_.end()) return std::nullopt;
  Lane& lane = it->second;
  if (lane.queued.empty()) {
    if (!lane.in_flight) lanes_.erase(it);
    return std::nullopt;
  }
  lane.in_flight = lane.queued.front();
  lane.queued.pop_front();
  --queued_;
  ++in_flight_;
  return lane.in_flight;
}

std::optional<ReplyDispatcher::Part> ReplyDispatcher::in_flight_part(const std::string& key) const {
  auto it = lanes_.find(key);
  if (it == lanes_.end()) return std::nullopt;
  return it->second.in_flight;
}

std::vector<std::string> ReplyDispatcher::pending_keys() const {
  std::vector<std::string> keys;
  keys.reserve(lanes_.size() + reservations_.size());
  for (const auto& [key, lane] : lanes_) keys.push_back(key);
  for (const auto& [id, key] : reservations_) keys.push_back(key);
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  return keys;
}

void ReplyDispatcher::clear() {
  lanes_.clear();
  reservations_.clear();
  queued_ = 0;
  in_flight_ = 0;
  gate_.reset();
}

}  // namespace drawbridge::core
