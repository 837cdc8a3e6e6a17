#include "agents/child_process.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sys/stat.h>

#include <atomic>
#include <cerrno>
#include <mutex>

extern char** environ;

namespace drawbridge::agents {

namespace {

// Process groups of the children still running, for signal_all_groups() (the watchdog thread:
// atomics only, no locks, no allocation).
constexpr std::size_t kMaxGroups = 1024;
std::atomic<pid_t> g_groups[kMaxGroups];

void register_group(pid_t pgid) {
  for (auto& slot : g_groups) {
    pid_t empty = 0;
    if (slot.compare_exchange_strong(empty, pgid)) return;
  }
  // More than kMaxGroups children at once: this one is not killed by signal_all_groups().
}

void unregister_group(pid_t pgid) {
  for (auto& slot : g_groups) {
    pid_t expected = pgid;
    if (slot.compare_exchange_strong(expected, 0)) return;
  }
}

}  // namespace

namespace {
std::atomic<int> g_child_umask{-1};  // -1: not set, children inherit the gateway's
}  // namespace

void set_child_umask(mode_t mask) { g_child_umask.store(static_cast<int>(mask & 0777)); }

void signal_all_groups(int sig) {
  for (auto& slot : g_groups) {
    const pid_t pgid = slot.load();
    if (pgid > 0) ::kill(-pgid, sig);
  }
}

UniqueFd& UniqueFd::operator=(UniqueFd&& other) noexcept {
  if (this != &other) reset(other.release());
  return *this;
}

void UniqueFd::reset(int fd) {
  // close() is not retried on EINTR: on Linux the fd is released either way.
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

namespace {

// Keeps our pipe ends off 0..2: if the gateway runs with a closed stdin, pipe2() may hand out
// fd 0, and the child's dup2 onto 0..2 would then clobber another pipe end.
int raise_above_stdio(UniqueFd& fd) {
  if (fd.get() > 2) return 0;
  int moved = ::fcntl(fd.get(), F_DUPFD_CLOEXEC, 3);
  if (moved < 0) return errno;
  fd.reset(moved);
  return 0;
}

// A pipe for a child's 0..2, both ends above stdio.
int make_stdio_pipe(UniqueFd& read_end, UniqueFd& write_end) {
  if (int err = make_pipe(read_end, write_end)) return err;
  if (int err = raise_above_stdio(read_end)) return err;
  return raise_above_stdio(write_end);
}

// posix_spawn's C objects, destroyed on every path.
struct SpawnAttrs {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  SpawnAttrs() {
    ::posix_spawn_file_actions_init(&actions);
    ::posix_spawnattr_init(&attr);
  }
  ~SpawnAttrs() {
    ::posix_spawnattr_destroy(&attr);
    ::posix_spawn_file_actions_destroy(&actions);
  }
  SpawnAttrs(const SpawnAttrs&) = delete;
  SpawnAttrs& operator=(const SpawnAttrs&) = delete;
};

std::vector<std::string> merged_environment(const std::map<std::string, std::string>& extra) {
  std::vector<std::string> env;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    std::string_view kv(*entry);
    auto eq = kv.find('=');
    std::string key(kv.substr(0, eq));
    // The service manager's channel is the gateway's alone: an agent must not be able to
    // report READY or MAINPID to systemd, nor take sockets meant for a successor.
    if (key == "NOTIFY_SOCKET" || key.starts_with("WATCHDOG_") || key.starts_with("LISTEN_") ||
        key == "DRAWBRIDGE_READY_FD") {
      continue;
    }
    if (!extra.contains(key)) env.emplace_back(kv);
  }
  for (const auto& [key, value] : extra) env.push_back(key + "=" + value);
  return env;
}

}  // namespace

int make_pipe(UniqueFd& read_end, UniqueFd& write_end) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return errno;
  read_end.reset(fds[0]);
  write_end.reset(fds[1]);
  return 0;
}

