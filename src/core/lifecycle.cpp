#include "core/lifecycle.h"

#include <utility>

#include "core/saturating.h"
#include "core/shutdown_budget.h"

namespace drawbridge::core {

const char* to_string(LifecycleState s) {
  switch (s) {
    case LifecycleState::starting: return "starting";
    case LifecycleState::running: return "running";
    case LifecycleState::draining: return "draining";
    case LifecycleState::restarting: return "restarting";
    case LifecycleState::stopping: return "stopping";
    case LifecycleState::failed: return "failed";
  }
  return "?";
}

const char* to_string(AfterDrain a) {
  switch (a) {
    case AfterDrain::exit_process: return "exit";
    case AfterDrain::supervised_exit: return "supervised-exit";
    case AfterDrain::hand_off: return "hand-off";
    case AfterDrain::next_generation: return "next-generation";
  }
  return "?";
}

std::optional<TimePoint> Lifecycle::earlier(std::optional<TimePoint> a,
                                            std::optional<TimePoint> b) {
  if (!a) return b;
  if (!b) return a;
  return std::min(*a, *b);
}

void Lifecycle::generation_started(ListenAddress listening, std::string applied_hash) {
  state_ = LifecycleState::running;
  accepting_ = true;
  listening_ = std::move(listening);
  applied_hash_ = std::move(applied_hash);
}

void Lifecycle::generation_failed() {
  state_ = LifecycleState::failed;
  accepting_ = true;  // status and health stay reachable
}

void Lifecycle::generation_starting() {
  state_ = LifecycleState::restarting;
  accepting_ = false;
}

bool Lifecycle::needs_relisten(const ListenAddress& next) const {
  return !listening_ || !(*listening_ == next);
}

void Lifecycle::drain_began(DrainKind kind, RestartPath path, std::optional<TimePoint> turns_end,
                            std::optional<TimePoint> watchdog_at) {
  drain_kind_ = kind;
  path_ = path;
  turns_open_ = true;
  turns_end_ = turns_end;
  watchdog_at_ = watchdog_at;
  if (kind == DrainKind::stop) stop_pending_ = true;
  state_ = stop_pending_ ? LifecycleState::stopping : LifecycleState::draining;
}

void Lifecycle::closing() {
  accepting_ = false;
  if (state_ == LifecycleState::draining) state_ = LifecycleState::restarting;
}

AfterDrain Lifecycle::drain_finished() {
  drain_kind_.reset();
  turns_open_ = false;
  turns_end_.reset();
  watchdog_at_.reset();
  if (stop_pending_) {
    state_ = LifecycleState::stopping;
    return AfterDrain::exit_process;
  }
  state_ = LifecycleState::restarting;
  switch (path_) {
    case RestartPath::supervised: return AfterDrain::supervised_exit;
    case RestartPath::reexec: return AfterDrain::hand_off;
    case RestartPath::in_process: break;
  }
  return AfterDrain::next_generation;
}

void Lifecycle::hand_off_failed() { state_ = LifecycleState::restarting; }

StopDecision Lifecycle::on_stop(TimePoint now, const StopBudget& budget) {
  if (stop_pending_ || state_ == LifecycleState::stopping) {
    return {StopDecision::What::already_stopping, std::nullopt, std::nullopt};
  }
  stop_pending_ = true;
  if (state_ == LifecycleState::failed) {
    state_ = LifecycleState::stopping;
    return {StopDecision::What::close_and_exit, std::nullopt, std::nullopt};
  }
  if (!drain_kind_ && state_ != LifecycleState::restarting) {
    // Running (or still starting): a drain of its own; drain_began() records its budgets.
    return {StopDecision::What::begin_drain, std::nullopt, std::nullopt};
  }
  // A restart is under way (its drain, or between its drain and the next generation): the
  // stop takes it over. From now on the budgets are the stop's where they are shorter, and
  // the process exits when the drain is done instead of starting a generation.
  state_ = LifecycleState::stopping;
  StopDecision d{StopDecision::What::take_over_drain, std::nullopt, std::nullopt};
  if (turns_open_ && budget.turns) {
    const auto end = earlier(turns_end_, saturating_add(now, *budget.turns));
    if (end != turns_end_) d.turns_end = end;
    turns_end_ = end;
  }
  if (budget.watchdog) {
    const auto at = earlier(watchdog_at_, saturating_add(now, *budget.watchdog));
    if (at != watchdog_at_) d.watchdog_at = at;
    watchdog_at_ = at;
  }
  return d;
}

ShortenDecision Lifecycle::on_urgent_restart(TimePoint now, const UrgentRequest& req) {
  ShortenDecision d;
  if (stop_pending_) {
    d.note = "stopping";
    return d;
  }
  if (!drain_kind_ || !turns_open_) {
    d.note = "already restarting";
    return d;
  }
  if (!req.force && !req.wait) {
    d.note = "already restarting";
    return d;
  }
  const TimePoint at = req.force ? now : saturating_add(now, *req.wait);
  if (turns_end_ && *turns_end_ <= at) {
    d.note = "already restarting; the running drain ends sooner";
    return d;
  }
  turns_end_ = at;
  // A restart's watchdog is its turn budget plus the teardown grace: it moves with the turns.
  watchdog_at_ = earlier(watchdog_at_, saturating_add(at, kShutdownGrace));
  d.shortened = true;
  d.turns_end = at;
  d.note = req.force ? "the running drain aborts its turns now"
                     : "the running drain now waits at most " +
                           std::to_string(req.wait->count()) + " ms for turns";
  return d;
}

}  // namespace drawbridge::core
