#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace drawbridge::agents {

// A file descriptor that closes itself.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

struct ChildSpec {
  std::vector<std::string> argv;           // argv[0] is looked up in the gateway's PATH
  std::string cwd;                         // empty: the gateway's working directory
  std::map<std::string, std::string> env;  // added to (overriding) the inherited environment
};

// A started child: it leads a new process group whose id is `pid`. The fds are our ends of
// its stdin/stdout/stderr pipes, all O_CLOEXEC.
struct Child {
  pid_t pid = -1;
  UniqueFd stdin_fd;
  UniqueFd stdout_fd;
  UniqueFd stderr_fd;
};

// Starts `spec` with posix_spawnp: new process group, pipes on 0/1/2, every other fd closed,
// signal mask empty and signal dispositions default (so the gateway's SIG_IGN for SIGPIPE
// does not leak into the command). Returns 0, or the errno of the failed step (including an
// exec or chdir failure inside the child, which glibc reports back).
int spawn_child(const ChildSpec& spec, Child& child);

// The umask commands start with. The gateway runs with a tight one of its own (its files are
// private); commands get the one the gateway was started with, so they behave as usual. Until
// this is called they inherit the gateway's.
void set_child_umask(mode_t mask);

// Process helpers shared by the agents and the runtime (the successor of a re-exec).

// pipe2(O_CLOEXEC) into `read_end` and `write_end`. Returns 0, or the errno.
int make_pipe(UniqueFd& read_end, UniqueFd& write_end);

// The argv or envp array of exec: pointers into `strings` (which must outlive it and not
// change), null-terminated.
std::vector<char*> c_strings(std::vector<std::string>& strings);

// A pidfd for `pid` (Linux 5.3+): readable once the process has exited. -1 if unsupported.
UniqueFd open_pidfd(pid_t pid);

enum class ReapResult {
  running,  // not exited yet
  reaped,   // exited; `wait_status` is set
  lost,     // somebody else reaped it (waitpid(-1) elsewhere, or SIGCHLD ignored)
};

// waitpid(pid, WNOHANG), retrying EINTR.
ReapResult try_reap(pid_t pid, int& wait_status);

// waitpid(pid, 0): blocks until our child `pid` has exited, retrying EINTR.
void reap(pid_t pid);

// SIGKILLs the process group that `pid` leads, and `pid` itself (should it not lead one yet),
// and waits (blocking) for `pid` to be reaped; SIGKILL cannot be caught, so the wait is short.
void kill_and_reap(pid_t pid);

// kill(-pgid, sig); errors (ESRCH: the group is already gone) are ignored.
void signal_group(pid_t pgid, int sig);

// Sends `sig` to the process group of every child spawned and not yet reaped. Lock-free: the
// watchdog thread calls it right before it ends the process, so commands do not outlive us.
void signal_all_groups(int sig);

}  // namespace drawbridge::agents
