#include "server/session_watchers.h"

namespace drawbridge::server {

bool SessionWatchers::watch_messages(std::uint64_t conn, const std::string& session_key) {
  auto& keys = by_conn_[conn];
  if (keys.count(session_key) != 0) return true;
  if (keys.size() >= kMaxKeysPerConnection) return false;
  keys.insert(session_key);
  by_session_[session_key].insert(conn);
  return true;
}

void SessionWatchers::unwatch_messages(std::uint64_t conn, const std::string& session_key) {
  if (auto c = by_conn_.find(conn); c != by_conn_.end()) {
    c->second.erase(session_key);
    if (c->second.empty()) by_conn_.erase(c);
  }
  if (auto s = by_session_.find(session_key); s != by_session_.end()) {
    s->second.erase(conn);
    if (s->second.empty()) by_session_.erase(s);
  }
}

void SessionWatchers::forget(std::uint64_t conn) {
  list_.erase(conn);
  auto c = by_conn_.find(conn);
  if (c == by_conn_.end()) return;
  for (const auto& key : c->second) {
    if (auto s = by_session_.find(key); s != by_session_.end()) {
      s->second.erase(conn);
      if (s->second.empty()) by_session_.erase(s);
    }
  }
  by_conn_.erase(c);
}

const std::set<std::uint64_t>* SessionWatchers::message_watchers(
    const std::string& session_key) const {
  auto s = by_session_.find(session_key);
  return s == by_session_.end() ? nullptr : &s->second;
}

}  // namespace drawbridge::server
