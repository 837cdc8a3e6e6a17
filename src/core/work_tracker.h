#pragma once

#include <array>
#include <cstddef>
#include <functional>
#include <vector>

namespace drawbridge::core {

enum class WorkKind { turn = 0, delivery = 1, task = 2 };
inline constexpr std::size_t kWorkKinds = 3;
const char* to_string(WorkKind k);

// Counts in-flight work and wakes waiters when the count reaches zero (Seastar's gate): the
// last finisher wakes the drain, nothing polls.
class WorkTracker {
 public:
  void begin(WorkKind kind);
  void end(WorkKind kind);
  std::size_t count(WorkKind kind) const { return counts_[static_cast<std::size_t>(kind)]; }
  std::size_t total() const;
  // Runs `fn` when total() next reaches zero; at once when it is zero already.
  void when_idle(std::function<void()> fn);

 private:
  std::array<std::size_t, kWorkKinds> counts_{};
  std::vector<std::function<void()>> idle_waiters_;
};

}  // namespace drawbridge::core
