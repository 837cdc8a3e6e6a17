#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>

#include "core/clock.h"

namespace drawbridge::server {

// Failed authentication per peer address, with exponential back-off: the first `free_failures`
// failures in a window cost nothing; each one after that locks the address out for twice as
// long as the last (base, 2*base, ... up to `max_lockout`). While locked out an attempt is
// refused before its token is looked at, so guessing gains nothing by going faster; a success
// forgets the address. Loopback is throttled too (a web page in the operator's browser is a
// loopback peer); max_lockout keeps the right token from being shut out for long. Sans-IO:
// the caller passes `now`.
class AuthThrottle {
 public:
  struct Options {
    int free_failures = 5;
    core::Duration window{60'000};  // failures older than this are forgotten
    core::Duration base_lockout{1'000};
    core::Duration max_lockout{30'000};
    std::size_t max_peers = 4096;  // memory bound: the stalest entries go first
  };
  struct Failure {
    bool episode_started = false;  // first lockout of an episode: log it once
    core::Duration lockout{0};     // 0: no lockout yet
    int failures = 0;              // in this episode
  };

  AuthThrottle() : AuthThrottle(Options{}) {}
  explicit AuthThrottle(Options options) : options_(options) {}

  // How long the address must wait before its next attempt is even checked; nullopt: go on.
  std::optional<core::Duration> blocked(const std::string& peer, core::TimePoint now) const;
  Failure record_failure(const std::string& peer, core::TimePoint now);
  void record_success(const std::string& peer);

  std::uint64_t failures_total() const { return failures_total_; }
  std::uint64_t throttled_total() const { return throttled_total_; }
  void count_throttled() { ++throttled_total_; }

 private:
  struct Entry {
    int failures = 0;
    core::TimePoint first{};
    core::TimePoint last{};
    core::TimePoint locked_until{};
    core::Duration lockout{0};
  };
  void evict(core::TimePoint now);

  Options options_;
  std::unordered_map<std::string, Entry> peers_;
  std::uint64_t failures_total_ = 0;
  std::uint64_t throttled_total_ = 0;
};

}  // namespace drawbridge::server
