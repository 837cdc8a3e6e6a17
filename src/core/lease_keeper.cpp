#include "core/lease_keeper.h"

#include <algorithm>
#include <set>

namespace drawbridge::core {

LeaseKeeper::LeaseKeeper(Duration ttl)
    : ttl_(std::max(ttl, Duration(1))), margin_(std::max(ttl_ / 5, Duration(1))) {}

void LeaseKeeper::granted(const std::string& name, std::int64_t epoch, TimePoint sent) {
  leases_[name] = Entry{epoch, sent + ttl_ - margin_, sent};
}

std::vector<std::string> LeaseKeeper::renewed(const std::vector<Held>& held, TimePoint sent) {
  std::set<std::string> still;
  for (const auto& h : held) {
    auto it = leases_.find(h.name);
    // A lease renewed at another epoch than the one known here was taken and given back
    // meanwhile: what this replica did under the old epoch is fenced off, so it is lost too.
    if (it == leases_.end() || it->second.epoch != h.epoch) continue;
    it->second.deadline = std::max(it->second.deadline, sent + ttl_ - margin_);
    still.insert(h.name);
  }
  std::vector<std::string> lost;
  for (auto it = leases_.begin(); it != leases_.end();) {
    // Claimed after the heartbeat was sent: the heartbeat could not have seen it.
    if (still.contains(it->first) || it->second.claimed > sent) {
      ++it;
      continue;
    }
    lost.push_back(it->first);
    it = leases_.erase(it);
  }
  return lost;
}

void LeaseKeeper::forget(const std::string& name) {
  leases_.erase(name);
}

bool LeaseKeeper::usable(const std::string& name, TimePoint now) const {
  auto it = leases_.find(name);
  return it != leases_.end() && now < it->second.deadline;
}

std::optional<std::int64_t> LeaseKeeper::epoch(const std::string& name) const {
  auto it = leases_.find(name);
  if (it == leases_.end()) return std::nullopt;
  return it->second.epoch;
}

Duration LeaseKeeper::remaining(const std::string& name, TimePoint now) const {
  auto it = leases_.find(name);
  if (it == leases_.end() || now >= it->second.deadline) return Duration(0);
  return std::chrono::duration_cast<Duration>(it->second.deadline - now);
}

std::vector<LeaseKeeper::Held> LeaseKeeper::held() const {
  std::vector<Held> out;
  for (const auto& [name, e] : leases_) out.push_back({name, e.epoch});
  return out;
}

}  // namespace drawbridge::core
