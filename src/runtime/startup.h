#pragma once

#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>
#include <spdlog/sinks/ringbuffer_sink.h>

#include "config/config.h"
#include "core/clock.h"
#include "core/restart_scheduler.h"
#include "pipeline/pipeline.h"
#include "runtime/gateway.h"
#include "runtime/gateway_lock.h"
#include "runtime/log_redaction.h"
#include "runtime/log_ring.h"

// What a start needs before the gateway exists: the config (or its last-known-good copy),
// the data folder, the token. Free functions, called by run_gateway() and the generation
// that follows a restart.
namespace drawbridge::runtime {

// The config a process starts on: the file's text, or the last-known-good copy's when the
// file is invalid (then `degraded_reason` and `file_errors` say why).
// What clients are told a restart takes (shutdown.restartExpectedMs, retryAfterMs).
inline constexpr std::int64_t kRestartExpectedMs = 1500;

struct StartedFrom {
  std::string text;
  std::string file_hash;  // of the file on disk, when it is not `text`
  std::string degraded_reason;
  nlohmann::json file_errors = nlohmann::json::array();
  // What the log must hide beyond the running config's secrets: those of the file as read
  // (even invalid) and the token.
  std::vector<std::string> file_secrets;
};

struct StartConfig {
  config::Config cfg;
  std::string path;  // of the config file; "" on defaults
  StartedFrom from;
};

// Reads the config named by `options` (falling back to its last-known-good copy when it is
// invalid), with the command line's overrides applied. An exit code when there is nothing to
// start on. Every secret found is handed to `redactor` before anything about the file is
// logged.
std::variant<StartConfig, int> load_start_config(const RunOptions& options,
                                                 RedactingSink& redactor);

// Everything a process does before the gateway exists: the umask, the fatal-signal handlers,
// the redacting log sink, the config, the data folder (made private), the gateway lock and the
// token (announced when generated). An exit code when it cannot start.
struct Prepared {
  StartConfig start;
  std::string token;
  std::unique_ptr<GatewayLock> lock;
  std::shared_ptr<RedactingSink> redactor;
  // The last lines of the log, for the watchdog's diagnostic bundle: behind the redacting sink
  // like the terminal, so a bundle holds no secret either.
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> recent;
  // The last MiB of the log for logs.tail, behind the redacting sink too.
  std::shared_ptr<LogRing> log_ring;
};
std::variant<Prepared, int> prepare_start(const RunOptions& options);

// Creates the data folder (0700) and proves it is writable; returns an error message otherwise.
std::optional<std::string> prepare_data_dir(const std::string& dir);

// The configured token, else the one kept in the data folder, else a new one written there.
std::string resolve_token(const config::Config& cfg, const std::string& data_dir,
                          bool& generated);

// A generated token is shown once, on the terminal only: the log (a file, the journal, a
// diagnostic bundle) never holds it. Clients on this machine read it from the file.
void announce_generated_token(const std::string& token, const std::string& path);

// The token clients must present is weak: one warning line, never the token.
void warn_if_weak(const std::string& token, bool generated);

// Applies the command line's overrides to a config read from the file.
void apply_overrides(config::Config& cfg, const RunOptions& options);

pipeline::PipelineSettings pipeline_settings(const config::Config& cfg);
core::RestartSchedulerOptions scheduler_options(const config::Config& cfg);

// A duration in milliseconds from the environment (DRAWBRIDGE_STOP_TIMEOUT_MS); nullopt when
// unset, empty or not a number (with a warning).
std::optional<core::Duration> env_duration_ms(const char* name);

double ms_since(core::TimePoint t0, core::TimePoint t1);

}  // namespace drawbridge::runtime
