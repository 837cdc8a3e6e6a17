#pragma once

#include <cstddef>
#include <deque>
#include <functional>

namespace drawbridge::core {

// Counts work in flight and wakes waiters when the count reaches zero (Seastar's `gate`): the
// last finisher wakes whoever waits, nothing polls. The one waiter mechanism of drawbridge:
// WorkTracker, ReplyDispatcher and the pipeline's followup queues each hold one.
//
// Waiters run in the order they were added, synchronously inside the leave() that made the
// count zero (or wake_if_idle()), or inside when_idle() when it is zero already. They run one
// at a time and the count is checked again before each: a waiter that enters work holds back
// the waiters after it until that work leaves too. A waiter may also leave or add waiters: one
// added while the count is zero runs at once.
class Gate {
 public:
  void enter() { ++count_; }
  // Ends one enter(). A leave() without a matching enter() is ignored (returns false).
  bool leave();
  std::size_t count() const { return count_; }
  bool idle() const { return count_ == 0; }

  // Runs `fn` once, when count() next reaches zero; at once when it is zero already.
  void when_idle(std::function<void()> fn);
  // Runs the waiters now if the count is zero (for owners whose count is derived: call after
  // anything that may have made it zero).
  void wake_if_idle();
  // Forgets count and waiters without running them (a new generation).
  void reset();
  std::size_t waiters() const { return waiters_.size(); }

 private:
  std::size_t count_ = 0;
  std::deque<std::function<void()>> waiters_;
};

}  // namespace drawbridge::core
