#include "pipeline/session_history.h"

namespace drawbridge::pipeline {

std::optional<std::vector<store::TranscriptEntry>> SessionHistory::tail(
    const std::string& session) {
  auto it = sessions_.find(session);
  if (it == sessions_.end()) return std::nullopt;
  touch(it->second);
  return std::vector<store::TranscriptEntry>(it->second.entries.begin(), it->second.entries.end());
}

void SessionHistory::seed(const std::string& session, std::vector<store::TranscriptEntry> entries) {
  forget(session);
  if (limit_ == 0 || max_sessions_ == 0) return;
  lru_.push_front(session);
  Tail& t = sessions_[session];
  t.lru = lru_.begin();
  for (auto& e : entries) push(t, std::move(e));
  evict();
}

void SessionHistory::append(const std::string& session, store::TranscriptEntry entry) {
  auto it = sessions_.find(session);
  if (it == sessions_.end()) return;
  push(it->second, std::move(entry));
  touch(it->second);
  evict();
}

void SessionHistory::forget(const std::string& session) {
  auto it = sessions_.find(session);
  if (it == sessions_.end()) return;
  bytes_ -= it->second.bytes;
  lru_.erase(it->second.lru);
  sessions_.erase(it);
}

void SessionHistory::clear() {
  sessions_.clear();
  lru_.clear();
  bytes_ = 0;
}

void SessionHistory::push(Tail& t, store::TranscriptEntry entry) {
  t.bytes += entry.text.size();
  bytes_ += entry.text.size();
  t.entries.push_back(std::move(entry));
  while (t.entries.size() > limit_) {
    t.bytes -= t.entries.front().text.size();
    bytes_ -= t.entries.front().text.size();
    t.entries.pop_front();
  }
}

void SessionHistory::touch(Tail& t) { lru_.splice(lru_.begin(), lru_, t.lru); }

void SessionHistory::evict() {
  // The session just used stays, even alone over the byte budget: its turn needs it.
  while (lru_.size() > 1 && (lru_.size() > max_sessions_ || bytes_ > max_bytes_)) {
    forget(lru_.back());
  }
}

}  // namespace drawbridge::pipeline
