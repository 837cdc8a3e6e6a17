#include "runtime/config_reloader.h"

#include <chrono>
#include <utility>

#include <spdlog/spdlog.h>

#include "config/config_text.h"
#include "config/diff.h"
#include "config/document.h"
#include "config/edit.h"
#include "config/secrets.h"
#include "runtime/generation.h"

namespace drawbridge::runtime {

using nlohmann::json;

ConfigReloader::ConfigReloader(boost::asio::io_context& io, core::Clock& clock,
                               core::Executor& executor, config::Config cfg, RunOptions options,
                               std::string config_path, StartedFrom from, Hooks hooks)
    : io_(io),
      clock_(clock),
      executor_(executor),
      cfg_(std::move(cfg)),
      options_(std::move(options)),
      config_path_(std::move(config_path)),
      hooks_(std::move(hooks)) {
  if (!config_path_.empty()) {
    applied_text_ = from.text;
    applied_hash_ = config::content_hash(applied_text_);
    last_valid_text_ = applied_text_;
    seen_hash_ = from.file_hash.empty() ? applied_hash_ : from.file_hash;
  }
  degraded_reason_ = std::move(from.degraded_reason);
  file_errors_ = std::move(from.file_errors);
  file_secrets_ = std::move(from.file_secrets);
}

std::optional<ConfigReloader::Next> ConfigReloader::read_for_generation(std::string& error) {
  std::string text;
  Candidate c;
  if (config_path_.empty()) {
    c = candidate({});
  } else {
    auto f = read_config_file();
    text = f.text;
    if (f.error.empty()) {
      file_secrets_ = config::secret_values_in_text(text);
      hooks_.secrets_changed();
    }
    c = f.error.empty() ? candidate(text) : Candidate{std::nullopt, {{"", "", f.error}}};
    if (f.error.empty()) seen_hash_ = config::content_hash(f.text);
    if (!c.config) {
      file_errors_ = errors_json(c.errors);
      std::string why = "config " + config_path_ + " is invalid: " + errors_text(c.errors);
      auto fallback = last_valid_text_.empty() ? Candidate{} : candidate(last_valid_text_);
      if (!fallback.config) {
        error = why;
        return std::nullopt;
      }
      spdlog::error("{}; this generation starts on the last valid config seen instead", why);
      text = last_valid_text_;
      c = std::move(fallback);
    } else {
      file_errors_ = json::array();
    }
  }
  if (!c.config) {
    error = errors_text(c.errors);
    return std::nullopt;
  }
  return Next{std::move(*c.config), std::move(text)};
}

config::Config ConfigReloader::swap_running(config::Config next) {
  std::swap(cfg_, next);
  hooks_.secrets_changed();
  return next;
}

void ConfigReloader::generation_started(const std::string& text) {
  if (!config_path_.empty()) {
    if (!applied_text_.empty() && applied_text_ != text) {
      if (auto saved = config::save_last_good(config_path_, applied_text_); !saved.ok) {
        spdlog::warn("cannot keep the last-known-good config: {}", saved.error);
      }
    }
    applied_text_ = text;
    applied_hash_ = config::content_hash(text);
    last_valid_text_ = text;
    if (file_errors_.empty()) degraded_reason_.clear();
  }
  if (watcher_) watcher_->set_debounce(std::chrono::milliseconds(cfg_.gateway.reload.debounce_ms));
}


// `error` is set when the file is missing (exists false) or cannot be used as a config:
// not a regular file (a FIFO would block the loop), larger than config::kMaxConfigBytes.
ConfigReloader::FileRead ConfigReloader::read_config_file() const {
  FileRead f;
  if (config_path_.empty()) return f;
  auto file = config::read_config_text_file(config_path_);
  f.exists = file.exists;
  if (file.text) {
    f.text = std::move(*file.text);
  } else {
    f.error = std::move(file.error);
  }
  return f;
}

json ConfigReloader::errors_json(const std::vector<config::ConfigError>& errors) {
  json out = json::array();
  for (const auto& e : errors) {
    out.push_back({{"path", e.path}, {"pointer", e.pointer}, {"message", e.message}});
  }
  return out;
}

std::string ConfigReloader::errors_text(const std::vector<config::ConfigError>& errors) {
  std::string out;
  for (const auto& e : errors) out += (out.empty() ? "" : "; ") + e.to_string();
  return out;
}

ConfigReloader::Candidate ConfigReloader::candidate(const std::string& text) const {
  Candidate c;
  auto loaded = config::load_config_text(config_path_, text);
  if (!loaded.parsed.config) {
    c.errors = std::move(loaded.parsed.errors);
    return c;
  }
  config::Config next = *loaded.parsed.config;
  apply_overrides(next, options_);
  c.errors = Generation::unbuildable(next);
  if (c.errors.empty()) c.config = std::move(next);
  return c;
}

core::ReloadPlan ConfigReloader::plan_for(const config::Config& next) const {
  auto changed = config::diff_paths(config::effective_json(cfg_), config::effective_json(next));
  const auto mode = core::parse_reload_mode(next.gateway.reload.mode)
                        .value_or(core::ReloadMode::hybrid);
  return core::plan_reload(changed, mode);
}

server::ReloadReport ConfigReloader::plan_report(const core::ReloadPlan& plan) {
  server::ReloadReport r;
  r.kind = core::to_string(plan.kind);
  r.mode = plan.apply ? "hybrid" : "off";
  for (const auto& d : plan.paths) {
    r.paths.push_back({d.path, core::to_string(d.kind), d.rule,
                       d.action ? std::optional<std::string>(core::to_string(*d.action))
                                : std::nullopt,
                       d.target});
  }
  for (const auto& a : plan.actions) r.actions.push_back({core::to_string(a.action), a.target});
  return r;
}

std::string ConfigReloader::plan_summary(const core::ReloadPlan& plan) {
  std::string out = core::to_string(plan.kind);
  if (plan.kind == core::ReloadKind::hot) {
    for (const auto& a : plan.actions) {
      out += std::string(" ") + core::to_string(a.action) + (a.target.empty() ? "" : " " + a.target);
    }
  }
  std::string paths;
  for (const auto& d : plan.paths) paths += (paths.empty() ? "" : ", ") + d.path;
  return out + " (" + (paths.empty() ? "no effective change" : paths) + ")";
}

server::ConfigSnapshot ConfigReloader::config_get() {
  auto f = read_config_file();
  std::string raw;
  bool redacted = false;
  // What the file says, for a form to edit: no file is an empty document.
  json source = f.exists ? json(nullptr) : json::object();
  if (f.error.empty() && f.exists) {
    std::string perr;
    auto doc = config::parse_json_text(f.text, perr);
    if (!doc) {
      redacted = true;  // not JSON: it could hold a secret in any shape
    } else if (config::has_secrets(*doc)) {
      raw = config::serialize(config::redact(*doc));
      redacted = true;
    } else {
      raw = f.text;
    }
    if (doc) source = config::redact(*doc);
  }
  std::vector<server::ConfigIssue> errors;
  bool valid = true;
  if (!config_path_.empty()) {
    if (!f.error.empty()) {
      valid = false;
      errors.push_back({"", "", f.error});
    } else {
      auto c = candidate(f.text);
      valid = c.errors.empty();
      for (const auto& e : c.errors) errors.push_back({e.path, e.pointer, e.message});
    }
  }
  const auto hash = config::content_hash(f.exists ? f.text : "");
  server::ConfigSnapshot out;
  out.path = config_path_;
  out.exists = f.exists;
  out.raw = raw;
  out.raw_redacted = redacted;
  out.hash = hash;
  out.config = config::redact(config::effective_json(cfg_));
  out.source_config = std::move(source);
  out.valid = valid;
  out.errors = std::move(errors);
  out.applied_hash = applied_hash_;
  out.pending = !config_path_.empty() && hash != applied_hash_;
  out.degraded = !degraded_reason_.empty();
  out.reload_mode = cfg_.gateway.reload.mode;
  return out;
}

void ConfigReloader::config_write(const server::ConfigWrite& w,
                  std::function<void(server::ConfigWriteResult)> done) {
  using server::ConfigWriteError;
  auto refuse = [&](std::string code, std::string message, json errors = json::array(),
                    json extra = json::object()) {
    ConfigWriteError e;
    e.code = std::move(code);
    e.message = std::move(message);
    e.errors = std::move(errors);
    e.extra = std::move(extra);
    done(e);
  };
  if (hooks_.state() != core::LifecycleState::running && hooks_.state() != core::LifecycleState::failed) {
    ConfigWriteError e;
    e.code = "GATEWAY_BUSY";
    e.message = std::string("the gateway is ") + core::to_string(hooks_.state()) + "; try again shortly";
    e.retryable = true;
    e.retry_after_ms = kRestartExpectedMs;
    return done(e);
  }
  if (config_path_.empty()) {
    return refuse("NO_CONFIG_FILE",
                  "the gateway runs on defaults without a config file; start it with --config "
                  "FILE (an empty file is a valid config) to change its config at run time");
  }
  const auto f = read_config_file();
  const auto current_hash = config::content_hash(f.exists ? f.text : "");
  if (w.base_hash && *w.base_hash != current_hash) {
    return refuse("CONFIG_CONFLICT",
                  "baseHash does not match the config on disk (it changed since it was read); "
                  "read it again with config.get",
                  json::array(), {{"currentHash", current_hash}});
  }
  if (!w.base_hash && f.exists) {
    return refuse("BASE_HASH_REQUIRED",
                  "baseHash is required once the config file exists; take it from config.get",
                  json::array(), {{"currentHash", current_hash}});
  }
  auto invalid = [&](const std::vector<config::ConfigError>& errors, const std::string& what) {
    refuse("CONFIG_INVALID",
           what + ": " + std::to_string(errors.size()) + " problem(s): " + errors_text(errors) +
               "; nothing was written",
           errors_json(errors));
  };
  if (f.exists && !f.error.empty() && !w.whole) {
    return invalid({{"", "", f.error + "; replace it whole with config.apply"}}, "config.patch");
  }
  std::string perr;
  json current = json::object();
  if (f.exists && !f.text.empty()) {
    auto doc = config::parse_json_text(f.text, perr);
    if (!doc) {
      if (!w.whole) {
        return invalid({{"", "", "the file on disk cannot be parsed (" + perr +
                                     "); replace it whole with config.apply"}},
                       "config.patch");
      }
    } else {
      current = std::move(*doc);
    }
  }
  auto given = config::parse_json_text(w.raw, perr);
  if (!given) return invalid({{"", "", "params.raw: " + perr}}, "the change");
  // Stamped with meta.lastTouched* as OpenClaw writes it; the gateway's own write never
  // reloads anything.
  const auto edit = config::plan_edit({std::move(current), f.exists, std::move(*given), w.whole,
                                       config::iso_timestamp(std::chrono::system_clock::time_point(
                                           std::chrono::milliseconds(clock_.wall_ms()))),
                                       DRAWBRIDGE_VERSION});
  if (!edit.errors.empty()) return invalid(edit.errors, "the change");
  if (!edit.dropped_placeholders.empty()) {
    std::string list;
    for (const auto& p : edit.dropped_placeholders) list += (list.empty() ? "" : ", ") + p;
    spdlog::warn("config write: left out {} (a redacted placeholder, and the file holds no "
                 "secret there to restore; the secret stays as it was)",
                 list);
  }
  if (edit.unchanged) {
    server::ConfigWriteDone out;
    out.path = config_path_;
    out.hash = current_hash;
    out.dropped_placeholders = edit.dropped_placeholders;
    out.plan = plan_report(core::plan_reload({}, core::ReloadMode::hybrid));
    out.plan.applied = true;
    return done(out);
  }
  const std::string& text = edit.text;
  auto c = candidate(text);
  if (!c.config) return invalid(c.errors, "the resulting config");
  const auto plan = plan_for(*c.config);
  if (!applied_text_.empty()) {
    if (auto saved = config::save_last_good(config_path_, applied_text_); !saved.ok) {
      spdlog::warn("cannot keep the last-known-good config: {}", saved.error);
    }
  }
  if (auto written = config::write_atomic(config_path_, text); !written.ok) {
    return refuse("WRITE_FAILED", written.error + "; the running config is unchanged");
  }
  const auto hash = config::content_hash(text);
  seen_hash_ = hash;  // the watcher will see this write: it is applied here, not there
  file_secrets_ = config::secret_values_in_text(text);
  hooks_.secrets_changed();
  last_valid_text_ = text;
  file_errors_ = json::array();
  spdlog::info("{} wrote {}{}: {}", w.whole ? "config.apply" : "config.patch", config_path_,
               w.note.empty() ? "" : " (" + w.note + ")", plan_summary(plan));
  server::ConfigWriteDone base;
  base.path = config_path_;
  base.hash = hash;
  base.written = true;
  base.dropped_placeholders = edit.dropped_placeholders;
  for (const auto& d : plan.paths) base.changed_paths.push_back(d.path);
  std::optional<core::Duration> delay;
  if (w.restart_delay_ms) delay = core::Duration{*w.restart_delay_ms};
  apply_change(*c.config, text, plan, "rpc", delay,
               [done, base](server::ReloadReport report) mutable {
                 base.plan = std::move(report);
                 done(base);
               });
}

// The watcher (or SIGHUP) read the file.
void ConfigReloader::on_config_file(const WatchedFile& f, const std::string& source) {
  if (f.exists) {
    file_secrets_ = config::secret_values_in_text(f.text);
    hooks_.secrets_changed();
  }
  if (!f.exists || !f.error.empty()) {
    // The reader's own words: "missing", "parse error at line 3, ...", "cannot read ...".
    const std::string why = f.exists ? f.error : "missing";
    file_errors_ = json::array({{{"path", ""}, {"pointer", ""}, {"message", why}}});
    spdlog::error("config {}: {}; the running config stays", config_path_, why);
    return;
  }
  const auto hash = config::content_hash(f.text);
  if (hash == seen_hash_) {
    spdlog::debug("config {}: no change since the last read ({})", config_path_, source);
    return;
  }
  seen_hash_ = hash;
  if (hooks_.state() != core::LifecycleState::running && hooks_.state() != core::LifecycleState::failed) {
    // The next generation reads the file itself.
    spdlog::info("config {} changed while {}: the next generation reads it", config_path_,
                 core::to_string(hooks_.state()));
    return;
  }
  auto c = candidate(f.text);
  if (!c.config) {
    file_errors_ = errors_json(c.errors);
    spdlog::error("config {} changed but is invalid ({} problem(s)); it stays on disk and is "
                  "not applied; the running config stays:",
                  config_path_, c.errors.size());
    for (const auto& e : c.errors) spdlog::error("  {}", e.to_string());
    return;
  }
  file_errors_ = json::array();
  last_valid_text_ = f.text;
  if (hooks_.state() == core::LifecycleState::failed) {
    spdlog::info("config {} changed and is valid: retrying the failed start", config_path_);
    core::RestartRequest req;
    req.reason = "config change (" + source + ") after a failed start";
    req.source = core::RestartSource::config;
    hooks_.schedule_restart(req);
    return;
  }
  const auto plan = plan_for(*c.config);
  spdlog::info("config {} changed ({}): {}", config_path_, source, plan_summary(plan));
  apply_change(*c.config, f.text, plan, source, std::nullopt, [](server::ReloadReport) {});
}

// Serializes reloads: a hot reload that restarts a channel finishes before the next starts.
void ConfigReloader::apply_change(config::Config next, std::string text, core::ReloadPlan plan,
                  std::string source, std::optional<core::Duration> delay,
                  std::function<void(server::ReloadReport)> done) {
  auto job = [this, next = std::move(next), text = std::move(text), plan = std::move(plan),
              source = std::move(source), delay, done = std::move(done)]() mutable {
    run_change(std::move(next), std::move(text), std::move(plan), std::move(source), delay,
               std::move(done));
  };
  reload_queue_.push_back(std::move(job));
  if (!reload_busy_) next_reload();
}

void ConfigReloader::next_reload() {
  if (reload_queue_.empty()) {
    reload_busy_ = false;
    return;
  }
  reload_busy_ = true;
  auto job = std::move(reload_queue_.front());
  reload_queue_.pop_front();
  job();
}

void ConfigReloader::run_change(config::Config next, std::string text, core::ReloadPlan plan, std::string source,
                std::optional<core::Duration> delay, std::function<void(server::ReloadReport)> done) {
  const auto t0 = clock_.now();
  server::ReloadReport out = plan_report(plan);
  auto record = [this, t0, source](const core::ReloadPlan& p, bool ok, const std::string& error) {
    ++reloads_total_;
    last_reload_ = {{"source", source},
                    {"kind", core::to_string(p.kind)},
                    {"applied", p.apply},
                    {"ok", ok},
                    {"durationMs", ms_since(t0, clock_.now())},
                    {"atMs", clock_.wall_ms()},
                    {"appliedAtUnixUs",
                     std::chrono::duration_cast<std::chrono::microseconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count()}};
    if (!error.empty()) last_reload_["error"] = error;
    json paths = json::array();
    for (const auto& d : p.paths) paths.push_back(d.path);
    last_reload_["paths"] = paths;
  };
  if (hooks_.state() != core::LifecycleState::running) {
    // A drain began while this waited: the next generation reads the file.
    out.note = "the gateway is restarting; the next generation reads the new config";
    done(out);
    return next_reload();
  }
  if (!plan.apply) {
    spdlog::warn("gateway.reload.mode is off: not applied until the next restart: {}",
                 plan_summary(plan));
    out.note = "gateway.reload.mode is off: applies at the next restart";
    record(plan, true, {});
    done(out);
    return next_reload();
  }
  if (plan.kind == core::ReloadKind::restart) {
    core::RestartRequest req;
    std::string paths;
    for (const auto& d : plan.paths) {
      if (d.kind == core::ReloadKind::restart) paths += (paths.empty() ? "" : ", ") + d.path;
    }
    req.reason = "config change (" + source + "): " + paths;
    req.source = core::RestartSource::config;
    req.delay = delay;
    out.restart = hooks_.schedule_restart(req);
    out.applied = true;
    record(plan, true, {});
    done(out);
    return next_reload();
  }
  hooks_.run_hot_actions(next, plan, [this, next, text, plan, out, done, record,
                               source](const std::string& error) mutable {
    if (!error.empty()) {
      spdlog::error("hot reload failed: {}; restarting instead", error);
      core::RestartRequest req;
      req.reason = "config change (" + source + "): hot reload failed: " + error;
      req.source = core::RestartSource::config;
      out.restart = hooks_.schedule_restart(req);
      out.error = error;
      record(plan, false, error);
      done(out);
      return next_reload();
    }
    commit_config(std::move(next), text);
    if (hooks_.cancel_config_restart()) {
      spdlog::info("the scheduled config restart is no longer needed: cancelled");
      out.cancelled_restart = true;
    }
    out.applied = true;
    record(plan, true, {});
    spdlog::info("config applied: {}", plan_summary(plan));
    done(out);
    next_reload();
  });
}

// The new config becomes the running one: settings read per message, log level, restart
// options, watcher debounce; the text that ran before is kept as last-known-good.
void ConfigReloader::commit_config(config::Config next, const std::string& text) {
  next.store = cfg_.store;  // restart-class: only a restart changes it
  if (!applied_text_.empty() && applied_text_ != text && !config_path_.empty()) {
    if (auto saved = config::save_last_good(config_path_, applied_text_); !saved.ok) {
      spdlog::warn("cannot keep the last-known-good config: {}", saved.error);
    }
  }
  cfg_ = std::move(next);
  hooks_.secrets_changed();
  hooks_.committed();
  if (watcher_) watcher_->set_debounce(std::chrono::milliseconds(cfg_.gateway.reload.debounce_ms));
  applied_text_ = text;
  applied_hash_ = config::content_hash(text);
  seen_hash_ = applied_hash_;
  last_valid_text_ = text;
  if (!degraded_reason_.empty()) {
    spdlog::info("a valid config is applied: no longer degraded");
    degraded_reason_.clear();
  }
}

void ConfigReloader::keep_last_good() {
  if (config_path_.empty() || !degraded_reason_.empty() ||
      std::filesystem::exists(config::last_good_path(config_path_))) {
    return;
  }
  if (auto saved = config::save_last_good(config_path_, applied_text_); !saved.ok) {
    spdlog::warn("cannot keep the last-known-good config: {}", saved.error);
  }
}

void ConfigReloader::start_watcher() {
  if (config_path_.empty()) return;
  watcher_ = std::make_unique<ConfigWatcher>(
      io_, executor_, config_path_, [this](const WatchedFile& f) { on_config_file(f, "file watcher"); });
  ConfigWatcher::Options o;
  o.debounce = std::chrono::milliseconds(cfg_.gateway.reload.debounce_ms);
  if (auto err = watcher_->start(o)) {
    spdlog::warn("cannot watch {} for changes ({}); send SIGHUP after editing it", config_path_,
                 *err);
    watcher_.reset();
  }
}

// SIGHUP: read the file now, as the watcher would.
void ConfigReloader::reload(const std::string& why) {
  if (config_path_.empty()) {
    spdlog::info("{}: no config file (running on defaults); nothing to reload", why);
    return;
  }
  // systemd's reload protocol: RELOADING=1 with the monotonic time, READY=1 once done.
  const bool notify = hooks_.state() == core::LifecycleState::running;
  if (notify) hooks_.notify_reloading("reloading config (" + why + ")");
  auto f = read_config_file();
  WatchedFile w;
  w.exists = f.exists;
  w.text = f.text;
  w.error = f.error;
  // As the watcher does: what is not JSON is reported here, what crosses a limit is
  // reported with its path by the validation.
  if (f.error.empty()) {
    if (auto unfinished = config::unfinished_json(f.text)) w.error = *unfinished;
  }
  if (f.error.empty() && config::content_hash(f.text) == seen_hash_) {
    spdlog::info("{}: the config has not changed", why);
  } else {
    on_config_file(w, why);
  }
  if (notify && hooks_.state() == core::LifecycleState::running) hooks_.notify_ready();
}

json ConfigReloader::config_health() const {
  json c = {{"path", config_path_},
            {"valid", file_errors_.empty()},
            {"errors", file_errors_},
            {"appliedHash", applied_hash_},
            {"reloadMode", cfg_.gateway.reload.mode},
            {"watching", watcher_ != nullptr},
            {"watcher", watcher_ ? json{{"events", watcher_->events_seen()},
                                        {"reads", watcher_->reads()},
                                        {"pending", watcher_->read_pending()}}
                                 : json(nullptr)},
            {"reloading", reload_busy_},
            {"reloads", reloads_total_},
            {"lastReload", last_reload_}};
  if (!degraded_reason_.empty()) c["degraded"] = degraded_reason_;
  return c;
}


}  // namespace drawbridge::runtime
