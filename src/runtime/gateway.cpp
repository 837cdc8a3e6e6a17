#include "runtime/gateway.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <cmath>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <tuple>
#include <memory>
#include <sstream>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include "agents/child_process.h"
#include "agents/echo_agent.h"
#include "agents/exec_agent.h"
#include "channels/local/local_channel.h"
#include "config/config.h"
#include "config/config_text.h"
#include "config/diff.h"
#include "config/document.h"
#include "config/edit.h"
#include "config/secrets.h"
#include "core/clock.h"
#include "core/drain_plan.h"
#include "core/lifecycle.h"
#include "core/reload_plan.h"
#include "core/restart_scheduler.h"
#include "core/saturating.h"
#include "core/shutdown_budget.h"
#include "pipeline/pipeline.h"
#include "runtime/asio_executor.h"
#include "runtime/config_reloader.h"
#include "runtime/config_watcher.h"
#include "runtime/diagnostic_bundle.h"
#include "runtime/drain_runner.h"
#include "runtime/fatal_signals.h"
#include "runtime/file_modes.h"
#include "runtime/gateway_lock.h"
#include "runtime/gateway_status.h"
#include "runtime/generation.h"
#include "runtime/hand_off.h"
#include "runtime/listen_fds.h"
#include "runtime/log_redaction.h"
#include "runtime/sd_notifier.h"
#include "runtime/signal_router.h"
#include "runtime/startup.h"
#include "runtime/successor.h"
#include "runtime/supervisor.h"
#include "runtime/store_thread.h"
#include "runtime/token_check.h"
#include "runtime/watchdog.h"
#include "server/control.h"
#include "server/random_id.h"
#include "server/server.h"
#include "store/sqlite_store.h"

namespace drawbridge::runtime {

namespace fs = std::filesystem;
using nlohmann::json;

std::string token_file_path(const std::string& data_dir) {
  return (fs::path(data_dir) / "gateway.token").string();
}

std::string bind_address(const std::string& bind) {
  if (bind == "loopback") return "127.0.0.1";
  if (bind == "lan") return "0.0.0.0";
  return bind;
}

namespace {

class Gateway final : public server::Control, private DrainTarget {
 public:
  using State = core::LifecycleState;
  State state() const { return lifecycle_.state(); }
  // The running config (the ConfigReloader holds it).
  const config::Config& cfg() const { return reloader_->running(); }

  Gateway(config::Config config, RunOptions options, std::string config_path, std::string data_dir,
          std::string token, std::unique_ptr<GatewayLock> lock,
          std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> recent_log,
          std::shared_ptr<RedactingSink> redactor, StartedFrom from)
      : options_(options),
        config_path_(std::move(config_path)),
        data_dir_(std::move(data_dir)),
        token_(std::move(token)),
        lock_(std::move(lock)),
        recent_log_(std::move(recent_log)),
        redactor_(std::move(redactor)),
        executor_(io_),
        signals_(io_, {[this](const std::string& n) { stop(n); },
                       [this](const std::string& n, bool fresh) { on_restart_signal(n, fresh); },
                       [this](const std::string& n) { reloader_->reload(n); }}),
        watchdog_([this] { on_watchdog(); }) {
    started_at_ = clock_.now();
    reloader_ = std::make_unique<ConfigReloader>(io_, clock_, executor_, std::move(config),
                                                 options_, config_path_, std::move(from),
                                                 reloader_hooks());
    scheduler_ = core::RestartScheduler(scheduler_options(cfg()));
    update_log_secrets();
    sup_ = detect_supervisor();
    notifier_ = std::make_unique<SdNotifier>(clock_, executor_);
    hand_off_ = std::make_unique<HandOff>(io_, clock_, executor_, data_dir_, hand_off_hooks());
  }

  int run() {
    const auto t0 = clock_.now();
    // First, before any thread: it edits the environment (LISTEN_* are unset).
    auto inherited = take_listen_fds();
    const std::string db_path = (fs::path(data_dir_) / "drawbridge.db").string();
    try {
      const auto durability = cfg().store.durability == "power" ? store::Durability::power
                                                               : store::Durability::process;
      // Two connections: the store thread writes, the event loop reads (WAL lets both run).
      writer_store_ = store::SqliteStore::open(db_path, durability);
      store_ = store::SqliteStore::open(db_path, durability);
    } catch (const std::exception& e) {
      spdlog::critical("cannot open the store {}: {}", db_path, e.what());
      return exit_code::crashed;
    }
    store_thread_ = std::make_unique<StoreThread>(io_, *writer_store_);
    pipeline_ = std::make_unique<pipeline::Pipeline>(clock_, executor_, *store_, *store_thread_);
    generation_units_ = std::make_unique<Generation>(io_, executor_, *pipeline_);
    pipeline_->on_command([this](const pipeline::ChatCommand& cmd) { on_chat_command(cmd); });

    server::ServerOptions so = server_options(cfg());
    server_ = std::make_unique<server::Server>(io_, clock_, executor_, *this, *pipeline_, so);
    if (auto err = wire_generation()) {
      spdlog::critical("{}", *err);
      return exit_code::config_invalid;
    }
    if (!inherited.empty()) {
      // The predecessor's socket serves the address it was configured with; when the config
      // now asks for another one, that is what this process binds (the predecessor closes the
      // old one when it exits). A socket from systemd is the socket unit's to choose: served
      // whatever the config says.
      const std::string want = bind_address(cfg().gateway.bind);
      const auto have = local_address(inherited[0].fd);
      if (have && !same_listen_address(have->first, have->second, want, cfg().gateway.port)) {
        if (started_by_predecessor()) {
          spdlog::info("the inherited socket listens on {}:{}, the config asks for {}:{}: "
                       "binding the new address (the old one closes)",
                       have->first, have->second, want, cfg().gateway.port);
          for (const auto& s : inherited) ::close(s.fd);
          inherited.clear();
        } else {
          spdlog::warn("the inherited socket (socket activation) listens on {}:{}, the config "
                       "asks for {}:{}: serving the inherited one (change the socket unit)",
                       have->first, have->second, want, cfg().gateway.port);
        }
      }
    }
    if (!inherited.empty()) {
      // A predecessor's hand-off (re-exec, update) or systemd socket activation.
      for (std::size_t i = 1; i < inherited.size(); ++i) {
        spdlog::warn("ignoring inherited socket fd {} ({}): one listening socket is served",
                     inherited[i].fd, inherited[i].name);
        ::close(inherited[i].fd);
      }
      if (auto err = server_->adopt(inherited[0].fd)) {
        spdlog::error("cannot serve the inherited socket ({}); binding {}:{} instead", *err,
                      so.bind_address, so.port);
        inherited.clear();
      } else {
        inherited_socket_ = true;
        spdlog::info("serving on an inherited listening socket (fd {}, name \"{}\")",
                     inherited[0].fd, inherited[0].name);
      }
    }
    if (!inherited_socket_) {
      if (auto err = server_->listen()) {
        spdlog::critical("{}", *err);
        return exit_code::crashed;
      }
    }
    export_gateway_url();
    signals_.start();
    start_generation_io();
    server_->start();
    reloader_->start_watcher();
    hand_off_->read_sentinel();
    spdlog::info("supervisor: {} ({}); restart mode {}", runtime::to_string(sup_.kind),
                 sup_.why.empty() ? "none detected" : sup_.why, cfg().gateway.restart.mode);
    notifier_->ready(status_line());
    notifier_->start_watchdog();
    report_ready_to_predecessor();
    if (!config_path_.empty() && reloader_->degraded_reason().empty() &&
        !fs::exists(config::last_good_path(config_path_))) {
      // The first good start: from now on there is a copy to fall back to.
      if (auto saved = config::save_last_good(config_path_, reloader_->applied_text());
          !saved.ok) {
        spdlog::warn("cannot keep the last-known-good config: {}", saved.error);
      }
    }
    spdlog::info("drawbridge {} ready on http://{}:{} (ws://{}:{}), data in {}, ready in {:.1f} ms",
                 DRAWBRIDGE_VERSION, so.bind_address, server_->port(), so.bind_address,
                 server_->port(), data_dir_, ms_since(t0, clock_.now()));
    io_.run();
    watchdog_.disarm();
    return exit_code_;
  }

