#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <nlohmann/json.hpp>

#include "config/config.h"
#include "core/clock.h"
#include "core/executor.h"
#include "core/lifecycle.h"
#include "core/reload_plan.h"
#include "core/restart_scheduler.h"
#include "runtime/config_watcher.h"
#include "runtime/gateway.h"
#include "runtime/startup.h"
#include "server/control.h"

namespace drawbridge::runtime {

// The config at run time: owns the running config and the state of the file beside it (the
// text applied, its hash, the last valid text seen, why the file is not applied, the secrets
// it holds); answers config.get and config.patch/apply, reads the file when the watcher or
// SIGHUP says it changed, plans each change (none / hot / restart) and applies it, one at a
// time. Hot actions and restarts are the root's: it wires them in through Hooks.
class ConfigReloader {
 public:
  using json = nlohmann::json;
  struct Hooks {
    std::function<core::LifecycleState()> state;
    std::function<server::RestartAnswer(const core::RestartRequest&)> schedule_restart;
    // A config restart is scheduled and a hot reload made it unnecessary: cancel it (true when
    // there was one).
    std::function<bool()> cancel_config_restart;
    // Runs a hot plan against `next` (token, agents, channels); `done` with an error or "".
    std::function<void(const config::Config& next, const core::ReloadPlan& plan,
                       std::function<void(const std::string&)> done)>
        run_hot_actions;
    // The running config changed (settings read per message, log level, restart options).
    std::function<void()> committed;
    // The running config's or the file's secrets changed (the log must hide them).
    std::function<void()> secrets_changed;
    // systemd's reload protocol around SIGHUP.
    std::function<void(const std::string& why)> notify_reloading;
    std::function<void()> notify_ready;
  };

  // `io` reads the watcher's inotify events; its debounce runs on `executor`.
  ConfigReloader(boost::asio::io_context& io, core::Clock& clock, core::Executor& executor,
                 config::Config cfg, RunOptions options, std::string config_path,
                 StartedFrom from, Hooks hooks);

  const config::Config& running() const { return cfg_; }
  const std::string& path() const { return config_path_; }
  const std::string& applied_text() const { return applied_text_; }
  const std::string& applied_hash() const { return applied_hash_; }
  const json& file_errors() const { return file_errors_; }
  const std::string& degraded_reason() const { return degraded_reason_; }
  const std::vector<std::string>& file_secrets() const { return file_secrets_; }

  server::ConfigSnapshot config_get();
  void config_write(const server::ConfigWrite& w,
                    std::function<void(server::ConfigWriteResult)> done);
  void start_watcher();
  // After the first good start: keeps a last-known-good copy when there is none yet.
  void keep_last_good();
  // SIGHUP: read the file now, as the watcher would.
  void reload(const std::string& why);
  // For status and /readyz.
  json config_health() const;

  // The next generation of a restart. The file as it is now; when it is invalid, the last
  // valid text seen (the restart was asked for by a valid change, or by someone who does not
  // know the file broke since). nullopt (and `error`) when there is nothing to start on.
  struct Next {
    config::Config config;
    std::string text;
  };
  std::optional<Next> read_for_generation(std::string& error);
  // `next` runs now (the previous config is handed back, for a start that then fails).
  config::Config swap_running(config::Config next);
  // The generation on `text` started: it is the applied text now.
  void generation_started(const std::string& text);

 private:
  struct FileRead {
    bool exists = false;
    std::string text;
    std::string error;
  };

  // The file's text as a config, with the environment and command line applied, or every
  // error (validation and what this build cannot run).
  struct Candidate {
    std::optional<config::Config> config;
    std::vector<config::ConfigError> errors;
  };

  FileRead read_config_file() const;
  static json errors_json(const std::vector<config::ConfigError>& errors);
  static std::string errors_text(const std::vector<config::ConfigError>& errors);
  Candidate candidate(const std::string& text) const;
  core::ReloadPlan plan_for(const config::Config& next) const;
  static server::ReloadReport plan_report(const core::ReloadPlan& plan);
  static std::string plan_summary(const core::ReloadPlan& plan);
  void on_config_file(const WatchedFile& f, const std::string& source);
  void apply_change(config::Config next, std::string text, core::ReloadPlan plan,
                    std::string source, std::optional<core::Duration> delay,
                    std::function<void(server::ReloadReport)> done);
  void next_reload();
  void run_change(config::Config next, std::string text, core::ReloadPlan plan, std::string source,
                  std::optional<core::Duration> delay, std::function<void(server::ReloadReport)> done);
  void commit_config(config::Config next, const std::string& text);


  boost::asio::io_context& io_;
  core::Clock& clock_;
  core::Executor& executor_;
  config::Config cfg_;  // the running config
  RunOptions options_;  // the command line's overrides
  std::string config_path_;
  Hooks hooks_;
  std::vector<std::string> file_secrets_;  // of the config file as last read, valid or not
  std::unique_ptr<ConfigWatcher> watcher_;
  std::string applied_text_;     // the file text the running config came from
  std::string applied_hash_;
  std::string seen_hash_;        // the last file content looked at (own writes included)
  std::string last_valid_text_;  // the last valid text seen: a restart falls back to it
  json file_errors_ = json::array();  // why the file on disk is not applied
  std::string degraded_reason_;  // started on the last-known-good copy
  bool reload_busy_ = false;
  std::deque<std::function<void()>> reload_queue_;
  json last_reload_ = nullptr;
  std::uint64_t reloads_total_ = 0;
};

}  // namespace drawbridge::runtime