std::vector<char*> c_strings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (auto& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

int spawn_child(const ChildSpec& spec, Child& child) {
  if (spec.argv.empty() || spec.argv[0].empty()) return EINVAL;

  UniqueFd in_read, in_write, out_read, out_write, err_read, err_write;
  if (int err = make_stdio_pipe(in_read, in_write)) return err;
  if (int err = make_stdio_pipe(out_read, out_write)) return err;
  if (int err = make_stdio_pipe(err_read, err_write)) return err;

  SpawnAttrs s;
  int rc = 0;
  // dup2 clears FD_CLOEXEC on the target, so only 0..2 survive the exec.
  rc = rc ? rc : ::posix_spawn_file_actions_adddup2(&s.actions, in_read.get(), 0);
  rc = rc ? rc : ::posix_spawn_file_actions_adddup2(&s.actions, out_write.get(), 1);
  rc = rc ? rc : ::posix_spawn_file_actions_adddup2(&s.actions, err_write.get(), 2);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
  // Belt and braces for fds that a library opened without O_CLOEXEC.
  rc = rc ? rc : ::posix_spawn_file_actions_addclosefrom_np(&s.actions, 3);
#endif
  if (!spec.cwd.empty()) {
    rc = rc ? rc : ::posix_spawn_file_actions_addchdir_np(&s.actions, spec.cwd.c_str());
  }

  sigset_t empty_mask, all_signals;
  sigemptyset(&empty_mask);
  sigfillset(&all_signals);
  rc = rc ? rc
          : ::posix_spawnattr_setflags(
                &s.attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  rc = rc ? rc : ::posix_spawnattr_setpgroup(&s.attr, 0);  // 0: the child's own pid
  rc = rc ? rc : ::posix_spawnattr_setsigmask(&s.attr, &empty_mask);
  rc = rc ? rc : ::posix_spawnattr_setsigdefault(&s.attr, &all_signals);
  if (rc != 0) return rc;

  std::vector<std::string> argv_strings = spec.argv;
  std::vector<std::string> env_strings = merged_environment(spec.env);
  std::vector<char*> argv = c_strings(argv_strings);
  std::vector<char*> envp = c_strings(env_strings);

  pid_t pid = -1;
  // glibc's posix_spawnp runs the child with CLONE_VFORK and returns the errno of a failed
  // chdir or exec, so "command not found" is an error value here, not a child exit code.
  {
    // posix_spawn has no umask attribute: the child copies ours when it is cloned, so ours is
    // the child's for the duration of the call. Files the gateway's other threads may create
    // meanwhile are opened with explicit modes (0600, 0700), which a looser mask cannot widen.
    static std::mutex umask_mutex;
    const int child_mask = g_child_umask.load();
    std::unique_lock lock(umask_mutex, std::defer_lock);
    mode_t ours = 0;
    if (child_mask >= 0) {
      lock.lock();
      ours = ::umask(static_cast<mode_t>(child_mask));
    }
    rc = ::posix_spawnp(&pid, argv[0], &s.actions, &s.attr, argv.data(), envp.data());
    if (child_mask >= 0) ::umask(ours);
  }
  if (rc != 0) return rc;

  child.pid = pid;
  register_group(pid);  // POSIX_SPAWN_SETPGROUP with 0: the group is the child's pid
  child.stdin_fd = std::move(in_write);
  child.stdout_fd = std::move(out_read);
  child.stderr_fd = std::move(err_read);
  return 0;  // the child's ends close here, so EOF on stdout means every writer has gone
}

UniqueFd open_pidfd(pid_t pid) {
#ifdef SYS_pidfd_open
  // pidfd_open sets O_CLOEXEC itself.
  long fd = ::syscall(SYS_pidfd_open, pid, 0);
  if (fd >= 0) return UniqueFd(static_cast<int>(fd));
#endif
  return UniqueFd();
}

ReapResult try_reap(pid_t pid, int& wait_status) {
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) {
      wait_status = status;
      unregister_group(pid);
      return ReapResult::reaped;
    }
    if (r == 0) return ReapResult::running;
    if (errno == EINTR) continue;
    unregister_group(pid);
    return ReapResult::lost;  // ECHILD
  }
}

void reap(pid_t pid) {
  while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
  }
}

void kill_and_reap(pid_t pid) {
  if (pid <= 0) return;
  signal_group(pid, SIGKILL);
  ::kill(pid, SIGKILL);
  reap(pid);
  unregister_group(pid);
}

void signal_group(pid_t pgid, int sig) {
  if (pgid > 0) ::kill(-pgid, sig);
}

}  // namespace drawbridge::agents
