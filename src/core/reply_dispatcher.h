#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/gate.h"

namespace drawbridge::core {

// Orders the sending of replies and tells the drain when every reply is out. The parts of one
// reply go strictly in order (part i+1 only once part i is settled); replies of different keys
// go concurrently. Sans-IO: it holds outbox row ids and returns what to send; the caller sends
// and reports back with settled(). A part to try again later stays in flight: nothing to call.
//
// A reservation, taken when a turn starts, keeps pending() above zero until the reply's parts
// are enqueued, so a restart cannot slip in between "turn finished" and "reply parts enqueued"
// (OpenClaw's "defer restart until all replies are sent").
class ReplyDispatcher {
 public:
  using ReservationId = std::uint64_t;  // 0 is never issued
  struct Part {
    std::int64_t id;  // outbox row id
    int part;         // part number within its reply: the send order
    bool operator==(const Part&) const = default;
  };

  // A turn started: its reply will come.
  ReservationId reserve(const std::string& key);
  // Queues the parts of one reply for `key` (any order; sent by ascending part, after whatever
  // the key already has queued). Returns the part to send now when the key had nothing in
  // flight, else nullopt. A part already queued or in flight is not queued twice (recovery and
  // the live path may both enqueue one outbox row). With `reservation`, that reservation is
  // released in the same call, after the parts are queued, so pending() never touches zero
  // between the two; an unknown or released reservation is ignored.
  std::optional<Part> enqueue(const std::string& key, std::vector<Part> parts,
                              std::optional<ReservationId> reservation = std::nullopt);
  // The turn ended with no reply to send (aborted, failed to commit). Unknown ids are ignored.
  void release(ReservationId id);
  // The part in flight for `key` was settled (sent, or failed for good). Returns the next part
  // of that key to send, or nullopt when the key is done. A part id that is not the one in
  // flight changes nothing and returns nullopt.
  std::optional<Part> settled(const std::string& key, std::int64_t part_id);

  std::size_t reservations() const { return reservations_.size(); }
  std::size_t queued() const { return queued_; }
  std::size_t in_flight() const { return in_flight_; }
  std::size_t pending() const { return reservations() + queued() + in_flight(); }
  bool idle() const { return pending() == 0; }
  // The part of `key` being sent, if any.
  std::optional<Part> in_flight_part(const std::string& key) const;

  // Runs `fn` once, when pending() reaches zero; at once when it is zero already. A waiter
  // may reserve, enqueue or add waiters; one that reserves or enqueues holds back the waiters
  // after it (a core::Gate).
  void when_idle(std::function<void()> fn) { gate_.when_idle(std::move(fn)); }

  // The key's parts are left to the next generation (the outbox keeps them): its queued and
  // in-flight parts are forgotten without being settled, and no longer hold "idle". Returns how
  // many there were.
  std::size_t abandon(const std::string& key);

  // Keys with a reservation, a queued or an in-flight part, sorted (status, the drain log).
  std::vector<std::string> pending_keys() const;

  // A new generation: forgets reservations, parts and waiters without running them (the outbox
  // in the store is the truth). Ids keep growing, so a stale reservation id releases nothing.
  void clear();

 private:
  struct Lane {
    std::optional<Part> in_flight;
    std::deque<Part> queued;
  };

  // Moves the key's next queued part in flight and returns it; erases a lane left empty.
  std::optional<Part> advance(const std::string& key);

  std::unordered_map<std::string, Lane> lanes_;
  std::unordered_map<ReservationId, std::string> reservations_;
  ReservationId next_reservation_ = 1;
  std::size_t queued_ = 0;
  std::size_t in_flight_ = 0;
  // Counts pending(): one per reservation and per part queued or in flight. Every call leaves
  // it last, once the lanes are consistent, so a woken waiter sees the final state.
  Gate gate_;
};

}  // namespace drawbridge::core
