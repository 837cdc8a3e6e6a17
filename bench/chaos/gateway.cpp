// See gateway.h.

#include "chaos/gateway.h"
#include "chaos/process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "bench_host.h"
#include "ws_rpc.h"

extern char** environ;

namespace chaos {

namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

constexpr const char* kIrcPasswordEnv = "DRAWBRIDGE_CHAOS_IRC_PASSWORD";

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// A supervisor's environment: nothing of a service manager, no restart-mode override, and
// DRAWBRIDGE_SUPERVISOR=none, so SIGUSR2 and an update re-exec on the same socket.
std::vector<std::string> gateway_environment(const GatewaySetup& s, const fs::path& run_dir) {
  static const char* const kDropped[] = {"NOTIFY_SOCKET",
                                         "INVOCATION_ID",
                                         "XPC_SERVICE_NAME",
                                         "LAUNCH_JOB_LABEL",
                                         "LISTEN_FDS",
                                         "LISTEN_PID",
                                         "LISTEN_FDNAMES",
                                         "WATCHDOG_USEC",
                                         "WATCHDOG_PID",
                                         "DRAWBRIDGE_READY_FD",
                                         "DRAWBRIDGE_RESTART_MODE",
                                         "DRAWBRIDGE_SUPERVISOR",
                                         "DRAWBRIDGE_PREDECESSOR_PID",
                                         "XDG_RUNTIME_DIR"};
  std::vector<std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    const std::string_view kv(*e);
    const auto name = kv.substr(0, kv.find('='));
    const bool dropped = std::any_of(std::begin(kDropped), std::end(kDropped),
                                     [&](const char* d) { return name == d; }) ||
                         name == s.telegram_token_env || name == kIrcPasswordEnv;
    if (!dropped) env.emplace_back(kv);
  }
  env.push_back("DRAWBRIDGE_SUPERVISOR=none");
  env.push_back("XDG_RUNTIME_DIR=" + run_dir.string());
  if (!s.telegram_token_env.empty()) env.push_back(s.telegram_token_env + "=" + s.telegram_token);
  if (s.irc_port > 0) env.push_back(std::string(kIrcPasswordEnv) + "=" + s.irc_password);
  return env;
}

// The pids of this process's children (zombies included) whose command is a drawbridge binary.
std::vector<pid_t> gateway_children() {
  std::vector<pid_t> out;
  const pid_t self = ::getpid();
  std::error_code ec;
  for (const auto& d : fs::directory_iterator("/proc", ec)) {
    const std::string name = d.path().filename().string();
    if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
    const std::string stat = read_text(d.path() / "stat");
    const auto close = stat.rfind(')');
    const auto open = stat.find('(');
    if (close == std::string::npos || open == std::string::npos) continue;
    const std::string comm = stat.substr(open + 1, close - open - 1);
    std::istringstream rest(stat.substr(close + 2));
    char state = 0;
    pid_t ppid = 0;
    rest >> state >> ppid;
    if (ppid == self && comm.rfind("drawbridge", 0) == 0 && comm.rfind("drawbridge_", 0) != 0) {
      out.push_back(static_cast<pid_t>(std::stol(name)));
    }
  }
  return out;
}

}  // namespace

Gateway::Gateway(GatewaySetup setup) : setup_(std::move(setup)) {
  fs::create_directories(setup_.dir / "data");
  fs::create_directories(setup_.dir / "run");
  ::chmod((setup_.dir / "run").c_str(), 0700);
  // Two copies of the binary: a rebuild during the run changes nothing, and `update`
  // alternates between them, as an upgrade would.
  fs::copy_file(setup_.bin, setup_.dir / "drawbridge", fs::copy_options::overwrite_existing);
  fs::copy_file(setup_.bin, setup_.dir / "drawbridge-next", fs::copy_options::overwrite_existing);
  setup_.bin = (setup_.dir / "drawbridge").string();
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
    throw std::runtime_error("prctl(PR_SET_CHILD_SUBREAPER) failed");
  }
  port_ = bench_host::free_port();
  write_config();
}

