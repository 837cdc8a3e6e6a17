#pragma once

// What bench/chaos saw, and the verdict: every guarantee checked, the targets measured, a
// JSON result, a one-screen summary and the data files of the plot (bench/chaos/plot.gp).

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "chaos/gateway.h"
#include "chaos/irc_load.h"
#include "chaos/probe.h"
#include "chaos/schedule.h"
#include "chaos/telegram_load.h"

namespace chaos {

struct EventRecord {
  ScheduledEvent event;
  double start_ms = 0, end_ms = 0;  // wall clock: triggered, served again
  EventOutcome outcome;
};

struct RunData {
  std::string gateway = "drawbridge";  // the gateway under test (bench/chaos/target.h)
  nlohmann::json options;           // as given, for the result file
  double start_ms = 0, end_ms = 0;  // the sending window (wall clock)
  double quiet_end_ms = 0;          // the lead-in without events ends here
  int turn_ms = 0;
  std::vector<EventRecord> events;
  bool ws = false, telegram = false, irc = false;
  bool judge_unknown_finals = true;  // false for a peer that answers follow-ups in runs of its own
  nlohmann::json loadgen;  // drawbridge_loadgen's report (null when it had none)
  int loadgen_exit = -1;
  std::vector<std::pair<double, double>> ws_records;  // (sent ms, latency ms)
  TelegramResult tg;
  IrcResult irc_result;
  ProbeResult probe;
  std::vector<std::pair<double, long>> rss;  // (ms, KiB)
  std::vector<std::string> bad_exits;
  int final_stop_exit = -1;
};

struct Verdict {
  nlohmann::json result;
  std::vector<std::string> breaches;  // guarantees broken: the run fails
  std::string summary;                // one screen
};

Verdict judge(const RunData& d);
// chaos.json, latency.tsv (s, ms, channel), events.tsv (s, kind, ready ms), rss.tsv (s, MiB).
void write_outputs(const std::filesystem::path& dir, const RunData& d, const Verdict& v);

}  // namespace chaos