  // --- server::Control ---
  // `reason` is one word (the state, or "channels"), fit for anyone who can reach the port;
  // the prose and the config's errors go in `details`, which the server shows only to a caller
  // with the token.
  server::Readiness readiness() override {
    server::Readiness r{true, {}, nullptr};
    auto detail = [&r](const char* key, json value) {
      if (r.details.is_null()) r.details = json::object();
      r.details[key] = std::move(value);
    };
    if (!reloader_->file_errors().empty() || !reloader_->degraded_reason().empty()) {
      // Serving on the config it had; a probe should still see that the file is broken.
      detail("config", reloader_->config_health());
    }
    if (state() != State::running) {
      r.ready = false;
      r.reason = core::to_string(state());
      if (state() == State::failed && !last_start_error_.empty()) {
        detail("error", last_start_error_);
      }
      return r;
    }
    json waiting = json::array();
    for (auto& [id, ch] : generation_units_->channels()) {
      if (!ch->ready()) waiting.push_back(id);
    }
    if (!waiting.empty()) {
      r.ready = false;
      r.reason = "channels";
      detail("channelsNotReady", waiting);
      detail("message", "channel(s) not ready: " + waiting.dump());
    }
    return r;
  }

  // The log hides the token, every secret of the running config and those of the file as last
  // read, valid or not (an error about it might quote one). Called whenever one of them changes.
  void update_log_secrets() {
    if (!redactor_) return;
    std::vector<std::string> secrets = config::secret_values(cfg());
    const auto& file_secrets = reloader_->file_secrets();
    secrets.insert(secrets.end(), file_secrets.begin(), file_secrets.end());
    secrets.push_back(token_);
    std::set<std::string> too_short;
    for (const auto& s : secrets) {
      // A token that short gets the weak-token warning instead.
      if (!s.empty() && s.size() < kMinRedactedLength && s != token_) too_short.insert(s);
    }
    redactor_->set_secrets(std::move(secrets));
    if (!too_short.empty() && too_short.size() != short_secrets_warned_) {
      spdlog::warn("{} secret value(s) of the config are shorter than {} characters: the log "
                   "does not hide them (it would mangle every line); use longer ones",
                   too_short.size(), kMinRedactedLength);
    }
    short_secrets_warned_ = too_short.size();
  }

  // The token changed (config reload or restart): new connections need the new one.
  void set_token(const config::Config& next) {
    bool generated = false;
    token_ = resolve_token(next, data_dir_, generated);
    server_->set_token(token_);
    update_log_secrets();
    if (generated) announce_generated_token(token_, token_file_path(data_dir_));
    warn_if_weak(token_, generated);
  }

  server::LifecycleView lifecycle() override {
    server::LifecycleView v;
    v.state = core::to_string(state());
    v.accepting_connections = lifecycle_.accepting();
    v.restart_expected_ms = kRestartExpectedMs;
    return v;
  }

  json request_restart(const server::RestartIntent& intent) override {
    core::RestartRequest req;
    req.reason = intent.reason.empty() ? "requested" : intent.reason;
    req.force = intent.force;
    if (intent.wait_ms) req.wait = core::Duration{std::max<std::int64_t>(*intent.wait_ms, 0)};
    if (intent.delay_ms) req.delay = core::Duration{std::max<std::int64_t>(*intent.delay_ms, 0)};
    req.source = intent.source == "signal" ? core::RestartSource::signal
                 : intent.source == "chat" ? core::RestartSource::chat
                 : intent.source == "config" ? core::RestartSource::config
                                             : core::RestartSource::rpc;
    req.fresh_process = intent.fresh_process;
    return schedule_restart(req, intent.requested_by_run);
  }

