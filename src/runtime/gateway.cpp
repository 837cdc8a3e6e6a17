#include "runtime/gateway.h"

#include <signal.h>

#include <filesystem>
#include <memory>

#include <boost/asio/io_context.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include "core/clock.h"
#include "core/lifecycle.h"
#include "pipeline/pipeline.h"
#include "runtime/asio_executor.h"
#include "runtime/carried_connections.h"
#include "runtime/cluster.h"
#include "runtime/auth_token.h"
#include "runtime/config_reloader.h"
#include "runtime/drain_runner.h"
#include "runtime/drain_watchdog.h"
#include "runtime/gateway_drain_target.h"
#include "runtime/gateway_lock.h"
#include "runtime/gateway_status.h"
#include "runtime/generation.h"
#include "runtime/generation_starter.h"
#include "runtime/hand_off.h"
#include "runtime/host_info.h"
#include "runtime/listen_fds.h"
#include "runtime/log_redaction.h"
#include "runtime/log_ring.h"
#include "runtime/replica.h"
#include "runtime/restart_coordinator.h"
#include "runtime/sd_notifier.h"
#include "runtime/serving.h"
#include "runtime/signal_router.h"
#include "runtime/startup.h"
#include "runtime/store_open.h"
#include "runtime/store_thread.h"
#include "runtime/successor.h"
#include "runtime/supervisor.h"
#include "server/control.h"
#include "server/server.h"

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

// The composition root: builds the units, wires their hooks, answers the control plane by
// asking them. It decides nothing itself; docs/DECISIONS.md ("The map") says who owns what.
class Gateway final : public server::Control {
 public:
  Gateway(config::Config config, RunOptions options, std::string config_path, std::string data_dir,
          std::string token, std::unique_ptr<GatewayLock> lock,
          std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> recent_log,
          std::shared_ptr<RedactingSink> redactor, StartedFrom from,
          std::shared_ptr<LogRing> log_ring)
      : options_(std::move(options)),
        config_path_(std::move(config_path)),
        data_dir_(std::move(data_dir)),
        token_(std::move(token), data_dir_, std::move(redactor)),
        lock_(std::move(lock)),
        executor_(io_),
        signals_(io_, {[this](const std::string& n) { restarts_->stop(n); },
                       [this](const std::string& n, bool fresh) {
                         restarts_->on_signal(n, fresh, cfg().commands.restart);
                       },
                       [this](const std::string& n) { reloader_->reload(n); }}),
        log_ring_(std::move(log_ring)),
        watchdog_(data_dir_, std::move(recent_log)) {
    started_at_ = clock_.now();
    reloader_ = std::make_unique<ConfigReloader>(io_, clock_, executor_, std::move(config),
                                                 options_, config_path_, std::move(from),
                                                 reloader_hooks());
    token_.hide_secrets(cfg(), reloader_->file_secrets());
    sup_ = detect_supervisor();
    notifier_ = std::make_unique<SdNotifier>(clock_, executor_);
    hand_off_ = std::make_unique<HandOff>(io_, clock_, executor_, data_dir_, hand_off_hooks());
  }

