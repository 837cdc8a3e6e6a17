#include "runtime/hand_off.h"

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <utility>

#include <spdlog/spdlog.h>

#include "agents/child_process.h"
#include "config/bounded_json.h"
#include "config/config_text.h"
#include "config/document.h"
#include "runtime/file_modes.h"
#include "runtime/successor.h"

namespace drawbridge::runtime {

namespace fs = std::filesystem;
using nlohmann::json;

HandOff::HandOff(boost::asio::io_context& io, core::Clock& clock, core::Executor& executor,
                 std::string data_dir, Hooks hooks)
    : io_(io),
      clock_(clock),
      executor_(executor),
      data_dir_(std::move(data_dir)),
      hooks_(std::move(hooks)) {
  std::error_code ec;
  self_exe_ = fs::read_symlink("/proc/self/exe", ec).string();
}

std::optional<std::string> HandOff::executable_path(const std::string& binary,
                                                    std::string& error) {
  std::error_code ec;
  const auto path = fs::absolute(binary, ec).lexically_normal().string();
  if (binary.empty() || !fs::is_regular_file(path, ec) || ::access(path.c_str(), X_OK) != 0) {
    error = "not an executable file: " + (path.empty() ? binary : path);
    return std::nullopt;
  }
  return path;
}

std::string HandOff::sentinel_path() const {
  return (fs::path(data_dir_) / "update.json").string();
}

void HandOff::write_sentinel(const json& j) {
  last_update_ = j;
  if (auto w = config::write_atomic(sentinel_path(), j.dump(2) + "\n"); !w.ok) {
    spdlog::warn("cannot write the update sentinel: {}", w.error);
  }
}

// The predecessor writes "handed-over" naming our pid; we confirm it once we serve.
void HandOff::read_sentinel() {
  std::string error;
  auto text = config::read_text_file(sentinel_path(), error);
  if (!text) return;
  auto parsed = config::parse_bounded_json(*text);
  if (!parsed.ok() || !parsed.value.is_object()) return;
  json j = std::move(parsed.value);
  // Written by the predecessor before it started us, so it names its own pid, not ours.
  const char* predecessor = std::getenv("DRAWBRIDGE_PREDECESSOR_PID");
  const bool ours = j.value("toPid", 0) == ::getpid() ||
                    (predecessor != nullptr &&
                     std::to_string(j.value("fromPid", 0)) == std::string(predecessor));
  if (j.value("outcome", "") == "handed-over" && ours) {
    j["outcome"] = "ok";
    j["toPid"] = ::getpid();
    j["version"] = DRAWBRIDGE_VERSION;
    j["completedAtMs"] = clock_.wall_ms();
    spdlog::info("update from {} to {} complete: this process (pid {}) serves",
                 j.value("fromVersion", "?"), DRAWBRIDGE_VERSION, ::getpid());
    write_sentinel(j);
    return;
  }
  last_update_ = j;
}

void HandOff::start(const Successor& s) {
  const auto t0 = clock_.now();
  const bool update = s.update;
  const std::string binary = s.binary.empty() ? self_exe_ : s.binary;
  hooks_.release_lock();
  SuccessorOptions o;
  o.binary = binary;
  o.argv = s.argv;
  if (o.argv.empty()) {
    o.argv = {binary, "run", "--data-dir", s.data_dir};
    if (!s.config_path.empty()) o.argv.insert(o.argv.begin() + 1, {"--config", s.config_path});
  }
  o.argv[0] = binary;
  o.listen_fd = hooks_.listen_fd();
  o.extra_env["DRAWBRIDGE_PREDECESSOR_PID"] = std::to_string(::getpid());
  o.extra_env["WATCHDOG_PID"] = "";  // ours; the successor's watchdog is its own
  o.umask = started_umask();         // it keeps its files private itself
  if (!s.carried.empty()) {
    for (const auto& c : s.carried) o.carried_fds.push_back(c.fd);
    o.extra_env[kCarriedVariable] = encode_carried(s.carried, kFirstCarriedFd);
  }
  if (update) {
    // Before the successor starts, so it can never read the sentinel before it is written.
    write_sentinel({{"outcome", "handed-over"},
                    {"binary", binary},
                    {"fromVersion", DRAWBRIDGE_VERSION},
                    {"fromPid", ::getpid()},
                    {"startedAtMs", clock_.wall_ms()}});
  }
  auto succ = spawn_successor(o);
  // The successor has its copies now (or never will): ours go, without a shutdown.
  for (const auto& c : s.carried) ::close(c.fd);
  if (!succ.error.empty()) return failed(succ.pid, succ.error, update, binary);
  spdlog::info("{}: started {} (pid {}) on the listening socket; waiting for it to be ready",
               update ? "update" : "re-exec", binary, succ.pid);
  await_successor(io_, executor_, succ.ready_fd, kReadyTimeout,
                  [this, pid = succ.pid, update, binary, t0](bool ok, std::string why) {
                    if (!ok) return failed(pid, why, update, binary);
                    spdlog::info("handed over to pid {} in {:.1f} ms ({}); exiting", pid,
                                 std::chrono::duration<double, std::milli>(clock_.now() - t0)
                                     .count(),
                                 why);
                    hooks_.handed_over(pid, why);
                  });
}

void HandOff::failed(pid_t pid, const std::string& why, bool update, const std::string& binary) {
  agents::kill_and_reap(pid);  // its own session and process group (setsid)
  spdlog::error("{} to {} failed: {}; restarting in this process on the running binary",
                update ? "update" : "re-exec", binary, why);
  if (update) {
    write_sentinel({{"outcome", "failed"},
                    {"binary", binary},
                    {"error", why},
                    {"fromVersion", DRAWBRIDGE_VERSION},
                    {"atMs", clock_.wall_ms()}});
  }
  hooks_.failed(why);
}

}  // namespace drawbridge::runtime