  json request_stop(const std::string& reason) override {
    if (lifecycle_.stop_pending()) {
      return {{"ok", true}, {"status", "already-stopping"}};
    }
    const bool restarting = state() == State::draining || state() == State::restarting;
    // Answer first: the connection this came on is closed by the drain.
    executor_.post([this, reason] { stop(reason.empty() ? "requested" : reason); });
    json out = {{"ok", true}, {"status", "stopping"}};
    if (restarting) {
      out["note"] = "the stop takes over the restart under way (the stop's budget, then exit)";
    }
    return out;
  }

  // The shape of OpenClaw's health snapshot (hello-ok snapshot.health): a failing store is an
  // error for the caller, not "ok": false.
  GatewayFacts facts() {
    GatewayFacts f;
    f.state = state();
    f.generation = generation_;
    f.uptime_ms = uptime_ms();
    f.clean_start = clean_start_;
    f.config_path = config_path_;
    f.data_dir = data_dir_;
    f.restarts_total = restarts_total_;
    f.last_restart = last_restart_;
    f.last_start_error = last_start_error_;
    f.inherited_socket = inherited_socket_;
    f.supervisor = runtime::to_string(sup_.kind);
    return f;
  }
  GatewayParts parts() {
    return {cfg(),   clock_, *generation_units_, *pipeline_, *store_, server_.get(), drain_,
            *hand_off_, *reloader_, scheduler_};
  }

  json health() override { return health_json(parts()); }
  json status() override { return status_json(facts(), parts()); }
  std::string metrics_text() override {
    auto f = facts();
    f.ready = readiness().ready;
    return runtime::metrics_text(f, parts());
  }

  std::int64_t uptime_ms() override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(clock_.now() - started_at_)
        .count();
  }

 private:
  // OpenClaw's value: clients reconnect after this long.

  static core::RestartSchedulerOptions scheduler_options(const config::Config& cfg) {
    core::RestartSchedulerOptions o;
    o.deferral_timeout = core::Duration{cfg.gateway.reload.deferral_timeout_ms};
    o.default_delay = core::Duration{cfg.gateway.restart.delay_ms};
    o.cooldown = core::Duration{cfg.gateway.restart.cooldown_ms};
    return o;
  }

  server::ServerOptions server_options(const config::Config& cfg) const {
    server::ServerOptions so;
    so.bind_address = bind_address(cfg.gateway.bind);
    so.port = cfg.gateway.port;
    so.token = token_;
    so.version = DRAWBRIDGE_VERSION;
    so.local_channel = "local";
    const auto& limits = cfg.gateway.limits;
    so.max_connections = static_cast<std::size_t>(limits.max_connections);
    so.max_connections_per_peer = static_cast<std::size_t>(limits.max_connections_per_peer);
    so.max_message_bytes = static_cast<std::size_t>(limits.max_message_bytes);
    so.max_history_bytes = static_cast<std::size_t>(limits.max_history_bytes);
    so.allowed_origins = cfg.gateway.allowed_origins;
    so.allowed_hosts = cfg.gateway.allowed_hosts;
    // A testing knob: conformance tests need a tick sooner than OpenClaw's 30 s.
    if (const char* t = std::getenv("DRAWBRIDGE_TICK_INTERVAL_MS")) {
      so.tick_interval_ms = std::clamp(std::atoi(t), 100, 3'600'000);
    }
    return so;
  }

  // Agent commands inherit it, to call the gateway back (`drawbridge restart --url ...`).
  void export_gateway_url() {
    std::string host = bind_address(cfg().gateway.bind);
    if (host == "0.0.0.0") host = "127.0.0.1";
    if (host.find(':') != std::string::npos) host = "[" + host + "]";
    const std::string url = "ws://" + host + ":" + std::to_string(server_->port());
    ::setenv("DRAWBRIDGE_GATEWAY_URL", url.c_str(), 1);
  }

  // --- generations ---

  // Builds the agents and channels of cfg() and wires them into the pipeline. The store was
  // opened already; the marker check and repair belong to the generation too.
  std::optional<std::string> wire_generation() {
    pipeline_->configure(pipeline_settings(cfg()));
    return generation_units_->build(cfg());
  }

  // Marker, repair, replay, channels, readiness: the part of a start that touches the world.
  void start_generation_io() {
    ++generation_;
    clean_start_ = false;
    try {
      clean_start_ = writer_store_->get_value("clean_shutdown").has_value();
      writer_store_->erase_value("clean_shutdown");
      if (!clean_start_) {
        auto repair = writer_store_->repair_interrupted();
        if (!repair.sessions.empty() || repair.removed_entries > 0) {
          spdlog::warn("the last run did not shut down cleanly: {} session(s) were mid-turn; "
                       "removed {} dangling transcript entr(ies); their turns run again (a session "
                       "interrupted 3 restarts in a row gets paused instead)",
                       repair.sessions.size(), repair.removed_entries);
        }
      }
    } catch (const std::exception& e) {
      spdlog::error("cannot check the clean-shutdown marker: {}", e.what());
    }
    pipeline_->start();
    generation_units_->start_channels();
    lifecycle_.generation_started(configured_address(cfg()), reloader_->applied_hash());
  }

  // The address a config asks for, as the lifecycle compares it with what listens.
  static core::ListenAddress configured_address(const config::Config& cfg) {
    return {bind_address(cfg.gateway.bind), cfg.gateway.port};
  }

