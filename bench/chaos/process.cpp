// See process.h.

#include "chaos/process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace chaos::proc {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::vector<std::string> environment(const std::vector<std::string>& drop,
                                     const std::vector<std::string>& extra) {
  std::vector<std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    const std::string_view kv(*e);
    const auto name = kv.substr(0, kv.find('='));
    const bool dropped = std::any_of(drop.begin(), drop.end(), [&](const std::string& d) {
      return d.ends_with('*') ? name.starts_with(std::string_view(d).substr(0, d.size() - 1))
                              : name == d;
    });
    if (!dropped) env.emplace_back(kv);
  }
  env.insert(env.end(), extra.begin(), extra.end());
  return env;
}

pid_t spawn(const std::vector<std::string>& args, const std::vector<std::string>& env,
            const fs::path& log) {
  std::vector<std::string> a = args, e = env;
  std::vector<char*> argv, envp;
  for (auto& s : a) argv.push_back(s.data());
  argv.push_back(nullptr);
  for (auto& s : e) envp.push_back(s.data());
  envp.push_back(nullptr);
  const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) throw std::runtime_error("cannot open " + log.string());
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fd);
    throw std::runtime_error("fork failed");
  }
  if (pid == 0) {
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    const int nul = ::open("/dev/null", O_RDONLY);
    if (nul >= 0) ::dup2(nul, 0);
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  ::close(fd);
  return pid;
}

int wait_exit(pid_t pid, std::chrono::milliseconds timeout) {
  if (pid <= 1) return -2;
  const auto deadline = Clock::now() + timeout;
  int st = 0;
  while (Clock::now() < deadline) {
    const pid_t r = ::waitpid(pid, &st, WNOHANG);
    if (r == pid) return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    if (r < 0) return -1;  // not our child (any more)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, &st, 0);
  return -2;
}

std::vector<pid_t> tree(pid_t root) {
  std::vector<pid_t> out;
  if (root <= 1 || ::kill(root, 0) != 0) return out;
  std::multimap<pid_t, pid_t> children;  // ppid -> pid
  std::error_code ec;
  for (const auto& d : fs::directory_iterator("/proc", ec)) {
    const std::string name = d.path().filename().string();
    if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
    std::ifstream in(d.path() / "stat");
    std::string stat;
    std::getline(in, stat);
    const auto close = stat.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(stat.substr(close + 2));
    char state = 0;
    pid_t ppid = 0;
    rest >> state >> ppid;
    children.emplace(ppid, static_cast<pid_t>(std::stol(name)));
  }
  out.push_back(root);
  for (std::size_t i = 0; i < out.size(); ++i) {
    auto [b, e] = children.equal_range(out[i]);
    for (auto it = b; it != e; ++it) out.push_back(it->second);
  }
  return out;
}

long rss_kib(pid_t pid) {
  if (pid <= 0) return -1;
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

void kill_all(const std::vector<pid_t>& pids) {
  for (pid_t p : pids) {
    if (p > 1) ::kill(p, SIGKILL);
  }
  for (pid_t p : pids) {
    if (p <= 1) continue;
    // Ours (spawned, or inherited as a subreaper): reaped, bounded; others are gone already.
    for (int i = 0; i < 500; ++i) {
      const pid_t r = ::waitpid(p, nullptr, WNOHANG);
      if (r != 0) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
}

}  // namespace chaos::proc
