#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>
#include <spdlog/sinks/ringbuffer_sink.h>

namespace drawbridge::runtime {

// What the force-exit watchdog leaves behind when a drain never ends: why, which generation,
// the drain's last snapshot (phase, what it waited on) and the last lines of the (redacted)
// log, in <dataDir>/diagnostics/watchdog-<wall ms>.json (folder 0700, file 0600: it quotes
// the log and the work in flight). Called from the watchdog's thread: it touches nothing of
// the event loop.
struct DiagnosticBundle {
  std::string reason;
  std::uint64_t generation = 0;
  nlohmann::json drain;  // the drain's snapshot, or null
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> recent_log;

  // Writes the bundle; returns its path. `error` is set when it could not be written.
  std::string write(const std::string& data_dir, std::string& error) const;
};

}  // namespace drawbridge::runtime
