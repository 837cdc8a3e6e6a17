#include "runtime/drain_runner.h"

#include <algorithm>
#include <utility>

#include <spdlog/spdlog.h>

#include "core/saturating.h"

namespace drawbridge::runtime {

using nlohmann::json;
using T = core::DrainActionType;

namespace {

double ms_between(core::TimePoint t0, core::TimePoint t1) {
  return std::chrono::duration<double, std::milli>(t1 - t0).count();
}

}  // namespace

DrainRunner::DrainRunner(core::Clock& clock, core::Executor& executor,
                         core::Lifecycle& lifecycle, DrainTarget& target)
    : clock_(clock), executor_(executor), lifecycle_(lifecycle), target_(target) {}

DrainRunner::~DrainRunner() {
  *alive_ = false;
  if (timer_) executor_.cancel(*timer_);
}

core::DrainPhase DrainRunner::phase() const {
  return plan_ ? plan_->phase() : core::DrainPhase::not_started;
}

void DrainRunner::begin(const DrainStart& start) {
  const auto now = clock_.now();
  kind_ = start.kind;
  reason_ = start.reason;
  started_ = now;
  started_wall_ = clock_.wall_ms();
  noticed_.clear();
  last_work_done_at_.reset();
  after_last_reply_ms_.reset();
  interrupted_ = false;
  aborted_ = 0;
  ++id_;
  core::DrainOptions o;
  o.kind = start.kind;
  o.turn_budget = start.turn_budget;
  // The turns' end as the lifecycle compares later requests with it.
  lifecycle_.drain_began(
      start.kind, start.path,
      o.turn_budget ? std::optional(core::saturating_add(now, *o.turn_budget)) : std::nullopt,
      start.watchdog_at);
  plan_ = std::make_unique<core::DrainPlan>(o);
  feed({core::DrainEventType::start});
}

void DrainRunner::cut(core::TimePoint turns_end) {
  if (!plan_) return;
  run_step(plan_->cut_turns(turns_end, clock_.now(), target_.blockers()));
}

void DrainRunner::feed(core::DrainEvent event) {
  if (!plan_) return;
  run_step(plan_->step(event, clock_.now()));
}

void DrainRunner::run_step(const core::DrainStep& step) {
  target_.drain_changed();
  for (const auto& action : step.actions) run_action(action);
  if (!plan_) return;
  if (timer_) {
    executor_.cancel(*timer_);
    timer_.reset();
  }
  if (step.next_deadline) {
    const auto delay = std::max(core::Duration{0}, std::chrono::ceil<core::Duration>(
                                                       *step.next_deadline - clock_.now()));
    timer_ = executor_.schedule(delay, [this, alive = alive_, id = id_] {
      if (!*alive || id != id_) return;
      timer_.reset();
      feed({core::DrainEventType::timer, target_.blockers()});
    });
  }
}

std::function<void()> DrainRunner::event(core::DrainEventType type) {
  return [this, alive = alive_, type, id = id_] {
    if (!*alive || id != id_) return;
    if (!in_await_ && (type == core::DrainEventType::turns_idle ||
                       type == core::DrainEventType::deliveries_idle)) {
      // The drain waited for this: the last turn or reply just finished.
      last_work_done_at_ = clock_.now();
    }
    // Posted: an idle callback may run inside the pipeline's own bookkeeping.
    executor_.post([this, alive, type, id] {
      if (*alive && id == id_) feed({type});
    });
  };
}

void DrainRunner::run_action(const core::DrainAction& a) {
  switch (a.type) {
    case T::set_not_ready:
      // /readyz answers 503 from here on (the lifecycle says draining or stopping).
      break;
    case T::flush_debouncers: {
      const auto n = target_.flush_debouncers();
      if (n > 0) spdlog::info("drain: flushed {} debounce buffer(s) to their sessions", n);
      break;
    }
    case T::mark_draining:
      if (const auto queued = target_.waiting_count(); queued > 0) {
        // Journaled, with their merges: the next generation runs them, nobody waits for them.
        spdlog::info("drain: {} queued message(s) go to the next generation", queued);
      }
      target_.set_draining();
      notify(a.notice, target_.active_chats());
      break;
    case T::await_turns:
      in_await_ = true;
      target_.when_turns_idle(event(core::DrainEventType::turns_idle));
      in_await_ = false;
      break;
    case T::log_blockers: {
      const std::string text = core::format_blockers(a);
      spdlog::warn("drain waits for {} ms on: {}", a.waited.count(), text);
      target_.drain_slow(a.waited, text);
      break;
    }
    case T::abort_turns:
      spdlog::warn("drain budget spent after {} ms: aborting {}", a.waited.count(),
                   core::format_blockers(a));
      interrupted_ = true;
      lifecycle_.turns_done();
      if (lifecycle_.stop_pending()) {
        aborted_ = target_.interrupt_all("gateway stopping");
      } else {
        auto chats = target_.abort_for_drain("restart budget spent");
        aborted_ = chats.size();
        notify(core::DrainNotice::interrupted, chats);
      }
      break;
    case T::await_deliveries: {
      lifecycle_.turns_done();
      // The turn that asked for the restart ends here, answered with what it said so far.
      if (auto n = target_.finish_detached()) {
        spdlog::info("drain: closed {} turn(s) that asked for the restart", n);
      }
      in_await_ = true;
      target_.when_deliveries_idle(event(core::DrainEventType::deliveries_idle));
      in_await_ = false;
      break;
    }
    case T::stop_channels:
      if (last_work_done_at_) {
        after_last_reply_ms_ = ms_between(*last_work_done_at_, clock_.now());
        spdlog::info("drain: teardown begins {:.3f} ms after the last reply",
                     *after_last_reply_ms_);
      }
      target_.stop_channels(
          !lifecycle_.stop_pending() &&
              (lifecycle_.restart_path() == core::RestartPath::in_process ||
               lifecycle_.restart_path() == core::RestartPath::reexec),
          event(core::DrainEventType::channels_stopped));
      break;
    case T::close_server:
      lifecycle_.closing();
      target_.close_server(lifecycle_.stop_pending(),
                           lifecycle_.restart_path() != core::RestartPath::in_process,
                           event(core::DrainEventType::server_closed));
      break;
    case T::write_clean_marker: target_.write_clean_marker(); break;
    case T::finished: {
      const auto report = plan_->report();
      interrupted_ = report.interrupted;
      plan_.reset();
      ++id_;
      if (timer_) {
        executor_.cancel(*timer_);
        timer_.reset();
      }
      target_.drain_changed();
      target_.flush_writes();
      spdlog::info("drain finished in {:.1f} ms{}", ms_between(started_, clock_.now()),
                   report.interrupted ? " (turns were aborted: no clean-shutdown marker)" : "");
      target_.drain_done(lifecycle_.drain_finished());
      break;
    }
  }
}

// One notice per chat and drain, best effort: a chat whose turn asked for the restart knows.
void DrainRunner::notify(core::DrainNotice kind, const std::vector<pipeline::ActiveChat>& chats) {
  for (const auto& chat : chats) {
    if (chat.detached) continue;
    if (!noticed_.insert({chat.channel, chat.chat_id, static_cast<int>(kind)}).second) continue;
    target_.send_notice(chat, kind);
  }
}

json DrainRunner::status() const {
  if (!plan_) return nullptr;
  auto list = target_.blockers();
  json waiting = json::array();
  const std::size_t shown = std::min<std::size_t>(list.size(), 8);
  for (std::size_t i = 0; i < shown; ++i) {
    waiting.push_back({{"taskId", list[i].task_id},
                       {"runId", list[i].run_id},
                       {"sessionKey", list[i].session},
                       {"status", list[i].status},
                       {"label", list[i].label},
                       {"elapsedMs", list[i].elapsed_ms}});
  }
  return {{"kind", lifecycle_.stop_pending() ? "stop" : "restart"},
          {"reason", reason_},
          {"phase", core::to_string(plan_->phase())},
          {"startedAtMs", started_wall_},
          {"waitingOn", waiting},
          {"more", list.size() - shown},
          {"pendingDeliveries", target_.pending_deliveries()},
          {"queued", target_.waiting_count()}};
}

}  // namespace drawbridge::runtime