Gateway::~Gateway() {
  stop(10s);
  for (pid_t p : gateway_children()) {  // a successor mid-hand-off, or a zombie
    ::kill(p, SIGKILL);
    ::waitpid(p, nullptr, 0);
  }
}

void Gateway::write_config() {
  json channels = {{"local", json::object()}};
  if (!setup_.telegram_api_root.empty()) {
    channels["telegram"] = {{"botTokenEnv", setup_.telegram_token_env},
                            {"apiRoot", setup_.telegram_api_root},
                            {"dmPolicy", "open"},
                            {"pollTimeoutSeconds", 5},
                            {"sendRate", {{"botPerSecond", 0}, {"chatPerSecond", 0}}}};
  }
  if (setup_.irc_port > 0) {
    channels["irc"] = {
        {"host", "127.0.0.1"},     {"port", setup_.irc_port},        {"tls", false},
        {"nick", setup_.irc_nick}, {"passwordEnv", kIrcPasswordEnv}, {"dmPolicy", "open"},
        {"realname", "chaos bot"}};
  }
  json cfg = {{"gateway",
               {{"auth", {{"token", setup_.token}}},
                {"bind", "127.0.0.1"},
                {"port", port_},
                // Every client here is one peer (loopback): the limits must hold them all.
                {"limits",
                 {{"maxConnections", std::max(512, setup_.connections + 256)},
                  {"maxConnectionsPerPeer", std::max(128, setup_.connections + 256)}}},
                {"restart", {{"delayMs", 0}, {"cooldownMs", 0}}}}},
              {"logging", {{"level", setup_.log_level}}},
              {"agents", {{"main", {{"type", "echo"}, {"delayMs", setup_.turn_ms}}}}},
              {"channels", channels}};
  if (!setup_.model_base_url.empty()) {
    cfg["agents"]["main"] = {
        {"type", "openai"}, {"baseUrl", setup_.model_base_url}, {"model", "fake-echo"}};
    cfg["messages"] = {{"queue", {{"mode", "followup"}}}};
  }
  std::ofstream out(setup_.dir / "config.json", std::ios::trunc);
  out << cfg.dump(2) << "\n";
  out.close();
  if (!out) throw std::runtime_error("cannot write the gateway's config");
}

pid_t Gateway::spawn() {
  const fs::path bin = setup_.bin;
  return proc::spawn({bin.string(), "--config", (setup_.dir / "config.json").string(), "run",
                      "--data-dir", (setup_.dir / "data").string()},
                     gateway_environment(setup_, setup_.dir / "run"), log_path());
}

bool Gateway::wait_ready(Clock::time_point deadline) {
  while (Clock::now() < deadline) {
    int st = 0;
    if (pid_ > 0 && ::waitpid(pid_, &st, WNOHANG) == pid_) {
      bad_exits_.push_back("pid " + std::to_string(pid_) + " exited while starting");
      pid_ = -1;
      return false;
    }
    if (bench_host::http_status(port_, "/readyz") == 200) return true;
    std::this_thread::sleep_for(2ms);
  }
  return false;
}

EventOutcome Gateway::start(std::chrono::milliseconds timeout) {
  EventOutcome out;
  const auto t0 = Clock::now();
  out.old_pid = pid_;
  pid_ = spawn();
  out.new_pid = pid_;
  out.ok = wait_ready(t0 + timeout);
  out.ready_ms = ms_since(t0);
  if (!out.ok) out.detail = "not ready within " + std::to_string(timeout.count()) + " ms";
  return out;
}

std::optional<json> Gateway::rpc(const std::string& method, const json& params,
                                 std::string& why) const {
  bench_ws::Ws ws(port_, "drawbridge-chaos");
  bool retryable = false;
  why = ws.open(setup_.token, 5000ms, retryable);
  if (!why.empty()) return std::nullopt;
  auto r = ws.request(method, params, 15000ms);
  if (!r) {
    why = method + ": " + ws.last_error();
    return std::nullopt;
  }
  if (!r->value("ok", false) || !r->contains("payload")) {
    why = method + ": " + r->dump();
    return std::nullopt;
  }
  return (*r)["payload"];
}

