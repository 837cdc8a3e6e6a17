#include "core/drain_plan.h"

#include <algorithm>
#include <utility>

#include "core/saturating.h"

namespace drawbridge::core {

const char* to_string(DrainPhase p) {
  switch (p) {
    case DrainPhase::not_started: return "not_started";
    case DrainPhase::not_ready: return "not_ready";
    case DrainPhase::flush_debouncers: return "flush_debouncers";
    case DrainPhase::mark_draining: return "mark_draining";
    case DrainPhase::wait_turns: return "wait_turns";
    case DrainPhase::abort_remaining: return "abort_remaining";
    case DrainPhase::wait_deliveries: return "wait_deliveries";
    case DrainPhase::stop_channels: return "stop_channels";
    case DrainPhase::close_server: return "close_server";
    case DrainPhase::write_clean_marker: return "write_clean_marker";
    case DrainPhase::done: return "done";
  }
  return "?";
}

const char* to_string(DrainActionType t) {
  switch (t) {
    case DrainActionType::set_not_ready: return "set_not_ready";
    case DrainActionType::flush_debouncers: return "flush_debouncers";
    case DrainActionType::mark_draining: return "mark_draining";
    case DrainActionType::await_turns: return "await_turns";
    case DrainActionType::log_blockers: return "log_blockers";
    case DrainActionType::abort_turns: return "abort_turns";
    case DrainActionType::await_deliveries: return "await_deliveries";
    case DrainActionType::stop_channels: return "stop_channels";
    case DrainActionType::close_server: return "close_server";
    case DrainActionType::write_clean_marker: return "write_clean_marker";
    case DrainActionType::finished: return "finished";
  }
  return "?";
}

std::string format_blockers(const DrainAction& action) {
  std::string out;
  for (const auto& b : action.blockers) {
    if (!out.empty()) out += "; ";
    out += "task=" + b.task_id + " run=" + b.run_id + " status=" + b.status + " label=\"" +
           b.label + "\"";
    if (b.elapsed_ms > 0) {
      out += " elapsed=" + std::to_string(b.elapsed_ms / 1000) + "." +
             std::to_string(b.elapsed_ms % 1000 / 100) + "s";
    }
  }
  if (action.more > 0) {
    if (!out.empty()) out += "; ";
    out += "+" + std::to_string(action.more) + " more";
  }
  return out;
}

DrainPlan::DrainPlan(DrainOptions options) : options_(std::move(options)) {
  // A zero interval would log on every timer event and never move the next log time.
  options_.blocker_log_interval = std::max(options_.blocker_log_interval, Duration{1'000});
}

std::optional<TimePoint> DrainPlan::next_deadline() const {
  switch (phase_) {
    case DrainPhase::wait_turns:
      if (budget_end_) return std::min(next_log_, *budget_end_);
      return next_log_;
    default: return std::nullopt;
  }
}

DrainStep DrainPlan::result(std::vector<DrainAction> actions) const {
  return {std::move(actions), phase_, next_deadline()};
}

DrainStep DrainPlan::step(const DrainEvent& event, TimePoint now) {
  std::vector<DrainAction> out;
  switch (event.type) {
    case DrainEventType::start:
      if (phase_ != DrainPhase::not_started) break;
      // Readiness goes first so load balancers stop sending before anything else changes.
      out.push_back({DrainActionType::set_not_ready});
      // Flushed messages become turns, which the wait on turns covers, or stay queued for the
      // next generation.
      out.push_back({DrainActionType::flush_debouncers});
      enter_wait_turns(now, out);
      break;
    case DrainEventType::turns_idle:
      if (phase_ != DrainPhase::wait_turns) break;
      enter_wait_deliveries(out);
      break;
    case DrainEventType::deliveries_idle:
      if (phase_ != DrainPhase::wait_deliveries) break;
      out.push_back({DrainActionType::stop_channels});
      phase_ = DrainPhase::stop_channels;
      break;
    case DrainEventType::channels_stopped:
      if (phase_ != DrainPhase::stop_channels) break;
      out.push_back({DrainActionType::close_server});
      phase_ = DrainPhase::close_server;
      break;
    case DrainEventType::server_closed:
      if (phase_ != DrainPhase::close_server) break;
      if (!report_.interrupted) {
        out.push_back({DrainActionType::write_clean_marker});
        report_.clean_marker = true;
      }
      out.push_back({DrainActionType::finished});
      phase_ = DrainPhase::done;
      break;
    case DrainEventType::timer: on_timer(event.blockers, now, out); break;
  }
  return result(std::move(out));
}

void DrainPlan::enter_wait_turns(TimePoint now, std::vector<DrainAction>& out) {
  DrainAction mark{DrainActionType::mark_draining};
  if (options_.kind == DrainKind::stop) {
    mark.notice = DrainNotice::shutting_down;
  } else if (options_.turn_budget && *options_.turn_budget == Duration{0}) {
    mark.notice = DrainNotice::interrupted;
  }
  out.push_back(std::move(mark));
  out.push_back({DrainActionType::await_turns});
  phase_ = DrainPhase::wait_turns;
  phase_started_ = now;
  next_log_ = saturating_add(now, options_.blocker_log_interval);
  budget_end_.reset();
  if (options_.turn_budget) budget_end_ = saturating_add(now, *options_.turn_budget);
  if (cut_at_ && (!budget_end_ || *cut_at_ < *budget_end_)) budget_end_ = cut_at_;
}

DrainStep DrainPlan::cut_turns(TimePoint at, TimePoint now,
                               const std::vector<DrainBlocker>& blockers) {
  std::vector<DrainAction> out;
  if (!cut_at_ || at < *cut_at_) cut_at_ = at;
  if (phase_ == DrainPhase::wait_turns && (!budget_end_ || *cut_at_ < *budget_end_)) {
    budget_end_ = cut_at_;
  }
  // Whatever is due now happens now (a force: the turns are aborted).
  if (phase_ == DrainPhase::wait_turns) {
    on_timer(blockers, now, out);
    if (phase_ == DrainPhase::wait_turns && budget_end_ && now >= *budget_end_) {
      on_timer(blockers, now, out);
    }
  }
  return result(std::move(out));
}

void DrainPlan::enter_wait_deliveries(std::vector<DrainAction>& out) {
  // Aborted turns still deliver what they already wrote to the outbox.
  out.push_back({DrainActionType::await_deliveries});
  phase_ = DrainPhase::wait_deliveries;
}

void DrainPlan::on_timer(const std::vector<DrainBlocker>& blockers, TimePoint now,
                         std::vector<DrainAction>& out) {
  if (phase_ != DrainPhase::wait_turns) return;
  if (budget_end_ && now >= *budget_end_) {
    DrainAction abort{DrainActionType::abort_turns};
    abort.blockers = blockers;
    abort.waited = std::chrono::duration_cast<Duration>(now - phase_started_);
    report_.interrupted = true;
    report_.aborted = blockers;
    out.push_back(std::move(abort));
    phase_ = DrainPhase::abort_remaining;
    enter_wait_deliveries(out);
    return;
  }
  if (now < next_log_) return;
  DrainAction log{DrainActionType::log_blockers};
  const std::size_t listed = std::min(blockers.size(), options_.blockers_listed);
  log.blockers.assign(blockers.begin(), blockers.begin() + static_cast<std::ptrdiff_t>(listed));
  log.more = blockers.size() - listed;
  log.waited = std::chrono::duration_cast<Duration>(now - phase_started_);
  out.push_back(std::move(log));
  // A late timer logs once and keeps the 30 s grid rather than catching up with a burst.
  while (next_log_ <= now) next_log_ = saturating_add(next_log_, options_.blocker_log_interval);
}

}  // namespace drawbridge::core
