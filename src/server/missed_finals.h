#pragma once

// The end events (`chat` final, error, aborted) of sessions whose watchers are away: a client
// that was subscribed to a session and lost its connection (a restart's teardown, a network
// drop) gets, when it subscribes again, the end of every run that finished meanwhile, once
// (issue 14). Runs acknowledged `queued` during a drain finish in the next generation, while
// nobody is connected: without this their reply was only in chat.history.
//
// Bounded by the options: sessions remembered, events per session, bytes in all, and age.
// Sans-IO: the caller passes the time.

#include <cstddef>
#include <cstdint>
#include <deque>
#include <list>
#include <string>
#include <unordered_map>
#include <vector>

namespace drawbridge::server {

class MissedFinals {
 public:
  struct Options {
    std::size_t max_sessions = 1024;
    std::size_t max_events_per_session = 32;
    std::size_t max_bytes = 4u << 20;
    std::int64_t max_age_ms = 10 * 60 * 1000;
  };
  MissedFinals() = default;
  explicit MissedFinals(Options options) : options_(options) {}

  // The last subscriber of `session` went away: its end events are kept from now on.
  void watcher_left(const std::string& session);
  // Whether `session`'s end events are kept (a watcher left it and has not come back).
  bool keeps(const std::string& session) const { return sessions_.count(session) > 0; }
  // Someone subscribes again: stop keeping, and hand over what was kept (oldest first, none
  // older than max_age_ms). A session nobody watched gives nothing.
  std::vector<std::string> take(const std::string& session, std::int64_t now_ms);
  // An end event (its JSON payload) of a session with no subscriber: kept if a watcher left it.
  void record(const std::string& session, std::string payload_json, std::int64_t now_ms);

  std::size_t sessions() const { return sessions_.size(); }
  std::size_t bytes() const { return bytes_; }

 private:
  struct Event {
    std::string payload;
    std::int64_t at_ms;
  };
  struct Session {
    std::deque<Event> events;
    std::list<std::string>::iterator lru;
  };
  void forget(std::unordered_map<std::string, Session>::iterator it);
  void drop_front(Session& s);

  Options options_;
  std::unordered_map<std::string, Session> sessions_;
  std::list<std::string> lru_;  // oldest watcher first
  std::size_t bytes_ = 0;
};

}  // namespace drawbridge::server
