#include "runtime/drain_watchdog.h"

#include <csignal>
#include <cstdlib>

#include <spdlog/spdlog.h>

#include "agents/child_process.h"
#include "runtime/diagnostic_bundle.h"
#include "runtime/gateway.h"

namespace drawbridge::runtime {

DrainWatchdog::DrainWatchdog(std::string data_dir,
                             std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> recent)
    : data_dir_(std::move(data_dir)), recent_(std::move(recent)), watchdog_([this] { fire(); }) {}

void DrainWatchdog::arm(core::TimePoint at, core::Duration budget) {
  {
    std::lock_guard lock(mutex_);
    budget_ = budget;
  }
  watchdog_.arm(at);
}

void DrainWatchdog::snapshot(nlohmann::json drain, std::uint64_t generation) {
  std::lock_guard lock(mutex_);
  drain_ = std::move(drain);
  generation_ = generation;
}

// The watchdog's thread: the bundle, then the process ends (agent commands first).
void DrainWatchdog::fire() {
  DiagnosticBundle bundle;
  {
    std::lock_guard lock(mutex_);
    bundle.drain = drain_;
    bundle.generation = generation_;
    bundle.reason =
        "the drain did not finish within " + std::to_string(budget_.count()) + " ms";
  }
  bundle.recent_log = recent_;
  std::string error;
  const std::string path = bundle.write(data_dir_, error);
  if (!error.empty()) spdlog::error("watchdog: cannot write the diagnostic bundle: {}", error);
  spdlog::critical("watchdog: {}; diagnostic bundle written to {}; killing agent commands; "
                   "exiting with code 1",
                   bundle.reason, path);
  spdlog::default_logger()->flush();
  agents::signal_all_groups(SIGKILL);  // a trapped command must not outlive the gateway
  std::_Exit(exit_code::crashed);
}

}  // namespace drawbridge::runtime
