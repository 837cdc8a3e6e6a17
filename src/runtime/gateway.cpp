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
#include <map>
#include <memory>
#include <sstream>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <spdlog/spdlog.h>

#include "agents/echo_agent.h"
#include "agents/exec_agent.h"
#include "channels/local/local_channel.h"
#include "config/config.h"
#include "core/clock.h"
#include "pipeline/pipeline.h"
#include "runtime/asio_executor.h"
#include "runtime/gateway_lock.h"
#include "runtime/store_thread.h"
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

class Gateway final : public server::Control {
 public:
  Gateway(config::Config cfg, std::string config_path, std::string data_dir, std::string token)
      : cfg_(std::move(cfg)),
        config_path_(std::move(config_path)),
        data_dir_(std::move(data_dir)),
        token_(std::move(token)),
        executor_(io_),
        signals_(io_),
        stop_timer_(io_) {
    started_at_ = clock_.now();
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
    clean_start_ = writer_store_->get_value("clean_shutdown").has_value();
    writer_store_->erase_value("clean_shutdown");
    if (!clean_start_ && store_->counts().inbox_total > 0) {
      spdlog::warn("the last run did not shut down cleanly: replaying from the store");
    }

    store_thread_ = std::make_unique<StoreThread>(io_, *writer_store_);
    pipeline_ = std::make_unique<pipeline::Pipeline>(clock_, executor_, *store_, *store_thread_);
    if (auto err = build_agents_and_channels()) {
      spdlog::critical("{}", *err);
      return exit_code::config_invalid;
    }

    server::ServerOptions so;
    so.bind_address = bind_address(cfg_.gateway.bind);
    so.port = cfg_.gateway.port;
    so.token = token_;
    so.version = DRAWBRIDGE_VERSION;
    so.local_channel = "local";
    // A testing knob: conformance tests need a tick sooner than OpenClaw's 30 s.
    if (const char* t = std::getenv("DRAWBRIDGE_TICK_INTERVAL_MS")) {
      so.tick_interval_ms = std::clamp(std::atoi(t), 100, 3'600'000);
    }
    server_ = std::make_unique<server::Server>(io_, clock_, *this, *pipeline_, so);
    if (auto err = server_->listen()) {
      spdlog::critical("{}", *err);
      return exit_code::crashed;
    }

    install_signals();
    pipeline_->start();
    for (auto& [id, ch] : channels_) ch->start();
    server_->start();
    state_ = "running";
    const auto ms = std::chrono::duration<double, std::milli>(clock_.now() - t0).count();
    spdlog::info("drawbridge {} ready on http://{}:{} (ws://{}:{}), data in {}, ready in {:.1f} ms",
                 DRAWBRIDGE_VERSION, so.bind_address, server_->port(), so.bind_address,
                 server_->port(), data_dir_, ms);
    io_.run();
    return exit_code_;
  }

