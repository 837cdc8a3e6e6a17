// See report.h.

#include "chaos/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>

namespace chaos {

using nlohmann::json;

namespace {

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const auto i = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size())));
  return v[std::min(v.size() - 1, i == 0 ? 0 : i - 1)];
}

json stats(const std::vector<double>& v) {
  return {{"n", v.size()},
          {"p50", percentile(v, 50)},
          {"p95", percentile(v, 95)},
          {"p99", percentile(v, 99)},
          {"max", v.empty() ? 0.0 : *std::max_element(v.begin(), v.end())}};
}

bool is_restart(EventKind k) {
  return k == EventKind::restart_signal || k == EventKind::restart_rpc ||
         k == EventKind::restart_patch || k == EventKind::reexec || k == EventKind::update;
}
bool in_process(EventKind k) {
  return k == EventKind::restart_signal || k == EventKind::restart_rpc ||
         k == EventKind::restart_patch;
}

struct Sample {
  double t_ms, latency_ms;
  char channel;  // w(ebsocket), t(elegram), i(rc)
};

std::vector<Sample> samples(const RunData& d) {
  std::vector<Sample> out;
  for (const auto& [t, l] : d.ws_records) out.push_back({t, l, 'w'});
  for (const auto& m : d.tg.messages) {
    if (!m.reply_ms.empty()) {
      out.push_back({m.pushed_ms,
                     *std::min_element(m.reply_ms.begin(), m.reply_ms.end()) - m.pushed_ms, 't'});
    }
  }
  for (const auto& m : d.irc_result.messages) {
    if (m.reply_ms >= 0) out.push_back({m.sent_ms, m.reply_ms - m.sent_ms, 'i'});
  }
  std::sort(out.begin(), out.end(),
            [](const Sample& a, const Sample& b) { return a.t_ms < b.t_ms; });
  return out;
}

// Within [from - before, to + after] of an event that matches `pick`.
template <class Pick>
bool near_event(const RunData& d, double t, double before, double after, Pick pick) {
  return std::any_of(d.events.begin(), d.events.end(), [&](const EventRecord& e) {
    return pick(e.event.kind) && t >= e.start_ms - before && t <= e.end_ms + after;
  });
}

}  // namespace

