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
#include <boost/asio/steady_timer.hpp>
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
#include "core/reload_plan.h"
#include "core/restart_scheduler.h"
#include "core/saturating.h"
#include "core/shutdown_budget.h"
#include "pipeline/pipeline.h"
#include "runtime/asio_executor.h"
#include "runtime/config_watcher.h"
#include "runtime/fatal_signals.h"
#include "runtime/file_modes.h"
#include "runtime/gateway_lock.h"
#include "runtime/listen_fds.h"
#include "runtime/log_redaction.h"
#include "runtime/sd_notifier.h"
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

// The config a process starts on: the file's text, or the last-known-good copy's when the
// file is invalid (degraded).
struct StartedFrom {
  std::string text;
  std::string file_hash;  // of the file on disk, when it is not `text`
  std::string degraded_reason;
  json file_errors = json::array();
  // What the log must hide beyond the running config's secrets: those of the file as read
  // (even invalid) and the token.
  std::vector<std::string> file_secrets;
};

class Gateway final : public server::Control {
 public:
  enum class State { starting, running, draining, restarting, stopping, failed };
  static const char* to_string(State s) {
    switch (s) {
      case State::starting: return "starting";
      case State::running: return "running";
      case State::draining: return "draining";
      case State::restarting: return "restarting";
      case State::stopping: return "stopping";
      case State::failed: return "failed";
    }
    return "?";
  }

  Gateway(config::Config cfg, RunOptions options, std::string config_path, std::string data_dir,
          std::string token, std::unique_ptr<GatewayLock> lock,
          std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> recent_log,
          std::shared_ptr<RedactingSink> redactor, StartedFrom from)
      : cfg_(std::move(cfg)),
        options_(std::move(options)),
        config_path_(std::move(config_path)),
        data_dir_(std::move(data_dir)),
        token_(std::move(token)),
        lock_(std::move(lock)),
        recent_log_(std::move(recent_log)),
        redactor_(std::move(redactor)),
        executor_(io_),
        signals_(io_),
        restart_timer_(io_),
        drain_timer_(io_),
        watchdog_([this] { on_watchdog(); }) {
    started_at_ = clock_.now();
    scheduler_ = core::RestartScheduler(scheduler_options(cfg_));
    if (!config_path_.empty()) {
      applied_text_ = from.text;
      applied_hash_ = config::content_hash(applied_text_);
      last_valid_text_ = applied_text_;
      seen_hash_ = from.file_hash.empty() ? applied_hash_ : from.file_hash;
    }
    degraded_reason_ = std::move(from.degraded_reason);
    file_errors_ = std::move(from.file_errors);
    file_secrets_ = std::move(from.file_secrets);
    update_log_secrets();
    sup_ = detect_supervisor();
    notifier_ = std::make_unique<SdNotifier>(io_);
    std::error_code ec;
    self_exe_ = fs::read_symlink("/proc/self/exe", ec).string();
  }

