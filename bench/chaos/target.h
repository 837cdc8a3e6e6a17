#pragma once

// The gateway under test, as bench/chaos drives it: drawbridge (bench/chaos/gateway.h) or a
// peer that speaks the same protocol (OpenClaw: bench/chaos/peer_gateway.h). Each injected
// event returns once the gateway serves again; an event the gateway has no counterpart of is
// not injected (supports()).

#include <sys/types.h>

#include <filesystem>
#include <string>
#include <vector>

#include "chaos/schedule.h"

namespace chaos {

// What one injected event cost, seen from outside.
struct EventOutcome {
  bool ok = false;
  double ready_ms = 0;  // trigger -> the gateway serves again (its new pid / generation)
  std::string detail;   // what went wrong, or a note (e.g. the plan of a patch)
  pid_t old_pid = -1, new_pid = -1;
};

class GatewayUnderTest {
 public:
  virtual ~GatewayUnderTest() = default;

  virtual std::string name() const = 0;  // "drawbridge", "openclaw"
  // Whether the gateway has this event; why not (for the output) when it has not.
  virtual bool supports(EventKind kind, std::string& why_not) const = 0;
  // What each event is for this gateway, one line (e.g. "restart-signal = SIGUSR2").
  virtual std::string event_notes() const = 0;

  // Spawns the gateway and waits (bounded) until /readyz answers 200.
  virtual EventOutcome start() = 0;
  virtual EventOutcome restart_signal() = 0;
  virtual EventOutcome restart_rpc() = 0;
  virtual EventOutcome hot_patch(int n) = 0;
  virtual EventOutcome restart_patch(int n) = 0;
  virtual EventOutcome term_and_start() = 0;
  virtual EventOutcome kill_and_start() = 0;
  virtual EventOutcome reexec() = 0;
  virtual EventOutcome update() = 0;
  // SIGTERM and wait; the exit status (-1: killed after the timeout, or not running).
  virtual int stop() = 0;

  virtual pid_t pid() const = 0;
  virtual int port() const = 0;
  virtual const std::string& token() const = 0;
  virtual std::filesystem::path log_path() const = 0;
  virtual std::string log() const = 0;
  // VmRSS in KiB, summed over the gateway's processes; -1 when unreadable.
  virtual long rss_kib() const = 0;
  // Exits seen that were not asked for, or not clean where a clean one was due.
  virtual const std::vector<std::string>& bad_exits() const = 0;
};

}  // namespace chaos