Verdict judge(const RunData& d) {
  Verdict v;
  json& r = v.result;
  auto breach = [&](const std::string& what) { v.breaches.push_back(what); };
  r["gateway"] = d.gateway;
  r["options"] = d.options;
  r["windowS"] = (d.end_ms - d.start_ms) / 1000;

  // The events: how many of each kind, what each cost.
  std::map<std::string, std::vector<double>> ready_by_kind;
  json events = json::array();
  for (const auto& e : d.events) {
    ready_by_kind[to_string(e.event.kind)].push_back(e.outcome.ready_ms);
    events.push_back({{"kind", to_string(e.event.kind)},
                      {"scheduledS", e.event.at_s},
                      {"atS", (e.start_ms - d.start_ms) / 1000},
                      {"readyMs", e.outcome.ready_ms},
                      {"ok", e.outcome.ok},
                      {"oldPid", e.outcome.old_pid},
                      {"newPid", e.outcome.new_pid},
                      {"detail", e.outcome.detail}});
    if (!e.outcome.ok) {
      breach(std::string(to_string(e.event.kind)) + " at " +
             std::to_string((e.start_ms - d.start_ms) / 1000) + " s failed: " + e.outcome.detail);
    }
  }
  r["events"] = events;
  json by_kind = json::object();
  for (const auto& [k, v2] : ready_by_kind) by_kind[k] = stats(v2);
  r["readyMsByKind"] = by_kind;

  // WebSocket: drawbridge_loadgen checked every session's transcript.
  if (d.ws) {
    const json& lg = d.loadgen;
    json ws = {{"exit", d.loadgen_exit}};
    if (!lg.is_object()) {
      breach("websocket: the load generator gave no report (exit " +
             std::to_string(d.loadgen_exit) + ")");
    } else {
      const json vf = lg.value("verify", json::object());
      auto n = [](const json& j, const char* k) { return j.value(k, std::int64_t{0}); };
      ws.update({{"sent", n(lg, "sent")},
                 {"acked", n(lg, "acked")},
                 {"finals", n(lg, "finals")},
                 {"lost", n(lg, "lost")},
                 {"duplicateFinals", n(lg, "duplicates")},
                 {"unknownFinals", n(lg, "unknownFinals")},
                 {"finalMissed", n(lg, "finalMissed")},
                 {"errors", n(lg, "errors")},
                 {"transcriptLost", n(vf, "lost")},
                 {"transcriptLostAfterAnError", n(vf, "lostAfterAnError")},
                 {"transcriptLostNeverAcknowledged", n(vf, "lostNeverAccepted")},
                 {"transcriptDuplicatedReplies", n(vf, "duplicatedReplies")},
                 {"transcriptDuplicatedUserEntries", n(vf, "duplicatedUserEntries")},
                 {"sessionsUnreadable", n(vf, "sessionsUnreadable")},
                 {"reconnects", lg.value("reconnect", json::object()).value("reconnects", 0)},
                 {"longestDownMs",
                  lg.value("reconnect", json::object()).value("longestDownMs", 0.0)},
                 {"finalsFromFollowUps", n(lg, "followupFinals")},
                 {"repliesMatchedByPosition", n(vf, "repliesMatchedByPosition")},
                 {"verifiedVia", vf.value("via", "")},
                 {"transcriptChecked", n(vf, "messagesChecked")},
                 {"transcriptOk", n(vf, "ok")}});
      if (!lg.contains("verify")) breach("websocket: the transcripts were not verified");
      for (const char* k : {"lost", "duplicateFinals", "unknownFinals", "transcriptLost",
                            "transcriptDuplicatedReplies", "transcriptDuplicatedUserEntries",
                            "sessionsUnreadable"}) {
        if (std::string_view(k) == "unknownFinals" && !d.judge_unknown_finals) continue;
        if (ws[k].get<std::int64_t>() > 0) {
          breach("websocket: " + std::string(k) + " " + std::to_string(ws[k].get<std::int64_t>()));
        }
      }
      if (n(lg, "sent") == 0) breach("websocket: nothing was sent");
    }
    r["websocket"] = ws;
  }

  // Telegram: every update pushed answered once; a second copy only in a kill -9's window.
  if (d.telegram) {
    std::int64_t lost = 0, dup_at_kill = 0, dup_outside = 0;
    for (const auto& m : d.tg.messages) {
      if (m.reply_ms.empty()) {
        ++lost;
        continue;
      }
      if (m.reply_ms.size() < 2) continue;
      const double first = *std::min_element(m.reply_ms.begin(), m.reply_ms.end());
      const bool at_kill =
          near_event(d, first, 1000, 0, [](EventKind k) { return k == EventKind::kill_start; });
      (at_kill ? dup_at_kill : dup_outside) += static_cast<std::int64_t>(m.reply_ms.size()) - 1;
    }
    r["telegram"] = {
        {"sent", d.tg.messages.size()},       {"lost", lost},
        {"duplicatedAtAKill", dup_at_kill},   {"duplicatedOutsideTheWindow", dup_outside},
        {"otherReplies", d.tg.other_replies}, {"maxConcurrentPolls", d.tg.max_concurrent_polls}};
    if (lost > 0) breach("telegram: " + std::to_string(lost) + " update(s) never answered");
    if (dup_outside > 0) {
      breach("telegram: " + std::to_string(dup_outside) + " duplicate(s) outside a kill's window");
    }
    if (d.tg.max_concurrent_polls > 1) {
      breach("telegram: " + std::to_string(d.tg.max_concurrent_polls) +
             " getUpdates polls overlapped");
    }
    if (d.tg.messages.empty()) breach("telegram: nothing was sent");
  }

  // IRC: the protocol loses what is sent while the bot is away (401, or in a disconnect's
  // window); anything else must be answered once.
  if (d.irc) {
    std::int64_t absent = 0, answered = 0, lost_in_window = 0, lost = 0, dup_at_kill = 0,
                 dup_outside = 0;
    for (const auto& m : d.irc_result.messages) {
      const bool in_window = near_event(d, m.sent_ms, 1000, 3000, [](EventKind) { return true; });
      if (m.bot_absent) {
        ++absent;
      } else if (m.replies == 0) {
        (in_window ? lost_in_window : lost) += 1;
      } else {
        ++answered;
      }
      if (m.replies > 1) {
        const bool at_kill = near_event(d, m.reply_ms, 1000, 0,
                                        [](EventKind k) { return k == EventKind::kill_start; });
        (at_kill ? dup_at_kill : dup_outside) += m.replies - 1;
      }
    }
    r["irc"] = {{"sent", d.irc_result.messages.size()},
                {"answered", answered},
                {"botAbsent", absent},
                {"unansweredInADisconnectWindow", lost_in_window},
                {"lost", lost},
                {"duplicatedAtAKill", dup_at_kill},
                {"duplicatedOutsideTheWindow", dup_outside},
                {"unknownReplies", d.irc_result.unknown_replies},
                {"otherReplies", d.irc_result.other_replies},
                {"connectionErrors", d.irc_result.connection_errors}};
    if (lost > 0) breach("irc: " + std::to_string(lost) + " message(s) never answered");
    if (dup_outside > 0) breach("irc: " + std::to_string(dup_outside) + " duplicate(s)");
    if (d.irc_result.unknown_replies > 0) breach("irc: replies to no message");
    if (d.irc_result.messages.empty()) breach("irc: nothing was sent");
  }

  // Service: failed connections, by the event they fell in.
  std::map<std::string, std::int64_t> failed_by;
  json unexpected = json::array();  // failures outside a stop or a kill, the first 20
  for (const auto& f : d.probe.failures) {
    std::string in = "none";
    for (const auto& e : d.events) {
      if (f.at_ms >= e.start_ms - 5 && f.at_ms <= e.end_ms + 50) in = to_string(e.event.kind);
    }
    ++failed_by[in];
    if (in != "term-start" && in != "kill-start" && unexpected.size() < 20) {
      unexpected.push_back(
          {{"atS", (f.at_ms - d.start_ms) / 1000}, {"outcome", to_string(f.outcome)}, {"in", in}});
    }
  }
  std::int64_t refused_restarts = 0;
  for (const auto& [k, n] : failed_by) {
    if (k != "term-start" && k != "kill-start") refused_restarts += n;
  }
  r["service"] = {
      {"probes", d.probe.attempts},
      {"failed", d.probe.failures.size()},
      {"failedByEvent", failed_by},
      {"failedOutsideStopsAndKills", refused_restarts},
      {"longestOutageMs", d.probe.longest_outage_ms},
      {"longestOutageAtS",
       d.probe.longest_outage_ms > 0 ? (d.probe.longest_outage_at_ms - d.start_ms) / 1000 : 0.0}};
  if (refused_restarts > 0) {
    breach("service: " + std::to_string(refused_restarts) +
           " connection(s) failed outside a stop or kill (restarts must refuse none)");
  }

  // Latency: quiet lead-in against the messages that met a restart.
  std::vector<double> quiet, during, all;
  std::map<std::string, std::vector<double>> latency_by_kind;  // the first restart a message met
  double longest_in_process = 0;
  for (const auto& e : d.events) {
    if (in_process(e.event.kind))
      longest_in_process = std::max(longest_in_process, e.outcome.ready_ms);
  }
  for (const auto& s : samples(d)) {
    all.push_back(s.latency_ms);
    if (s.channel == 'i') continue;  // IRC's flood control paces replies: not the gateway's
    if (s.t_ms < d.quiet_end_ms) quiet.push_back(s.latency_ms);
    const double end = s.t_ms + s.latency_ms;
    const auto met = std::find_if(d.events.begin(), d.events.end(), [&](const EventRecord& e) {
      return is_restart(e.event.kind) && s.t_ms <= e.end_ms && end >= e.start_ms;
    });
    if (met == d.events.end()) continue;
    during.push_back(s.latency_ms);
    latency_by_kind[to_string(met->event.kind)].push_back(s.latency_ms);
  }
  const double quiet_p99 = percentile(quiet, 99), during_p99 = percentile(during, 99);
  const double p99_target = 2 * quiet_p99 + d.turn_ms;
  const double restart_target = d.turn_ms + 100.0;
  json per_kind = json::object();
  for (const auto& [kind, v] : latency_by_kind) per_kind[kind] = stats(v);
  r["latencyMs"] = {{"quiet", stats(quiet)},
                    {"duringRestarts", stats(during)},
                    {"duringRestartsByKind", per_kind},
                    {"all", stats(all)}};
  r["targets"] = {{"inProcessRestartReadyMs",
                   {{"max", longest_in_process},
                    {"target", restart_target},
                    {"met", longest_in_process <= restart_target}}},
                  {"p99DuringRestartsMs",
                   {{"value", during_p99},
                    {"target", p99_target},
                    {"met", during.empty() || during_p99 <= p99_target}}}};

  // Memory and exits.
  long rss_max = 0, rss_last = 0;
  for (const auto& [t, kib] : d.rss) {
    rss_max = std::max(rss_max, kib);
    rss_last = kib;
  }
  r["rssKiB"] = {{"max", rss_max}, {"last", rss_last}, {"samples", d.rss.size()}};
  r["badExits"] = d.bad_exits;
  for (const auto& b : d.bad_exits) breach("process: " + b);
  r["finalStopExit"] = d.final_stop_exit;
  if (d.final_stop_exit != 0) breach("the final SIGTERM did not end the gateway cleanly");
  r["breaches"] = v.breaches;
  r["ok"] = v.breaches.empty();

  // The one screen.
  char buf[512];
  std::string& s = v.summary;
  std::snprintf(buf, sizeof buf, "chaos (%s): %.0f s, %zu events", d.gateway.c_str(),
                r["windowS"].get<double>(), d.events.size());
  s += buf;
  for (const auto& [k, v2] : ready_by_kind) {
    std::snprintf(buf, sizeof buf,
                  "\n  %-15s x%-3zu serving again after p50 %7.1f ms, max %7.1f ms", k.c_str(),
                  v2.size(), percentile(v2, 50), percentile(v2, 100));
    s += buf;
  }
  if (r.contains("websocket")) s += "\n  websocket: " + r["websocket"].dump();
  if (r.contains("telegram")) s += "\n  telegram:  " + r["telegram"].dump();
  if (r.contains("irc")) s += "\n  irc:       " + r["irc"].dump();
  s += "\n  service:   " + r["service"].dump();
  std::snprintf(buf, sizeof buf,
                "\n  latency ms: quiet p50 %.1f p99 %.1f | during restarts p50 %.1f p99 %.1f "
                "(target < %.1f: %s) | all p99 %.1f max %.1f",
                percentile(quiet, 50), quiet_p99, percentile(during, 50), during_p99, p99_target,
                during.empty() || during_p99 <= p99_target ? "met" : "MISSED", percentile(all, 99),
                percentile(all, 100));
  s += buf;
  for (const auto& [kind, v] : latency_by_kind) {
    std::snprintf(buf, sizeof buf, "\n    met a %-15s n %5zu  p50 %7.1f  p99 %7.1f  max %7.1f",
                  kind.c_str(), v.size(), percentile(v, 50), percentile(v, 99), percentile(v, 100));
    s += buf;
  }
  std::snprintf(buf, sizeof buf,
                "\n  in-process restart -> serving: max %.1f ms (target <= %.0f: %s); RSS max "
                "%.1f MiB, last %.1f MiB",
                longest_in_process, restart_target,
                longest_in_process <= restart_target ? "met" : "MISSED", rss_max / 1024.0,
                rss_last / 1024.0);
  s += buf;
  s += v.breaches.empty() ? "\n  every guarantee held" : "\n  GUARANTEES BROKEN:";
  for (const auto& b : v.breaches) s += "\n    - " + b;
  s += "\n";
  return v;
}

void write_outputs(const std::filesystem::path& dir, const RunData& d, const Verdict& v) {
  std::ofstream(dir / "chaos.json") << v.result.dump(2) << "\n";
  std::ofstream lat(dir / "latency.tsv");
  for (const auto& s : samples(d)) {
    lat << (s.t_ms - d.start_ms) / 1000 << '\t' << s.latency_ms << '\t' << s.channel << '\n';
  }
  std::ofstream ev(dir / "events.tsv");
  for (const auto& e : d.events) {
    ev << (e.start_ms - d.start_ms) / 1000 << '\t' << to_string(e.event.kind) << '\t'
       << e.outcome.ready_ms << '\n';
  }
  std::ofstream rss(dir / "rss.tsv");
  for (const auto& [t, kib] : d.rss) rss << (t - d.start_ms) / 1000 << '\t' << kib / 1024.0 << '\n';
}

}  // namespace chaos
