#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "core/executor.h"

namespace drawbridge::runtime {

// The re-exec hand-off: the running gateway starts the process that takes over, passes it the
// listening socket by the socket-activation convention (runtime/listen_fds.h), and waits for
// it to say it is ready on a pipe before exiting. Connections that arrive meanwhile wait in the
// socket's backlog, so none is refused.
//
// The successor is our child until we exit; the kernel then reparents it to init, or to the
// nearest subreaper (PR_SET_CHILD_SUBREAPER: systemd --user, a container's init), which reaps
// it. There is deliberately no double fork: the pid returned is the process that will serve,
// the one to announce to a supervisor (sd_notify MAINPID=<pid>) before we exit.

inline constexpr int kFirstCarriedFd = 5;
inline constexpr std::size_t kMaxCarriedFds = 64;

struct SuccessorOptions {
  // The executable: the running one (/proc/self/exe resolved at start), or an update's new
  // binary.
  std::string binary;
  std::vector<std::string> argv;  // argv[0..] for it; empty: {binary}
  // Handed over as fd 3 with LISTEN_FDS=1, LISTEN_PID=<its pid>, LISTEN_FDNAMES=gateway. It
  // stays ours too. -1: no socket, and no LISTEN_* variables.
  int listen_fd = -1;
  // Connections handed over with it (runtime/carried_connections.h): carried_fds[i] becomes its
  // fd kFirstCarriedFd + i. They stay ours too. At most kMaxCarriedFds.
  std::vector<int> carried_fds;
  std::map<std::string, std::string> extra_env;  // added to (or replacing in) our environment
  // The umask it starts with; -1: ours. The gateway passes the one it was started with, which
  // the successor records as its own original before tightening it (runtime/file_modes.h).
  int umask = -1;
};

struct Successor {
  pid_t pid = -1;
  int ready_fd = -1;  // the read end of its ready pipe (O_CLOEXEC); ours to close
  std::string error;  // set when it could not be started; then pid and ready_fd are -1
};

// fork + exec. The child gets: a new session (setsid: it does not die with our process group or
// terminal, and getsid(pid) == pid), an empty signal mask and default signal dispositions, the
// listening socket as fd 3 and the write end of a pipe as fd 4 (DRAWBRIDGE_READY_FD=4), each
// carried connection as fd 5 + i, 0..2 as ours, every other fd closed, our working directory
// and our environment with `extra_env` applied and LISTEN_PID set to its own pid. Inherited LISTEN_* and DRAWBRIDGE_READY_FD are
// replaced. An exec that fails (no such file, not executable) is reported here, in `error`, and
// the child is reaped; on any failure nothing is left open. Blocks until the child has exec'd
// (microseconds to a few milliseconds).
Successor spawn_successor(const SuccessorOptions& options);

// The successor's side: when DRAWBRIDGE_READY_FD is set, writes "READY <pid>\n" to it, closes it
// and unsets the variable. Call once ready (when /readyz would answer 200). No-op without the
// variable. A predecessor that gave up (closed its end) is a warning, not a SIGPIPE.
void report_ready_to_predecessor();
// Started by a predecessor's hand-off (re-exec, update) rather than by a user or systemd:
// true until report_ready_to_predecessor() has run.
bool started_by_predecessor();

// The predecessor's side, on the event loop: waits for a "READY ..." line on `ready_fd` (read on
// `io`), or EOF (the successor exited or closed the pipe before it was ready: failure), or
// `timeout` (a timer of `executor`, which runs on the same thread as `io`). Calls
// done(ok, why) exactly once, asynchronously, unless the io_context is stopped first; `why` is
// the reason of a failure, or the line read on success. Takes ownership of `ready_fd` and closes
// it. On failure the successor may still be running: the caller kills its process group and
// reaps it (agents::kill_and_reap(pid)).
void await_successor(boost::asio::io_context& io, core::Executor& executor, int ready_fd,
                     std::chrono::milliseconds timeout,
                     std::function<void(bool ok, std::string why)> done);

}  // namespace drawbridge::runtime
