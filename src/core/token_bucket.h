#pragma once

#include <algorithm>
#include <chrono>

#include "core/clock.h"

namespace drawbridge::core {

// A rate limit as a token bucket that takes reservations: take() always books a token and
// says how long the caller waits before using it (zero while the bucket has tokens). Callers
// that wait in line book later slots, so N callers at once are spread at the refill rate.
class TokenBucket {
 public:
  TokenBucket(double capacity, double per_second)
      : capacity_(capacity), per_second_(per_second), tokens_(capacity) {}

  Duration take(TimePoint now) {
    refill(now);
    tokens_ -= 1;
    if (tokens_ >= 0) return Duration{0};
    return std::chrono::duration_cast<Duration>(
        std::chrono::duration<double>(-tokens_ / per_second_));
  }
  // True when the bucket is full at `now` (nobody booked anything recently): it may be dropped.
  bool idle(TimePoint now) const {
    const double s = last_ == TimePoint{} ? 0 : std::chrono::duration<double>(now - last_).count();
    return tokens_ + std::max(0.0, s) * per_second_ >= capacity_;
  }

 private:
  void refill(TimePoint now) {
    if (last_ != TimePoint{}) {
      const double s = std::chrono::duration<double>(now - last_).count();
      if (s > 0) tokens_ = std::min(capacity_, tokens_ + s * per_second_);
    }
    if (now > last_) last_ = now;
  }

  double capacity_;
  double per_second_;
  double tokens_;
  TimePoint last_{};
};

}  // namespace drawbridge::core
