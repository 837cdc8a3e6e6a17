#include "runtime/supervisor.h"

#include <spdlog/spdlog.h>

namespace drawbridge::runtime {

namespace {

// Unset and empty are the same to us: `Environment=NOTIFY_SOCKET=` clears a variable too.
const char* env(const GetenvFn& getenv_fn, const char* name) {
  const char* v = getenv_fn(name);
  return v != nullptr && *v != '\0' ? v : nullptr;
}

std::optional<Supervisor> parse_supervisor(std::string_view s) {
  if (s == "none") return Supervisor::none;
  if (s == "systemd") return Supervisor::systemd;
  if (s == "launchd") return Supervisor::launchd;
  return std::nullopt;
}

}  // namespace

const char* to_string(Supervisor s) {
  switch (s) {
    case Supervisor::none:
      return "none";
    case Supervisor::systemd:
      return "systemd";
    case Supervisor::launchd:
      return "launchd";
  }
  return "none";
}

SupervisorInfo detect_supervisor(const GetenvFn& getenv_fn) {
  if (const char* forced = env(getenv_fn, "DRAWBRIDGE_SUPERVISOR")) {
    if (const auto kind = parse_supervisor(forced)) {
      return {*kind, std::string("DRAWBRIDGE_SUPERVISOR=") + forced};
    }
    spdlog::warn("DRAWBRIDGE_SUPERVISOR={} is not one of systemd, launchd, none; ignored", forced);
  }
  // A Type=notify unit always gets NOTIFY_SOCKET; INVOCATION_ID catches the other types.
  if (env(getenv_fn, "NOTIFY_SOCKET")) return {Supervisor::systemd, "NOTIFY_SOCKET is set"};
  if (env(getenv_fn, "INVOCATION_ID")) return {Supervisor::systemd, "INVOCATION_ID is set"};
  // launchd gives every job XPC_SERVICE_NAME; a Terminal shell on macOS has it set to "0".
  if (const char* xpc = env(getenv_fn, "XPC_SERVICE_NAME"); xpc && std::string_view(xpc) != "0") {
    return {Supervisor::launchd, std::string("XPC_SERVICE_NAME=") + xpc};
  }
  if (const char* label = env(getenv_fn, "LAUNCH_JOB_LABEL")) {
    return {Supervisor::launchd, std::string("LAUNCH_JOB_LABEL=") + label};
  }
  return {Supervisor::none,
          "none of NOTIFY_SOCKET, INVOCATION_ID, XPC_SERVICE_NAME, LAUNCH_JOB_LABEL is set"};
}

const char* to_string(RestartMode m) {
  switch (m) {
    case RestartMode::in_process:
      return "in-process";
    case RestartMode::reexec:
      return "re-exec";
    case RestartMode::supervised:
      return "supervised";
  }
  return "in-process";
}

std::optional<RestartMode> parse_restart_mode(std::string_view s) {
  if (s == "in-process") return RestartMode::in_process;
  if (s == "re-exec") return RestartMode::reexec;
  if (s == "supervised") return RestartMode::supervised;
  return std::nullopt;
}

RestartMode choose_restart_mode(std::string_view configured, bool fresh_process,
                                const SupervisorInfo& sup, const GetenvFn& getenv_fn) {
  if (const char* forced = env(getenv_fn, "DRAWBRIDGE_RESTART_MODE")) {
    if (const auto mode = parse_restart_mode(forced)) return *mode;
    spdlog::warn(
        "DRAWBRIDGE_RESTART_MODE={} is not one of in-process, re-exec, supervised; "
        "ignored",
        forced);
  }
  if (const auto mode = parse_restart_mode(configured)) return *mode;
  if (configured != "auto") {
    spdlog::warn("gateway.restart.mode \"{}\" is unknown; using auto", configured);
  }
  if (!fresh_process) return RestartMode::in_process;
  return sup.kind == Supervisor::none ? RestartMode::reexec : RestartMode::supervised;
}

std::chrono::milliseconds supervised_exit_pause(Supervisor s) {
  return s == Supervisor::launchd ? std::chrono::milliseconds{1500} : std::chrono::milliseconds{0};
}

}  // namespace drawbridge::runtime
