#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>
#include <spdlog/sinks/ringbuffer_sink.h>

#include "core/clock.h"
#include "runtime/watchdog.h"

namespace drawbridge::runtime {

// The force-exit watchdog of a drain with what it leaves behind: when a drain outlives its
// budget, the watchdog's thread writes the DiagnosticBundle (the drain's last snapshot, the
// recent log), kills every agent command group and exits with code 1. The event loop feeds it
// snapshots; the thread reads nothing else of the loop.
class DrainWatchdog {
 public:
  DrainWatchdog(std::string data_dir, std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> recent);
  // `budget`: how long the drain was given, for the bundle's reason.
  void arm(core::TimePoint at, core::Duration budget);
  void disarm() { watchdog_.disarm(); }
  // The drain's status as the bundle should show it.
  void snapshot(nlohmann::json drain, std::uint64_t generation);

 private:
  [[noreturn]] void fire();

  std::string data_dir_;
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> recent_;
  std::mutex mutex_;
  nlohmann::json drain_ = nullptr;
  std::uint64_t generation_ = 0;
  core::Duration budget_{0};
  // Last: its thread must stop before anything it reads is destroyed.
  Watchdog watchdog_;
};

}  // namespace drawbridge::runtime
