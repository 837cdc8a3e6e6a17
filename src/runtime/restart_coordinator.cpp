#include "runtime/restart_coordinator.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include <spdlog/spdlog.h>

#include "core/saturating.h"
#include "core/shutdown_budget.h"
#include "runtime/hand_off.h"
#include "runtime/startup.h"

namespace drawbridge::runtime {

namespace {

using State = core::LifecycleState;

// 4/5 of `d` without the overflow of d * 4 for an enormous d.
core::Duration four_fifths(core::Duration d) { return d - d / 5; }

double ms_between(core::TimePoint a, core::TimePoint b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

}  // namespace

RestartCoordinator::RestartCoordinator(core::Clock& clock, core::Executor& executor,
                                       core::Lifecycle& lifecycle, DrainRunner& drain,
                                       core::RestartSchedulerOptions options, Hooks hooks)
    : clock_(clock),
      executor_(executor),
      lifecycle_(lifecycle),
      drain_(drain),
      hooks_(std::move(hooks)),
      scheduler_(options) {}

RestartCoordinator::~RestartCoordinator() { cancel_timer(); }

core::StopBudget RestartCoordinator::stop_budget() {
  const auto watchdog = core::shutdown_budget(core::ShutdownKind::stop, std::nullopt,
                                              env_duration_ms("DRAWBRIDGE_STOP_TIMEOUT_MS"));
  return {watchdog, watchdog ? std::optional(four_fifths(*watchdog)) : std::nullopt};
}

server::RestartAnswer RestartCoordinator::request(const server::RestartIntent& intent) {
  core::RestartRequest req;
  req.reason = intent.reason.empty() ? "requested" : intent.reason;
  req.force = intent.force;
  if (intent.wait_ms) req.wait = core::Duration{std::max<std::int64_t>(*intent.wait_ms, 0)};
  if (intent.delay_ms) req.delay = core::Duration{std::max<std::int64_t>(*intent.delay_ms, 0)};
  req.source = intent.source == "signal" ? core::RestartSource::signal
               : intent.source == "chat" ? core::RestartSource::chat
               : intent.source == "config" ? core::RestartSource::config
                                           : core::RestartSource::rpc;
  req.fresh_process = intent.fresh_process;
  return request(req, intent.requested_by_run);
}

void RestartCoordinator::on_chat_command(const pipeline::ChatCommand& cmd) {
  if (cmd.name != "restart") return;
  core::RestartRequest req;
  req.reason = "/restart in " + cmd.channel + " (" + cmd.session_key + ")";
  req.source = core::RestartSource::chat;
  request(req);
}

void RestartCoordinator::on_signal(const std::string& name, bool fresh_process, bool allowed) {
  if (!allowed) {
    spdlog::warn("{} received: restarts from outside are turned off (commands.restart is "
                 "false); ignored",
                 name);
    return;
  }
  core::RestartRequest req;
  req.reason = name;
  req.source = core::RestartSource::signal;
  req.fresh_process = fresh_process;  // SIGUSR2: a fresh process (re-exec/supervised)
  request(req);
}

server::RestartAnswer RestartCoordinator::request_update(const std::string& binary,
                                                         const std::string& reason) {
  std::string error;
  const auto checked = HandOff::executable_path(binary, error);
  if (!checked) return {false, "refused", std::nullopt, std::nullopt, error};
  core::RestartRequest req;
  req.reason = reason.empty() ? "update to " + *checked : reason;
  req.kind = core::RestartKind::update;
  req.binary = *checked;
  req.fresh_process = true;
  req.delay = core::Duration{0};
  req.source = core::RestartSource::rpc;
  return request(req);
}

server::RestartAnswer RestartCoordinator::request(const core::RestartRequest& req,
                                                  const std::string& requested_by_run) {
  const auto now = clock_.now();
  if (lifecycle_.stop_pending()) {
    spdlog::info("restart requested ({}) while stopping; ignored", req.reason);
    return {true, "ignored", scheduler_.cycle(), 0, "stopping"};
  }
  if (lifecycle_.state() == State::failed) {
    // The last start failed: this request is the retry, at once.
    spdlog::info("restart requested ({}): retrying the failed start", req.reason);
    reason_ = req.reason;
    source_ = core::to_string(req.source);
    drain_started_ = now;
    last_drain_interrupted_ = false;
    executor_.post([this] { hooks_.start_next_generation(); });
    return {true, "scheduled", scheduler_.cycle(), 0, "retrying the failed start"};
  }
  if (!requested_by_run.empty() && hooks_.detach_run(requested_by_run)) {
    // The turn asking is not waited for: waiting would deadlock until the budget.
    spdlog::info("run {} asked for the restart: the drain will not wait for it",
                 requested_by_run);
  }
  auto r = scheduler_.request(req, now);
  if (r.status == core::ScheduleStatus::ignored && drain_.active()) {
    // A drain runs: a more urgent request (force, a shorter waitMs) shortens it.
    auto cut = lifecycle_.on_urgent_restart(now, {req.force, req.wait});
    if (cut.shortened) {
      spdlog::warn("restart request ({}) is more urgent than the running drain: {}", req.reason,
                   cut.note);
      if (auto at = lifecycle_.watchdog_at()) arm_watchdog(*at);
      drain_.cut(*cut.turns_end);
      return {true, "shortened", r.cycle, 0, cut.note};
    }
    spdlog::info("restart request ({}) ignored: {}", req.reason, cut.note);
    return {true, "ignored", r.cycle, 0, cut.note};
  }
  const auto due = std::chrono::duration_cast<std::chrono::milliseconds>(r.deadline - now);
  switch (r.status) {
    case core::ScheduleStatus::scheduled:
      spdlog::info("restart scheduled in {} ms (cycle {}): {}{}{}", due.count(), r.cycle,
                   req.reason, r.note.empty() ? "" : "; ", r.note);
      break;
    case core::ScheduleStatus::coalesced:
      spdlog::info("restart request ({}) merged into the scheduled restart (cycle {})",
                   req.reason, r.cycle);
      break;
    case core::ScheduleStatus::ignored:
      spdlog::info("restart request ({}) ignored: {}", req.reason, r.note);
      break;
  }
  arm_timer();
  return {true, core::to_string(r.status), r.cycle, std::max<std::int64_t>(due.count(), 0),
          std::string(r.note)};
}

bool RestartCoordinator::cancel_config_restart() {
  auto pending = scheduler_.pending();
  if (!pending || pending->source != core::RestartSource::config) return false;
  if (!scheduler_.cancel("hot reload applied the config")) return false;
  cancel_timer();
  return true;
}

void RestartCoordinator::arm_timer() {
  auto w = scheduler_.next_wakeup();
  if (!w) return;
  cancel_timer();
  const auto delay =
      std::max(core::Duration{0}, std::chrono::ceil<core::Duration>(w->at - clock_.now()));
  timer_ = executor_.schedule(delay, [this, cycle = w->cycle] {
    timer_.reset();
    auto r = scheduler_.on_timer(clock_.now(), cycle);
    if (r.begin) begin_drain(core::DrainKind::restart, *r.begin);
  });
}

void RestartCoordinator::cancel_timer() {
  if (timer_) executor_.cancel(*timer_);
  timer_.reset();
}

server::StopAnswer RestartCoordinator::request_stop(const std::string& reason) {
  if (lifecycle_.stop_pending()) return {"already-stopping", {}};
  const bool restarting =
      lifecycle_.state() == State::draining || lifecycle_.state() == State::restarting;
  executor_.post([this, reason] { stop(reason.empty() ? "requested" : reason); });
  return {"stopping", restarting ? "the stop takes over the restart under way (the stop's "
                                   "budget, then exit)"
                                 : ""};
}

void RestartCoordinator::stop(const std::string& why) {
  const auto now = clock_.now();
  const auto d = lifecycle_.on_stop(now, stop_budget());
  using W = core::StopDecision::What;
  switch (d.what) {
    case W::already_stopping:
      spdlog::info("{} received while already stopping; ignored", why);
      return;
    case W::close_and_exit:
      spdlog::info("{}: stopping (the last start had failed)", why);
      hooks_.close_and_exit();
      return;
    case W::begin_drain: {
      cancel_timer();
      core::RestartAction action{};
      action.reason = why;
      begin_drain(core::DrainKind::stop, action);
      return;
    }
    case W::take_over_drain: break;
  }
  // A restart is under way: no second teardown, but from now on it is the stop's. Its turns
  // get the stop's budget where that is shorter, the watchdog is the stop's, and the process
  // exits when the drain is done instead of starting the next generation.
  cancel_timer();
  reason_ = why + " (during " + reason_ + ")";
  drain_.set_reason(reason_);
  hooks_.notify_stopping("stopping (" + why + ")");
  const auto left = [&](std::optional<core::TimePoint> at) {
    return at ? std::to_string(std::max<std::int64_t>(
                    0, std::chrono::duration_cast<core::Duration>(*at - now).count())) +
                    " ms"
              : std::string("unchanged");
  };
  spdlog::warn("{} received while restarting: the stop takes the restart over (turns: {}, "
               "watchdog: {}); the process exits once the drain is done",
               why, left(d.turns_end ? d.turns_end : lifecycle_.turns_end()),
               left(lifecycle_.watchdog_at()));
  if (d.watchdog_at) arm_watchdog(*d.watchdog_at);
  if (d.turns_end) drain_.cut(*d.turns_end);
}

void RestartCoordinator::arm_watchdog(core::TimePoint at) {
  watchdog_budget_ = std::chrono::duration_cast<core::Duration>(at - drain_started_);
  hooks_.arm_watchdog(at);
}

void RestartCoordinator::begin_drain(core::DrainKind kind, const core::RestartAction& action) {
  const auto now = clock_.now();
  drain_started_ = now;
  reason_ = action.reason;
  source_ = kind == core::DrainKind::stop ? "stop" : core::to_string(action.source);
  binary_.clear();
  is_update_ = false;
  if (kind == core::DrainKind::restart) {
    is_update_ = action.kind == core::RestartKind::update;
    binary_ = is_update_ ? action.binary : std::string();
    // An update always hands the socket over.
    mode_ = is_update_ ? RestartMode::reexec : hooks_.restart_mode(action.fresh_process);
    if (mode_ == RestartMode::supervised) {
      hooks_.notify_stopping("restarting (" + action.reason + "): exiting for the supervisor");
    } else {
      hooks_.notify_reloading("restarting (" + action.reason + ")");
    }
  } else {
    hooks_.notify_stopping("stopping (" + action.reason + ")");
  }
  // The supervisor's stop timeout bounds a stop, and a restart that ends with our exit (after
  // STOPPING=1); an in-process or re-exec restart is a reload to systemd, not a stop.
  const bool exits = kind == core::DrainKind::stop || mode_ == RestartMode::supervised;
  const auto supervisor =
      exits ? env_duration_ms("DRAWBRIDGE_STOP_TIMEOUT_MS") : std::optional<core::Duration>{};
  DrainStart start;
  start.kind = kind;
  start.reason = action.reason;
  start.path = mode_ == RestartMode::supervised ? core::RestartPath::supervised
               : mode_ == RestartMode::reexec   ? core::RestartPath::reexec
                                                : core::RestartPath::in_process;
  std::optional<core::Duration> watchdog;
  if (kind == core::DrainKind::stop) {
    watchdog = core::shutdown_budget(core::ShutdownKind::stop, std::nullopt, supervisor);
    // A stop lets turns finish for most of its budget and keeps the rest for delivery and
    // teardown (20 s of OpenClaw's 25 s).
    start.turn_budget = four_fifths(*watchdog);
  } else {
    watchdog =
        core::shutdown_budget(core::ShutdownKind::restart, action.drain_budget, supervisor);
    start.turn_budget = action.drain_budget;
    // Under a supervisor's stop timeout the turns get most of what the watchdog allows.
    if (supervisor && watchdog &&
        (!start.turn_budget || *start.turn_budget > four_fifths(*watchdog))) {
      start.turn_budget = four_fifths(*watchdog);
    }
  }
  if (watchdog) {
    // Saturating: an enormous budget (waitMs near INT64_MAX) is a watchdog that never fires,
    // not a deadline wrapped into the past.
    start.watchdog_at = core::saturating_add(now, *watchdog);
    arm_watchdog(*start.watchdog_at);
  }
  spdlog::info("{} ({}): draining; {}; turn budget {}, watchdog {}",
               kind == core::DrainKind::stop ? "stopping" : "restarting", action.reason,
               hooks_.describe_work(),
               start.turn_budget ? std::to_string(start.turn_budget->count()) + " ms" : "none",
               watchdog ? std::to_string(watchdog->count()) + " ms" : "none");
  drain_.begin(start);
}

void RestartCoordinator::record_restart(std::uint64_t generation, core::TimePoint started,
                                        core::TimePoint now) {
  ++restarts_total_;
  last_restart_ = {{"reason", reason_},
                   {"source", source_},
                   {"generation", generation},
                   {"durationMs", std::llround(ms_between(drain_started_, now))},
                   {"startMs", ms_between(started, now)},
                   {"interrupted", last_drain_interrupted_},
                   {"finishedAtMs", clock_.wall_ms()}};
  if (auto after = drain_.after_last_reply_ms()) last_restart_["afterLastReplyMs"] = *after;
}

}  // namespace drawbridge::runtime