  // The next generation of an in-process restart: the drain finished, the old channels are
  // stopped and the server's clients are gone.
  void start_next_generation() {
    const auto t0 = clock_.now();
    if (lifecycle_.stop_pending()) {
      // A stop arrived after the drain: the process exits instead (the marker is written).
      spdlog::info("a stop was asked for during the restart: not starting generation {}",
                   generation_ + 1);
      return finish_process();
    }
    lifecycle_.generation_starting();
    pipeline_->reset();
    generation_units_->clear();

    // What ran before: a failed start must leave the running config, its hash and the
    // listening address describing the same thing (the retry applies the config that failed).
    std::optional<config::Config> previous;
    auto fail = [this, &previous](const std::string& why) {
      if (previous) {
        const bool token_back = previous->gateway.auth_token != cfg().gateway.auth_token;
        reloader_->swap_running(std::move(*previous));
        if (token_back) set_token(cfg());
      }
      lifecycle_.generation_failed();
      last_start_error_ = why;
      if (lock_) {
        lock_->release();
        lock_.reset();
      }
      scheduler_.on_restart_finished();
      spdlog::critical("generation {} failed to start: {}", generation_ + 1, why);
      notifier_->ready("failed: " + why);
      spdlog::critical("the process stays alive without serving chats and has released the "
                       "gateway lock; fix the cause, then `drawbridge restart` (or SIGUSR1) to "
                       "try again, or stop it");
    };

    if (!lock_) {
      std::string error;
      lock_ = GatewayLock::acquire(data_dir_, cfg().gateway.port, error);
      if (!lock_) return fail(error);
    }
    std::string read_error;
    auto read = reloader_->read_for_generation(read_error);
    if (!read) return fail(read_error);
    const std::string text = read->text;
    config::Config next = std::move(read->config);
    if (next.store.data_dir != data_dir_ || next.store.durability != cfg().store.durability) {
      spdlog::warn("store.dataDir/store.durability changed: they take effect when the process "
                   "restarts; keeping {}",
                   data_dir_);
      next.store = cfg().store;
    }
    // Compared with what listens, not with the config of an attempt that failed.
    const bool address_changed = lifecycle_.needs_relisten(configured_address(next));
    const bool token_changed = next.gateway.auth_token != cfg().gateway.auth_token;
    previous = reloader_->swap_running(std::move(next));
    if (token_changed) set_token(cfg());
    spdlog::set_level(spdlog::level::from_str(cfg().logging.level));
    scheduler_.set_options(scheduler_options(cfg()));
    if (auto err = wire_generation()) return fail(*err);
    if (address_changed) {
      if (auto err = server_->relisten(bind_address(cfg().gateway.bind), cfg().gateway.port)) {
        return fail(*err);
      }
      export_gateway_url();
    }
    last_start_error_.clear();
    reloader_->generation_started(text);
    start_generation_io();
    scheduler_.on_restart_finished();
    ++restarts_total_;
    const auto now = clock_.now();
    const double total_ms = ms_since(drain_started_, now);
    last_restart_ = {{"reason", restart_reason_},
                     {"source", restart_source_},
                     {"generation", generation_},
                     {"durationMs", std::llround(total_ms)},
                     {"startMs", ms_since(t0, now)},
                     {"interrupted", last_drain_interrupted_},
                     {"finishedAtMs", clock_.wall_ms()}};
    if (auto after = drain_.after_last_reply_ms()) last_restart_["afterLastReplyMs"] = *after;
    notifier_->ready(status_line());
    spdlog::info("generation {} ready: restart ({}) took {:.1f} ms, the new generation started "
                 "in {:.1f} ms",
                 generation_, restart_reason_, total_ms, ms_since(t0, now));
  }

  // --- config: config.get, config.patch/apply, the watcher, hot reload (ConfigReloader) ---

  json config_get() override { return reloader_->config_get(); }
  void config_write(const server::ConfigWrite& w,
                    std::function<void(server::ConfigWriteResult)> done) override {
    reloader_->config_write(w, std::move(done));
  }

  ConfigReloader::Hooks reloader_hooks() {
    ConfigReloader::Hooks h;
    h.state = [this] { return state(); };
    h.schedule_restart = [this](const core::RestartRequest& req) {
      return schedule_restart(req, {});
    };
    h.cancel_config_restart = [this] {
      auto pending = scheduler_.pending();
      if (!pending || pending->source != core::RestartSource::config) return false;
      if (!scheduler_.cancel("hot reload applied the config")) return false;
      cancel_restart_timer();
      return true;
    };
    h.run_hot_actions = [this](const config::Config& next, const core::ReloadPlan& plan,
                               std::function<void(const std::string&)> done) {
      run_hot_actions(next, plan, std::move(done));
    };
    h.committed = [this] {
      pipeline_->configure(pipeline_settings(cfg()));
      spdlog::set_level(spdlog::level::from_str(cfg().logging.level));
      scheduler_.set_options(scheduler_options(cfg()));
    };
    h.secrets_changed = [this] { update_log_secrets(); };
    h.notify_reloading = [this](const std::string& why) { notifier_->reloading(why); };
    h.notify_ready = [this] { notifier_->ready(status_line()); };
    return h;
  }

  // Agents first (channels restarted next wire to the new ones), then channels one after the
  // other: each stops completely before its successor starts.
  void run_hot_actions(const config::Config& next, const core::ReloadPlan& plan,
                       std::function<void(const std::string&)> done) {
    std::vector<std::string> channels;
    bool rebind = false;
    for (const auto& a : plan.actions) {
      switch (a.action) {
        case core::HotAction::update_auth:
          if (next.gateway.auth_token != cfg().gateway.auth_token) {
            set_token(next);
            spdlog::info("gateway.auth changed: new connections need the new token");
          }
          break;
        case core::HotAction::swap_agent:
          if (auto err = generation_units_->swap_agent(a.target, next)) return done(*err);
          rebind = true;
          break;
        case core::HotAction::rebind_agents:
          rebind = true;
          break;
        case core::HotAction::restart_channel:
          channels.push_back(a.target);
          break;
      }
    }
    if (rebind) {
      if (auto err = generation_units_->rebind(next, channels)) return done(*err);
    }
    restart_channels(std::move(channels), 0, next, std::move(done));
  }

  void restart_channels(std::vector<std::string> ids, std::size_t i, config::Config next,
                        std::function<void(const std::string&)> done) {
    if (i == ids.size()) return done({});
    const std::string id = ids[i];
    auto proceed = [this, ids = std::move(ids), i, next, done = std::move(done)](
                       const std::string& error) mutable {
      if (!error.empty()) return done(error);
      restart_channels(std::move(ids), i + 1, std::move(next), std::move(done));
    };
    restart_channel(id, next, std::move(proceed));
  }

  // One poller per channel account at every instant: the old instance has stopped (its poll
  // loop returned, its cursor saved) before the new one starts.
  void restart_channel(const std::string& id, const config::Config& next,
                       std::function<void(const std::string&)> done) {
    generation_units_->restart_channel(
        id, next, [this] { return state() == State::running; }, std::move(done));
  }