  int run() {
    const auto t0 = clock_.now();
    // First, before any thread: it edits the environment (LISTEN_* are unset).
    auto inherited = take_listen_fds();
    auto carried = take_carried_connections();
    try {
      stores_ = open_stores(cfg(), data_dir_);
    } catch (const std::exception& e) {
      spdlog::critical("cannot open the store: {}", e.what());
      return exit_code::crashed;
    }
    writer_store_ = stores_.writer.get();
    store_ = stores_.reader.get();
    store_thread_ = std::make_unique<StoreThread>(io_, *writer_store_);
    pipeline_ = std::make_unique<pipeline::Pipeline>(clock_, executor_, *store_, *store_thread_);
    if (auto err = join_cluster()) {
      spdlog::critical("{}", *err);
      return exit_code::crashed;
    }
    generation_units_ = std::make_unique<Generation>(io_, executor_, *pipeline_);
    generation_units_->inherit(std::move(carried));
    server_ = std::make_unique<server::Server>(io_, clock_, executor_, *this, *pipeline_,
                                               server_options(cfg(), token_.value()));
    wire_units();
    pipeline_->on_command(
        [this](const pipeline::ChatCommand& cmd) { restarts_->on_chat_command(cmd); });
    if (auto err = starter_->wire()) {
      spdlog::critical("{}", *err);
      return exit_code::config_invalid;
    }
    auto listening = open_listening_socket(*server_, std::move(inherited), cfg());
    if (listening.error) {
      spdlog::critical("{}", *listening.error);
      return exit_code::crashed;
    }
    inherited_socket_ = listening.inherited;
    export_gateway_url(cfg(), server_->port());
    log_control_ui(cfg().gateway.control_ui_root);
    signals_.start();
    starter_->start_io();
    server_->start();
    reloader_->start_watcher();
    hand_off_->read_sentinel();
    spdlog::info("supervisor: {} ({}); restart mode {}", runtime::to_string(sup_.kind),
                 sup_.why.empty() ? "none detected" : sup_.why, cfg().gateway.restart.mode);
    notifier_->ready(status_line(facts(), parts()));
    notifier_->start_watchdog();
    report_ready_to_predecessor();
    reloader_->keep_last_good();  // from now on there is a copy to fall back to
    const auto bind = bind_address(cfg().gateway.bind);
    spdlog::info("drawbridge {} ready on http://{}:{} (ws://{}:{}), data in {}, ready in {:.1f} ms",
                 DRAWBRIDGE_VERSION, bind, server_->port(), bind, server_->port(), data_dir_,
                 ms_since(t0, clock_.now()));
    io_.run();
    watchdog_.disarm();
    if (replica_) {
      const auto id = replica_->id();
      const auto work_channel = replica_->work_channel();
      replica_.reset();
      // A plain stop hands the cluster over at once; a restart's successor (same replica
      // id) renews what it finds instead.
      if (exit_code_ == exit_code::ok && !handed_over_) {
        release_on_exit(*stores_.leases, id, clock_.wall_ms(), work_channel);
      }
    }
    return exit_code_;
  }

  // store.driver postgres: this replica's part in the cluster (runtime/replica.h): the
  // sessions it holds, and each channel account (a Telegram bot, an IRC connection) under a
  // lease of its own.
  std::optional<std::string> join_cluster() {
    if (!stores_.leases) return std::nullopt;
    const auto& c = cfg().cluster;
    Replica::Settings settings;
    settings.id = c.replica_id.empty() ? default_replica_id(cfg().gateway.port) : c.replica_id;
    settings.ttl = std::chrono::milliseconds(c.lease_ms);
    settings.conninfo = cfg().store.url;
    try {
      settings.password = store_password(cfg().store);
    } catch (const std::exception& e) {
      return std::string("cluster: ") + e.what();
    }
    Replica::Hooks hooks;
    hooks.lost = [this](const std::string& why) {
      if (cluster_lost_) return;  // ending already (two leases can go in one heartbeat)
      cluster_lost_ = true;
      // No drain: nothing this replica still writes can land (it would wait for replies it
      // can no longer record as sent), and the other replicas take its sessions over.
      spdlog::critical("cluster: {}: exiting with code {} at once; a supervisor starts it "
                       "again",
                       why, exit_code::restart);
      exit_code_ = exit_code::restart;
      finish_process();
    };
    replica_ = std::make_unique<Replica>(io_, clock_, executor_, *stores_.leases, *pipeline_,
                                         std::move(settings), std::move(hooks));
    if (auto error = replica_->join()) return error;
    // Every write of the message path is fenced by this replica's presence: once it ran out
    // (paused, cut off) and others took its sessions over, nothing it commits can land.
    fence_ = replica_->fence();
    store_thread_->set_fence(fence_);
    return std::nullopt;
  }

