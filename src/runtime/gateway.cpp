#include "runtime/gateway.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <cmath>
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

#include "agents/echo_agent.h"
#include "agents/exec_agent.h"
#include "channels/local/local_channel.h"
#include "config/config.h"
#include "core/clock.h"
#include "core/drain_plan.h"
#include "core/restart_scheduler.h"
#include "core/shutdown_budget.h"
#include "pipeline/pipeline.h"
#include "runtime/asio_executor.h"
#include "runtime/gateway_lock.h"
#include "runtime/store_thread.h"
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

// Creates the data folder and proves it is writable; returns an error message otherwise.
std::optional<std::string> prepare_data_dir(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return "store.dataDir: cannot create " + dir + ": " + ec.message();
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
          std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> recent_log)
      : cfg_(std::move(cfg)),
        options_(std::move(options)),
        config_path_(std::move(config_path)),
        data_dir_(std::move(data_dir)),
        token_(std::move(token)),
        lock_(std::move(lock)),
        recent_log_(std::move(recent_log)),
        executor_(io_),
        signals_(io_),
        restart_timer_(io_),
        drain_timer_(io_),
        watchdog_([this] { on_watchdog(); }) {
    started_at_ = clock_.now();
    scheduler_ = core::RestartScheduler(scheduler_options(cfg_));
  }

  int run() {
    const auto t0 = clock_.now();
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
    if (auto err = server_->listen()) {
      spdlog::critical("{}", *err);
      return exit_code::crashed;
    }
    export_gateway_url();
    install_signals();
    start_generation_io();
    server_->start();
    spdlog::info("drawbridge {} ready on http://{}:{} (ws://{}:{}), data in {}, ready in {:.1f} ms",
                 DRAWBRIDGE_VERSION, so.bind_address, server_->port(), so.bind_address,
                 server_->port(), data_dir_, ms_since(t0, clock_.now()));
    io_.run();
    watchdog_.disarm();
    return exit_code_;
  }

  // --- server::Control ---
  server::Readiness readiness() override {
    if (state_ != State::running) return {false, to_string(state_)};
    for (auto& [id, ch] : channels_) {
      if (!ch->ready()) return {false, "channel " + id + " not ready"};
    }
    return {true, {}};
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
      channels[id] = {{"ready", ch->ready()}, {"agent", channel_agent_[id]}};
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
      channels.push_back({{"id", id}, {"ready", ch->ready()}, {"agent", channel_agent_[id]}});
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
      if (a.type == "echo") {
        agents_[id] = std::make_unique<agents::EchoAgent>(io_, a);
      } else if (a.type == "exec") {
        agents_[id] = std::make_unique<agents::ExecAgent>(io_, a);
      } else {
        return "agents." + id + ".type: \"" + a.type +
               "\" is not available in this build (available: echo, exec)";
      }
    }
    for (const auto& [id, ch] : cfg_.channels) {
      if (!ch.enabled) continue;
      const std::string agent_id = ch.agent.empty() ? cfg_.default_agent : ch.agent;
      auto agent = agents_.find(agent_id);
      if (agent == agents_.end()) return "channels." + id + ".agent: unknown agent " + agent_id;
      if (id == "local") {
        channels_[id] = std::make_unique<channels::LocalChannel>(id, *pipeline_);
      } else {
        spdlog::warn("channels.{}: this adapter is not available in this build; ignored", id);
        continue;
      }
      channel_agent_[id] = agent_id;
      pipeline_->add_channel(channels_[id].get(), agent->second.get(), ch.max_message_chars);
    }
    if (!channels_.count("local")) {
      spdlog::warn("the local channel is disabled: chat.send and POST /v1/messages will refuse "
                   "messages");
    }
    return std::nullopt;
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
                       "removed {} dangling transcript entr(ies); their turns run again",
                       repair.sessions.size(), repair.removed_entries);
        }
      }
    } catch (const std::exception& e) {
      spdlog::error("cannot check the clean-shutdown marker: {}", e.what());
    }
    pipeline_->start();
    for (auto& [id, ch] : channels_) ch->start();
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
    channel_agent_.clear();
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
      spdlog::critical("the process stays alive without serving chats and has released the "
                       "gateway lock; fix the cause, then `drawbridge restart` (or SIGUSR1) to "
                       "try again, or stop it");
    };

    if (!lock_) {
      std::string error;
      lock_ = GatewayLock::acquire(data_dir_, cfg_.gateway.port, error);
      if (!lock_) return fail(error);
    }
    auto loaded = config::load_config_file(config_path_);
    if (!loaded.io_error.empty()) return fail(loaded.io_error);
    if (!loaded.parsed.config) {
      std::string why = "invalid config " + (loaded.path.empty() ? "(defaults)" : loaded.path);
      for (const auto& e : loaded.parsed.errors) why += "; " + e.to_string();
      return fail(why);
    }
    config::Config next = *loaded.parsed.config;
    apply_overrides(next, options_);
    if (next.store.data_dir != data_dir_ || next.store.durability != cfg_.store.durability) {
      spdlog::warn("store.dataDir/store.durability changed: they take effect when the process "
                   "restarts; keeping {}",
                   data_dir_);
      next.store = cfg_.store;
    }
    const bool address_changed =
        next.gateway.port != cfg_.gateway.port || next.gateway.bind != cfg_.gateway.bind;
    if (next.gateway.auth_token != cfg_.gateway.auth_token) {
      bool generated = false;
      token_ = resolve_token(next, data_dir_, generated);
      server_->set_token(token_);
    }
    cfg_ = std::move(next);
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
    spdlog::info("generation {} ready: restart ({}) took {:.1f} ms, the new generation started "
                 "in {:.1f} ms",
                 generation_, restart_reason_, total_ms, ms_since(t0, now));
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

    const auto supervisor = env_duration_ms("DRAWBRIDGE_STOP_TIMEOUT_MS");
    core::DrainOptions o;
    o.kind = kind;
    std::optional<core::Duration> watchdog;
    if (kind == core::DrainKind::stop) {
      watchdog = core::shutdown_budget(core::ShutdownKind::stop, std::nullopt, supervisor);
      // A stop lets turns finish for most of its budget and keeps the rest for delivery and
      // teardown (20 s of OpenClaw's 25 s).
      o.turn_budget = *watchdog * 4 / 5;
    } else {
      watchdog = core::shutdown_budget(core::ShutdownKind::restart, action.drain_budget,
                                       supervisor);
      o.turn_budget = action.drain_budget;
      // Under a supervisor's stop timeout the turns get most of what the watchdog allows.
      if (supervisor && watchdog && (!o.turn_budget || *o.turn_budget > *watchdog * 4 / 5)) {
        o.turn_budget = *watchdog * 4 / 5;
      }
    }
    if (watchdog) {
      watchdog_budget_ = *watchdog;
      watchdog_.arm(std::chrono::steady_clock::now() +
                    std::chrono::duration_cast<std::chrono::steady_clock::duration>(*watchdog));
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
    std::error_code ec;
    const auto dir = fs::path(data_dir_) / "diagnostics";
    fs::create_directories(dir, ec);
    const auto path = dir / ("watchdog-" + std::to_string(wall) + ".json");
    {
      std::ofstream out(path);
      out << bundle.dump(2) << '\n';
    }
    spdlog::critical("watchdog: {}; diagnostic bundle written to {}; exiting with code 1",
                     bundle["reason"].get<std::string>(), path.string());
    spdlog::default_logger()->flush();
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
          schedule_restart(req, {});
        }
      } else {
        reload(name);
      }
      wait_signal();
    });
  }

  // SIGHUP: re-reads the config; a valid change restarts in place. Hot apply of the parts that
  // allow it comes with the reload plan.
  void reload(const std::string& why) {
    auto loaded = config::load_config_file(config_path_);
    if (!loaded.io_error.empty()) {
      spdlog::error("{}: cannot reload: {}; the running config stays", why, loaded.io_error);
      return;
    }
    if (!loaded.parsed.config) {
      spdlog::error("{}: the config is invalid; the running config stays:", why);
      for (const auto& e : loaded.parsed.errors) spdlog::error("  {}", e.to_string());
      return;
    }
    config::Config next = *loaded.parsed.config;
    apply_overrides(next, options_);
    if (next.raw == cfg_.raw) {
      spdlog::info("{}: the config has not changed", why);
      return;
    }
    core::RestartRequest req;
    req.reason = "config change (" + why + ")";
    req.source = core::RestartSource::config;
    schedule_restart(req, {});
  }

  config::Config cfg_;
  RunOptions options_;
  std::string config_path_;
  std::string data_dir_;
  std::string token_;
  std::unique_ptr<GatewayLock> lock_;
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> recent_log_;
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
  std::map<std::string, std::string> channel_agent_;

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
  // Last: its thread must stop before anything it reads is destroyed.
  Watchdog watchdog_;
};

}  // namespace