  // --- process restarts: supervised exit, re-exec hand-off, update ---

  std::string status_line() const {
    std::string out = std::string(core::to_string(state())) + ", generation " +
                      std::to_string(generation_) + ", " + std::to_string(generation_units_->channels().size()) +
                      " channel(s)";
    if (!reloader_->degraded_reason().empty()) out += ", DEGRADED: config invalid, on last-known-good";
    return out;
  }

  // Supervised: the drain is done and the clean marker written; systemd or launchd starts a
  // fresh process when we exit with 75.
  void supervised_exit() {
    exit_code_ = exit_code::restart;
    const auto pause = supervised_exit_pause(sup_.kind);
    spdlog::info("restart: exiting with code {} so that {} starts a fresh process{}",
                 exit_code::restart, runtime::to_string(sup_.kind),
                 pause.count() > 0 ? " (after " + std::to_string(pause.count()) +
                                         " ms, so launchd does not throttle the restart)"
                                   : "");
    if (pause.count() == 0) return finish_process();
    executor_.schedule(pause, [this] { finish_process(); });
  }

  // Re-exec (or update): the successor gets the listening socket and the gateway lock; we exit
  // once it says it is ready. Connections arriving meanwhile wait in the socket's backlog.
  void hand_off() {
    HandOff::Successor succ;
    succ.binary = restart_binary_;
    succ.argv = options_.argv;
    succ.data_dir = data_dir_;
    succ.config_path = config_path_;
    succ.update = restart_is_update_;
    hand_off_->start(succ);
  }

  HandOff::Hooks hand_off_hooks() {
    HandOff::Hooks h;
    h.release_lock = [this] {
      if (lock_) {
        lock_->release();
        lock_.reset();
      }
    };
    h.listen_fd = [this] { return server_->listen_fd(); };
    h.handed_over = [this](pid_t pid, const std::string&) {
      notifier_->main_pid(pid);
      notifier_->barrier(std::chrono::seconds(1));
      exit_code_ = exit_code::ok;
      if (lifecycle_.stop_pending()) {
        // The stop wins over the hand-off: the successor serves now, so it is the one that
        // stops (it drains like any stop).
        spdlog::warn("a stop was asked for during the hand-off: passing it on to pid {} "
                     "(SIGTERM)",
                     pid);
        ::kill(pid, SIGTERM);
      }
      finish_process();
    };
    h.failed = [this](const std::string&) {
      if (lifecycle_.stop_pending()) {
        spdlog::info("a stop was asked for during the hand-off: exiting");
        return finish_process();
      }
      lifecycle_.hand_off_failed();
      server_->resume_accepting();
      start_next_generation();  // takes the lock again
    };
    return h;
  }

  json request_update(const std::string& binary, const std::string& reason) override {
    std::string error;
    const auto checked = HandOff::executable_path(binary, error);
    if (!checked) return {{"ok", false}, {"status", "refused"}, {"note", error}};
    const std::string& path = *checked;
    core::RestartRequest req;
    req.reason = reason.empty() ? "update to " + path : reason;
    req.kind = core::RestartKind::update;
    req.binary = path;
    req.fresh_process = true;
    req.delay = core::Duration{0};
    req.source = core::RestartSource::rpc;
    return schedule_restart(req, {});
  }

  // --- restart requests ---

  json schedule_restart(const core::RestartRequest& req, const std::string& requested_by_run) {
    const auto now = clock_.now();
    if (lifecycle_.stop_pending()) {
      spdlog::info("restart requested ({}) while stopping; ignored", req.reason);
      return {{"ok", true}, {"status", "ignored"}, {"note", "stopping"}, {"dueInMs", 0},
              {"cycle", scheduler_.cycle()}};
    }
    if (state() == State::failed) {
      // The last start failed: this request is the retry, at once.
      spdlog::info("restart requested ({}): retrying the failed start", req.reason);
      restart_reason_ = req.reason;
      restart_source_ = core::to_string(req.source);
      drain_started_ = now;
      last_drain_interrupted_ = false;
      executor_.post([this] { start_next_generation(); });
      return {{"ok", true}, {"status", "scheduled"}, {"note", "retrying the failed start"},
              {"dueInMs", 0}, {"cycle", scheduler_.cycle()}};
    }
    if (!requested_by_run.empty()) {
      // The turn asking is not waited for: waiting would deadlock until the budget.
      if (pipeline_->detach_run(requested_by_run)) {
        spdlog::info("run {} asked for the restart: the drain will not wait for it",
                     requested_by_run);
      }
    }
    auto r = scheduler_.request(req, now);
    if (r.status == core::ScheduleStatus::ignored && drain_.active()) {
      // A drain runs: a more urgent request (force, a shorter waitMs) shortens it.
      auto cut = lifecycle_.on_urgent_restart(now, {req.force, req.wait});
      if (cut.shortened) {
        spdlog::warn("restart request ({}) is more urgent than the running drain: {}",
                     req.reason, cut.note);
        if (auto at = lifecycle_.watchdog_at()) arm_watchdog(*at);
        cut_drain(*cut.turns_end);
        return {{"ok", true}, {"status", "shortened"}, {"cycle", r.cycle}, {"dueInMs", 0},
                {"note", cut.note}};
      }
      spdlog::info("restart request ({}) ignored: {}", req.reason, cut.note);
      return {{"ok", true}, {"status", "ignored"}, {"cycle", r.cycle}, {"dueInMs", 0},
              {"note", cut.note}};
    }
    const auto due = std::chrono::duration_cast<std::chrono::milliseconds>(r.deadline - now);
    switch (r.status) {
      case core::ScheduleStatus::scheduled:
        spdlog::info("restart scheduled in {} ms (cycle {}): {}{}{}", due.count(), r.cycle,
                     req.reason, r.note.empty() ? "" : "; ", r.note);
        break;
      case core::ScheduleStatus::coalesced:
        spdlog::info("restart request ({}) merged into the scheduled restart (cycle {})",
                     req.reason, r.cycle);
        break;
      case core::ScheduleStatus::ignored:
        spdlog::info("restart request ({}) ignored: {}", req.reason, r.note);
        break;
    }
    arm_restart_timer();
    return {{"ok", true},
            {"status", core::to_string(r.status)},
            {"cycle", r.cycle},
            {"dueInMs", std::max<std::int64_t>(due.count(), 0)},
            {"note", std::string(r.note)}};
  }

