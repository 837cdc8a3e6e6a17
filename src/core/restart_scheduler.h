#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/clock.h"

namespace drawbridge::core {

enum class RestartKind { restart, update };
enum class RestartSource { signal, rpc, config, chat };
const char* to_string(RestartKind k);
const char* to_string(RestartSource s);

// A restart intent: SIGUSR1, RPC `gateway.restart.request`, a config change, `/restart`.
struct RestartRequest {
  std::string reason;
  // Do not wait for pending work once the delay has passed.
  bool force = false;
  // The intent's `waitMs`: overrides the configured deferral budget; zero means do not wait.
  std::optional<Duration> wait;
  // Time before the restart; default 2 s, clamped to 0–60 s.
  std::optional<Duration> delay;
  RestartKind kind = RestartKind::restart;
  RestartSource source = RestartSource::rpc;
  // The restart needs a new process (SIGUSR2, `drawbridge restart --process`); an update always
  // does. Merged requests need one when any of them does.
  bool fresh_process = false;
  // kind update: the binary to start.
  std::string binary;
};

struct RestartSchedulerOptions {
  Duration default_delay{2'000};
  Duration max_delay{60'000};
  Duration cooldown{30'000};
  // `gateway.reload.deferralTimeoutMs`; zero means no limit.
  Duration deferral_timeout{300'000};
};

// How long a restart waits for pending work; nullopt: as long as it takes. `force` wins over
// the intent's wait, which wins over the configured timeout (where zero means no limit).
std::optional<Duration> deferral_budget(Duration configured, std::optional<Duration> intent_wait,
                                        bool force);

enum class ScheduleStatus {
  scheduled,  // a new restart, due at `deadline`
  coalesced,  // merged into the restart already scheduled
  ignored,    // a restart is already under way
};
const char* to_string(ScheduleStatus s);

struct ScheduleResult {
  ScheduleStatus status;
  // When the restart is due; for `ignored`, the time of the request.
  TimePoint deadline;
  // The token a timer armed for this restart passes back to on_timer().
  std::uint64_t cycle;
  // Why, for the log and the RPC answer: "already restarting", "cooldown", ...
  std::string_view note;
};

// The restart to begin now: the runtime drains and restarts in the mode `kind` asks for.
struct RestartAction {
  std::string reason;
  RestartKind kind;
  RestartSource source;
  bool force;
  // What remains of the deferral budget for the drain's wait on turns; nullopt: no limit.
  std::optional<Duration> drain_budget;
  std::uint64_t cycle;
  TimePoint at;
  // How many requests were merged into this restart.
  std::size_t requests;
  bool fresh_process = false;
  std::string binary;  // kind update
};

struct TimerResult {
  // Set when the restart begins now.
  std::optional<RestartAction> begin;
};

// Decides when a requested restart begins. Sans-IO: the caller passes `now` and events in, arms
// one timer at next_wakeup(), and begins the restart that a returned RestartAction describes.
//
// Coalescing, cooldown and the cycle token keep one restart per burst of requests, and keep a
// stale timer from starting a second one after the config watcher already restarted.
class RestartScheduler {
 public:
  enum class State { idle, scheduled, restarting };

  struct Wakeup {
    TimePoint at;
    std::uint64_t cycle;
  };

  explicit RestartScheduler(RestartSchedulerOptions options = {});
  // A new generation's config: applies to later requests.
  void set_options(RestartSchedulerOptions options) { options_ = options; }

  ScheduleResult request(const RestartRequest& req, TimePoint now);

  // The timer armed for `cycle` fired. Does nothing for a consumed or cancelled cycle, or
  // before the deadline.
  TimerResult on_timer(TimePoint now, std::uint64_t cycle);

  // The restart finished (or failed and the old generation kept running): requests are taken
  // again, subject to the cooldown.
  void on_restart_finished();

  // A successful hot reload made the scheduled restart unnecessary. False when nothing was
  // scheduled. A restart already under way cannot be cancelled.
  bool cancel(std::string reason);

  std::optional<Wakeup> next_wakeup() const;
  std::optional<TimePoint> next_deadline() const;

  State state() const { return state_; }
  // The merged request while one is scheduled.
  const std::optional<RestartRequest>& pending() const { return pending_; }
  std::uint64_t cycle() const { return cycle_; }
  const std::string& last_cancel_reason() const { return last_cancel_reason_; }

 private:
  std::optional<Duration> budget() const;
  RestartAction begin(TimePoint now);
  void merge(const RestartRequest& req);

  RestartSchedulerOptions options_;
  State state_ = State::idle;
  std::uint64_t cycle_ = 1;
  std::optional<RestartRequest> pending_;
  std::size_t pending_requests_ = 0;
  TimePoint deadline_{};
  std::optional<TimePoint> last_began_;
  std::string last_cancel_reason_;
};

const char* to_string(RestartScheduler::State s);

}  // namespace drawbridge::core
