#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace drawbridge::core {

// One active turn per session, later input waits in FIFO order. Sans-IO: the caller starts
// the item that enqueue()/finish() hand back.
class SessionLanes {
 public:
  using Item = std::int64_t;

  // True when the session was idle: the caller starts `item` now. Otherwise it waits.
  bool enqueue(const std::string& session, Item item);
  // The session's active item is done; returns the next one to start, if any.
  std::optional<Item> finish(const std::string& session);
  // Takes a waiting item out of its lane; false when it was not waiting there.
  bool remove_waiting(const std::string& session, Item item);

  std::optional<Item> active(const std::string& session) const;
  std::vector<Item> waiting(const std::string& session) const;
  std::size_t active_count() const { return active_count_; }
  std::size_t waiting_count() const { return waiting_count_; }
  // Forgets every lane (a new generation starts from the store).
  void clear();

 private:
  struct Lane {
    std::optional<Item> active;
    std::deque<Item> waiting;
  };
  std::unordered_map<std::string, Lane> lanes_;
  std::size_t active_count_ = 0;
  std::size_t waiting_count_ = 0;
};

}  // namespace drawbridge::core
