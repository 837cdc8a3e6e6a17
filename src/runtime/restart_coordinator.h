#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "core/clock.h"
#include "core/executor.h"
#include "core/lifecycle.h"
#include "core/restart_scheduler.h"
#include "runtime/drain_runner.h"
#include "runtime/supervisor.h"
#include "server/control.h"

namespace drawbridge::runtime {

// Restart and stop requests, from every source (RPC, signals, /restart in a chat, a config
// write, an update), to the drain: schedules them (the RestartScheduler's delay, coalescing
// and cooldown, its timer on the injected executor), decides a stop's and a restart's budgets,
// begins the drain, lets a stop take a restart's drain over and a more urgent request shorten
// it, and keeps the record of the last restart for status. Everything outside the drain (the
// watchdog, systemd, the server, the next generation) is the root's, reached through Hooks.
class RestartCoordinator {
 public:
  struct Hooks {
    // The turn `run` asked for the restart: the drain must not wait for it. True when found.
    std::function<bool(const std::string& run)> detach_run;
    // The force-exit watchdog, armed at an absolute time.
    std::function<void(core::TimePoint at)> arm_watchdog;
    // How the restart runs: the configured mode, the request and the supervisor decide.
    std::function<RestartMode(bool fresh_process)> restart_mode;
    // systemd's STOPPING=1 / RELOADING=1 with a status line.
    std::function<void(const std::string& status)> notify_stopping;
    std::function<void(const std::string& status)> notify_reloading;
    // For the drain's first log line: "N turn(s) running, ...".
    std::function<std::string()> describe_work;
    // A stop while the last start had failed: close the server, then end the process.
    std::function<void()> close_and_exit;
    // End the process now (the drain is done, or nothing runs).
    std::function<void()> finish_process;
    // Retry a failed start at once.
    std::function<void()> start_next_generation;
  };

  RestartCoordinator(core::Clock& clock, core::Executor& executor, core::Lifecycle& lifecycle,
                     DrainRunner& drain, core::RestartSchedulerOptions options, Hooks hooks);
  ~RestartCoordinator();

  // Every restart request ends here; `requested_by_run` is the turn asking (not waited for).
  server::RestartAnswer request(const core::RestartRequest& req,
                                const std::string& requested_by_run = {});
  server::RestartAnswer request(const server::RestartIntent& intent);
  // `/restart` in a chat.
  void on_chat_command(const pipeline::ChatCommand& cmd);
  // SIGUSR1 (in place) or SIGUSR2 (`fresh_process`); refused when `allowed` is false
  // (commands.restart).
  void on_signal(const std::string& name, bool fresh_process, bool allowed);
  // gateway.update: a re-exec on `binary`, checked to be an executable file.
  server::RestartAnswer request_update(const std::string& binary, const std::string& reason);
  // gateway.stop: answered first, the stop runs on the executor (the connection asking is
  // closed by the drain).
  server::StopAnswer request_stop(const std::string& reason);
  // SIGTERM, SIGINT, a stop request: drain and exit, or take over the restart under way.
  void stop(const std::string& why);

  // A config restart is scheduled and a hot reload made it unnecessary (true when cancelled).
  bool cancel_config_restart();
  void set_options(core::RestartSchedulerOptions options) { scheduler_.set_options(options); }
  // The next generation started (or failed to): the scheduler may take the next request.
  void generation_finished() { scheduler_.on_restart_finished(); }
  // A restart's next generation is up: the record status shows as lastRestart.
  void record_restart(std::uint64_t generation, core::TimePoint started, core::TimePoint now);
  // The drain finished: whether it had to abort turns.
  void drain_finished() { last_drain_interrupted_ = drain_.interrupted(); }
  // Timers off (the process ends).
  void cancel_timer();

  const core::RestartScheduler& scheduler() const { return scheduler_; }
  RestartMode mode() const { return mode_; }
  // An update's binary; empty: the running one.
  const std::string& binary() const { return binary_; }
  bool is_update() const { return is_update_; }
  const std::string& reason() const { return reason_; }
  core::TimePoint drain_started() const { return drain_started_; }
  core::Duration watchdog_budget() const { return watchdog_budget_; }
  std::uint64_t restarts_total() const { return restarts_total_; }
  const nlohmann::json& last_restart() const { return last_restart_; }

  // A stop's budgets: the force-exit watchdog (25 s, less under a supervisor's stop timeout,
  // DRAWBRIDGE_STOP_TIMEOUT_MS) and 4/5 of it for turns, the rest for delivery and teardown.
  static core::StopBudget stop_budget();

 private:
  void arm_timer();
  void begin_drain(core::DrainKind kind, const core::RestartAction& action);
  void arm_watchdog(core::TimePoint at);

  core::Clock& clock_;
  core::Executor& executor_;
  core::Lifecycle& lifecycle_;
  DrainRunner& drain_;
  Hooks hooks_;
  core::RestartScheduler scheduler_;
  std::optional<core::TimerId> timer_;

  // The drain under way, or the last one.
  core::TimePoint drain_started_{};
  std::string reason_;
  std::string source_;
  RestartMode mode_ = RestartMode::in_process;
  std::string binary_;
  bool is_update_ = false;
  bool last_drain_interrupted_ = false;
  core::Duration watchdog_budget_{0};
  std::uint64_t restarts_total_ = 0;
  nlohmann::json last_restart_ = nullptr;
};

}  // namespace drawbridge::runtime
