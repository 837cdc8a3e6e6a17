#pragma once

#include <chrono>

#include "core/clock.h"

namespace drawbridge::core {

// Durations from outside (an intent's waitMs, gateway.reload.deferralTimeoutMs) can be anything
// up to INT64_MAX ms. Sums with them saturate: a wrapped sum is a deadline in the past, which
// once aborted every running turn at once instead of waiting.

// The longest wait a TimePoint can express (it counts nanoseconds: about 292 years).
inline constexpr Duration kMaxWait =
    std::chrono::duration_cast<Duration>(TimePoint::duration::max());

inline constexpr Duration saturating_add(Duration a, Duration b) {
  if (b > Duration::zero() && a > Duration::max() - b) return Duration::max();
  if (b < Duration::zero() && a < Duration::min() - b) return Duration::min();
  return a + b;
}

// t + d, TimePoint::max() (never reached) when it would not fit.
inline constexpr TimePoint saturating_add(TimePoint t, Duration d) {
  using Ns = TimePoint::duration;
  if (d >= kMaxWait) return TimePoint::max();
  if (d <= -kMaxWait) return TimePoint::min();
  const Ns step = std::chrono::duration_cast<Ns>(d);
  const Ns since = t.time_since_epoch();
  if (step > Ns::zero() && since > Ns::max() - step) return TimePoint::max();
  if (step < Ns::zero() && since < Ns::min() - step) return TimePoint::min();
  return t + step;
}

}  // namespace drawbridge::core
