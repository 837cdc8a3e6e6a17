#include "server/auth_throttle.h"

#include <algorithm>

namespace drawbridge::server {

std::optional<core::Duration> AuthThrottle::blocked(const std::string& peer,
                                                    core::TimePoint now) const {
  auto it = peers_.find(peer);
  if (it == peers_.end() || now >= it->second.locked_until) return std::nullopt;
  return std::chrono::duration_cast<core::Duration>(it->second.locked_until - now) +
         core::Duration{1};
}

AuthThrottle::Failure AuthThrottle::record_failure(const std::string& peer, core::TimePoint now) {
  ++failures_total_;
  if (peers_.size() >= options_.max_peers && !peers_.contains(peer)) evict(now);
  Entry& e = peers_[peer];
  if (e.failures == 0 || now - e.last > options_.window) {
    e = Entry{};
    e.first = now;
  }
  e.last = now;
  ++e.failures;
  Failure out;
  out.failures = e.failures;
  if (e.failures <= options_.free_failures) return out;
  out.episode_started = e.lockout == core::Duration{0};
  e.lockout = out.episode_started ? options_.base_lockout
                                  : std::min(e.lockout * 2, options_.max_lockout);
  e.locked_until = now + e.lockout;
  out.lockout = e.lockout;
  return out;
}

void AuthThrottle::record_success(const std::string& peer) { peers_.erase(peer); }

void AuthThrottle::evict(core::TimePoint now) {
  // Forget what the window already forgot, else the entry seen least recently.
  std::erase_if(peers_, [&](const auto& kv) {
    return now - kv.second.last > options_.window && now >= kv.second.locked_until;
  });
  if (peers_.size() < options_.max_peers) return;
  auto oldest = std::min_element(peers_.begin(), peers_.end(), [](const auto& a, const auto& b) {
    return a.second.last < b.second.last;
  });
  if (oldest != peers_.end()) peers_.erase(oldest);
}

}  // namespace drawbridge::server
