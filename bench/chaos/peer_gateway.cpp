// See peer_gateway.h.

#include "chaos/peer_gateway.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "bench_host.h"
#include "chaos/process.h"
#include "ws_rpc.h"

namespace chaos {

namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

constexpr const char* kClientId = "gateway-client";  // OpenClaw accepts only its own ids
constexpr const char* kClientMode = "backend";

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

OpenClawGateway::OpenClawGateway(PeerSetup setup) : setup_(std::move(setup)) {
  if (::access(setup_.node.c_str(), X_OK) != 0 || !fs::exists(setup_.openclaw_mjs)) {
    throw std::runtime_error("OpenClaw is not installed (bench/peer/install.sh): " + setup_.node +
                             ", " + setup_.openclaw_mjs);
  }
  fs::create_directories(setup_.dir / "state");
  fs::create_directories(setup_.dir / "home");
  if (!setup_.tmpdir.empty()) fs::create_directories(setup_.tmpdir);
  port_ = bench_host::free_port();
  write_config();
}

OpenClawGateway::~OpenClawGateway() {
  stop();
}

void OpenClawGateway::write_config() {
  const fs::path state = setup_.dir / "state";
  json model = {{"id", "fake-echo"},
                {"name", "Fake echo"},
                {"reasoning", false},
                {"input", {"text"}},
                {"cost", {{"input", 0}, {"output", 0}, {"cacheRead", 0}, {"cacheWrite", 0}}},
                {"contextWindow", 131072},
                {"maxTokens", 4096}};
  json cfg = {{"gateway",
               {{"mode", "local"},
                {"port", port_},
                {"bind", "loopback"},
                {"auth", {{"mode", "token"}, {"token", setup_.token}}},
                {"reload", {{"mode", "hybrid"}}}}},
              {"update", {{"checkOnStart", false}}},
              {"telemetry", {{"enabled", false}}},
              {"discovery", {{"mdns", {{"mode", "off"}}}}},
              {"logging", {{"file", (state / "openclaw-file.log").string()}}},
              {"messages", {{"queue", {{"mode", "followup"}}}}},
              {"models",
               {{"mode", "merge"},
                {"providers",
                 {{"fake",
                   {{"baseUrl", setup_.model_base_url},
                    {"apiKey", "sk-fake"},
                    {"api", "openai-completions"},
                    {"models", json::array({model})}}}}}}},
              {"agents", {{"defaults", {{"model", {{"primary", "fake/fake-echo"}}}}}}}};
  std::ofstream out(state / "openclaw.json", std::ios::trunc);
  out << cfg.dump(2) << "\n";
  out.close();
  if (!out) throw std::runtime_error("cannot write OpenClaw's config");
}

bool OpenClawGateway::supports(EventKind kind, std::string& why_not) const {
  if (kind == EventKind::reexec) {
    why_not = "no re-exec: its restarts stay in the process (SIGUSR2 is its in-process restart)";
    return false;
  }
  if (kind == EventKind::update) {
    why_not = "no update: it has no RPC that starts another binary on the same socket";
    return false;
  }
  return true;
}

std::string OpenClawGateway::event_notes() const {
  return "restart-signal = SIGUSR2 (its restart signal; SIGUSR1 opens Node's inspector), "
         "restart-rpc = gateway.restart.request {reason} (safe: deferred while work runs), "
         "restart-patch = config.patch gateway.controlUi.basePath (requiresRestart), "
         "hot-patch = config.patch messages.queue.cap; served again = a new server.bootId in "
         "hello-ok";
}

EventOutcome OpenClawGateway::start() {
  EventOutcome out;
  const auto t0 = Clock::now();
  const fs::path state = setup_.dir / "state";
  // The switches bench/peer/side.sh gives it (see its header and compare.sh's).
  std::vector<std::string> extra{"HOME=" + (setup_.dir / "home").string(),
                                 "OPENCLAW_STATE_DIR=" + state.string(),
                                 "OPENCLAW_CONFIG_PATH=" + (state / "openclaw.json").string(),
                                 "NO_COLOR=1",
                                 "DO_NOT_TRACK=1",
                                 "OPENCLAW_NO_AUTO_UPDATE=1",
                                 "OPENCLAW_DISABLE_BONJOUR=1",
                                 "OPENCLAW_NO_RESPAWN=1",
                                 "OPENCLAW_SKIP_CHANNELS=1",
                                 "OPENCLAW_SKIP_CRON=1",
                                 "OPENCLAW_SKIP_GMAIL_WATCHER=1",
                                 "OPENCLAW_SKIP_CANVAS_HOST=1",
                                 "OPENCLAW_SKIP_BROWSER_CONTROL_SERVER=1",
                                 "OPENCLAW_SKIP_STARTUP_MODEL_PREWARM=1"};
  if (!setup_.tmpdir.empty()) extra.push_back("TMPDIR=" + setup_.tmpdir);
  const auto env = proc::environment(
      {"OPENCLAW_*", "NODE_OPTIONS", "HOME", "TMPDIR", "NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID"},
      extra);
  out.old_pid = pid_;
  pid_ = proc::spawn(
      {setup_.node, setup_.openclaw_mjs, "gateway", "run", "--port", std::to_string(port_)}, env,
      log_path());
  out.new_pid = pid_;
  const auto deadline = t0 + setup_.ready_timeout;
  while (Clock::now() < deadline) {
    if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
      bad_exits_.push_back("pid " + std::to_string(pid_) + " exited while starting");
      pid_ = -1;
      out.detail = "exited while starting";
      break;
    }
    if (bench_host::http_status(port_, "/readyz") == 200) {
      out.ok = true;
      break;
    }
    // Not every 2 ms as for drawbridge: the peer starts for seconds on the same cores.
    std::this_thread::sleep_for(10ms);
  }
  out.ready_ms = ms_since(t0);
  if (!out.ok && out.detail.empty()) out.detail = "not ready within the start timeout";
  return out;
}

