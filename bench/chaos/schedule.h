#pragma once

// What bench/chaos injects and when: a seeded schedule, the same for the same options and seed.

#include <cstdint>
#include <string>
#include <vector>

namespace chaos {

enum class EventKind {
  restart_signal,  // SIGUSR1: in-process restart
  restart_rpc,     // gateway.restart.request
  restart_patch,   // config.patch of a restart-class key
  reexec,          // SIGUSR2: a fresh process on the same socket
  update,          // gateway.update with another binary
  hot_patch,       // config.patch of a hot key
  term_start,      // SIGTERM, then a start (as a supervisor would)
  kill_start,      // SIGKILL, then a start
};

const char* to_string(EventKind k);
// Parses one of the names to_string gives (also the short "signal", "rpc", "patch" for the
// restart kinds); false when unknown.
bool parse_restart_kind(const std::string& name, EventKind& out);

struct ScheduledEvent {
  double at_s = 0;  // from the start of the run
  EventKind kind{};
  int n = 0;  // the how-many-th of its kind (patches pick their key by it)
};

struct ScheduleOptions {
  double duration_s = 60;      // events are scheduled in [quiet_s, duration_s - tail_s)
  double quiet_s = 5;          // a lead-in without events: the quiet latency baseline
  double tail_s = 2;           // no event this close to the end: the last one settles in the run
  double restart_every_s = 2;  // one of restart_kinds (0: none)
  std::vector<EventKind> restart_kinds{EventKind::restart_signal, EventKind::restart_rpc,
                                       EventKind::reexec, EventKind::update,
                                       EventKind::restart_patch};
  double hot_every_s = 3;
  double term_every_s = 30;
  double kill_every_s = 20;
  bool random = false;  // intervals drawn from an exponential law with these means
  std::uint64_t seed = 1;
};

// The events in time order. Periodic (the default): each kind every `every` seconds from a
// seeded phase in [0, every); random: exponential intervals. Restarts take their kind from
// restart_kinds, each cycle through them in a seeded shuffled order.
std::vector<ScheduledEvent> make_schedule(const ScheduleOptions& o);

}  // namespace chaos
