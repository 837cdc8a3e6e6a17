#pragma once

#include <cstdint>
#include <functional>

#include "core/clock.h"

namespace drawbridge::core {

using TimerId = std::uint64_t;

// Deferred work and timers, injected like the Clock: the runtime backs it with the Asio event
// loop, tests with ManualExecutor, which runs due timers only when the test advances time.
class Executor {
 public:
  virtual ~Executor() = default;
  virtual void post(std::function<void()> fn) = 0;
  virtual TimerId schedule(Duration delay, std::function<void()> fn) = 0;
  virtual void cancel(TimerId id) = 0;
};

}  // namespace drawbridge::core