bool Gateway::status(Status& out, std::string& why) const {
  auto p = rpc("status", json::object(), why);
  if (!p || !p->is_object()) return false;
  out.pid = p->value("pid", -1);
  out.generation = p->value("generation", std::int64_t{-1});
  return true;
}

void Gateway::reap_others() {
  for (pid_t p : gateway_children()) {
    if (p == pid_) continue;
    int st = 0;
    if (::waitpid(p, &st, WNOHANG) == p) {
      if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        bad_exits_.push_back("handed-off pid " + std::to_string(p) + " ended with status " +
                             std::to_string(st));
      }
    }
  }
}

EventOutcome Gateway::wait_changed(const Status& before, Clock::time_point t0, bool new_process) {
  EventOutcome out;
  out.old_pid = before.pid;
  const auto deadline = t0 + 30s;
  std::string why;
  while (Clock::now() < deadline) {
    reap_others();
    Status now;
    if (status(now, why)) {
      const bool changed = new_process
                               ? now.pid != before.pid
                               : now.pid == before.pid && now.generation > before.generation;
      if (changed) {
        pid_ = now.pid;
        out.new_pid = now.pid;
        out.ready_ms = ms_since(t0);
        out.ok = true;
        return out;
      }
      if (!new_process && now.pid != before.pid) {
        out.detail = "an in-process restart changed the pid";
        return out;
      }
    }
    std::this_thread::sleep_for(1ms);
  }
  out.ready_ms = ms_since(t0);
  out.detail = "not served again within 30 s: " + why;
  return out;
}

EventOutcome Gateway::trigger(bool new_process, const std::function<std::string()>& fire) {
  Status before;
  std::string why;
  if (!status(before, why)) return EventOutcome{false, 0, "status: " + why};
  const auto t0 = Clock::now();
  if (auto error = fire(); !error.empty()) return EventOutcome{false, ms_since(t0), error};
  return wait_changed(before, t0, new_process);
}

EventOutcome Gateway::restart_signal() {
  return trigger(false, [this] { return send(SIGUSR1) ? "" : "no gateway process"; });
}

EventOutcome Gateway::restart_rpc() {
  return trigger(false, [this] {
    std::string why;
    return rpc("gateway.restart.request", {{"reason", "chaos"}, {"delayMs", 0}}, why) ? "" : why;
  });
}

EventOutcome Gateway::patch(const json& merge, bool new_generation) {
  std::string why;
  Status before;
  if (new_generation && !status(before, why)) return EventOutcome{false, 0, "status: " + why};
  const auto t0 = Clock::now();
  auto got = rpc("config.get", json::object(), why);
  if (!got) return EventOutcome{false, ms_since(t0), why};
  auto res =
      rpc("config.patch", {{"raw", merge.dump()}, {"baseHash", got->value("hash", "")}}, why);
  if (!res) return EventOutcome{false, ms_since(t0), why};
  const std::string kind = (*res)["plan"].value("kind", "");
  if (!new_generation) {
    EventOutcome out{kind == "hot" || kind == "none", ms_since(t0), "plan " + kind};
    out.old_pid = out.new_pid = pid_;
    return out;
  }
  if (kind != "restart") return EventOutcome{false, ms_since(t0), "plan " + kind + ", not restart"};
  return wait_changed(before, t0, false);
}