  // server::Control
  server::Readiness readiness() override {
    if (state_ != "running") return {false, state_};
    for (auto& [id, ch] : channels_) {
      if (!ch->ready()) return {false, "channel " + id + " not ready"};
    }
    return {true, {}};
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
    return {{"version", DRAWBRIDGE_VERSION},
            {"state", state_},
            {"pid", ::getpid()},
            {"uptimeMs", uptime_ms()},
            {"generation", 1},
            {"bind", bind_address(cfg_.gateway.bind)},
            {"port", server_ ? server_->port() : cfg_.gateway.port},
            {"configPath", config_path_},
            {"dataDir", data_dir_},
            {"cleanStart", clean_start_},
            {"channels", channels},
            {"agents", agents},
            {"activeRuns", runs},
            {"queueDepth", pipeline_->waiting_count()},
            {"pendingDeliveries", pipeline_->pending_deliveries()},
            {"connections", server_ ? server_->connection_count() : 0},
            {"store", store_counts}};
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
           m.restarts_total);
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
  std::optional<std::string> build_agents_and_channels() {
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
      if (sig == SIGTERM || sig == SIGINT) {
        stop(sig == SIGTERM ? "SIGTERM" : "SIGINT");
      } else {
        spdlog::warn("{} received: restart and reload are not available in this build; ignored",
                     strsignal(sig));
      }
      wait_signal();
    });
  }

  // Stop: keep journaling new input, let turns in flight finish (bounded), deliver replies,
  // close clients, record a clean shutdown only when nothing was interrupted.
  void stop(const std::string& why) {
    if (stopping_) {
      spdlog::info("{} received while already stopping; ignored", why);
      return;
    }
    stopping_ = true;
    state_ = "stopping";
    pipeline_->set_draining(true);
    const auto active = pipeline_->active_runs().size();
    spdlog::info("{}: stopping; waiting for {} active turn(s) and {} delivery(ies), up to {} s",
                 why, active, pipeline_->pending_deliveries(), kStopBudget.count() / 1000);
    stop_timer_.expires_after(kStopBudget);
    stop_timer_.async_wait([this](boost::system::error_code ec) {
      if (ec) return;
      interrupted_ = pipeline_->interrupt_all("gateway stopping");
      spdlog::warn("stop budget spent: interrupted {} turn(s); they run again at the next start",
                   interrupted_);
    });
    pipeline_->work().when_idle([this] { finish_stop(); });
  }

  void finish_stop() {
    stop_timer_.cancel();
    pipeline_->flush_and_wait();
    auto remaining = std::make_shared<std::size_t>(channels_.size() + 1);
    auto step = [this, remaining] {
      if (--*remaining != 0) return;
      if (interrupted_ == 0) {
        try {
          pipeline_->flush_and_wait();
          writer_store_->set_value("clean_shutdown", std::to_string(clock_.wall_ms()));
        } catch (const std::exception& e) {
          spdlog::error("cannot write the clean-shutdown marker: {}", e.what());
        }
      }
      spdlog::info("stopped");
      signals_.cancel();
      io_.stop();
    };
    for (auto& [id, ch] : channels_) ch->stop(step);
    // OpenClaw closes with 1012 on every shutdown; only restartExpectedMs tells a restart.
    server_->close("gateway stopping", std::nullopt,
                   boost::beast::websocket::close_code::service_restart, "service restart", step);
  }

  static constexpr std::chrono::milliseconds kStopBudget{20000};

  config::Config cfg_;
  std::string config_path_;
  std::string data_dir_;
  std::string token_;
  boost::asio::io_context io_{1};
  core::SystemClock clock_;
  AsioExecutor executor_;
  boost::asio::signal_set signals_;
  boost::asio::steady_timer stop_timer_;
  core::TimePoint started_at_;
  // Destroyed in reverse: the pipeline flushes through the thread, which commits to the writer.
  std::unique_ptr<store::SqliteStore> writer_store_;
  std::unique_ptr<store::SqliteStore> store_;  // reads of the event loop
  std::unique_ptr<StoreThread> store_thread_;
  std::unique_ptr<pipeline::Pipeline> pipeline_;
  std::map<std::string, std::unique_ptr<pipeline::Agent>> agents_;
  std::map<std::string, std::unique_ptr<pipeline::Channel>> channels_;
  std::map<std::string, std::string> channel_agent_;
  std::unique_ptr<server::Server> server_;
  std::string state_ = "starting";
  bool stopping_ = false;
  bool clean_start_ = false;
  std::size_t interrupted_ = 0;
  int exit_code_ = exit_code::ok;
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
  if (options.port) cfg.gateway.port = *options.port;
  if (options.bind) cfg.gateway.bind = *options.bind;
  if (options.data_dir) cfg.store.data_dir = fs::absolute(*options.data_dir).string();

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
  Gateway gw(std::move(cfg), loaded.path, data_dir, token);
  return gw.run();
}

}  // namespace drawbridge::runtime
