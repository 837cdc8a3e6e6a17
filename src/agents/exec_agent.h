#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "core/executor.h"
#include "pipeline/agent.h"

namespace drawbridge::agents {

// What an exec agent takes from its `agents.<id>` entry (the runtime fills it in).
struct ExecSettings {
  std::vector<std::string> command;  // argv; command[0] is looked up in PATH
  std::int64_t timeout_ms = 120000;  // a turn running longer is cancelled
  int kill_grace_ms = 2000;          // SIGTERM, then SIGKILL after this long
  std::string cwd;
  std::map<std::string, std::string> env;
};

// Runs `settings.command` once per turn. The child gets one JSON line on stdin
// ({"runId","sessionKey","channel","chatId","sender","text","history":[{"role","text"}]}),
// each stdout line is streamed as a delta, and the reply is all of stdout minus its trailing
// newline. The turn ends when stdout is at EOF and the child has been reaped; exit status 0
// completes it, anything else fails it with the last stderr line. (A background process that
// keeps stdout open therefore holds the turn until the timeout.)
//
// Each child leads its own process group, so a timeout, cancel() or destroying the Turn
// reaches its grandchildren too: SIGTERM to the group, SIGKILL after `kill_grace_ms`
// (destroying the Turn SIGKILLs at once and reaps before returning).
//
// Requirements on the process (the runtime sets them up):
//  - SIGPIPE is ignored process-wide, since writing the request to a child that exits without
//    reading stdin raises it; the write then fails with EPIPE, which is ignored.
//  - Nothing else reaps children it did not start (no waitpid(-1), SIGCHLD not SIG_IGN), or
//    the exit status is lost and the turn fails.
// The pipes and the pidfd are I/O on `io`; the timeout, the kill grace period and the exit
// polling are timers on `executor`, which must run on the io_context's thread too (the
// runtime's AsioExecutor; a test may run them in simulated time). All calls and callbacks
// happen on that thread.
class ExecAgent final : public pipeline::Agent {
 public:
  // How a turn learns that its child exited: a pidfd (event-driven, Linux 5.3+; falls back to
  // polling where unsupported), or polling waitpid with a 1..50 ms backoff. Tests force both.
  enum class ExitWatch { pidfd, polling };

  ExecAgent(boost::asio::io_context& io, core::Executor& executor, ExecSettings settings,
            ExitWatch exit_watch = ExitWatch::pidfd);
  std::string_view type() const override { return "exec"; }
  std::unique_ptr<pipeline::Turn> start(pipeline::TurnRequest request,
                                        pipeline::TurnCallbacks callbacks) override;

 private:
  boost::asio::io_context& io_;
  core::Executor& executor_;
  ExecSettings settings_;
  ExitWatch exit_watch_;
};

}  // namespace drawbridge::agents