EventOutcome Gateway::hot_patch(int n) {
  // Each kind of hot change in turn: a new agent backend (the echo agent's prefix), the
  // Telegram channel restarted, a setting read per message, the IRC channel restarted (QUIT and
  // rejoin). Each toggles between two values, so every patch changes something.
  const bool echo = setup_.model_base_url.empty();
  const std::size_t kinds = (echo ? 2 : 1) + (setup_.telegram_api_root.empty() ? 0 : 1) +
                            (setup_.irc_port > 0 ? 1 : 0);
  const std::size_t k = static_cast<std::size_t>(n) % kinds;
  const bool flip = (static_cast<std::size_t>(n) / kinds) % 2 == 0;
  std::vector<json> all;
  if (echo) all.push_back({{"agents", {{"main", {{"prefix", flip ? "~" : ""}}}}}});
  all.push_back({{"messages", {{"queue", {{"cap", flip ? 21 : 20}}}}}});
  if (!setup_.telegram_api_root.empty()) {
    all.push_back({{"channels", {{"telegram", {{"pollTimeoutSeconds", flip ? 6 : 5}}}}}});
  }
  if (setup_.irc_port > 0) {
    all.push_back({{"channels", {{"irc", {{"realname", flip ? "chaos bot 2" : "chaos bot"}}}}}});
  }
  return patch(all[k], false);
}

EventOutcome Gateway::restart_patch(int n) {
  // A key of the `gateway` section: no rule makes it hot, so the plan is one restart.
  return patch({{"gateway", {{"limits", {{"maxHistoryBytes", 4194305 - n % 2}}}}}}, true);
}

bool Gateway::send(int sig) {
  const pid_t p = pid_;
  return p > 0 && ::kill(p, sig) == 0;  // never 0 or -1: that would be a group, or everyone
}

int Gateway::wait_exit(pid_t pid, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  int st = 0;
  while (Clock::now() < deadline) {
    if (::waitpid(pid, &st, WNOHANG) == pid) return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    std::this_thread::sleep_for(1ms);
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, &st, 0);
  return -2;
}

EventOutcome Gateway::term_and_start() {
  const auto t0 = Clock::now();
  const pid_t old = pid_;
  if (!send(SIGTERM)) return EventOutcome{false, 0, "no gateway process"};
  const int rc = wait_exit(old, 30s);
  pid_ = -1;
  if (rc != 0) {
    bad_exits_.push_back("SIGTERM: pid " + std::to_string(old) + " exit " + std::to_string(rc));
  }
  EventOutcome out = start();
  out.old_pid = old;
  out.ready_ms = ms_since(t0);
  return out;
}

EventOutcome Gateway::kill_and_start() {
  const auto t0 = Clock::now();
  const pid_t old = pid_;
  if (!send(SIGKILL)) return EventOutcome{false, 0, "no gateway process"};
  wait_exit(old, 10s);
  pid_ = -1;
  EventOutcome out = start();
  out.old_pid = old;
  out.ready_ms = ms_since(t0);
  return out;
}

EventOutcome Gateway::reexec() {
  return trigger(true, [this] { return send(SIGUSR2) ? "" : "no gateway process"; });
}

EventOutcome Gateway::update() {
  const fs::path next =
      update_flip_++ % 2 == 0 ? setup_.dir / "drawbridge-next" : fs::path(setup_.bin);
  return trigger(true, [this, next] {
    std::string why;
    return rpc("gateway.update", {{"binary", next.string()}, {"reason", "chaos"}}, why) ? "" : why;
  });
}

std::string Gateway::event_notes() const {
  return "restart-signal = SIGUSR1 (in-process), restart-rpc = gateway.restart.request, "
         "restart-patch = config.patch gateway.limits.maxHistoryBytes, reexec = SIGUSR2, "
         "update = gateway.update, hot-patch = config.patch of a hot key";
}

int Gateway::stop(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return -1;
  const pid_t p = pid_;
  pid_ = -1;
  ::kill(p, SIGTERM);
  return wait_exit(p, timeout);
}

std::string Gateway::log() const {
  return read_text(log_path());
}

long Gateway::rss_kib() const {
  if (pid_ <= 0) return -1;
  std::ifstream in("/proc/" + std::to_string(pid_) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

}  // namespace chaos
