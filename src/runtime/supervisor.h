#pragma once

#include <chrono>
#include <cstdlib>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace drawbridge::runtime {

// Who starts this process again after it exits: that decides whether a restart that needs a
// fresh process can simply exit with code 75.
enum class Supervisor { none, systemd, launchd };
const char* to_string(Supervisor s);

struct SupervisorInfo {
  Supervisor kind = Supervisor::none;
  std::string why;  // for the log: "NOTIFY_SOCKET is set", "DRAWBRIDGE_SUPERVISOR=none", ...
};

using GetenvFn = std::function<const char*(const char*)>;

// DRAWBRIDGE_SUPERVISOR=systemd|launchd|none forces the answer (another value is logged and
// ignored). Otherwise systemd when NOTIFY_SOCKET or INVOCATION_ID is set, launchd when
// XPC_SERVICE_NAME (other than "0", which a login shell on macOS carries) or LAUNCH_JOB_LABEL
// is set, else none. Empty variables count as unset.
SupervisorInfo detect_supervisor(const GetenvFn& getenv_fn = ::getenv);

enum class RestartMode { in_process, reexec, supervised };
const char* to_string(RestartMode m);  // "in-process", "re-exec", "supervised"
std::optional<RestartMode> parse_restart_mode(std::string_view s);

// How a restart runs. `configured` is gateway.restart.mode: "auto" or one of the three modes.
// `fresh_process` is true when the request needs a new process (a binary update,
// `drawbridge restart --process`).
//
// - DRAWBRIDGE_RESTART_MODE (one of the three) overrides everything; another value is logged
//   and ignored.
// - A configured mode is taken as it is, whatever the request asks (the schema's "the others
//   force one way"): the operator may know of a supervisor detection cannot see (runit, a
//   container's restart policy), or want the process never to be replaced.
// - "auto" restarts in-process unless the request needs a fresh process: then `supervised`
//   under systemd or launchd (they start us again), `reexec` without a supervisor (nobody
//   would).
// An unknown `configured` value counts as "auto" (the schema rejects it before it gets here).
RestartMode choose_restart_mode(std::string_view configured, bool fresh_process,
                                const SupervisorInfo& sup, const GetenvFn& getenv_fn = ::getenv);

// launchd throttles a job that exits sooner than ThrottleInterval after its start: it waits
// out the rest of the interval before starting it again (10 s by default). Our plist sets
// ThrottleInterval to 1 s and the gateway pauses this long before a supervised exit, so the
// job has always run longer than the interval, however soon after a start the restart came.
// Zero for other supervisors.
std::chrono::milliseconds supervised_exit_pause(Supervisor s);

}  // namespace drawbridge::runtime
