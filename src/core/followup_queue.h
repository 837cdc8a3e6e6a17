#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace drawbridge::core {

// What a message does when its session already has a turn running (messages.queue.mode).
enum class FollowupMode {
  steer,      // into the running turn
  followup,   // one turn per message afterwards, in arrival order
  collect,    // every waiting message becomes one turn afterwards
  interrupt,  // cancel the running turn, then run the newest message
};

// What a full queue gives up (messages.queue.drop: "old", "new", "summarize").
enum class DropPolicy {
  oldest,     // "old": drop the oldest waiting message
  newest,     // "new": refuse the message that arrived
  summarize,  // drop the oldest and tell the next turn how many were dropped
};

enum class EnqueueAction {
  start_now,         // the session was idle: start a turn with the item
  queued,            // waits for the running turn
  steered,           // hand the item to the running turn
  interrupt_active,  // cancel the running turn; the item runs next
  dropped_new,       // the queue was full and the item was refused
};

const char* to_string(FollowupMode mode);
const char* to_string(DropPolicy policy);
const char* to_string(EnqueueAction action);
// The config spellings above; nullopt for anything else.
std::optional<FollowupMode> parse_followup_mode(std::string_view s);
std::optional<DropPolicy> parse_drop_policy(std::string_view s);

inline constexpr std::size_t kDefaultFollowupCap = 20;

struct FollowupOptions {
  std::size_t cap = kDefaultFollowupCap;  // waiting messages per session; below 1 counts as 1
  DropPolicy drop = DropPolicy::summarize;
};

// Per session: what arrives while a turn runs, and what the next turn gets. Sans-IO: it holds
// inbox row ids and returns actions; the caller starts, steers and cancels turns. Items are
// durable in the store, so a dropped item is one the caller closes there, never a lost one.
class FollowupQueue {
 public:
  using Item = std::int64_t;

  struct Enqueued {
    EnqueueAction action;
    std::vector<Item> dropped;  // items this call took out of the queue (or refused)
  };
  struct Batch {
    std::vector<Item> items;        // arrival order
    std::size_t dropped_count = 0;  // summarize: messages dropped before these, for one notice
  };

  FollowupQueue() = default;
  explicit FollowupQueue(FollowupOptions options);

  Enqueued enqueue(const std::string& session, Item item, FollowupMode mode);
  // The session's turn is over. Returns the next turn to start (the session stays busy with
  // it), or nothing when the session is idle now.
  std::optional<Batch> on_turn_finished(const std::string& session);

  // Items waiting across sessions (steered and running items are not waiting).
  std::size_t pending_count() const { return pending_count_; }
  // Sessions with a turn running.
  std::size_t active_count() const { return active_count_; }
  bool active(const std::string& session) const;
  std::vector<Item> queued(const std::string& session) const;
  // summarize: how many messages the session's next batch will say were dropped.
  std::size_t dropped_count(const std::string& session) const;

  // For a config reload: applies to later enqueues; a queue above a lowered cap is not trimmed.
  void set_options(FollowupOptions options);
  const FollowupOptions& options() const { return options_; }
  // Takes a waiting item out of its session's queue (chat.abort of a run not started yet);
  // false when it was not waiting there.
  bool remove_waiting(const std::string& session, Item item);
  // Forgets every session (a new generation rebuilds from the store).
  void clear();

 private:
  struct Entry {
    Item item;
    FollowupMode mode;
  };
  struct Session {
    bool active = false;
    std::deque<Entry> waiting;
    std::size_t dropped = 0;
  };

  FollowupOptions options_;
  std::unordered_map<std::string, Session> sessions_;
  std::size_t pending_count_ = 0;
  std::size_t active_count_ = 0;
};

}  // namespace drawbridge::core
