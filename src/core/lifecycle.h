#pragma once

#include <optional>
#include <string>

#include "core/clock.h"
#include "core/drain_plan.h"

namespace drawbridge::core {

// The gateway's lifecycle as one sans-IO state machine (like DrainPlan): the runtime tells it
// what happened and asks it what to do; it holds no timers and does no I/O. It replaces the
// flags the runtime used to keep side by side (state, accepting, stop requested).
//
//   starting --generation_started--> running --drain_began(restart)--> draining
//   draining --closing--> restarting --generation_started--> running
//   running/draining/restarting --on_stop--> stopping --drain_finished--> (exit)
//   starting/restarting --generation_failed--> failed --retry--> restarting
enum class LifecycleState { starting, running, draining, restarting, stopping, failed };
const char* to_string(LifecycleState s);

// How a restart ends once its drain is done.
enum class RestartPath { in_process, reexec, supervised };

// Where the server listens: what a generation that started successfully bound.
struct ListenAddress {
  std::string bind;
  int port = 0;
  bool operator==(const ListenAddress&) const = default;
};

// What the runtime does when the drain has finished.
enum class AfterDrain { exit_process, supervised_exit, hand_off, next_generation };
const char* to_string(AfterDrain a);

// The budgets of a stop: the force-exit watchdog from its start, and how long turns may run
// (the rest is for delivery and teardown).
struct StopBudget {
  std::optional<Duration> watchdog;
  std::optional<Duration> turns;
};

struct StopDecision {
  enum class What {
    begin_drain,      // running: drain with kind stop
    take_over_drain,  // a restart's drain runs: it becomes the stop's (shorter budgets, exit)
    close_and_exit,   // failed: nothing runs, close the server and exit
    already_stopping,
  };
  What what;
  // take_over_drain: the turns end by this (the shorter of the restart's and the stop's);
  // nullopt: unchanged.
  std::optional<TimePoint> turns_end;
  // take_over_drain: (re-)arm the watchdog at this; nullopt: unchanged.
  std::optional<TimePoint> watchdog_at;
};

// A restart asked for while a drain runs: more urgent (force, a shorter waitMs) shortens the
// drain's wait on turns; anything else coalesces into the restart under way.
struct UrgentRequest {
  bool force = false;
  std::optional<Duration> wait{};
};
struct ShortenDecision {
  bool shortened = false;
  std::optional<TimePoint> turns_end;  // when shortened
  std::string note;                    // for the answer and the log
};

class Lifecycle {
 public:
  LifecycleState state() const { return state_; }
  // New connections are served (status and health stay reachable when failed).
  bool accepting() const { return accepting_; }
  // A stop was asked for: whatever drain runs ends with the process.
  bool stop_pending() const { return stop_pending_; }
  // The drain under way, when there is one.
  std::optional<DrainKind> drain_kind() const { return drain_kind_; }
  RestartPath restart_path() const { return path_; }
  // What a started generation bound and applied; a failed start changes neither, so the
  // running config, its hash and the address always describe the same thing.
  const std::optional<ListenAddress>& listening() const { return listening_; }
  const std::string& applied_hash() const { return applied_hash_; }

  // A generation serves (first start, next generation, retry after a failure).
  void generation_started(ListenAddress listening, std::string applied_hash);
  // The next generation could not start: nothing serves chats; what listens and what is
  // applied stay those of the generation before.
  void generation_failed();
  // A retry of a failed start, or an in-process restart after its drain.
  void generation_starting();
  // Whether the next generation must bind `next` anew: compared with what listens now, never
  // with a config that was tried and failed.
  bool needs_relisten(const ListenAddress& next) const;

  // A drain begins. `turns_end` / `watchdog_at`: its budgets, absolute (nullopt: no limit).
  void drain_began(DrainKind kind, RestartPath path, std::optional<TimePoint> turns_end,
                   std::optional<TimePoint> watchdog_at);
  // The drain closes the server: no new connections from here on.
  void closing();
  // The drain is done: what comes next. A stop asked for during a restart's drain wins.
  AfterDrain drain_finished();
  // A re-exec's successor did not come up: this process restarts in place.
  void hand_off_failed();

  StopDecision on_stop(TimePoint now, const StopBudget& budget);
  ShortenDecision on_urgent_restart(TimePoint now, const UrgentRequest& req);
  // The drain's turn wait is over (turns idle or aborted): nothing left to shorten.
  void turns_done() { turns_open_ = false; }

  // For status: when the drain's turns and watchdog end (nullopt: no limit or no drain).
  std::optional<TimePoint> turns_end() const { return turns_end_; }
  std::optional<TimePoint> watchdog_at() const { return watchdog_at_; }

 private:
  static std::optional<TimePoint> earlier(std::optional<TimePoint> a, std::optional<TimePoint> b);

  LifecycleState state_ = LifecycleState::starting;
  bool accepting_ = true;
  bool stop_pending_ = false;
  bool turns_open_ = false;
  std::optional<DrainKind> drain_kind_;
  RestartPath path_ = RestartPath::in_process;
  std::optional<TimePoint> turns_end_;
  std::optional<TimePoint> watchdog_at_;
  std::optional<ListenAddress> listening_;
  std::string applied_hash_;
};

}  // namespace drawbridge::core