std::string OpenClawGateway::boot_id(std::string& why) const {
  bench_ws::Ws ws(port_, kClientId, kClientMode);
  why = ws.open(setup_.token, 10000ms);
  if (!why.empty()) return {};
  const json& server = ws.hello().value("server", json::object());
  std::string id = server.value("bootId", "");
  if (id.empty()) why = "hello-ok without server.bootId";
  return id;
}

std::optional<json> OpenClawGateway::rpc(const std::string& method, const json& params,
                                         std::string& why) const {
  bench_ws::Ws ws(port_, kClientId, kClientMode);
  ws.keep_events(false);  // it sends every session's events to every connection
  why = ws.open(setup_.token, 10000ms);
  if (!why.empty()) return std::nullopt;
  // As long as an event may take: a patch OpenClaw has not answered yet must not be superseded
  // by the harness's next one (in a trial a hot patch was answered after 61 s).
  auto r = ws.request(method, params,
                      std::chrono::duration_cast<std::chrono::milliseconds>(setup_.event_timeout));
  if (!r) {
    why = method + ": " + ws.last_error();
    return std::nullopt;
  }
  if (!r->value("ok", false)) {
    why = method + ": " + r->dump().substr(0, 400);
    return std::nullopt;
  }
  return r->value("payload", json::object());
}

