#include "server/missed_finals.h"

#include <iterator>

namespace drawbridge::server {

void MissedFinals::watcher_left(const std::string& session) {
  if (options_.max_sessions == 0) return;
  auto it = sessions_.find(session);
  if (it != sessions_.end()) {
    lru_.splice(lru_.end(), lru_, it->second.lru);
    return;
  }
  while (sessions_.size() >= options_.max_sessions) forget(sessions_.find(lru_.front()));
  lru_.push_back(session);
  sessions_[session].lru = std::prev(lru_.end());
}

std::vector<std::string> MissedFinals::take(const std::string& session, std::int64_t now_ms) {
  std::vector<std::string> out;
  auto it = sessions_.find(session);
  if (it == sessions_.end()) return out;
  for (auto& e : it->second.events) {
    bytes_ -= e.payload.size();
    if (now_ms - e.at_ms <= options_.max_age_ms) out.push_back(std::move(e.payload));
  }
  it->second.events.clear();
  forget(it);
  return out;
}

void MissedFinals::record(const std::string& session, std::string payload_json,
                          std::int64_t now_ms) {
  auto it = sessions_.find(session);
  if (it == sessions_.end()) return;
  Session& s = it->second;
  if (payload_json.size() > options_.max_bytes) return;
  while (!s.events.empty() && now_ms - s.events.front().at_ms > options_.max_age_ms) drop_front(s);
  if (s.events.size() >= options_.max_events_per_session) drop_front(s);
  bytes_ += payload_json.size();
  s.events.push_back(Event{std::move(payload_json), now_ms});
  // Over the byte budget: the sessions whose watchers left first lose their events first.
  for (auto victim = lru_.begin(); bytes_ > options_.max_bytes && victim != lru_.end();) {
    Session& v = sessions_.at(*victim);
    if (v.events.empty()) {
      ++victim;
      continue;
    }
    drop_front(v);
  }
}

void MissedFinals::forget(std::unordered_map<std::string, Session>::iterator it) {
  for (const auto& e : it->second.events) bytes_ -= e.payload.size();
  lru_.erase(it->second.lru);
  sessions_.erase(it);
}

void MissedFinals::drop_front(Session& s) {
  bytes_ -= s.events.front().payload.size();
  s.events.pop_front();
}

}  // namespace drawbridge::server
