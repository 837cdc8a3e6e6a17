#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <unordered_map>

namespace drawbridge::server {

// Who asked for which session events: the session list's changes (sessions.subscribe ->
// `sessions.changed`) and one session's messages (sessions.messages.subscribe ->
// `session.message`). Bounded: a connection watches at most kMaxKeysPerConnection sessions'
// messages, so a client cannot grow the gateway's memory by asking for ever more keys.
class SessionWatchers {
 public:
  static constexpr std::size_t kMaxKeysPerConnection = 256;

  void watch_list(std::uint64_t conn) { list_.insert(conn); }
  // False when the connection watches kMaxKeysPerConnection sessions already (nothing added).
  bool watch_messages(std::uint64_t conn, const std::string& session_key);
  void unwatch_messages(std::uint64_t conn, const std::string& session_key);
  void forget(std::uint64_t conn);

  const std::set<std::uint64_t>& list_watchers() const { return list_; }
  // Null when nobody watches the session's messages.
  const std::set<std::uint64_t>* message_watchers(const std::string& session_key) const;

 private:
  std::set<std::uint64_t> list_;
  std::unordered_map<std::string, std::set<std::uint64_t>> by_session_;
  std::map<std::uint64_t, std::set<std::string>> by_conn_;
};

}  // namespace drawbridge::server