  void arm_restart_timer() {
    auto w = scheduler_.next_wakeup();
    if (!w) return;
    cancel_restart_timer();
    const auto delay = std::max(core::Duration{0},
                                std::chrono::ceil<core::Duration>(w->at - clock_.now()));
    restart_timer_ = executor_.schedule(delay, [this, cycle = w->cycle] {
      restart_timer_.reset();
      auto r = scheduler_.on_timer(clock_.now(), cycle);
      if (r.begin) begin_drain(core::DrainKind::restart, *r.begin);
    });
  }

  void cancel_restart_timer() {
    if (restart_timer_) executor_.cancel(*restart_timer_);
    restart_timer_.reset();
  }

  void on_chat_command(const pipeline::ChatCommand& cmd) {
    if (cmd.name != "restart") return;
    core::RestartRequest req;
    req.reason = "/restart in " + cmd.channel + " (" + cmd.session_key + ")";
    req.source = core::RestartSource::chat;
    schedule_restart(req, {});
  }

  // --- stop ---

  // A stop's budgets: the force-exit watchdog (25 s, less under a supervisor's stop timeout)
  // and 4/5 of it for turns, the rest for delivery and teardown.
  static core::StopBudget stop_budget() {
    const auto watchdog = core::shutdown_budget(core::ShutdownKind::stop, std::nullopt,
                                                env_duration_ms("DRAWBRIDGE_STOP_TIMEOUT_MS"));
    return {watchdog, watchdog ? std::optional(four_fifths(*watchdog)) : std::nullopt};
  }

  void stop(const std::string& why) {
    const auto now = clock_.now();
    const auto d = lifecycle_.on_stop(now, stop_budget());
    using W = core::StopDecision::What;
    switch (d.what) {
      case W::already_stopping:
        spdlog::info("{} received while already stopping; ignored", why);
        return;
      case W::close_and_exit:
        spdlog::info("{}: stopping (the last start had failed)", why);
        exit_code_ = exit_code::crashed;
        server_->close("gateway stopping", std::nullopt,
                       boost::beast::websocket::close_code::service_restart, "service restart",
                       [this] { finish_process(); });
        return;
      case W::begin_drain: {
        cancel_restart_timer();
        core::RestartAction action{};
        action.reason = why;
        begin_drain(core::DrainKind::stop, action);
        return;
      }
      case W::take_over_drain: break;
    }
    // A restart is under way: no second teardown, but from now on it is the stop's. Its turns
    // get the stop's budget where that is shorter, the watchdog is the stop's, and the process
    // exits when the drain is done instead of starting the next generation.
    cancel_restart_timer();
    restart_reason_ = why + " (during " + restart_reason_ + ")";
    drain_.set_reason(restart_reason_);
    notifier_->stopping("stopping (" + why + ")");
    const auto left = [&](std::optional<core::TimePoint> at) {
      return at ? std::to_string(std::max<std::int64_t>(
                      0, std::chrono::duration_cast<core::Duration>(*at - now).count())) +
                      " ms"
                : std::string("unchanged");
    };
    spdlog::warn("{} received while restarting: the stop takes the restart over (turns: {}, "
                 "watchdog: {}); the process exits once the drain is done",
                 why, left(d.turns_end ? d.turns_end : lifecycle_.turns_end()),
                 left(lifecycle_.watchdog_at()));
    if (d.watchdog_at) arm_watchdog(*d.watchdog_at);
    if (d.turns_end) cut_drain(*d.turns_end);
  }

  void arm_watchdog(core::TimePoint at) {
    watchdog_budget_ = std::chrono::duration_cast<core::Duration>(at - drain_started_);
    watchdog_.arm(at);
  }

  // Shortens the running drain's wait on turns (a stop, a more urgent restart request).
  void cut_drain(core::TimePoint turns_end) { drain_.cut(turns_end); }

  void finish_process() {
    watchdog_.disarm();
    spdlog::info("stopped");
    signals_.cancel();
    cancel_restart_timer();
    io_.stop();
  }

  // --- the drain ---

  void begin_drain(core::DrainKind kind, const core::RestartAction& action) {
    const auto now = clock_.now();
    drain_started_ = now;
    restart_reason_ = action.reason;
    restart_source_ = kind == core::DrainKind::stop ? "stop" : core::to_string(action.source);
    restart_binary_.clear();
    restart_is_update_ = false;
    if (kind == core::DrainKind::restart) {
      restart_is_update_ = action.kind == core::RestartKind::update;
      restart_binary_ = restart_is_update_ ? action.binary : std::string();
      restart_mode_ = restart_is_update_
                          ? RestartMode::reexec  // an update always hands the socket over
                          : choose_restart_mode(cfg().gateway.restart.mode, action.fresh_process,
                                                sup_);
      if (restart_mode_ == RestartMode::supervised) {
        notifier_->stopping("restarting (" + action.reason + "): exiting for the supervisor");
      } else {
        notifier_->reloading("restarting (" + action.reason + ")");
      }
    } else {
      notifier_->stopping("stopping (" + action.reason + ")");
    }
    // The supervisor's stop timeout bounds a stop, and a restart that ends with our exit (after
    // STOPPING=1); an in-process or re-exec restart is a reload to systemd, not a stop.
    const bool exits = kind == core::DrainKind::stop || restart_mode_ == RestartMode::supervised;
    const auto supervisor =
        exits ? env_duration_ms("DRAWBRIDGE_STOP_TIMEOUT_MS") : std::optional<core::Duration>{};
    DrainStart start;
    start.kind = kind;
    start.reason = action.reason;
    start.path = restart_mode_ == RestartMode::supervised ? core::RestartPath::supervised
                 : restart_mode_ == RestartMode::reexec   ? core::RestartPath::reexec
                                                          : core::RestartPath::in_process;
    std::optional<core::Duration> watchdog;
    if (kind == core::DrainKind::stop) {
      watchdog = core::shutdown_budget(core::ShutdownKind::stop, std::nullopt, supervisor);
      // A stop lets turns finish for most of its budget and keeps the rest for delivery and
      // teardown (20 s of OpenClaw's 25 s).
      start.turn_budget = four_fifths(*watchdog);
    } else {
      watchdog = core::shutdown_budget(core::ShutdownKind::restart, action.drain_budget,
                                       supervisor);
      start.turn_budget = action.drain_budget;
      // Under a supervisor's stop timeout the turns get most of what the watchdog allows.
      if (supervisor && watchdog &&
          (!start.turn_budget || *start.turn_budget > four_fifths(*watchdog))) {
        start.turn_budget = four_fifths(*watchdog);
      }
    }
    if (watchdog) {
      // Saturating: an enormous budget (waitMs near INT64_MAX) is a watchdog that never fires,
      // not a deadline wrapped into the past.
      start.watchdog_at = core::saturating_add(now, *watchdog);
      arm_watchdog(*start.watchdog_at);
    }
    spdlog::info("{} ({}): draining; {} turn(s) running, {} waiting, {} debounced, {} "
                 "deliver(ies); turn budget {}, watchdog {}",
                 kind == core::DrainKind::stop ? "stopping" : "restarting", action.reason,
                 pipeline_->active_runs().size(), pipeline_->waiting_count(),
                 pipeline_->debounced_count(), pipeline_->pending_deliveries(),
                 start.turn_budget ? std::to_string(start.turn_budget->count()) + " ms" : "none",
                 watchdog ? std::to_string(watchdog->count()) + " ms" : "none");
    drain_.begin(start);
  }

