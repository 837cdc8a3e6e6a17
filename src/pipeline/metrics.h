#pragma once

#include <cstdint>

namespace drawbridge::pipeline {

// Counters of the message path, read by /metrics. Single-threaded: only the event loop
// touches them.
struct Metrics {
  std::uint64_t inbound_total = 0;
  std::uint64_t inbound_duplicates = 0;
  std::uint64_t turns_started = 0;
  std::uint64_t turns_completed = 0;
  std::uint64_t turns_failed = 0;
  std::uint64_t turns_aborted = 0;
  std::uint64_t replies_sent = 0;
  std::uint64_t reply_send_failures = 0;
  // Reply parts not sent at a start because they were older than messages.replyTtlMs.
  std::uint64_t replies_stale = 0;
  // Sessions suspended because restarts interrupted their turn too often in a row.
  std::uint64_t sessions_suspended = 0;
  std::uint64_t errors_total = 0;
};

}  // namespace drawbridge::pipeline
