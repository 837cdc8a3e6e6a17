#include "runtime/startup.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string_view>

#include <spdlog/spdlog.h>

#include "config/config_text.h"
#include "config/document.h"
#include "config/secrets.h"
#include "core/followup_queue.h"
#include "agents/child_process.h"
#include "runtime/fatal_signals.h"
#include "runtime/file_modes.h"
#include "runtime/token_check.h"
#include "server/random_id.h"

namespace drawbridge::runtime {

namespace fs = std::filesystem;

std::variant<StartConfig, int> load_start_config(const RunOptions& options,
                                                 RedactingSink& redactor) {
  auto loaded = config::load_config_file(options.config_path);
  // Known before anything about the file is logged: an error about it must not show a secret.
  std::vector<std::string> file_secrets = config::secret_values_in_text(loaded.raw_text);
  if (loaded.parsed.config) {
    auto more = config::secret_values(*loaded.parsed.config);
    file_secrets.insert(file_secrets.end(), more.begin(), more.end());
  }
  redactor.set_secrets(file_secrets);
  StartConfig out;
  StartedFrom& from = out.from;
  from.file_secrets = file_secrets;
  if (!loaded.io_error.empty() || !loaded.parsed.config) {
    std::vector<config::ConfigError> errors = loaded.parsed.errors;
    if (!loaded.io_error.empty()) errors.push_back({"", "", loaded.io_error});
    const std::string where = loaded.path.empty() ? "(defaults)" : loaded.path;
    std::string listed;
    for (const auto& e : errors) listed += (listed.empty() ? "" : "; ") + e.to_string();
    std::optional<config::LoadResult> good;
    if (!options.config_path.empty()) {
      auto lkg = config::load_config_file(config::last_good_path(loaded.path));
      if (lkg.io_error.empty() && lkg.parsed.config) {
        // Relative paths resolve as they would in the real file (same folder).
        good = config::load_config_text(loaded.path, lkg.raw_text);
        if (good->parsed.config) {
          auto more = config::secret_values(*good->parsed.config);
          from.file_secrets.insert(from.file_secrets.end(), more.begin(), more.end());
          redactor.set_secrets(from.file_secrets);
        }
      }
    }
    if (!good || !good->parsed.config) {
      spdlog::critical("invalid config {}:", where);
      for (const auto& e : errors) spdlog::critical("  {}", e.to_string());
      if (!options.config_path.empty()) {
        spdlog::critical("no last-known-good copy to fall back to ({}); exiting with code {}",
                         config::last_good_path(loaded.path), exit_code::config_invalid);
      }
      return exit_code::config_invalid;
    }
    spdlog::error("DEGRADED: config {} is invalid ({}); starting on the last-known-good copy {}. "
                  "Fix the file: a valid edit is applied as it is saved.",
                  where, listed, config::last_good_path(loaded.path));
    from.degraded_reason = "config " + where + " is invalid (" + listed +
                           "); running on the last-known-good copy";
    for (const auto& e : errors) {
      from.file_errors.push_back({{"path", e.path}, {"pointer", e.pointer}, {"message", e.message}});
    }
    if (loaded.io_error.empty()) from.file_hash = config::content_hash(loaded.raw_text);
    good->path = loaded.path;
    loaded = std::move(*good);
  }
  from.text = loaded.raw_text;
  out.cfg = *loaded.parsed.config;
  apply_overrides(out.cfg, options);
  out.path = loaded.path;
  return out;

}

// Creates the data folder (0700) and proves it is writable; returns an error message otherwise.
std::optional<std::string> prepare_data_dir(const std::string& dir) {
  if (auto err = make_private_dir(dir)) return "store.dataDir: " + *err;
  const std::string probe = (fs::path(dir) / ".write-test").string();
  int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return "store.dataDir: cannot write to " + dir + ": " + std::strerror(errno);
  ::close(fd);
  ::unlink(probe.c_str());
  return std::nullopt;
}

// The configured token, else the one kept in the data folder, else a new one written there.
std::string resolve_token(const config::Config& cfg, const std::string& data_dir,
                          bool& generated) {
  generated = false;
  if (!cfg.gateway.auth_token.empty()) return cfg.gateway.auth_token;
  const std::string path = token_file_path(data_dir);
  std::ifstream in(path);
  std::string token;
  if (in && std::getline(in, token) && !token.empty()) return token;
  token = server::random_hex(24);
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd >= 0) {
    std::string line = token + "\n";
    [[maybe_unused]] auto n = ::write(fd, line.data(), line.size());
    ::fsync(fd);
    ::close(fd);
  }
  generated = true;
  return token;
}