  int run() {
    const auto t0 = clock_.now();
    // First, before any thread: it edits the environment (LISTEN_* are unset).
    auto inherited = take_listen_fds();
    const std::string db_path = (fs::path(data_dir_) / "drawbridge.db").string();
    try {
      const auto durability = cfg_.store.durability == "power" ? store::Durability::power
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
    pipeline_->on_command([this](const pipeline::ChatCommand& cmd) { on_chat_command(cmd); });

    server::ServerOptions so = server_options(cfg_);
    server_ = std::make_unique<server::Server>(io_, clock_, *this, *pipeline_, so);
    if (auto err = wire_generation()) {
      spdlog::critical("{}", *err);
      return exit_code::config_invalid;
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
    install_signals();
    start_generation_io();
    server_->start();
    start_watcher();
    read_update_sentinel();
    spdlog::info("supervisor: {} ({}); restart mode {}", runtime::to_string(sup_.kind),
                 sup_.why.empty() ? "none detected" : sup_.why, cfg_.gateway.restart.mode);
    notifier_->ready(status_line());
    notifier_->start_watchdog();
    report_ready_to_predecessor();
    if (!config_path_.empty() && degraded_reason_.empty() &&
        !fs::exists(config::last_good_path(config_path_))) {
      // The first good start: from now on there is a copy to fall back to.
      if (auto saved = config::save_last_good(config_path_, applied_text_); !saved.ok) {
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
    if (!file_errors_.empty() || !degraded_reason_.empty()) {
      // Serving on the config it had; a probe should still see that the file is broken.
      detail("config", config_health());
    }
    if (state_ != State::running) {
      r.ready = false;
      r.reason = to_string(state_);
      if (state_ == State::failed && !last_start_error_.empty()) {
        detail("error", last_start_error_);
      }
      return r;
    }
    json waiting = json::array();
    for (auto& [id, ch] : channels_) {
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
    std::vector<std::string> secrets = config::secret_values(cfg_);
    secrets.insert(secrets.end(), file_secrets_.begin(), file_secrets_.end());
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

  json config_health() const {
    json c = {{"path", config_path_},
              {"valid", file_errors_.empty()},
              {"errors", file_errors_},
              {"appliedHash", applied_hash_},
              {"reloadMode", cfg_.gateway.reload.mode},
              {"watching", watcher_ != nullptr},
              {"reloads", reloads_total_},
              {"lastReload", last_reload_}};
    if (!degraded_reason_.empty()) c["degraded"] = degraded_reason_;
    return c;
  }

  server::LifecycleView lifecycle() override {
    server::LifecycleView v;
    v.state = to_string(state_);
    v.accepting_connections = accepting_;
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
    if (state_ == State::stopping || stop_requested_) {
      return {{"ok", true}, {"status", "already-stopping"}};
    }
    // Answer first: the connection this came on is closed by the drain.
    executor_.post([this, reason] { stop(reason.empty() ? "requested" : reason); });
    return {{"ok", true}, {"status", "stopping"}};
  }

  // The shape of OpenClaw's health snapshot (hello-ok snapshot.health): a failing store is an
  // error for the caller, not "ok": false.
  json health() override {
    const auto t0 = clock_.now();
    json channels = json::object();
    json order = json::array();
    for (auto& [id, ch] : channels_) {
      channels[id] = {{"ready", ch->ready()}, {"agent", pipeline_->agent_of(id)}};
      order.push_back(id);
    }
    store_->counts();  // throws when the store cannot be read
    return {{"ok", true},
            {"ts", clock_.wall_ms()},
            {"durationMs", std::chrono::duration_cast<std::chrono::milliseconds>(clock_.now() - t0)
                               .count()},
            {"channels", channels},
            {"channelOrder", order},
            {"defaultAgentId", cfg_.default_agent}};
  }

  json status() override {
    json channels = json::array();
    for (auto& [id, ch] : channels_) {
      channels.push_back({{"id", id},
                          {"ready", ch->ready()},
                          {"agent", pipeline_->agent_of(id)},
                          {"starts", channel_starts_[id]}});
    }
    json agents = json::array();
    for (auto& [id, a] : agents_) agents.push_back({{"id", id}, {"type", a->type()}});
    json runs = json::array();
    for (const auto& r : pipeline_->active_runs()) {
      runs.push_back({{"runId", r.run_id},
                      {"sessionKey", r.session_key},
                      {"startedAtMs", r.started_at_ms}});
    }
    json store_counts;
    try {
      auto c = store_->counts();
      store_counts = {{"inboxTotal", c.inbox_total},
                      {"inboxUnfinished", c.inbox_unfinished},
                      {"outboxPending", c.outbox_pending},
                      {"outboxSent", c.outbox_sent},
                      {"outboxStale", c.outbox_stale},
                      {"sessionsSuspended", c.sessions_suspended},
                      {"sessions", c.sessions}};
    } catch (const std::exception& e) {
      store_counts = {{"error", e.what()}};
    }
    json out = {{"version", DRAWBRIDGE_VERSION},
                {"state", to_string(state_)},
                {"pid", ::getpid()},
                {"uptimeMs", uptime_ms()},
                {"generation", generation_},
                {"bind", bind_address(cfg_.gateway.bind)},
                {"port", server_ ? server_->port() : cfg_.gateway.port},
                {"configPath", config_path_},
                {"dataDir", data_dir_},
                {"cleanStart", clean_start_},
                {"channels", channels},
                {"agents", agents},
                {"activeRuns", runs},
                {"queueDepth", pipeline_->waiting_count()},
                {"debounced", pipeline_->debounced_count()},
                {"pendingDeliveries", pipeline_->pending_deliveries()},
                {"connections", server_ ? server_->connection_count() : 0},
                {"store", store_counts},
                {"drain", drain_status()},
                {"lastRestart", last_restart_},
                {"restarts", restarts_total_},
                {"binary", self_exe_},
                {"supervisor", runtime::to_string(sup_.kind)},
                {"restartMode", cfg_.gateway.restart.mode},
                {"inheritedSocket", inherited_socket_},
                {"lastUpdate", last_update_},
                {"config", config_health()},
                {"degraded", degraded_reason_.empty() ? json(nullptr) : json(degraded_reason_)},
                {"lastStartError", last_start_error_.empty() ? json(nullptr)
                                                             : json(last_start_error_)}};
    if (auto w = scheduler_.next_wakeup(); w && scheduler_.pending()) {
      out["scheduledRestart"] = {
          {"reason", scheduler_.pending()->reason},
          {"dueInMs", std::max<std::int64_t>(
                          0, std::chrono::duration_cast<std::chrono::milliseconds>(
                                 w->at - clock_.now())
                                 .count())},
          {"cycle", w->cycle}};
    }
    return out;
  }

  std::string metrics_text() override {
    const auto& m = pipeline_->metrics();
    std::ostringstream o;
    auto metric = [&](const char* name, const char* type, const char* help, auto value) {
      o << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n'
        << name << ' ' << value << '\n';
    };
    metric("drawbridge_inbound_messages_total", "counter",
           "Inbound messages committed to the inbox.", m.inbound_total);
    metric("drawbridge_inbound_duplicates_total", "counter",
           "Inbound messages recognised as duplicates and not run again.", m.inbound_duplicates);
    o << "# HELP drawbridge_turns_total Agent turns by outcome.\n"
         "# TYPE drawbridge_turns_total counter\n"
      << "drawbridge_turns_total{outcome=\"started\"} " << m.turns_started << '\n'
      << "drawbridge_turns_total{outcome=\"completed\"} " << m.turns_completed << '\n'
      << "drawbridge_turns_total{outcome=\"failed\"} " << m.turns_failed << '\n'
      << "drawbridge_turns_total{outcome=\"aborted\"} " << m.turns_aborted << '\n';
    metric("drawbridge_replies_sent_total", "counter", "Reply parts delivered to channels.",
           m.replies_sent);
    metric("drawbridge_reply_send_failures_total", "counter",
           "Reply parts a channel refused for good.", m.reply_send_failures);
    metric("drawbridge_replies_stale_total", "counter",
           "Undelivered reply parts not sent at a start because older than messages.replyTtlMs.",
           m.replies_stale);
    metric("drawbridge_sessions_suspended_total", "counter",
           "Sessions suspended after 3 interrupted restarts in a row.", m.sessions_suspended);
    metric("drawbridge_turns_active", "gauge", "Agent turns running now.",
           pipeline_->active_runs().size());
    metric("drawbridge_queue_depth", "gauge", "Messages waiting for their session's turn.",
           pipeline_->waiting_count());
    metric("drawbridge_deliveries_pending", "gauge", "Replies being delivered now.",
           pipeline_->pending_deliveries());
    metric("drawbridge_restarts_total", "counter", "Gateway restarts in this process.",
           restarts_total_);
    metric("drawbridge_generation", "gauge", "Generation of the running gateway (1 + restarts).",
           generation_);
    metric("drawbridge_errors_total", "counter", "Errors on the message path.", m.errors_total);
    metric("drawbridge_websocket_connections", "gauge", "Open WebSocket connections.",
           server_ ? server_->connection_count() : 0);
    metric("drawbridge_ready", "gauge", "1 when /readyz answers 200.",
           readiness().ready ? 1 : 0);
    metric("drawbridge_uptime_seconds", "gauge", "Seconds since the process started.",
           uptime_ms() / 1000.0);
    return o.str();
  }

  std::int64_t uptime_ms() override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(clock_.now() - started_at_)
        .count();
  }

 private:
  // OpenClaw's value: clients reconnect after this long.
  static constexpr std::int64_t kRestartExpectedMs = 1500;

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
    std::string host = bind_address(cfg_.gateway.bind);
    if (host == "0.0.0.0") host = "127.0.0.1";
    if (host.find(':') != std::string::npos) host = "[" + host + "]";
    const std::string url = "ws://" + host + ":" + std::to_string(server_->port());
    ::setenv("DRAWBRIDGE_GATEWAY_URL", url.c_str(), 1);
  }

  // --- generations ---

  // Builds the agents and channels of cfg_ and wires them into the pipeline. The store was
  // opened already; the marker check and repair belong to the generation too.
  std::optional<std::string> wire_generation() {
    pipeline_->configure(pipeline_settings(cfg_));
    for (const auto& [id, a] : cfg_.agents) {
      std::string error;
      auto agent = make_agent(a, error);
      if (!agent) return error;
      agents_[id] = std::move(agent);
    }
    for (const auto& [id, ch] : cfg_.channels) {
      if (auto err = add_channel(id, cfg_)) return err;
    }
    if (!channels_.count("local")) {
      spdlog::warn("the local channel is disabled: chat.send and POST /v1/messages will refuse "
                   "messages");
    }
    return std::nullopt;
  }

  std::unique_ptr<pipeline::Agent> make_agent(const config::AgentSettings& a, std::string& error) {
    if (a.type == "echo") {
      return std::make_unique<agents::EchoAgent>(
          io_, agents::EchoSettings{a.delay_ms, a.chunk_chars, a.prefix});
    }
    if (a.type == "exec") {
      return std::make_unique<agents::ExecAgent>(
          io_, agents::ExecSettings{a.command, a.timeout_ms, a.kill_grace_ms, a.cwd, a.env});
    }
    error = "agents." + a.id + ".type: \"" + a.type +
            "\" is not available in this build (available: echo, exec)";
    return nullptr;
  }

  // What validation cannot know: the parts of `cfg` this build cannot run.
  static std::vector<config::ConfigError> unbuildable(const config::Config& cfg) {
    std::vector<config::ConfigError> out;
    for (const auto& [id, a] : cfg.agents) {
      if (a.type != "echo" && a.type != "exec") {
        out.push_back({"/agents/" + id + "/type", "agents." + id + ".type",
                       "\"" + a.type + "\" is not available in this build (available: echo, exec)"});
      }
    }
    return out;
  }

  std::string agent_of(const std::string& channel, const config::Config& cfg) const {
    auto it = cfg.channels.find(channel);
    if (it == cfg.channels.end() || it->second.agent.empty()) return cfg.default_agent;
    return it->second.agent;
  }

  // Creates channel `id` of `cfg` (when enabled and available) and wires it into the pipeline;
  // it starts with start_generation_io() or, in a hot reload, right after.
  std::optional<std::string> add_channel(const std::string& id, const config::Config& cfg) {
    auto settings = cfg.channels.find(id);
    if (settings == cfg.channels.end() || !settings->second.enabled) return std::nullopt;
    const std::string agent_id = agent_of(id, cfg);
    auto agent = agents_.find(agent_id);
    if (agent == agents_.end()) return "channels." + id + ".agent: unknown agent " + agent_id;
    if (id != "local") {
      spdlog::warn("channels.{}: this adapter is not available in this build; ignored", id);
      return std::nullopt;
    }
    channels_[id] = std::make_unique<channels::LocalChannel>(id);
    pipeline_->add_channel(channels_[id].get(), agent->second.get(),
                           settings->second.max_message_chars, agent_id);
    return std::nullopt;
  }

  void start_channel(const std::string& id) {
    auto it = channels_.find(id);
    if (it == channels_.end()) return;
    it->second->start();
    const auto n = ++channel_starts_[id];
    spdlog::info("channel {} started (start {} in this process)", id, n);
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
    channels_stopping_ = false;
    for (auto& [id, ch] : channels_) start_channel(id);
    accepting_ = true;
    state_ = State::running;
  }

  // The next generation of an in-process restart: the drain finished, the old channels are
  // stopped and the server's clients are gone.
  void start_next_generation() {
    const auto t0 = clock_.now();
    state_ = State::restarting;
    accepting_ = false;
    pipeline_->reset();
    channels_.clear();
    agents_.clear();

    auto fail = [this](const std::string& why) {
      state_ = State::failed;
      accepting_ = true;  // status and health stay reachable
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
      lock_ = GatewayLock::acquire(data_dir_, cfg_.gateway.port, error);
      if (!lock_) return fail(error);
    }
    // The file as it is now; when it is invalid, the last valid text seen (the restart was
    // asked for by a valid change, or by someone who does not know the file broke since).
    std::string text;
    Candidate c;
    if (config_path_.empty()) {
      c = candidate({});
    } else {
      auto f = read_config_file();
      text = f.text;
      if (f.error.empty()) {
        file_secrets_ = config::secret_values_in_text(text);
        update_log_secrets();
      }
      c = f.error.empty() ? candidate(text) : Candidate{std::nullopt, {{"", "", f.error}}};
      if (f.error.empty()) seen_hash_ = config::content_hash(f.text);
      if (!c.config) {
        file_errors_ = errors_json(c.errors);
        std::string why = "config " + config_path_ + " is invalid: " + errors_text(c.errors);
        auto fallback = last_valid_text_.empty() ? Candidate{} : candidate(last_valid_text_);
        if (!fallback.config) return fail(why);
        spdlog::error("{}; this generation starts on the last valid config seen instead", why);
        text = last_valid_text_;
        c = std::move(fallback);
      } else {
        file_errors_ = json::array();
      }
    }
    config::Config next = std::move(*c.config);
    if (next.store.data_dir != data_dir_ || next.store.durability != cfg_.store.durability) {
      spdlog::warn("store.dataDir/store.durability changed: they take effect when the process "
                   "restarts; keeping {}",
                   data_dir_);
      next.store = cfg_.store;
    }
    const bool address_changed =
        next.gateway.port != cfg_.gateway.port || next.gateway.bind != cfg_.gateway.bind;
    const bool token_changed = next.gateway.auth_token != cfg_.gateway.auth_token;
    cfg_ = std::move(next);
    update_log_secrets();
    if (token_changed) set_token(cfg_);
    spdlog::set_level(spdlog::level::from_str(cfg_.logging.level));
    scheduler_.set_options(scheduler_options(cfg_));
    if (auto err = wire_generation()) return fail(*err);
    if (address_changed) {
      if (auto err = server_->relisten(bind_address(cfg_.gateway.bind), cfg_.gateway.port)) {
        return fail(*err);
      }
      export_gateway_url();
    }
    last_start_error_.clear();
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
    if (after_last_reply_ms_) last_restart_["afterLastReplyMs"] = *after_last_reply_ms_;
    notifier_->ready(status_line());
    spdlog::info("generation {} ready: restart ({}) took {:.1f} ms, the new generation started "
                 "in {:.1f} ms",
                 generation_, restart_reason_, total_ms, ms_since(t0, now));
  }

  // --- config: config.get, config.patch/apply, the watcher, hot reload ---

  struct FileRead {
    bool exists = false;
    std::string text;
    std::string error;
  };

  // `error` is set when the file is missing (exists false) or cannot be used as a config:
  // not a regular file (a FIFO would block the loop), larger than config::kMaxConfigBytes.
  FileRead read_config_file() const {
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

  static json errors_json(const std::vector<config::ConfigError>& errors) {
    json out = json::array();
    for (const auto& e : errors) {
      out.push_back({{"path", e.path}, {"pointer", e.pointer}, {"message", e.message}});
    }
    return out;
  }

  static std::string errors_text(const std::vector<config::ConfigError>& errors) {
    std::string out;
    for (const auto& e : errors) out += (out.empty() ? "" : "; ") + e.to_string();
    return out;
  }

  // The file's text as a config, with the environment and command line applied, or every
  // error (validation and what this build cannot run).
  struct Candidate {
    std::optional<config::Config> config;
    std::vector<config::ConfigError> errors;
  };
  Candidate candidate(const std::string& text) const {
    Candidate c;
    auto loaded = config::load_config_text(config_path_, text);
    if (!loaded.parsed.config) {
      c.errors = std::move(loaded.parsed.errors);
      return c;
    }
    config::Config next = *loaded.parsed.config;
    apply_overrides(next, options_);
    c.errors = unbuildable(next);
    if (c.errors.empty()) c.config = std::move(next);
    return c;
  }

  core::ReloadPlan plan_for(const config::Config& next) const {
    auto changed = config::diff_paths(config::effective_json(cfg_), config::effective_json(next));
    const auto mode = core::parse_reload_mode(next.gateway.reload.mode)
                          .value_or(core::ReloadMode::hybrid);
    return core::plan_reload(changed, mode);
  }

  static json plan_json(const core::ReloadPlan& plan) {
    json paths = json::array();
    for (const auto& d : plan.paths) {
      json p = {{"path", d.path}, {"kind", core::to_string(d.kind)}, {"rule", d.rule}};
      if (d.action) p["action"] = core::to_string(*d.action);
      if (!d.target.empty()) p["target"] = d.target;
      paths.push_back(std::move(p));
    }
    json actions = json::array();
    for (const auto& a : plan.actions) {
      actions.push_back({{"action", core::to_string(a.action)}, {"target", a.target}});
    }
    return {{"kind", core::to_string(plan.kind)},
            {"mode", plan.apply ? "hybrid" : "off"},
            {"applied", false},
            {"actions", actions},
            {"paths", paths}};
  }

  static std::string plan_summary(const core::ReloadPlan& plan) {
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

  json config_get() override {
    auto f = read_config_file();
    std::string raw;
    bool redacted = false;
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
    }
    json errors = json::array();
    bool valid = true;
    if (!config_path_.empty()) {
      if (!f.error.empty()) {
        valid = false;
        errors.push_back({{"path", ""}, {"pointer", ""}, {"message", f.error}});
      } else {
        auto c = candidate(f.text);
        valid = c.errors.empty();
        errors = errors_json(c.errors);
      }
    }
    const auto hash = config::content_hash(f.exists ? f.text : "");
    return {{"path", config_path_},
            {"exists", f.exists},
            {"raw", raw},
            {"rawRedacted", redacted},
            {"hash", hash},
            {"config", config::redact(config::effective_json(cfg_))},
            {"valid", valid},
            {"errors", errors},
            {"appliedHash", applied_hash_},
            {"pending", !config_path_.empty() && hash != applied_hash_},
            {"degraded", !degraded_reason_.empty()},
            {"reloadMode", cfg_.gateway.reload.mode}};
  }

  void config_write(const server::ConfigWrite& w,
                    std::function<void(server::ConfigWriteResult)> done) override {
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
    if (state_ != State::running && state_ != State::failed) {
      ConfigWriteError e;
      e.code = "GATEWAY_BUSY";
      e.message = std::string("the gateway is ") + to_string(state_) + "; try again shortly";
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
                                         config::iso_timestamp(std::chrono::system_clock::now()),
                                         DRAWBRIDGE_VERSION});
    if (!edit.errors.empty()) return invalid(edit.errors, "the change");
    if (edit.unchanged) {
      json out = {{"ok", true},         {"path", config_path_}, {"hash", current_hash},
                  {"written", false},   {"changedPaths", json::array()},
                  {"plan", plan_json(core::plan_reload({}, core::ReloadMode::hybrid))}};
      out["plan"]["applied"] = true;
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
    update_log_secrets();
    last_valid_text_ = text;
    file_errors_ = json::array();
    spdlog::info("{} wrote {}{}: {}", w.whole ? "config.apply" : "config.patch", config_path_,
                 w.note.empty() ? "" : " (" + w.note + ")", plan_summary(plan));
    json changed = json::array();
    for (const auto& d : plan.paths) changed.push_back(d.path);
    json base = {{"ok", true},
                 {"path", config_path_},
                 {"hash", hash},
                 {"written", true},
                 {"changedPaths", changed}};
    std::optional<core::Duration> delay;
    if (w.restart_delay_ms) delay = core::Duration{*w.restart_delay_ms};
    apply_change(*c.config, text, plan, "rpc", delay,
                 [done, base](json plan_out) mutable {
                   base["plan"] = std::move(plan_out);
                   done(base);
                 });
  }

  // The watcher (or SIGHUP) read the file.
  void on_config_file(const WatchedFile& f, const std::string& source) {
    if (f.exists) {
      file_secrets_ = config::secret_values_in_text(f.text);
      update_log_secrets();
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
    if (state_ != State::running && state_ != State::failed) {
      // The next generation reads the file itself.
      spdlog::info("config {} changed while {}: the next generation reads it", config_path_,
                   to_string(state_));
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
    if (state_ == State::failed) {
      spdlog::info("config {} changed and is valid: retrying the failed start", config_path_);
      core::RestartRequest req;
      req.reason = "config change (" + source + ") after a failed start";
      req.source = core::RestartSource::config;
      schedule_restart(req, {});
      return;
    }
    const auto plan = plan_for(*c.config);
    spdlog::info("config {} changed ({}): {}", config_path_, source, plan_summary(plan));
    apply_change(*c.config, f.text, plan, source, std::nullopt, [](json) {});
  }

  // Serializes reloads: a hot reload that restarts a channel finishes before the next starts.
  void apply_change(config::Config next, std::string text, core::ReloadPlan plan,
                    std::string source, std::optional<core::Duration> delay,
                    std::function<void(json)> done) {
    auto job = [this, next = std::move(next), text = std::move(text), plan = std::move(plan),
                source = std::move(source), delay, done = std::move(done)]() mutable {
      run_change(std::move(next), std::move(text), std::move(plan), std::move(source), delay,
                 std::move(done));
    };
    reload_queue_.push_back(std::move(job));
    if (!reload_busy_) next_reload();
  }

  void next_reload() {
    if (reload_queue_.empty()) {
      reload_busy_ = false;
      return;
    }
    reload_busy_ = true;
    auto job = std::move(reload_queue_.front());
    reload_queue_.pop_front();
    job();
  }

  void run_change(config::Config next, std::string text, core::ReloadPlan plan, std::string source,
                  std::optional<core::Duration> delay, std::function<void(json)> done) {
    const auto t0 = clock_.now();
    json out = plan_json(plan);
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
    if (state_ != State::running) {
      // A drain began while this waited: the next generation reads the file.
      out["note"] = "the gateway is restarting; the next generation reads the new config";
      done(out);
      return next_reload();
    }
    if (!plan.apply) {
      spdlog::warn("gateway.reload.mode is off: not applied until the next restart: {}",
                   plan_summary(plan));
      out["note"] = "gateway.reload.mode is off: applies at the next restart";
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
      auto r = schedule_restart(req, {});
      out["restart"] = {{"status", r["status"]}, {"cycle", r["cycle"]}, {"dueInMs", r["dueInMs"]}};
      out["applied"] = true;
      record(plan, true, {});
      done(out);
      return next_reload();
    }
    run_hot_actions(next, plan, [this, next, text, plan, out, done, record,
                                 source](const std::string& error) mutable {
      if (!error.empty()) {
        spdlog::error("hot reload failed: {}; restarting instead", error);
        core::RestartRequest req;
        req.reason = "config change (" + source + "): hot reload failed: " + error;
        req.source = core::RestartSource::config;
        auto r = schedule_restart(req, {});
        out["error"] = error;
        out["restart"] = {{"status", r["status"]}, {"cycle", r["cycle"]}, {"dueInMs", r["dueInMs"]}};
        record(plan, false, error);
        done(out);
        return next_reload();
      }
      commit_config(std::move(next), text);
      if (auto pending = scheduler_.pending(); pending && pending->source == core::RestartSource::config) {
        if (scheduler_.cancel("hot reload applied the config")) {
          restart_timer_.cancel();
          spdlog::info("the scheduled config restart is no longer needed: cancelled");
          out["cancelledRestart"] = true;
        }
      }
      out["applied"] = true;
      record(plan, true, {});
      spdlog::info("config applied: {}", plan_summary(plan));
      done(out);
      next_reload();
    });
  }

  // The new config becomes the running one: settings read per message, log level, restart
  // options, watcher debounce; the text that ran before is kept as last-known-good.
  void commit_config(config::Config next, const std::string& text) {
    next.store = cfg_.store;  // restart-class: only a restart changes it
    if (!applied_text_.empty() && applied_text_ != text && !config_path_.empty()) {
      if (auto saved = config::save_last_good(config_path_, applied_text_); !saved.ok) {
        spdlog::warn("cannot keep the last-known-good config: {}", saved.error);
      }
    }
    cfg_ = std::move(next);
    update_log_secrets();
    pipeline_->configure(pipeline_settings(cfg_));
    spdlog::set_level(spdlog::level::from_str(cfg_.logging.level));
    scheduler_.set_options(scheduler_options(cfg_));
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

  // Agents first (channels restarted next wire to the new ones), then channels one after the
  // other: each stops completely before its successor starts.
  void run_hot_actions(const config::Config& next, const core::ReloadPlan& plan,
                       std::function<void(const std::string&)> done) {
    std::vector<std::string> channels;
    bool rebind = false;
    for (const auto& a : plan.actions) {
      switch (a.action) {
        case core::HotAction::update_auth:
          if (next.gateway.auth_token != cfg_.gateway.auth_token) {
            set_token(next);
            spdlog::info("gateway.auth changed: new connections need the new token");
          }
          break;
        case core::HotAction::swap_agent: {
          auto it = next.agents.find(a.target);
          if (it == next.agents.end()) {
            if (auto old = agents_.find(a.target); old != agents_.end()) {
              retire_agent(std::move(old->second));
              agents_.erase(old);
              spdlog::info("agent {} removed", a.target);
            }
          } else {
            std::string error;
            auto agent = make_agent(it->second, error);
            if (!agent) return done(error);
            if (auto old = agents_.find(a.target); old != agents_.end()) {
              retire_agent(std::move(old->second));
            }
            agents_[a.target] = std::move(agent);
            spdlog::info("agent {} ({}) swapped: new turns use the new settings", a.target,
                         it->second.type);
          }
          rebind = true;
          break;
        }
        case core::HotAction::rebind_agents:
          rebind = true;
          break;
        case core::HotAction::restart_channel:
          channels.push_back(a.target);
          break;
      }
    }
    if (rebind) {
      for (auto& [id, ch] : channels_) {
        if (std::find(channels.begin(), channels.end(), id) != channels.end()) continue;
        const std::string agent_id = agent_of(id, next);
        auto agent = agents_.find(agent_id);
        if (agent == agents_.end()) return done("channels." + id + ": unknown agent " + agent_id);
        pipeline_->set_agent(id, agent->second.get(), agent_id);
      }
    }
    restart_channels(std::move(channels), 0, next, std::move(done));
  }

  void retire_agent(std::unique_ptr<pipeline::Agent> agent) {
    // Its running turns may still use it: freed once no turn runs.
    retired_agents_.push_back(std::move(agent));
    pipeline_->work().when_idle({core::WorkKind::turn}, [this, gen = generation_] {
      executor_.post([this, gen] {
        if (gen == generation_ && pipeline_->active_runs().empty()) retired_agents_.clear();
      });
    });
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
    auto start_new = [this, id, next, done, gen = generation_](
                         std::shared_ptr<pipeline::Channel> old) {
      // Runs after the old one stopped; it stays alive until its route is replaced.
      if (gen != generation_ || channels_stopping_ || state_ != State::running) {
        return done({});  // a drain took over: the next generation starts channels
      }
      std::optional<std::string> error;
      if (next.channels.count(id) && next.channels.at(id).enabled) {
        error = add_channel(id, next);
      } else {
        pipeline_->remove_channel(id);
        if (old) spdlog::info("channel {} stopped and removed", id);
      }
      old.reset();
      if (error) return done(*error);
      start_channel(id);
      done({});
    };
    auto it = channels_.find(id);
    if (it == channels_.end()) {
      start_new(nullptr);
      return;
    }
    std::shared_ptr<pipeline::Channel> old(std::move(it->second));
    channels_.erase(it);
    spdlog::info("channel {}: stopping for a config reload", id);
    old->stop([this, old, start_new]() mutable {
      executor_.post([old, start_new]() mutable { start_new(std::move(old)); });
    });
  }

  // --- process restarts: supervised exit, re-exec hand-off, update ---

  std::string status_line() const {
    std::string out = std::string(to_string(state_)) + ", generation " +
                      std::to_string(generation_) + ", " + std::to_string(channels_.size()) +
                      " channel(s)";
    if (!degraded_reason_.empty()) out += ", DEGRADED: config invalid, on last-known-good";
    return out;
  }

  std::string update_sentinel_path() const {
    return (fs::path(data_dir_) / "update.json").string();
  }

  void write_update_sentinel(const json& j) {
    last_update_ = j;
    if (auto w = config::write_atomic(update_sentinel_path(), j.dump(2) + "\n"); !w.ok) {
      spdlog::warn("cannot write the update sentinel: {}", w.error);
    }
  }

  // The outcome of the last update, kept across the hand-off: the predecessor writes
  // "handed-over" naming our pid; we confirm it once we serve.
  void read_update_sentinel() {
    std::string error;
    auto text = config::read_text_file(update_sentinel_path(), error);
    if (!text) return;
    auto parsed = config::parse_bounded_json(*text);
    if (!parsed.ok() || !parsed.value.is_object()) return;
    json j = std::move(parsed.value);
    if (j.value("outcome", "") == "handed-over" && j.value("toPid", 0) == ::getpid()) {
      j["outcome"] = "ok";
      j["version"] = DRAWBRIDGE_VERSION;
      j["completedAtMs"] = clock_.wall_ms();
      spdlog::info("update from {} to {} complete: this process (pid {}) serves",
                   j.value("fromVersion", "?"), DRAWBRIDGE_VERSION, ::getpid());
      write_update_sentinel(j);
      return;
    }
    last_update_ = j;
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
    drain_timer_.expires_after(pause);
    drain_timer_.async_wait([this](boost::system::error_code) { finish_process(); });
  }

  // Re-exec (or update): the successor gets the listening socket and the gateway lock; we exit
  // once it says it is ready. Connections arriving meanwhile wait in the socket's backlog.
  void hand_off() {
    const auto t0 = clock_.now();
    const bool update = restart_is_update_;
    const std::string binary = restart_binary_.empty() ? self_exe_ : restart_binary_;
    if (lock_) {
      lock_->release();
      lock_.reset();
    }
    SuccessorOptions o;
    o.binary = binary;
    o.argv = options_.argv;
    if (o.argv.empty()) {
      o.argv = {binary, "run", "--data-dir", data_dir_};
      if (!config_path_.empty()) o.argv.insert(o.argv.begin() + 1, {"--config", config_path_});
    }
    o.argv[0] = binary;
    o.listen_fd = server_->listen_fd();
    o.extra_env["DRAWBRIDGE_PREDECESSOR_PID"] = std::to_string(::getpid());
    o.extra_env["WATCHDOG_PID"] = "";  // ours; the successor's watchdog is its own
    o.umask = started_umask();  // it keeps its files private itself
    auto succ = spawn_successor(o);
    if (!succ.error.empty()) return hand_off_failed(succ.pid, succ.error, update, binary);
    spdlog::info("{}: started {} (pid {}) on the listening socket; waiting for it to be ready",
                 update ? "update" : "re-exec", binary, succ.pid);
    if (update) {
      write_update_sentinel({{"outcome", "handed-over"},
                             {"binary", binary},
                             {"fromVersion", DRAWBRIDGE_VERSION},
                             {"fromPid", ::getpid()},
                             {"toPid", succ.pid},
                             {"startedAtMs", clock_.wall_ms()}});
    }
    await_successor(io_, succ.ready_fd, std::chrono::seconds(10),
                    [this, pid = succ.pid, update, binary, t0](bool ok, std::string why) {
                      if (!ok) return hand_off_failed(pid, why, update, binary);
                      notifier_->main_pid(pid);
                      notifier_->barrier(std::chrono::seconds(1));
                      spdlog::info("handed over to pid {} in {:.1f} ms ({}); exiting", pid,
                                   ms_since(t0, clock_.now()), why);
                      exit_code_ = exit_code::ok;
                      finish_process();
                    });
  }

  void hand_off_failed(pid_t pid, const std::string& why, bool update, const std::string& binary) {
    if (pid > 0) {
      ::kill(-pid, SIGKILL);  // its own session and process group (setsid)
      ::kill(pid, SIGKILL);
      int st = 0;
      while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
      }
    }
    spdlog::error("{} to {} failed: {}; restarting in this process on the running binary",
                  update ? "update" : "re-exec", binary, why);
    if (update) {
      write_update_sentinel({{"outcome", "failed"},
                             {"binary", binary},
                             {"error", why},
                             {"fromVersion", DRAWBRIDGE_VERSION},
                             {"atMs", clock_.wall_ms()}});
    }
    server_->resume_accepting();
    start_next_generation();  // takes the lock again
  }

  json request_update(const std::string& binary, const std::string& reason) override {
    std::error_code ec;
    const auto path = fs::absolute(binary, ec).lexically_normal().string();
    if (binary.empty() || !fs::is_regular_file(path, ec) || ::access(path.c_str(), X_OK) != 0) {
      return {{"ok", false},
              {"status", "refused"},
              {"note", "not an executable file: " + (path.empty() ? binary : path)}};
    }
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
    if (state_ == State::stopping || stop_requested_) {
      spdlog::info("restart requested ({}) while stopping; ignored", req.reason);
      return {{"ok", true}, {"status", "ignored"}, {"note", "stopping"}, {"dueInMs", 0},
              {"cycle", scheduler_.cycle()}};
    }
    if (state_ == State::failed) {
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
    const auto due = std::chrono::duration_cast<std::chrono::milliseconds>(r.deadline - now);
    switch (r.status) {
      case core::ScheduleStatus::scheduled:
        spdlog::info("restart scheduled in {} ms (cycle {}): {}{}{}", due.count(), r.cycle,
                     req.reason, r.note.empty() ? "" : "; ", r.note);
        break;
      case core::ScheduleStatus::coalesced:
      case core::ScheduleStatus::deferred:
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
    restart_timer_.expires_at(std::chrono::steady_clock::time_point(
        std::chrono::duration_cast<std::chrono::steady_clock::duration>(
            w->at.time_since_epoch())));
    restart_timer_.async_wait([this, cycle = w->cycle](boost::system::error_code ec) {
      if (ec) return;
      auto r = scheduler_.on_timer(clock_.now(), cycle);
      if (r.begin) begin_drain(core::DrainKind::restart, *r.begin);
    });
  }

  void on_chat_command(const pipeline::ChatCommand& cmd) {
    if (cmd.name != "restart") return;
    core::RestartRequest req;
    req.reason = "/restart in " + cmd.channel + " (" + cmd.session_key + ")";
    req.source = core::RestartSource::chat;
    schedule_restart(req, {});
  }

  // --- stop ---

  void stop(const std::string& why) {
    if (state_ == State::stopping || stop_requested_) {
      spdlog::info("{} received while already stopping; ignored", why);
      return;
    }
    stop_requested_ = true;
    if (state_ == State::draining || state_ == State::restarting) {
      // No second teardown: the drain under way finishes, then the process exits instead of
      // starting the next generation.
      spdlog::info("{} received while restarting: the process stops once the drain finishes",
                   why);
      return;
    }
    if (state_ == State::failed) {
      spdlog::info("{}: stopping (the last start had failed)", why);
      exit_code_ = exit_code::crashed;
      server_->close("gateway stopping", std::nullopt,
                     boost::beast::websocket::close_code::service_restart, "service restart",
                     [this] { finish_process(); });
      return;
    }
    restart_timer_.cancel();
    core::RestartAction action{};
    action.reason = why;
    begin_drain(core::DrainKind::stop, action);
  }

  void finish_process() {
    watchdog_.disarm();
    spdlog::info("stopped");
    signals_.cancel();
    restart_timer_.cancel();
    drain_timer_.cancel();
    io_.stop();
  }

  // --- the drain ---

  void begin_drain(core::DrainKind kind, const core::RestartAction& action) {
    const auto now = clock_.now();
    drain_kind_ = kind;
    drain_started_ = now;
    drain_started_wall_ = clock_.wall_ms();
    restart_reason_ = action.reason;
    restart_source_ = kind == core::DrainKind::stop ? "stop" : core::to_string(action.source);
    noticed_chats_.clear();
    last_work_done_at_.reset();
    after_last_reply_ms_.reset();
    ++drain_id_;

    restart_binary_.clear();
    restart_is_update_ = false;
    if (kind == core::DrainKind::restart) {
      restart_is_update_ = action.kind == core::RestartKind::update;
      restart_binary_ = restart_is_update_ ? action.binary : self_exe_;
      restart_mode_ = restart_is_update_
                          ? RestartMode::reexec  // an update always hands the socket over
                          : choose_restart_mode(cfg_.gateway.restart.mode, action.fresh_process,
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
    core::DrainOptions o;
    o.kind = kind;
    std::optional<core::Duration> watchdog;
    if (kind == core::DrainKind::stop) {
      watchdog = core::shutdown_budget(core::ShutdownKind::stop, std::nullopt, supervisor);
      // A stop lets turns finish for most of its budget and keeps the rest for delivery and
      // teardown (20 s of OpenClaw's 25 s).
      o.turn_budget = four_fifths(*watchdog);
    } else {
      watchdog = core::shutdown_budget(core::ShutdownKind::restart, action.drain_budget,
                                       supervisor);
      o.turn_budget = action.drain_budget;
      // Under a supervisor's stop timeout the turns get most of what the watchdog allows.
      if (supervisor && watchdog && (!o.turn_budget || *o.turn_budget > four_fifths(*watchdog))) {
        o.turn_budget = four_fifths(*watchdog);
      }
    }
    if (watchdog) {
      watchdog_budget_ = *watchdog;
      // Saturating: an enormous budget (waitMs near INT64_MAX) is a watchdog that never fires,
      // not a deadline wrapped into the past.
      watchdog_.arm(core::saturating_add(std::chrono::steady_clock::now(), *watchdog));
    }
    state_ = kind == core::DrainKind::stop ? State::stopping : State::draining;
    drain_ = std::make_unique<core::DrainPlan>(o);
    spdlog::info("{} ({}): draining; {} turn(s) running, {} waiting, {} debounced, {} "
                 "deliver(ies); turn budget {}, watchdog {}",
                 kind == core::DrainKind::stop ? "stopping" : "restarting", action.reason,
                 pipeline_->active_runs().size(), pipeline_->waiting_count(),
                 pipeline_->debounced_count(), pipeline_->pending_deliveries(),
                 o.turn_budget ? std::to_string(o.turn_budget->count()) + " ms" : "none",
                 watchdog ? std::to_string(watchdog->count()) + " ms" : "none");
    feed({core::DrainEventType::start});
  }

  // 4/5 of `d` without the overflow of d * 4 for an enormous d.
  static core::Duration four_fifths(core::Duration d) { return d - d / 5; }

  std::vector<core::DrainBlocker> blockers() const {
    std::vector<core::DrainBlocker> out;
    for (const auto& e : pipeline_->work().list({core::WorkKind::turn, core::WorkKind::task})) {
      if (e.exempt) continue;
      out.push_back({e.info.task_id.empty() ? "w" + std::to_string(e.id) : e.info.task_id,
                     e.info.run_id, e.info.session, e.info.status, e.info.label});
    }
    return out;
  }

  // Feeds the drain plan one event and runs what it answers. Callbacks of a drain that has
  // ended (a stale idle) carry its id and are dropped.
  void feed(core::DrainEvent event) {
    if (!drain_) return;
    auto step = drain_->step(event, clock_.now());
    update_snapshot();
    for (auto& action : step.actions) run_action(action);
    if (!drain_) return;
    drain_timer_.cancel();
    if (step.next_deadline) {
      drain_timer_.expires_at(std::chrono::steady_clock::time_point(
          std::chrono::duration_cast<std::chrono::steady_clock::duration>(
              step.next_deadline->time_since_epoch())));
      drain_timer_.async_wait([this, id = drain_id_](boost::system::error_code ec) {
        if (ec || id != drain_id_) return;
        feed({core::DrainEventType::timer, blockers()});
      });
    }
  }

  std::function<void()> drain_event(core::DrainEventType type) {
    return [this, type, id = drain_id_] {
      if (id == drain_id_ && !in_await_ &&
          (type == core::DrainEventType::turns_idle ||
           type == core::DrainEventType::deliveries_idle)) {
        // The drain waited for this: the last turn or reply just finished.
        last_work_done_at_ = clock_.now();
      }
      // Posted: an idle callback may run inside the pipeline's own bookkeeping.
      executor_.post([this, type, id] {
        if (id == drain_id_) feed({type});
      });
    };
  }

  void run_action(const core::DrainAction& a) {
    using T = core::DrainActionType;
    switch (a.type) {
      case T::set_not_ready:
        // /readyz answers 503 from here on (state is draining or stopping).
        break;
      case T::flush_debouncers: {
        const auto n = pipeline_->flush_debouncers();
        if (n > 0) spdlog::info("drain: flushed {} debounce buffer(s) to their sessions", n);
        break;
      }
      case T::await_followups:
        pipeline_->when_followups_drained(drain_event(core::DrainEventType::followups_idle));
        break;
      case T::mark_draining:
        if (!drain_->report().followups_drained) {
          spdlog::warn("drain: {} followup(s) still queued; they run after the restart",
                       pipeline_->waiting_count());
        }
        pipeline_->set_draining(true);
        send_notices(a.notice, pipeline_->active_chats());
        break;
      case T::await_turns:
        in_await_ = true;
        pipeline_->work().when_idle({core::WorkKind::turn, core::WorkKind::task},
                                    drain_event(core::DrainEventType::turns_idle));
        in_await_ = false;
        break;
      case T::log_blockers:
        spdlog::warn("drain waits for {} ms on: {}", a.waited.count(), core::format_blockers(a));
        // A drain that legitimately runs long tells systemd, so its stop timeout does not
        // fire first (the watchdog still bounds us).
        notifier_->extend_timeout(std::chrono::seconds(60));
        notifier_->status("draining for " + std::to_string(a.waited.count() / 1000) + " s: " +
                          core::format_blockers(a));
        break;
      case T::abort_turns: {
        spdlog::warn("drain budget spent after {} ms: aborting {}", a.waited.count(),
                     core::format_blockers(a));
        last_drain_interrupted_ = true;
        if (drain_kind_ == core::DrainKind::stop) {
          interrupted_ = pipeline_->interrupt_all("gateway stopping");
        } else {
          auto chats = pipeline_->abort_for_drain("restart budget spent");
          interrupted_ = chats.size();
          send_notices(core::DrainNotice::interrupted, chats);
        }
        break;
      }
      case T::await_deliveries: {
        // The turn that asked for the restart ends here, answered with what it said so far.
        if (auto n = pipeline_->finish_detached()) {
          spdlog::info("drain: closed {} turn(s) that asked for the restart", n);
        }
        in_await_ = true;
        pipeline_->when_deliveries_idle(drain_event(core::DrainEventType::deliveries_idle));
        in_await_ = false;
        break;
      }
      case T::stop_channels: {
        if (last_work_done_at_) {
          after_last_reply_ms_ = ms_since(*last_work_done_at_, clock_.now());
          spdlog::info("drain: teardown begins {:.3f} ms after the last reply", *after_last_reply_ms_);
        }
        channels_stopping_ = true;
        auto remaining = std::make_shared<std::size_t>(channels_.size());
        auto done = drain_event(core::DrainEventType::channels_stopped);
        if (*remaining == 0) {
          done();
          break;
        }
        for (auto& [id, ch] : channels_) {
          ch->stop([remaining, done] {
            if (--*remaining == 0) done();
          });
        }
        break;
      }
      case T::close_server:
        if (drain_kind_ == core::DrainKind::stop) {
          accepting_ = false;
          // OpenClaw closes with 1012 on every shutdown; only restartExpectedMs tells a restart.
          server_->close("gateway stopping", std::nullopt,
                         boost::beast::websocket::close_code::service_restart, "service restart",
                         drain_event(core::DrainEventType::server_closed));
        } else {
          accepting_ = false;
          state_ = State::restarting;
          if (restart_mode_ != RestartMode::in_process) {
            // The next process serves: connections that arrive from now on wait in the socket's
            // backlog for it (a hand-off, or systemd holding the socket) instead of being
            // served by a process about to exit.
            server_->pause_accepting();
          }
          server_->disconnect_all("gateway restarting", kRestartExpectedMs,
                                  boost::beast::websocket::close_code::service_restart,
                                  "service restart",
                                  drain_event(core::DrainEventType::server_closed));
        }
        break;
      case T::write_clean_marker:
        try {
          pipeline_->flush_and_wait();
          writer_store_->set_value("clean_shutdown", std::to_string(clock_.wall_ms()));
        } catch (const std::exception& e) {
          spdlog::error("cannot write the clean-shutdown marker: {}", e.what());
        }
        break;
      case T::finished: {
        const auto report = drain_->report();
        last_drain_interrupted_ = report.interrupted;
        drain_.reset();
        ++drain_id_;
        drain_timer_.cancel();
        watchdog_.disarm();
        update_snapshot();
        pipeline_->flush_and_wait();
        spdlog::info("drain finished in {:.1f} ms{}", ms_since(drain_started_, clock_.now()),
                     report.interrupted ? " (turns were aborted: no clean-shutdown marker)" : "");
        if (drain_kind_ == core::DrainKind::stop || stop_requested_) {
          finish_process();
        } else if (restart_mode_ == RestartMode::supervised) {
          executor_.post([this] { supervised_exit(); });
        } else if (restart_mode_ == RestartMode::reexec) {
          executor_.post([this] { hand_off(); });
        } else {
          // After the commit callbacks already queued, so acknowledgements still go out.
          executor_.post([this] { start_next_generation(); });
        }
        break;
      }
    }
  }

  // One notice per chat and drain, best effort: a failed send is logged, never waited for.
  void send_notices(core::DrainNotice kind, const std::vector<pipeline::ActiveChat>& chats) {
    for (const auto& chat : chats) {
      if (chat.detached) continue;  // it asked for the restart: it knows
      const auto ch = cfg_.channels.find(chat.channel);
      if (ch == cfg_.channels.end() || !ch->second.notices.enabled) continue;
      const auto& n = ch->second.notices;
      const std::string& text = kind == core::DrainNotice::shutting_down ? n.stopping
                                : kind == core::DrainNotice::interrupted ? n.interrupted
                                                                         : n.restarting;
      if (!noticed_chats_.insert({chat.channel, chat.chat_id, text}).second) continue;
      spdlog::info("notice to {}/{}: {}", chat.channel, chat.chat_id, text);
      pipeline_->send_notice(chat, text, [chat](const std::string& error) {
        if (!error.empty()) {
          spdlog::warn("notice to {}/{} not sent: {}", chat.channel, chat.chat_id, error);
        }
      });
    }
  }

  json drain_status() const {
    if (!drain_) return nullptr;
    auto list = blockers();
    json waiting = json::array();
    const std::size_t shown = std::min<std::size_t>(list.size(), 8);
    for (std::size_t i = 0; i < shown; ++i) {
      waiting.push_back({{"taskId", list[i].task_id},
                         {"runId", list[i].run_id},
                         {"sessionKey", list[i].session},
                         {"status", list[i].status},
                         {"label", list[i].label}});
    }
    return {{"kind", drain_kind_ == core::DrainKind::stop ? "stop" : "restart"},
            {"reason", restart_reason_},
            {"phase", core::to_string(drain_->phase())},
            {"startedAtMs", drain_started_wall_},
            {"waitingOn", waiting},
            {"more", list.size() - shown},
            {"pendingDeliveries", pipeline_->pending_deliveries()},
            {"queued", pipeline_->waiting_count()}};
  }

  // --- the watchdog ---

  // What the watchdog thread writes if the drain never ends; refreshed on the loop.
  void update_snapshot() {
    json snap = drain_status();
    std::lock_guard lock(snapshot_mutex_);
    snapshot_ = std::move(snap);
  }

  void on_watchdog() {
    json drain;
    {
      std::lock_guard lock(snapshot_mutex_);
      drain = snapshot_;
    }
    json recent = json::array();
    if (recent_log_) {
      for (auto& line : recent_log_->last_formatted()) {
        while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
        recent.push_back(line);
      }
    }
    const auto wall = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
    json bundle = {{"reason", "the drain did not finish within " +
                                  std::to_string(watchdog_budget_.count()) + " ms"},
                   {"pid", ::getpid()},
                   {"version", DRAWBRIDGE_VERSION},
                   {"generation", generation_},
                   {"drain", drain},
                   {"blockers", drain.is_object() ? drain["waitingOn"] : json::array()},
                   {"writtenAtMs", wall},
                   {"recentLog", recent}};
    const auto dir = fs::path(data_dir_) / "diagnostics";
    const auto path = dir / ("watchdog-" + std::to_string(wall) + ".json");
    // 0700 and 0600 whatever the umask: a bundle quotes the log and the work in flight.
    auto err = make_private_dir(dir.string());
    if (!err) err = write_private_file(path.string(), bundle.dump(2) + "\n");
    if (err) spdlog::error("watchdog: cannot write the diagnostic bundle: {}", *err);
    spdlog::critical("watchdog: {}; diagnostic bundle written to {}; killing agent commands; "
                     "exiting with code 1",
                     bundle["reason"].get<std::string>(), path.string());
    spdlog::default_logger()->flush();
    agents::signal_all_groups(SIGKILL);  // a trapped command must not outlive the gateway
    std::_Exit(exit_code::crashed);
  }

  // --- signals ---

  void install_signals() {
    ::signal(SIGPIPE, SIG_IGN);
    signals_.add(SIGTERM);
    signals_.add(SIGINT);
    signals_.add(SIGUSR1);
    signals_.add(SIGUSR2);
    signals_.add(SIGHUP);
    wait_signal();
  }

  void wait_signal() {
    signals_.async_wait([this](boost::system::error_code ec, int sig) {
      if (ec) return;
      const std::string name = sig == SIGTERM   ? "SIGTERM"
                               : sig == SIGINT  ? "SIGINT"
                               : sig == SIGUSR1 ? "SIGUSR1"
                               : sig == SIGUSR2 ? "SIGUSR2"
                                                : "SIGHUP";
      if (sig == SIGTERM || sig == SIGINT) {
        stop(name);
      } else if (sig == SIGUSR1 || sig == SIGUSR2) {
        if (!cfg_.commands.restart) {
          spdlog::warn("{} received: restarts from outside are turned off (commands.restart is "
                       "false); ignored",
                       name);
        } else {
          core::RestartRequest req;
          req.reason = name;
          req.source = core::RestartSource::signal;
          req.fresh_process = sig == SIGUSR2;  // SIGUSR2: a fresh process (re-exec/supervised)
          schedule_restart(req, {});
        }
      } else {
        reload(name);
      }
      wait_signal();
    });
  }

  void start_watcher() {
    if (config_path_.empty()) return;
    watcher_ = std::make_unique<ConfigWatcher>(
        io_, config_path_, [this](const WatchedFile& f) { on_config_file(f, "file watcher"); });
    ConfigWatcher::Options o;
    o.debounce = std::chrono::milliseconds(cfg_.gateway.reload.debounce_ms);
    if (auto err = watcher_->start(o)) {
      spdlog::warn("cannot watch {} for changes ({}); send SIGHUP after editing it", config_path_,
                   *err);
      watcher_.reset();
    }
  }

  // SIGHUP: read the file now, as the watcher would.
  void reload(const std::string& why) {
    if (config_path_.empty()) {
      spdlog::info("{}: no config file (running on defaults); nothing to reload", why);
      return;
    }
    // systemd's reload protocol: RELOADING=1 with the monotonic time, READY=1 once done.
    const bool notify = state_ == State::running;
    if (notify) notifier_->reloading("reloading config (" + why + ")");
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
    if (notify && state_ == State::running) notifier_->ready(status_line());
  }

  config::Config cfg_;
  RunOptions options_;
  std::string config_path_;
  std::string data_dir_;
  std::string token_;
  std::unique_ptr<GatewayLock> lock_;
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> recent_log_;
  std::shared_ptr<RedactingSink> redactor_;
  std::vector<std::string> file_secrets_;  // of the config file as last read, valid or not
  std::size_t short_secrets_warned_ = 0;
  boost::asio::io_context io_{1};
  core::SystemClock clock_;
  AsioExecutor executor_;
  boost::asio::signal_set signals_;
  boost::asio::steady_timer restart_timer_;
  boost::asio::steady_timer drain_timer_;
  core::TimePoint started_at_;
  // Destroyed in reverse: the pipeline flushes through the thread, which commits to the writer.
  std::unique_ptr<store::SqliteStore> writer_store_;
  std::unique_ptr<store::SqliteStore> store_;  // reads of the event loop
  std::unique_ptr<StoreThread> store_thread_;
  std::unique_ptr<pipeline::Pipeline> pipeline_;
  std::unique_ptr<server::Server> server_;
  std::map<std::string, std::unique_ptr<pipeline::Agent>> agents_;
  std::map<std::string, std::unique_ptr<pipeline::Channel>> channels_;
  std::map<std::string, std::uint64_t> channel_starts_;  // per channel id, in this process
  bool channels_stopping_ = false;  // the drain stopped the channels: a hot reload starts none

  State state_ = State::starting;
  bool accepting_ = true;
  bool stop_requested_ = false;
  bool clean_start_ = false;
  std::uint64_t generation_ = 0;
  std::uint64_t restarts_total_ = 0;
  core::RestartScheduler scheduler_;
  std::unique_ptr<core::DrainPlan> drain_;
  std::uint64_t drain_id_ = 0;
  core::DrainKind drain_kind_ = core::DrainKind::restart;
  core::TimePoint drain_started_{};
  std::int64_t drain_started_wall_ = 0;
  std::string restart_reason_;
  std::string restart_source_;
  bool last_drain_interrupted_ = false;
  std::size_t interrupted_ = 0;
  std::set<std::tuple<std::string, std::string, std::string>> noticed_chats_;
  json last_restart_ = nullptr;
  bool in_await_ = false;
  std::optional<core::TimePoint> last_work_done_at_;
  std::optional<double> after_last_reply_ms_;
  std::string last_start_error_;
  core::Duration watchdog_budget_{0};
  std::mutex snapshot_mutex_;
  json snapshot_ = nullptr;
  int exit_code_ = exit_code::ok;
  // Config reload (issue 4).
  std::unique_ptr<ConfigWatcher> watcher_;
  std::string applied_text_;     // the file text the running config came from
  std::string applied_hash_;
  std::string seen_hash_;        // the last file content looked at (own writes included)
  std::string last_valid_text_;  // the last valid text seen: a restart falls back to it
  json file_errors_ = json::array();  // why the file on disk is not applied
  std::string degraded_reason_;  // started on the last-known-good copy
  std::vector<std::unique_ptr<pipeline::Agent>> retired_agents_;
  bool reload_busy_ = false;
  std::deque<std::function<void()>> reload_queue_;
  json last_reload_ = nullptr;
  std::uint64_t reloads_total_ = 0;
  // Process restarts (issue 5).
  SupervisorInfo sup_;
  std::unique_ptr<SdNotifier> notifier_;
  RestartMode restart_mode_ = RestartMode::in_process;
  std::string restart_binary_;  // the successor's binary: ours, or an update's
  bool restart_is_update_ = false;
  bool inherited_socket_ = false;
  std::string self_exe_;
  json last_update_ = nullptr;
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
  auto loaded = config::load_config_file(options.config_path);
  // Known before anything about the file is logged: an error about it must not show a secret.
  std::vector<std::string> file_secrets = config::secret_values_in_text(loaded.raw_text);
  if (loaded.parsed.config) {
    auto more = config::secret_values(*loaded.parsed.config);
    file_secrets.insert(file_secrets.end(), more.begin(), more.end());
  }
  redactor->set_secrets(file_secrets);
  StartedFrom from;
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
          redactor->set_secrets(from.file_secrets);
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
  config::Config cfg = *loaded.parsed.config;
  apply_overrides(cfg, options);

  spdlog::set_level(spdlog::level::from_str(cfg.logging.level));
  if (auto err = prepare_data_dir(cfg.store.data_dir)) {
    spdlog::critical("{}", *err);
    return exit_code::config_invalid;
  }
  if (auto changed = tighten_private_files(cfg.store.data_dir, loaded.path); !changed.empty()) {
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
  Gateway gw(std::move(cfg), options, loaded.path, data_dir, token, std::move(lock), recent,
             redactor, std::move(from));
  const int code = gw.run();
  redactor->remove_sink(recent);
  return code;
}

}  // namespace drawbridge::runtime
