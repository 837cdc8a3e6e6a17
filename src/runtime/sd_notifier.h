#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "core/clock.h"
#include "core/executor.h"

namespace drawbridge::runtime {

// Tells systemd what the gateway is doing (sd_notify(3)): READY, RELOADING, STOPPING, STATUS,
// EXTEND_TIMEOUT_USEC, MAINPID, and the WATCHDOG=1 keep-alive. Without NOTIFY_SOCKET every
// method is a cheap no-op, so the gateway calls them unconditionally.
//
// The environment is read once, at construction. The variables are left in place: a re-exec
// successor needs NOTIFY_SOCKET to report READY and its MAINPID.
//
// The send methods may be called from any thread (the force-exit watchdog's too);
// start_watchdog() and stop_watchdog() only from the executor's thread (the event loop's).
class SdNotifier {
 public:
  // Reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID (a WATCHDOG_PID that is not ours means
  // the watchdog is meant for another process, such as the parent of a re-exec: disabled).
  // The watchdog pings are timers of `executor`, paced by `clock`; both outlive the notifier.
  SdNotifier(core::Clock& clock, core::Executor& executor);
  ~SdNotifier();
  SdNotifier(const SdNotifier&) = delete;
  SdNotifier& operator=(const SdNotifier&) = delete;

  bool enabled() const { return enabled_; }

  void ready(const std::string& status);      // READY=1, STATUS=, MAINPID=<our pid>
  void reloading(const std::string& status);  // RELOADING=1, MONOTONIC_USEC=<now>, STATUS=
  void stopping(const std::string& status);   // STOPPING=1, STATUS=
  void status(const std::string& status);     // STATUS=
  // Asks systemd for this much more time than the running start, reload or stop timeout allows
  // from now on; resend before it runs out.
  void extend_timeout(std::chrono::microseconds usec);
  // Hands the service to another process of the unit (a re-exec successor).
  void main_pid(pid_t pid);
  // Waits until systemd has read every message sent before (sd_notify_barrier(3)), at most
  // `timeout`; blocks the caller. For the last moment before an exit that must not overtake a
  // MAINPID= hand-off. True when acknowledged, or when there is nobody to tell.
  bool barrier(std::chrono::milliseconds timeout);

  // WATCHDOG=1 now and then every WATCHDOG_USEC/2 (in whole milliseconds, rounded down) on the
  // executor, so a wedged event loop
  // stops pinging and systemd acts on it. No-op without WATCHDOG_USEC.
  void start_watchdog();
  void stop_watchdog();
  std::optional<std::chrono::microseconds> watchdog_interval() const { return watchdog_interval_; }

  std::uint64_t messages_sent() const { return sent_.load(std::memory_order_relaxed); }

 private:
  void send(const std::string& message);
  void schedule_ping(std::uint64_t generation);
  core::Duration ping_interval() const;

  core::Clock& clock_;
  core::Executor& executor_;
  std::optional<core::TimerId> timer_;
  bool enabled_ = false;
  std::string socket_;
  std::optional<std::chrono::microseconds> watchdog_interval_;
  bool watchdog_running_ = false;
  // A ping handler belongs to one start_watchdog(): a handler queued before stop_watchdog()
  // (or before the notifier was destroyed) finds the generation changed (or `alive_` expired)
  // and does nothing.
  std::uint64_t watchdog_generation_ = 0;
  core::TimePoint next_ping_{};
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  std::atomic<std::uint64_t> sent_{0};
  std::atomic<bool> failure_reported_{false};
};

}  // namespace drawbridge::runtime
