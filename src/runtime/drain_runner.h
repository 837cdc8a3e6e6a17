#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/clock.h"
#include "core/drain_plan.h"
#include "core/executor.h"
#include "core/lifecycle.h"
#include "pipeline/pipeline.h"

namespace drawbridge::runtime {

// What a drain acts on. The root implements it over the pipeline, the channels, the server
// and the store; tests implement it with a fake (tests/unit/runtime/drain_runner_test.cpp).
class DrainTarget {
 public:
  virtual ~DrainTarget() = default;
  // Hands every inbound debounce buffer to its session; how many there were.
  virtual std::size_t flush_debouncers() = 0;
  virtual std::size_t waiting_count() = 0;
  // New inbound goes to the inbox only.
  virtual void set_draining() = 0;
  virtual std::vector<pipeline::ActiveChat> active_chats() = 0;
  // `fn` once no turn runs (at once when none does).
  virtual void when_turns_idle(std::function<void()> fn) = 0;
  // What the drain waits on now, oldest first (exempt work left out).
  virtual std::vector<core::DrainBlocker> blockers() = 0;
  // A stop's budget is spent: interrupt every turn (they re-run at the next start).
  virtual std::size_t interrupt_all(const std::string& why) = 0;
  // A restart's budget is spent: abort every turn; the chats to tell.
  virtual std::vector<pipeline::ActiveChat> abort_for_drain(const std::string& why) = 0;
  // Ends the turns that asked for the restart; how many.
  virtual std::size_t finish_detached() = 0;
  virtual std::size_t pending_deliveries() = 0;
  // `fn` once every reply is delivered (at once when none waits).
  virtual void when_deliveries_idle(std::function<void()> fn) = 0;
  // Stops the channels; with `keep_connections` (an in-process restart or a re-exec) a channel
  // that carries over keeps running for the next generation, or the next process, to take over.
  virtual void stop_channels(bool keep_connections, std::function<void()> done) = 0;
  // Closes the server: `stopping` (clients told of a shutdown) or for a restart (clients told
  // to come back; a fresh process serves when `next_process`).
  virtual void close_server(bool stopping, bool next_process, std::function<void()> done) = 0;
  // Flushes the pending writes and writes the clean-shutdown marker.
  virtual void write_clean_marker() = 0;
  virtual void flush_writes() = 0;
  // One notice to one chat (the config decides the text, or that there is none).
  virtual void send_notice(const pipeline::ActiveChat& chat, core::DrainNotice kind) = 0;
  // The drain has waited `waited` on `blockers_text`: tell the supervisor it is alive.
  virtual void drain_slow(core::Duration waited, const std::string& blockers_text) = 0;
  // After every step: the drain's status changed (the watchdog's snapshot).
  virtual void drain_changed() = 0;
  // The drain is done: what the lifecycle says comes next.
  virtual void drain_done(core::AfterDrain next) = 0;
};

struct DrainStart {
  core::DrainKind kind = core::DrainKind::restart;
  core::RestartPath path = core::RestartPath::in_process;
  std::string reason;
  std::optional<core::Duration> turn_budget;
  // The force-exit watchdog's deadline, for the lifecycle (the root arms the watchdog).
  std::optional<core::TimePoint> watchdog_at;
};

// Runs one drain at a time: feeds the DrainPlan the events of its target, runs the actions
// it answers, keeps its timer on the injected executor, and tells the lifecycle where the
// drain is. Upward calls go through DrainTarget.
class DrainRunner {
 public:
  DrainRunner(core::Clock& clock, core::Executor& executor, core::Lifecycle& lifecycle,
              DrainTarget& target);
  ~DrainRunner();

  void begin(const DrainStart& start);
  // A more urgent request: the wait on followups and turns ends by `turns_end`.
  void cut(core::TimePoint turns_end);
  bool active() const { return plan_ != nullptr; }
  void set_reason(std::string reason) { reason_ = std::move(reason); }
  core::DrainPhase phase() const;

  // For status and the diagnostic bundle: the drain under way, or null.
  nlohmann::json status() const;
  // The last (or current) drain: when it began, whether it aborted turns, how long after the
  // last reply its teardown began.
  core::TimePoint started() const { return started_; }
  bool interrupted() const { return interrupted_; }
  std::optional<double> after_last_reply_ms() const { return after_last_reply_ms_; }
  std::size_t aborted_turns() const { return aborted_; }

 private:
  void feed(core::DrainEvent event);
  void run_step(const core::DrainStep& step);
  void run_action(const core::DrainAction& a);
  std::function<void()> event(core::DrainEventType type);
  void notify(core::DrainNotice kind, const std::vector<pipeline::ActiveChat>& chats);

  core::Clock& clock_;
  core::Executor& executor_;
  core::Lifecycle& lifecycle_;
  DrainTarget& target_;
  std::unique_ptr<core::DrainPlan> plan_;
  std::uint64_t id_ = 0;  // callbacks of an ended drain carry an old id and are dropped
  std::optional<core::TimerId> timer_;
  core::DrainKind kind_ = core::DrainKind::restart;
  std::string reason_;
  core::TimePoint started_{};
  std::int64_t started_wall_ = 0;
  bool in_await_ = false;  // an idle callback that runs at once is not "the last reply"
  bool interrupted_ = false;
  std::size_t aborted_ = 0;
  std::optional<core::TimePoint> last_work_done_at_;
  std::optional<double> after_last_reply_ms_;
  std::set<std::tuple<std::string, std::string, int>> noticed_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace drawbridge::runtime