EventOutcome OpenClawGateway::trigger(const std::function<std::string()>& fire) {
  EventOutcome out;
  out.old_pid = out.new_pid = pid_;
  std::string why;
  // A connection held open: the gateway closes it when its restart begins.
  bench_ws::Ws watcher(port_, kClientId, kClientMode);
  if (auto e = watcher.open(setup_.token, 10000ms); !e.empty()) return {false, 0, "hello: " + e};
  const std::string before = watcher.hello().value("server", json::object()).value("bootId", "");
  if (before.empty()) return {false, 0, "hello-ok without server.bootId"};
  const auto t0 = Clock::now();
  if (auto error = fire(); !error.empty()) return {false, ms_since(t0), error};
  const auto deadline = t0 + setup_.event_timeout;
  while (!watcher.closed() && Clock::now() < deadline) {
    watcher.read(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
  }
  while (Clock::now() < deadline) {
    if (pid_ <= 0 || ::waitpid(pid_, nullptr, WNOHANG) == pid_) {
      bad_exits_.push_back("pid " + std::to_string(pid_) + " ended during a restart");
      pid_ = -1;
      out.detail = "the gateway process ended";
      break;
    }
    const std::string now = boot_id(why);
    if (!now.empty() && now != before) {
      out.ok = true;
      break;
    }
    std::this_thread::sleep_for(50ms);
  }
  out.ready_ms = ms_since(t0);
  if (!out.ok && out.detail.empty()) out.detail = "not served by a new start in time: " + why;
  return out;
}

EventOutcome OpenClawGateway::restart_signal() {
  return trigger([this] {
    const pid_t p = pid_;
    return p > 1 && ::kill(p, SIGUSR2) == 0 ? "" : "no gateway process";
  });
}

EventOutcome OpenClawGateway::restart_rpc() {
  return trigger([this] {
    std::string why;
    auto r = rpc("gateway.restart.request", {{"reason", "chaos"}}, why);
    return r ? std::string() : why;
  });
}

std::optional<json> OpenClawGateway::patch(const json& merge, std::string& why) const {
  auto got = rpc("config.get", json::object(), why);
  if (!got) return std::nullopt;
  return rpc("config.patch", {{"raw", merge.dump()}, {"baseHash", got->value("hash", "")}}, why);
}

namespace {

// The answer's sentinel.payload.stats.requiresRestart; nullopt when absent.
std::optional<bool> requires_restart(const json& answer) {
  const json p = answer.value("sentinel", json::object()).value("payload", json::object());
  const json stats = p.value("stats", json::object());
  if (!stats.contains("requiresRestart") || !stats["requiresRestart"].is_boolean()) {
    return std::nullopt;
  }
  return stats["requiresRestart"].get<bool>();
}

}  // namespace

EventOutcome OpenClawGateway::hot_patch(int n) {
  const auto t0 = Clock::now();
  std::string why;
  auto res = patch({{"messages", {{"queue", {{"cap", n % 2 == 0 ? 21 : 20}}}}}}, why);
  EventOutcome out{false, ms_since(t0), why, pid_, pid_};
  if (!res) return out;
  const auto restart = requires_restart(*res);
  out.ok = restart.has_value() && !*restart;
  out.detail =
      restart ? (*restart ? "requiresRestart" : "hot") : "no requiresRestart in the answer";
  return out;
}

EventOutcome OpenClawGateway::restart_patch(int n) {
  return trigger([this, n] {
    std::string why;
    auto res = patch(
        {{"gateway", {{"controlUi", {{"basePath", n % 2 == 0 ? "/chaos-a" : "/chaos-b"}}}}}}, why);
    if (!res) return why;
    const auto restart = requires_restart(*res);
    return restart && *restart ? std::string() : "the patch did not ask for a restart";
  });
}

int OpenClawGateway::end(int sig, std::chrono::milliseconds timeout) {
  const pid_t p = pid_;
  if (p <= 1) return -1;
  const auto tree = proc::tree(p);
  ::kill(p, sig);
  const int rc = proc::wait_exit(p, timeout);
  pid_ = -1;
  std::vector<pid_t> rest;
  for (pid_t c : tree) {
    if (c != p && ::kill(c, 0) == 0) rest.push_back(c);
  }
  proc::kill_all(rest);
  return rc;
}

EventOutcome OpenClawGateway::term_and_start() {
  const auto t0 = Clock::now();
  const pid_t old = pid_;
  if (old <= 1) return {false, 0, "no gateway process"};
  const int rc = end(SIGTERM, 60s);
  if (rc != 0) {
    bad_exits_.push_back("SIGTERM: pid " + std::to_string(old) + " exit " + std::to_string(rc));
  }
  EventOutcome out = start();
  out.old_pid = old;
  out.ready_ms = ms_since(t0);
  return out;
}

EventOutcome OpenClawGateway::kill_and_start() {
  const auto t0 = Clock::now();
  const pid_t old = pid_;
  if (old <= 1) return {false, 0, "no gateway process"};
  end(SIGKILL, 10s);
  EventOutcome out = start();
  out.old_pid = old;
  out.ready_ms = ms_since(t0);
  return out;
}

EventOutcome OpenClawGateway::reexec() {
  return {false, 0, "not supported by the peer"};
}

EventOutcome OpenClawGateway::update() {
  return {false, 0, "not supported by the peer"};
}

int OpenClawGateway::stop() {
  return end(SIGTERM, 60s);
}

std::string OpenClawGateway::log() const {
  return read_text(log_path());
}

long OpenClawGateway::rss_kib() const {
  long sum = 0;
  for (pid_t p : proc::tree(pid_)) {
    const long kib = proc::rss_kib(p);
    if (kib > 0) sum += kib;
  }
  return sum > 0 ? sum : -1;
}

ModelFake::ModelFake(const std::string& node, const std::string& script, const fs::path& log) {
  port_ = bench_host::free_port();
  pid_ =
      proc::spawn({node, script, "--port", std::to_string(port_)}, proc::environment({}, {}), log);
  for (int i = 0; i < 1000; ++i) {
    if (bench_host::http_status(port_, "/v1/models") == 200) return;
    if (::waitpid(pid_, nullptr, WNOHANG) == pid_) break;
    std::this_thread::sleep_for(10ms);
  }
  proc::kill_all({pid_});
  pid_ = -1;
  throw std::runtime_error("the fake model server did not start (" + log.string() + ")");
}

ModelFake::~ModelFake() {
  if (pid_ > 1) {
    ::kill(pid_, SIGTERM);
    proc::wait_exit(pid_, 5000ms);
  }
}

}  // namespace chaos