  // --- server::Control: answered by the units ---
  server::Readiness readiness() override { return runtime::readiness(facts(), parts()); }
  server::HealthReport health() override { return health_report(parts()); }
  server::StatusReport status() override {
    auto s = status_report(facts(), parts());
    if (replica_) s.cluster = replica_->status(*store_);
    return s;
  }
  server::AgentCatalog agent_catalog() override { return runtime::agent_catalog(parts()); }
  std::string metrics_text() override {
    auto f = facts();
    f.ready = readiness().ready;
    return runtime::metrics_text(f, parts());
  }
  std::int64_t uptime_ms() override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(clock_.now() - started_at_)
        .count();
  }
  server::LifecycleView lifecycle() override {
    return {core::to_string(lifecycle_.state()), lifecycle_.accepting(), kRestartExpectedMs};
  }
  server::RestartAnswer request_restart(const server::RestartIntent& intent) override {
    return restarts_->request(intent);
  }
  server::StopAnswer request_stop(const std::string& reason) override {
    return restarts_->request_stop(reason);
  }
  server::RestartAnswer request_update(const std::string& binary,
                                       const std::string& reason) override {
    return restarts_->request_update(binary, reason);
  }
  server::ConfigSnapshot config_get() override { return reloader_->config_get(); }
  bool webhook(std::string_view path, const std::string& secret, const std::string& body,
               std::function<void(int, std::string)> respond) override {
    if (!generation_units_ || path.empty()) return false;
    for (auto& [id, ch] : generation_units_->channels()) {
      if (ch->webhook_path() == path) {
        ch->on_webhook(secret, body, std::move(respond));
        return true;
      }
    }
    return false;
  }
  void config_write(const server::ConfigWrite& w,
                    std::function<void(server::ConfigWriteResult)> done) override {
    if (!replica_) return reloader_->config_write(w, std::move(done));
    reloader_->config_write(w, [done = std::move(done), id = replica_->id()](
                                   server::ConfigWriteResult result) {
      if (auto* ok = std::get_if<server::ConfigWriteDone>(&result)) {
        ok->warning = "applied on replica " + id +
                      " only: every replica reads its own config file; make the same change "
                      "on the others";
      }
      done(std::move(result));
    });
  }
  server::LogTail logs_tail(const server::LogTailRequest& request) override {
    if (!log_ring_) return {"memory:none", 0, 0, {}, false, false, 0};
    return log_ring_->tail(request);
  }
  server::SystemInfo system_info() override {
    return host_info(data_dir_, uptime_ms(), server_ ? server_->port() : cfg().gateway.port);
  }

 private:
  const config::Config& cfg() const { return reloader_->running(); }

  GatewayFacts facts() {
    GatewayFacts f;
    f.state = lifecycle_.state();
    f.generation = starter_ ? starter_->generation() : 0;
    f.uptime_ms = uptime_ms();
    f.clean_start = starter_ && starter_->clean_start();
    f.config_path = config_path_;
    f.data_dir = data_dir_;
    f.restarts_total = restarts_ ? restarts_->restarts_total() : 0;
    f.last_restart = restarts_ ? restarts_->last_restart() : json(nullptr);
    f.last_start_error = starter_ ? starter_->last_error() : std::string();
    f.inherited_socket = inherited_socket_;
    f.supervisor = runtime::to_string(sup_.kind);
    return f;
  }
  GatewayParts parts() {
    return {cfg(),      clock_,     *generation_units_, *pipeline_, *store_,
            server_.get(), *drain_, *hand_off_,         *reloader_, restarts_->scheduler()};
  }

  // The units that need the server, the pipeline and the store: built once those exist.
  void wire_units() {
    drain_target_ = std::make_unique<GatewayDrainTarget>(GatewayDrainTarget::Parts{
        clock_, *pipeline_, *generation_units_, *server_, *writer_store_, *notifier_,
        [this]() -> const config::Config& { return cfg(); },
        [this] { watchdog_.snapshot(drain_->status(), starter_->generation()); },
        [this](core::AfterDrain next) { drain_done(next); }, &fence_});
    drain_ = std::make_unique<DrainRunner>(clock_, executor_, lifecycle_, *drain_target_);
    restarts_ = std::make_unique<RestartCoordinator>(clock_, executor_, lifecycle_, *drain_,
                                                     scheduler_options(cfg()), restart_hooks());
    starter_ = std::make_unique<GenerationStarter>(GenerationStarter::Parts{
        clock_, lifecycle_, *reloader_, *pipeline_, *generation_units_, *writer_store_,
        *server_, *notifier_, *restarts_, lock_, data_dir_,
        [this](const config::Config& next) { set_token(next); },
        [this] { return status_line(facts(), parts()); }, [this] { finish_process(); }});
  }

  // The token changed (config reload or restart): new connections need the new one.
  void set_token(const config::Config& next) {
    token_.resolve(next, cfg(), reloader_->file_secrets());
    server_->set_token(token_.value());
  }

  ConfigReloader::Hooks reloader_hooks() {
    ConfigReloader::Hooks h;
    h.state = [this] { return lifecycle_.state(); };
    h.schedule_restart = [this](const core::RestartRequest& req) {
      return restarts_->request(req);
    };
    h.cancel_config_restart = [this] { return restarts_->cancel_config_restart(); };
    h.run_hot_actions = [this](const config::Config& next, const core::ReloadPlan& plan,
                               std::function<void(const std::string&)> done) {
      generation_units_->apply_hot(
          next, plan,
          [this, &next] {
            if (next.gateway.auth_token == cfg().gateway.auth_token) return;
            set_token(next);
            spdlog::info("gateway.auth changed: new connections need the new token");
          },
          [this] { return lifecycle_.state() == core::LifecycleState::running; },
          std::move(done));
    };
    h.committed = [this] {
      pipeline_->configure(pipeline_settings(cfg()));
      spdlog::set_level(spdlog::level::from_str(cfg().logging.level));
      restarts_->set_options(scheduler_options(cfg()));
      apply_control_ui(*server_, cfg());
    };
    h.secrets_changed = [this] { token_.hide_secrets(cfg(), reloader_->file_secrets()); };
    h.notify_reloading = [this](const std::string& why) { notifier_->reloading(why); };
    h.notify_ready = [this] { notifier_->ready(status_line(facts(), parts())); };
    return h;
  }

  RestartCoordinator::Hooks restart_hooks() {
    RestartCoordinator::Hooks h;
    h.detach_run = [this](const std::string& run) { return pipeline_->detach_run(run); };
    h.arm_watchdog = [this](core::TimePoint at) {
      watchdog_.arm(at, std::chrono::duration_cast<core::Duration>(at - restarts_->drain_started()));
    };
    h.restart_mode = [this](bool fresh) {
      return choose_restart_mode(cfg().gateway.restart.mode, fresh, sup_);
    };
    h.notify_stopping = [this](const std::string& s) { notifier_->stopping(s); };
    h.notify_reloading = [this](const std::string& s) { notifier_->reloading(s); };
    h.describe_work = [this] { return pipeline_->describe_work(); };
    h.close_and_exit = [this] {
      exit_code_ = exit_code::crashed;
      server_->close("gateway stopping", std::nullopt,
                     boost::beast::websocket::close_code::service_restart, "service restart",
                     [this] { finish_process(); });
    };
    h.finish_process = [this] { finish_process(); };
    h.start_next_generation = [this] { starter_->start_next(); };
    return h;
  }

  void drain_done(core::AfterDrain next) {
    restarts_->drain_finished();
    watchdog_.disarm();
    switch (next) {
      case core::AfterDrain::exit_process: finish_process(); break;
      case core::AfterDrain::supervised_exit: executor_.post([this] { supervised_exit(); }); break;
      case core::AfterDrain::hand_off: executor_.post([this] { hand_off(); }); break;
      case core::AfterDrain::next_generation:
        // After the commit callbacks already queued, so acknowledgements still go out.
        executor_.post([this] { starter_->start_next(); });
        break;
    }
  }

  // --- process restarts: supervised exit, re-exec hand-off, update ---

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
    // The connections the drain kept go to the successor; an update's binary may be one that
    // cannot take them (an older drawbridge): then they are stopped (QUIT) instead.
    const bool update = restarts_->is_update();
    const bool hand_over = !update || takes_carried_connections(restarts_->binary());
    if (!hand_over) {
      spdlog::info("update: {} does not take connections over; channels reconnect",
                   restarts_->binary());
    }
    generation_units_->release_for_successor(
        hand_over, [this, update](std::vector<CarriedConnection> carried) {
          // What the kept connections received up to now is committed before the successor
          // starts, so its replay at start sees it.
          pipeline_->flush_and_wait();
          HandOff::Successor succ;
          succ.binary = restarts_->binary();
          succ.argv = options_.argv;
          succ.data_dir = data_dir_;
          succ.config_path = config_path_;
          succ.update = update;
          succ.carried = std::move(carried);
          hand_off_->start(succ);
        });
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
      handed_over_ = true;  // the successor (same replica id) holds the cluster's leases now
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
      starter_->start_next();  // takes the lock again
    };
    return h;
  }

  void finish_process() {
    watchdog_.disarm();
    spdlog::info("stopped");
    signals_.cancel();
    if (restarts_) restarts_->cancel_timer();
    io_.stop();
  }

  RunOptions options_;
  std::string config_path_;
  std::string data_dir_;
  AuthToken token_;
  std::unique_ptr<GatewayLock> lock_;
  boost::asio::io_context io_{1};
  core::SystemClock clock_;
  AsioExecutor executor_;
  SignalRouter signals_;
  core::TimePoint started_at_;
  int exit_code_ = exit_code::ok;
  bool handed_over_ = false;  // a re-exec or update: a successor serves
  bool inherited_socket_ = false;
  SupervisorInfo sup_;
  core::Lifecycle lifecycle_;
  std::unique_ptr<SdNotifier> notifier_;
  std::unique_ptr<HandOff> hand_off_;
  std::unique_ptr<ConfigReloader> reloader_;  // the running config and its file
  // Destroyed in reverse: the pipeline flushes through the thread, which commits to the writer.
  OpenStores stores_;
  store::Store* writer_store_ = nullptr;
  store::Store* store_ = nullptr;  // reads of the event loop
  pipeline::StoreOp fence_;           // the active lease's, for every write (cluster only)
  std::unique_ptr<StoreThread> store_thread_;
  std::unique_ptr<pipeline::Pipeline> pipeline_;
  // store.driver postgres. After the pipeline: it is gone (listener, relay) before it.
  std::unique_ptr<Replica> replica_;
  bool cluster_lost_ = false;
  std::unique_ptr<server::Server> server_;
  std::unique_ptr<Generation> generation_units_;  // agents and channels of the running config
  std::unique_ptr<GatewayDrainTarget> drain_target_;
  std::unique_ptr<DrainRunner> drain_;
  std::unique_ptr<RestartCoordinator> restarts_;
  std::unique_ptr<GenerationStarter> starter_;
  std::shared_ptr<LogRing> log_ring_;  // logs.tail
  // Last: its thread must stop before anything it reads is destroyed.
  DrainWatchdog watchdog_;
};

}  // namespace

int run_gateway(const RunOptions& options) {
  auto prepared = prepare_start(options);
  if (auto* code = std::get_if<int>(&prepared)) return *code;
  auto& p = std::get<Prepared>(prepared);
  const std::string data_dir = p.start.cfg.store.data_dir;
  Gateway gw(std::move(p.start.cfg), options, p.start.path, data_dir, p.token, std::move(p.lock),
             p.recent, p.redactor, std::move(p.start.from), p.log_ring);
  const int code = gw.run();
  p.redactor->remove_sink(p.recent);
  p.redactor->remove_sink(p.log_ring);
  return code;
}

}  // namespace drawbridge::runtime
