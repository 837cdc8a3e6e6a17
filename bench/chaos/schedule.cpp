// See schedule.h.

#include "chaos/schedule.h"

#include <algorithm>
#include <map>
#include <random>

namespace chaos {

const char* to_string(EventKind k) {
  switch (k) {
    case EventKind::restart_signal:
      return "restart-signal";
    case EventKind::restart_rpc:
      return "restart-rpc";
    case EventKind::restart_patch:
      return "restart-patch";
    case EventKind::reexec:
      return "reexec";
    case EventKind::update:
      return "update";
    case EventKind::hot_patch:
      return "hot-patch";
    case EventKind::term_start:
      return "term-start";
    case EventKind::kill_start:
      return "kill-start";
  }
  return "?";
}

bool parse_restart_kind(const std::string& name, EventKind& out) {
  static const std::map<std::string, EventKind> kNames{
      {"signal", EventKind::restart_signal}, {"restart-signal", EventKind::restart_signal},
      {"rpc", EventKind::restart_rpc},       {"restart-rpc", EventKind::restart_rpc},
      {"patch", EventKind::restart_patch},   {"restart-patch", EventKind::restart_patch},
      {"reexec", EventKind::reexec},         {"update", EventKind::update},
      {"term", EventKind::term_start},       {"term-start", EventKind::term_start},
      {"kill", EventKind::kill_start},       {"kill-start", EventKind::kill_start}};
  auto it = kNames.find(name);
  if (it == kNames.end()) return false;
  out = it->second;
  return true;
}

namespace {

// The times of one stream of events in [from, to).
std::vector<double> times(double every, double from, double to, bool random, std::mt19937_64& rng) {
  std::vector<double> out;
  if (every <= 0 || to <= from) return out;
  if (random) {
    std::exponential_distribution<double> gap(1.0 / every);
    for (double t = from + gap(rng); t < to; t += gap(rng)) out.push_back(t);
  } else {
    std::uniform_real_distribution<double> phase(0, every);
    for (double t = from + phase(rng); t < to; t += every) out.push_back(t);
  }
  return out;
}

}  // namespace

std::vector<ScheduledEvent> make_schedule(const ScheduleOptions& o) {
  std::mt19937_64 rng(o.seed);
  std::vector<ScheduledEvent> out;
  const double from = o.quiet_s, to = o.duration_s - o.tail_s;
  std::map<EventKind, int> counts;
  auto add = [&](double t, EventKind k) { out.push_back({t, k, counts[k]++}); };

  if (!o.restart_kinds.empty()) {
    std::vector<EventKind> cycle;
    for (double t : times(o.restart_every_s, from, to, o.random, rng)) {
      if (cycle.empty()) {
        cycle = o.restart_kinds;
        std::shuffle(cycle.begin(), cycle.end(), rng);
      }
      add(t, cycle.back());
      cycle.pop_back();
    }
  }
  for (double t : times(o.hot_every_s, from, to, o.random, rng)) add(t, EventKind::hot_patch);
  for (double t : times(o.term_every_s, from, to, o.random, rng)) add(t, EventKind::term_start);
  for (double t : times(o.kill_every_s, from, to, o.random, rng)) add(t, EventKind::kill_start);
  std::stable_sort(out.begin(), out.end(), [](const ScheduledEvent& a, const ScheduledEvent& b) {
    return a.at_s < b.at_s;
  });
  return out;
}

}  // namespace chaos