  // 4/5 of `d` without the overflow of d * 4 for an enormous d.
  static core::Duration four_fifths(core::Duration d) { return d - d / 5; }

  // --- DrainTarget: what the drain acts on ---

  std::size_t flush_debouncers() override { return pipeline_->flush_debouncers(); }
  void when_followups_drained(std::function<void()> fn) override {
    pipeline_->when_followups_drained(std::move(fn));
  }
  std::size_t waiting_count() override { return pipeline_->waiting_count(); }
  void set_draining() override { pipeline_->set_draining(true); }
  std::vector<pipeline::ActiveChat> active_chats() override { return pipeline_->active_chats(); }
  void when_turns_idle(std::function<void()> fn) override {
    pipeline_->work().when_idle(std::move(fn));
  }
  std::vector<core::DrainBlocker> blockers() override {
    std::vector<core::DrainBlocker> out;
    for (const auto& e : pipeline_->work().list()) {
      if (e.exempt) continue;
      out.push_back({e.info.task_id.empty() ? "w" + std::to_string(e.id) : e.info.task_id,
                     e.info.run_id, e.info.session, e.info.status, e.info.label});
    }
    return out;
  }
  std::size_t interrupt_all(const std::string& why) override {
    return pipeline_->interrupt_all(why);
  }
  std::vector<pipeline::ActiveChat> abort_for_drain(const std::string& why) override {
    return pipeline_->abort_for_drain(why);
  }
  std::size_t finish_detached() override { return pipeline_->finish_detached(); }
  std::size_t pending_deliveries() override { return pipeline_->pending_deliveries(); }
  void when_deliveries_idle(std::function<void()> fn) override {
    pipeline_->when_deliveries_idle(std::move(fn));
  }
  void stop_channels(std::function<void()> done) override {
    generation_units_->stop_channels(std::move(done));
  }
  void close_server(bool stopping, bool next_process, std::function<void()> done) override {
    if (stopping) {
      // OpenClaw closes with 1012 on every shutdown; only restartExpectedMs tells a restart.
      server_->close("gateway stopping", std::nullopt,
                     boost::beast::websocket::close_code::service_restart, "service restart",
                     std::move(done));
      return;
    }
    if (next_process) {
      // The next process serves: connections that arrive from now on wait in the socket's
      // backlog for it (a hand-off, or systemd holding the socket) instead of being served by
      // a process about to exit.
      server_->pause_accepting();
    }
    server_->disconnect_all("gateway restarting", kRestartExpectedMs,
                            boost::beast::websocket::close_code::service_restart,
                            "service restart", std::move(done));
  }
  void write_clean_marker() override {
    try {
      pipeline_->flush_and_wait();
      writer_store_->set_value("clean_shutdown", std::to_string(clock_.wall_ms()));
    } catch (const std::exception& e) {
      spdlog::error("cannot write the clean-shutdown marker: {}", e.what());
    }
  }
  void flush_writes() override { pipeline_->flush_and_wait(); }
  // Best effort: a failed send is logged, never waited for.
  void send_notice(const pipeline::ActiveChat& chat, core::DrainNotice kind) override {
    const auto ch = cfg().channels.find(chat.channel);
    if (ch == cfg().channels.end() || !ch->second.notices.enabled) return;
    const auto& n = ch->second.notices;
    const std::string& text = kind == core::DrainNotice::shutting_down ? n.stopping
                              : kind == core::DrainNotice::interrupted ? n.interrupted
                                                                       : n.restarting;
    spdlog::info("notice to {}/{}: {}", chat.channel, chat.chat_id, text);
    pipeline_->send_notice(chat, text, [chat](const std::string& error) {
      if (!error.empty()) {
        spdlog::warn("notice to {}/{} not sent: {}", chat.channel, chat.chat_id, error);
      }
    });
  }
  void drain_slow(core::Duration waited, const std::string& blockers_text) override {
    // A drain that legitimately runs long tells systemd, so its stop timeout does not fire
    // first (the watchdog still bounds us).
    notifier_->extend_timeout(std::chrono::seconds(60));
    notifier_->status("draining for " + std::to_string(waited.count() / 1000) + " s: " +
                      blockers_text);
  }
  void drain_changed() override { update_snapshot(); }
  void drain_done(core::AfterDrain next) override {
    last_drain_interrupted_ = drain_.interrupted();
    watchdog_.disarm();
    switch (next) {
      case core::AfterDrain::exit_process: finish_process(); break;
      case core::AfterDrain::supervised_exit:
        executor_.post([this] { supervised_exit(); });
        break;
      case core::AfterDrain::hand_off: executor_.post([this] { hand_off(); }); break;
      case core::AfterDrain::next_generation:
        // After the commit callbacks already queued, so acknowledgements still go out.
        executor_.post([this] { start_next_generation(); });
        break;
    }
  }