int run_gateway(const RunOptions& options) {
  auto loaded = config::load_config_file(options.config_path);
  if (!loaded.io_error.empty()) {
    spdlog::critical("{}", loaded.io_error);
    return exit_code::config_invalid;
  }
  if (!loaded.parsed.config) {
    spdlog::critical("invalid config {}:", loaded.path.empty() ? "(defaults)" : loaded.path);
    for (const auto& e : loaded.parsed.errors) spdlog::critical("  {}", e.to_string());
    return exit_code::config_invalid;
  }
  config::Config cfg = *loaded.parsed.config;
  apply_overrides(cfg, options);

  spdlog::set_level(spdlog::level::from_str(cfg.logging.level));
  if (auto err = prepare_data_dir(cfg.store.data_dir)) {
    spdlog::critical("{}", *err);
    return exit_code::config_invalid;
  }
  std::string lock_error;
  auto lock = GatewayLock::acquire(cfg.store.data_dir, cfg.gateway.port, lock_error);
  if (!lock) {
    spdlog::critical("{}", lock_error);
    return exit_code::config_invalid;
  }
  bool generated = false;
  std::string token = resolve_token(cfg, cfg.store.data_dir, generated);
  if (generated) {
    spdlog::info("generated an auth token, saved in {}", token_file_path(cfg.store.data_dir));
    spdlog::info("auth token: {}", token);
  }
  const std::string data_dir = cfg.store.data_dir;
  // The last lines of the log, for the watchdog's diagnostic bundle.
  auto recent = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(200);
  recent->set_pattern("%Y-%m-%dT%H:%M:%S.%e %l %v");
  spdlog::default_logger()->sinks().push_back(recent);
  Gateway gw(std::move(cfg), options, loaded.path, data_dir, token, std::move(lock), recent);
  const int code = gw.run();
  auto& sinks = spdlog::default_logger()->sinks();
  sinks.erase(std::remove(sinks.begin(), sinks.end(), recent), sinks.end());
  return code;
}

}  // namespace drawbridge::runtime
