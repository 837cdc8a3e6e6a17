#include "core/restart_scheduler.h"

#include <algorithm>
#include <utility>

#include "core/saturating.h"

namespace drawbridge::core {

const char* to_string(RestartKind k) {
  switch (k) {
    case RestartKind::restart: return "restart";
    case RestartKind::update: return "update";
  }
  return "?";
}

const char* to_string(RestartSource s) {
  switch (s) {
    case RestartSource::signal: return "signal";
    case RestartSource::rpc: return "rpc";
    case RestartSource::config: return "config";
    case RestartSource::chat: return "chat";
  }
  return "?";
}

const char* to_string(ScheduleStatus s) {
  switch (s) {
    case ScheduleStatus::scheduled: return "scheduled";
    case ScheduleStatus::coalesced: return "coalesced";
    case ScheduleStatus::ignored: return "ignored";
  }
  return "?";
}

const char* to_string(RestartScheduler::State s) {
  switch (s) {
    case RestartScheduler::State::idle: return "idle";
    case RestartScheduler::State::scheduled: return "scheduled";
    case RestartScheduler::State::restarting: return "restarting";
  }
  return "?";
}

std::optional<Duration> deferral_budget(Duration configured, std::optional<Duration> intent_wait,
                                        bool force) {
  if (force) return Duration{0};
  if (intent_wait) return std::max(*intent_wait, Duration{0});
  if (configured <= Duration{0}) return std::nullopt;
  return configured;
}

RestartScheduler::RestartScheduler(RestartSchedulerOptions options) : options_(options) {}

ScheduleResult RestartScheduler::request(const RestartRequest& req, TimePoint now) {
  if (state_ == State::restarting) {
    return {ScheduleStatus::ignored, now, cycle_, "already restarting"};
  }
  const Duration delay =
      std::clamp(req.delay.value_or(options_.default_delay), Duration{0}, options_.max_delay);
  TimePoint deadline = now + delay;
  std::string_view note;
  // A request during the cooldown waits for its end instead of being refused: the change it
  // carries (new config, new binary) still needs a restart.
  if (last_began_) {
    const TimePoint cooled = saturating_add(*last_began_, options_.cooldown);
    if (deadline < cooled) {
      deadline = cooled;
      note = "cooldown";
    }
  }

  if (state_ == State::idle) {
    pending_ = req;
    pending_requests_ = 1;
    deadline_ = deadline;
    state_ = State::scheduled;
    return {ScheduleStatus::scheduled, deadline_, cycle_, note};
  }

  merge(req);
  deadline_ = std::min(deadline_, deadline);
  return {ScheduleStatus::coalesced, deadline_, cycle_, "merged into the scheduled restart"};
}

void RestartScheduler::merge(const RestartRequest& req) {
  RestartRequest& p = *pending_;
  p.force = p.force || req.force;
  p.fresh_process = p.fresh_process || req.fresh_process;
  if (req.wait) p.wait = p.wait ? std::min(*p.wait, *req.wait) : *req.wait;
  // An update must not be downgraded to a plain restart of the old binary.
  if (req.kind == RestartKind::update && p.kind == RestartKind::restart) {
    p.reason = req.reason;
    p.kind = req.kind;
    p.source = req.source;
  }
  if (req.kind == RestartKind::update) p.binary = req.binary;  // the latest update wins
  ++pending_requests_;
}

std::optional<Duration> RestartScheduler::budget() const {
  return deferral_budget(options_.deferral_timeout, pending_->wait, pending_->force);
}

TimerResult RestartScheduler::on_timer(TimePoint now, std::uint64_t cycle) {
  if (cycle != cycle_ || state_ != State::scheduled || now < deadline_) return {};
  return {begin(now)};
}

RestartAction RestartScheduler::begin(TimePoint now) {
  const auto b = budget();
  std::optional<Duration> drain_budget = b;
  if (b) {
    // The drain gets what a late timer left of the budget, so the restart stays within it.
    const auto waited = std::chrono::duration_cast<Duration>(now - deadline_);
    drain_budget = std::max(*b - std::max(waited, Duration{0}), Duration{0});
  }
  RestartAction action{pending_->reason,
                       pending_->kind,
                       pending_->source,
                       pending_->force,
                       drain_budget,
                       cycle_,
                       now,
                       pending_requests_,
                       pending_->fresh_process || pending_->kind == RestartKind::update,
                       pending_->binary};
  pending_.reset();
  pending_requests_ = 0;
  ++cycle_;
  state_ = State::restarting;
  last_began_ = now;
  return action;
}

void RestartScheduler::on_restart_finished() {
  if (state_ == State::restarting) state_ = State::idle;
}

bool RestartScheduler::cancel(std::string reason) {
  if (state_ != State::scheduled) return false;
  pending_.reset();
  pending_requests_ = 0;
  // A timer armed before the cancel must stay a no-op even when a new request comes.
  ++cycle_;
  state_ = State::idle;
  last_cancel_reason_ = std::move(reason);
  return true;
}

std::optional<RestartScheduler::Wakeup> RestartScheduler::next_wakeup() const {
  if (state_ == State::scheduled) return Wakeup{deadline_, cycle_};
  return std::nullopt;
}

std::optional<TimePoint> RestartScheduler::next_deadline() const {
  const auto w = next_wakeup();
  if (!w) return std::nullopt;
  return w->at;
}

}  // namespace drawbridge::core