  // --- the watchdog ---

  // What the watchdog thread writes if the drain never ends; refreshed on the loop.
  void update_snapshot() {
    json snap = drain_.status();
    std::lock_guard lock(snapshot_mutex_);
    snapshot_ = std::move(snap);
  }

  // The watchdog's thread: the bundle, then the process ends (agent commands first).
  void on_watchdog() {
    DiagnosticBundle bundle;
    {
      std::lock_guard lock(snapshot_mutex_);
      bundle.drain = snapshot_;
    }
    bundle.reason =
        "the drain did not finish within " + std::to_string(watchdog_budget_.count()) + " ms";
    bundle.generation = generation_;
    bundle.recent_log = recent_log_;
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

  // --- signals ---

  void on_restart_signal(const std::string& name, bool fresh_process) {
    if (!cfg().commands.restart) {
      spdlog::warn("{} received: restarts from outside are turned off (commands.restart is "
                   "false); ignored",
                   name);
      return;
    }
    core::RestartRequest req;
    req.reason = name;
    req.source = core::RestartSource::signal;
    req.fresh_process = fresh_process;  // SIGUSR2: a fresh process (re-exec/supervised)
    schedule_restart(req, {});
  }

  RunOptions options_;
  std::string config_path_;
  std::string data_dir_;
  std::string token_;
  std::unique_ptr<GatewayLock> lock_;
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> recent_log_;
  std::shared_ptr<RedactingSink> redactor_;
  std::size_t short_secrets_warned_ = 0;
  boost::asio::io_context io_{1};
  core::SystemClock clock_;
  AsioExecutor executor_;
  SignalRouter signals_;
  std::optional<core::TimerId> restart_timer_;  // on the injected executor
  core::TimePoint started_at_;
  // Destroyed in reverse: the pipeline flushes through the thread, which commits to the writer.
  std::unique_ptr<store::SqliteStore> writer_store_;
  std::unique_ptr<store::SqliteStore> store_;  // reads of the event loop
  std::unique_ptr<StoreThread> store_thread_;
  std::unique_ptr<pipeline::Pipeline> pipeline_;
  std::unique_ptr<server::Server> server_;
  std::unique_ptr<Generation> generation_units_;  // agents and channels of the running config

  core::Lifecycle lifecycle_;
  DrainRunner drain_{clock_, executor_, lifecycle_, *this};
  bool clean_start_ = false;
  std::uint64_t generation_ = 0;
  std::uint64_t restarts_total_ = 0;
  core::RestartScheduler scheduler_;
  core::TimePoint drain_started_{};
  std::string restart_reason_;
  std::string restart_source_;
  bool last_drain_interrupted_ = false;
  json last_restart_ = nullptr;
  std::string last_start_error_;
  core::Duration watchdog_budget_{0};
  std::mutex snapshot_mutex_;
  json snapshot_ = nullptr;
  int exit_code_ = exit_code::ok;
  // Config reload (issue 4).
  // Process restarts (issue 5).
  SupervisorInfo sup_;
  std::unique_ptr<SdNotifier> notifier_;
  RestartMode restart_mode_ = RestartMode::in_process;
  std::string restart_binary_;  // an update's binary; empty: ours
  bool restart_is_update_ = false;
  bool inherited_socket_ = false;
  std::unique_ptr<HandOff> hand_off_;
  std::unique_ptr<ConfigReloader> reloader_;  // the running config and its file
  // Last: its thread must stop before anything it reads is destroyed.
  Watchdog watchdog_;
};

}  // namespace

int run_gateway(const RunOptions& options) {
  // Before any file is created or any thread started (the umask and the alternate signal stack
  // are set for the whole process, and this thread runs the event loop).
  agents::set_child_umask(restrict_umask());
  install_fatal_signal_handlers();
  auto redactor = install_redacting_sink();
  auto start = load_start_config(options, *redactor);
  if (auto* code = std::get_if<int>(&start)) return *code;
  auto& [cfg, config_path, from] = std::get<StartConfig>(start);

  spdlog::set_level(spdlog::level::from_str(cfg.logging.level));
  if (auto err = prepare_data_dir(cfg.store.data_dir)) {
    spdlog::critical("{}", *err);
    return exit_code::config_invalid;
  }
  if (auto changed = tighten_private_files(cfg.store.data_dir, config_path); !changed.empty()) {
    std::string list;
    for (const auto& c : changed) list += (list.empty() ? "" : ", ") + c;
    spdlog::info("made the gateway's files private (group and others had access): {}", list);
  }
  std::string lock_error;
  auto lock = GatewayLock::acquire(cfg.store.data_dir, cfg.gateway.port, lock_error);
  if (!lock) {
    spdlog::critical("{}", lock_error);
    return exit_code::config_invalid;
  }
  bool generated = false;
  std::string token = resolve_token(cfg, cfg.store.data_dir, generated);
  from.file_secrets.push_back(token);
  redactor->set_secrets(from.file_secrets);
  if (generated) announce_generated_token(token, token_file_path(cfg.store.data_dir));
  warn_if_weak(token, generated);
  const std::string data_dir = cfg.store.data_dir;
  // The last lines of the log, for the watchdog's diagnostic bundle: behind the redacting sink
  // like the terminal, so a bundle holds no secret either.
  auto recent = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(200);
  recent->set_pattern("%Y-%m-%dT%H:%M:%S.%e %l %v");
  redactor->add_sink(recent);
  Gateway gw(std::move(cfg), options, config_path, data_dir, token, std::move(lock), recent,
             redactor, std::move(from));
  const int code = gw.run();
  redactor->remove_sink(recent);
  return code;
}

}  // namespace drawbridge::runtime
