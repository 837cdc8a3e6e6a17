#pragma once

#include <cstdint>
#include <deque>
#include <list>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "store/store.h"

namespace drawbridge::pipeline {

// The newest transcript entries of recent sessions, kept in memory so that a turn's history
// needs no read of the store on the event loop. The pipeline feeds it what it commits, in
// commit order (append), and seeds a session it does not hold from a read made on the store
// thread (seed); a session it cannot vouch for is forgotten (forget) and read again when next
// needed. Bounded: at most `limit` entries per session, `max_sessions` sessions and about
// `max_bytes` of text (the least recently used session goes first).
class SessionHistory {
 public:
  SessionHistory(std::size_t limit, std::size_t max_sessions, std::size_t max_bytes)
      : limit_(limit), max_sessions_(max_sessions), max_bytes_(max_bytes) {}

  // The session's newest entries, oldest first; nullopt when it is not held.
  std::optional<std::vector<store::TranscriptEntry>> tail(const std::string& session);
  // Holds `entries` (the newest of the session as the store has them after every write
  // committed so far) as the session's tail.
  void seed(const std::string& session, std::vector<store::TranscriptEntry> entries);
  // An entry was committed; kept only when the session is held.
  void append(const std::string& session, store::TranscriptEntry entry);
  void forget(const std::string& session);
  void clear();
  std::size_t sessions() const { return sessions_.size(); }
  std::size_t limit() const { return limit_; }

 private:
  struct Tail {
    std::deque<store::TranscriptEntry> entries;
    std::size_t bytes = 0;
    std::list<std::string>::iterator lru;
  };
  void push(Tail& t, store::TranscriptEntry entry);
  void touch(Tail& t);
  void evict();

  std::size_t limit_;
  std::size_t max_sessions_;
  std::size_t max_bytes_;
  std::size_t bytes_ = 0;
  std::unordered_map<std::string, Tail> sessions_;
  std::list<std::string> lru_;  // most recently used first
};

}  // namespace drawbridge::pipeline
