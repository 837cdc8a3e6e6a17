#pragma once

// Service seen from outside: a thread that opens a fresh loopback connection every few
// milliseconds and asks GET /healthz, recording each failure (refused, reset or closed before
// the answer, timeout, a status other than 200) with its time. POSIX sockets only.

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace chaos {

enum class ProbeOutcome { ok, refused, reset, timeout, bad_status };
const char* to_string(ProbeOutcome o);

struct ProbeFailure {
  double at_ms = 0;  // wall clock when the attempt began
  ProbeOutcome outcome{};
};

struct ProbeResult {
  std::int64_t attempts = 0, ok = 0;
  std::vector<ProbeFailure> failures;
  // The longest stretch from a failed attempt to the next good one (ms), and when it began.
  double longest_outage_ms = 0, longest_outage_at_ms = 0;
};

class Prober {
 public:
  Prober(int port, int every_ms);
  ~Prober();
  void start();
  void stop();
  ProbeResult result() const;

 private:
  void run();
  ProbeOutcome once() const;

  int port_, every_ms_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  mutable std::mutex mu_;
  ProbeResult result_;
  double outage_start_ms_ = -1;
};

}  // namespace chaos
