#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "core/clock.h"

namespace drawbridge::core {

// Phases of the drain, in the order of shared/DESIGN.md ("The lifecycle").
enum class DrainPhase {
  not_started,
  not_ready,
  flush_debouncers,
  mark_draining,
  wait_turns,
  abort_remaining,
  wait_deliveries,
  stop_channels,
  close_server,
  write_clean_marker,
  done,
};
const char* to_string(DrainPhase p);

enum class DrainKind { restart, stop };

// Wording of the one notice each chat with an active turn gets when draining starts.
enum class DrainNotice {
  will_finish,    // "restarting after your reply"
  interrupted,    // "your task was interrupted, send a message to continue"
  shutting_down,  // a stop
};

// One piece of work the drain waits for, as the work tracker lists it.
struct DrainBlocker {
  std::string task_id;
  std::string run_id;
  std::string session;
  std::string status;
  std::string label;
  std::int64_t elapsed_ms = 0;  // how long it has run; 0: not known
  bool operator==(const DrainBlocker&) const = default;
};

struct DrainOptions {
  DrainKind kind = DrainKind::restart;
  // How long to wait for turns and tasks before aborting them; nullopt: no limit. Zero (force)
  // aborts at once. See deferral_budget() in core/restart_scheduler.h.
  std::optional<Duration> turn_budget = Duration{300'000};
  Duration blocker_log_interval{30'000};
  std::size_t blockers_listed = 8;
};

enum class DrainEventType {
  start,
  turns_idle,
  deliveries_idle,
  channels_stopped,
  server_closed,
  timer,
};

struct DrainEvent {
  DrainEventType type;
  // For `timer`: what blocks the drain right now (the work tracker's listing).
  std::vector<DrainBlocker> blockers{};
};

enum class DrainActionType {
  set_not_ready,     // /readyz 503, RELOADING=1 or STOPPING=1 to systemd
  // Hand every buffered inbound message to its session: a session with no turn running starts
  // one (counted by the work tracker at once); queued ones stay in the inbox, and the next
  // generation runs them (their merges are durable): the drain does not wait for queues that
  // a steady stream keeps full.
  flush_debouncers,
  mark_draining,  // new inbound goes to the inbox only; one `notice` per chat with a turn
  await_turns,       // send turns_idle once no turn or task runs (at once if none does)
  log_blockers,      // log `blockers` (at most blockers_listed) and `more`
  abort_turns,       // abort every one of `blockers`; their sessions become resume_pending
  await_deliveries,  // send deliveries_idle once the outbox is drained
  stop_channels,     // pollers commit their offsets; send channels_stopped
  close_server,      // WebSocket close 1012; send server_closed
  write_clean_marker,
  finished,
};
const char* to_string(DrainActionType t);

struct DrainAction {
  DrainActionType type;
  std::vector<DrainBlocker> blockers{};
  // log_blockers: how many blockers were left out of the list.
  std::size_t more = 0;
  // log_blockers: how long the drain has waited on turns so far.
  Duration waited{};
  DrainNotice notice = DrainNotice::will_finish;
};

// "task=t1 run=r1 status=running label=\"x\"; ...; +3 more" for the log and the diagnostic bundle.
std::string format_blockers(const DrainAction& action);

struct DrainStep {
  std::vector<DrainAction> actions;
  DrainPhase phase;
  // When to send the next `timer` event; nullopt: only the awaited event moves the plan.
  std::optional<TimePoint> next_deadline;
};

struct DrainReport {
  // Turns were aborted at the budget: no clean-shutdown marker, so the next start repairs them.
  bool interrupted = false;
  std::vector<DrainBlocker> aborted;
  bool clean_marker = false;
};

// The drain as a sans-IO state machine: the runtime feeds it events and runs the actions it
// returns, in order. Events that do not belong to the current phase are ignored, so the
// runtime subscribes to an idle event only when told to (await_*), never before: a stale
// "idle" from before the debouncers were flushed must not skip a wait.
class DrainPlan {
 public:
  explicit DrainPlan(DrainOptions options = {});

  DrainStep step(const DrainEvent& event, TimePoint now);

  // A more urgent request (a stop, a forced restart, a shorter waitMs): the wait on turns ends
  // by `at` at the latest. Never lengthens it. When `at` has passed and the plan
  // waits on turns, the step aborts `blockers` at once; a later phase is left alone.
  DrainStep cut_turns(TimePoint at, TimePoint now, const std::vector<DrainBlocker>& blockers);

  DrainPhase phase() const { return phase_; }
  std::optional<TimePoint> next_deadline() const;
  const DrainReport& report() const { return report_; }

 private:
  DrainStep result(std::vector<DrainAction> actions) const;
  void enter_wait_turns(TimePoint now, std::vector<DrainAction>& out);
  void enter_wait_deliveries(std::vector<DrainAction>& out);
  void on_timer(const std::vector<DrainBlocker>& blockers, TimePoint now,
                std::vector<DrainAction>& out);

  DrainOptions options_;
  DrainPhase phase_ = DrainPhase::not_started;
  TimePoint phase_started_{};
  TimePoint next_log_{};
  std::optional<TimePoint> budget_end_;
  std::optional<TimePoint> cut_at_;  // cut_turns(): no wait on turns beyond this
  DrainReport report_;
};

}  // namespace drawbridge::core