// A generated token is shown once, on the terminal only: the log (a file, the journal, a
// diagnostic bundle) never holds it. Clients on this machine read it from the file.
void announce_generated_token(const std::string& token, const std::string& path) {
  spdlog::info("generated an auth token, saved in {} (mode 0600); clients on this machine read "
               "it there",
               path);
  if (::isatty(STDERR_FILENO) != 1) return;
  spdlog::default_logger()->flush();
  const std::string text = "\n  auth token: " + token +
                           "\n  (shown once, on this terminal only; kept in " + path + ")\n\n";
  std::string_view left(text);
  while (!left.empty()) {
    const ssize_t n = ::write(STDERR_FILENO, left.data(), left.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    left.remove_prefix(static_cast<std::size_t>(n));
  }
}

// The token clients must present is weak: one warning line, never the token.
void warn_if_weak(const std::string& token, bool generated) {
  if (generated) return;
  if (auto w = weak_token_warning(token)) spdlog::warn("{}", *w);
}

// Applies the command line's overrides to a config read from the file.
void apply_overrides(config::Config& cfg, const RunOptions& options) {
  if (options.port) cfg.gateway.port = *options.port;
  if (options.bind) cfg.gateway.bind = *options.bind;
  if (options.data_dir) cfg.store.data_dir = fs::absolute(*options.data_dir).string();
}

pipeline::PipelineSettings pipeline_settings(const config::Config& cfg) {
  pipeline::PipelineSettings s;
  s.inbound_debounce = core::Duration{cfg.messages.inbound_debounce_ms};
  s.queue_mode = core::parse_followup_mode(cfg.messages.queue.mode)
                     .value_or(core::FollowupMode::followup);
  s.queue.cap = static_cast<std::size_t>(std::max(cfg.messages.queue.cap, 1));
  s.queue.drop = core::parse_drop_policy(cfg.messages.queue.drop)
                     .value_or(core::DropPolicy::summarize);
  s.restart_command = cfg.commands.restart;
  s.reply_ttl = core::Duration{cfg.messages.reply_ttl_ms};
  return s;
}

std::optional<core::Duration> env_duration_ms(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return std::nullopt;
  char* end = nullptr;
  long long ms = std::strtoll(v, &end, 10);
  if (end == v || ms < 0) {
    spdlog::warn("{}={} is not a number of milliseconds; ignored", name, v);
    return std::nullopt;
  }
  return core::Duration{ms};
}



double ms_since(core::TimePoint t0, core::TimePoint t1) {
  return std::chrono::duration<double, std::milli>(t1 - t0).count();
}


core::RestartSchedulerOptions scheduler_options(const config::Config& cfg) {
  core::RestartSchedulerOptions o;
  o.deferral_timeout = core::Duration{cfg.gateway.reload.deferral_timeout_ms};
  o.default_delay = core::Duration{cfg.gateway.restart.delay_ms};
  o.cooldown = core::Duration{cfg.gateway.restart.cooldown_ms};
  return o;
}

std::variant<Prepared, int> prepare_start(const RunOptions& options) {
  // Before any file is created or any thread started (the umask and the alternate signal stack
  // are set for the whole process, and this thread runs the event loop).
  agents::set_child_umask(restrict_umask());
  install_fatal_signal_handlers();
  Prepared p;
  p.redactor = install_redacting_sink();
  // From the first line on, so that logs.tail shows what the terminal shows.
  p.log_ring = std::make_shared<LogRing>();
  p.redactor->add_sink(p.log_ring);
  auto start = load_start_config(options, *p.redactor);
  if (auto* code = std::get_if<int>(&start)) return *code;
  p.start = std::move(std::get<StartConfig>(start));
  auto& cfg = p.start.cfg;
  spdlog::set_level(spdlog::level::from_str(cfg.logging.level));
  if (auto err = prepare_data_dir(cfg.store.data_dir)) {
    spdlog::critical("{}", *err);
    return exit_code::config_invalid;
  }
  if (auto changed = tighten_private_files(cfg.store.data_dir, p.start.path); !changed.empty()) {
    std::string list;
    for (const auto& c : changed) list += (list.empty() ? "" : ", ") + c;
    spdlog::info("made the gateway's files private (group and others had access): {}", list);
  }
  std::string lock_error;
  p.lock = GatewayLock::acquire(cfg.store.data_dir, cfg.gateway.port, lock_error);
  if (!p.lock) {
    spdlog::critical("{}", lock_error);
    return exit_code::config_invalid;
  }
  bool generated = false;
  p.token = resolve_token(cfg, cfg.store.data_dir, generated);
  p.start.from.file_secrets.push_back(p.token);
  p.redactor->set_secrets(p.start.from.file_secrets);
  if (generated) announce_generated_token(p.token, token_file_path(cfg.store.data_dir));
  warn_if_weak(p.token, generated);
  p.recent = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(200);
  p.recent->set_pattern("%Y-%m-%dT%H:%M:%S.%e %l %v");
  p.redactor->add_sink(p.recent);
  return p;
}

}  // namespace drawbridge::runtime
