// drawbridge_reload_probe: measures hot config reloads of a running gateway from outside, one
// change at a time (bench/reload.sh drives it; see docs/BENCHMARKS.md).
//
//   --mode patch-channel  per run: `config.get` (for `hash`; its round trip is reported too),
//                         then `config.patch {raw: {"channels": {"local": {"maxMessageChars":
//                         V}}}, baseHash}` with V new every run, timed from the write of the
//                         request to its response. The gateway answers only once the hot change
//                         is applied (here: the local channel stopped and started again), so
//                         that round trip is "RPC to change applied".
//   --mode patch-agent    the same with {"agents": {"main": {"prefix": P}}} (swap-agent).
//   --mode edit           per run: the config file (--config) rewritten in place (open O_TRUNC,
//                         write, close) with a new agents.main.prefix; the system clock is read
//                         right after close(); then `status` is polled every --poll-us until
//                         status.config.lastReload.appliedAtUnixUs changes (the gateway's system
//                         clock when it finished applying). Reported: appliedAt - write, and
//                         that minus gateway.reload.debounceMs (read from config.get).
//
// Every run checks that the change was applied hot (plan.kind "hot", plan.applied true; for
// edits, lastReload {source "file watcher", kind "hot", applied, ok}); a run where it was not
// is counted in `notHot` and reported, and its time is kept out of the percentiles.
//
// One JSON object per run on stdout, then one summary object (percentiles per measure); a
// human line per run on stderr with --verbose, and the summary on stderr always. Exit status:
// 0 ok, 1 a run failed or was not hot, 64 usage.
// Only Boost.Beast, nlohmann_json and CLI11: no drawbridge code.

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "ws_rpc.h"
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using Millis = std::chrono::milliseconds;
using nlohmann::json;

using bench_ws::Ws;

namespace {

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

std::int64_t unix_us_now() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct Options {
  int port = 0;
  std::string token;
  std::string mode;
  std::string config;
  int runs = 200;
  int poll_us = 1000;
  int timeout_ms = 15000;
  bool verbose = false;
};

// Linear interpolation between closest ranks (as bench/common.sh's stats_line does).
double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  const double r = p * static_cast<double>(v.size() - 1);
  const auto lo = static_cast<std::size_t>(std::floor(r));
  const auto hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (r - static_cast<double>(lo));
}

json summarize(const std::vector<double>& v) {
  if (v.empty()) return {{"n", 0}};
  double sum = 0;
  for (double x : v) sum += x;
  return {{"n", v.size()},
          {"min", *std::min_element(v.begin(), v.end())},
          {"p50", percentile(v, 0.50)},
          {"p90", percentile(v, 0.90)},
          {"p99", percentile(v, 0.99)},
          {"max", *std::max_element(v.begin(), v.end())},
          {"mean", sum / static_cast<double>(v.size())}};
}

std::string stats_text(const json& s) {
  if (s.value("n", 0) == 0) return "n=0";
  char buf[200];
  std::snprintf(buf, sizeof buf, "n=%d p50=%.3f p90=%.3f p99=%.3f max=%.3f (min %.3f)",
                s["n"].get<int>(), s["p50"].get<double>(), s["p90"].get<double>(),
                s["p99"].get<double>(), s["max"].get<double>(), s["min"].get<double>());
  return buf;
}

// The measures a mode collects, by name, kept in the order first seen.
class Samples {
 public:
  void add(const std::string& name, double v) {
    if (!values_.contains(name)) order_.push_back(name);
    values_[name].push_back(v);
  }
  json summary() const {
    json out = json::object();
    for (const auto& name : order_) out[name] = summarize(values_.at(name));
    return out;
  }
  const std::vector<std::string>& names() const { return order_; }

 private:
  std::vector<std::string> order_;
  std::map<std::string, std::vector<double>> values_;
};

std::optional<json> payload_of(const std::optional<json>& r) {
  if (!r || !r->value("ok", false) || !r->contains("payload")) return std::nullopt;
  return (*r)["payload"];
}

// ---- --mode patch-channel / patch-agent ----------------------------------------------------

int mode_patch(const Options& o, Ws& ws, const std::string& tag) {
  const bool channel = o.mode == "patch-channel";
  const std::string path = channel ? "channels.local.maxMessageChars" : "agents.main.prefix";
  const std::string action = channel ? "restart-channel" : "swap-agent";
  Samples samples;
  int failures = 0, not_hot = 0;
  json last_value;
  for (int run = 1; run <= o.runs; ++run) {
    json out = {{"mode", o.mode}, {"run", run}};
    auto fail = [&](const std::string& why) {
      out["error"] = why;
      std::cout << out.dump() << std::endl;
      std::fprintf(stderr, "run %3d: FAILED: %s\n", run, why.c_str());
      ++failures;
    };
    Clock::time_point t0, t1;
    auto got = payload_of(ws.request("config.get", json::object(), Millis(o.timeout_ms), &t0, &t1));
    if (!got || !got->contains("hash")) {
      fail("config.get: " + ws.last_error());
      continue;
    }
    const double get_ms = ms_between(t0, t1);
    // A value no run used before: every patch is a real change.
    const json value =
        channel ? json(100000 + run) : json("patch-" + tag + "-" + std::to_string(run) + ":");
    const json change = channel ? json{{"channels", {{"local", {{"maxMessageChars", value}}}}}}
                                : json{{"agents", {{"main", {{"prefix", value}}}}}};
    auto res = ws.request("config.patch", {{"raw", change.dump()}, {"baseHash", (*got)["hash"]}},
                          Millis(o.timeout_ms), &t0, &t1);
    const double patch_ms = ms_between(t0, t1);
    auto p = payload_of(res);
    if (!p) {
      fail("config.patch: " + (res ? res->dump() : ws.last_error()));
      continue;
    }
    const json& plan = (*p)["plan"];
    const std::string kind = plan.is_object() ? plan.value("kind", "") : "";
    const bool applied = plan.is_object() && plan.value("applied", false);
    bool has_action = false;
    if (plan.is_object() && plan.contains("actions")) {
      for (const auto& a : plan["actions"]) has_action |= a.value("action", "") == action;
    }
    out["configGetMs"] = get_ms;
    out["patchMs"] = patch_ms;
    out["kind"] = kind;
    out["applied"] = applied;
    out["changedPaths"] = (*p)["changedPaths"];
    // The gateway's own time for the apply step (run_change: the hot actions and the commit),
    // read after the timed round trip; the rest of patchMs is the write (fsyncs) and transport.
    auto st = payload_of(ws.request("status", json::object(), Millis(o.timeout_ms)));
    if (st && (*st)["config"].is_object() && (*st)["config"]["lastReload"].is_object()) {
      const auto& lr = (*st)["config"]["lastReload"];
      if (lr.contains("durationMs") && lr["durationMs"].is_number()) {
        out["applyMs"] = lr["durationMs"];
        samples.add("applyMs", lr["durationMs"].get<double>());
      }
    }
    std::string problem;
    if (kind != "hot") problem += "plan.kind " + kind + "; ";
    if (!applied) problem += "plan.applied false; ";
    if (!has_action) problem += "no " + action + " action; ";
    if ((*p)["changedPaths"] != json::array({path}))
      problem += "changedPaths " + (*p)["changedPaths"].dump() + "; ";
    samples.add("configGetMs", get_ms);
    if (problem.empty()) {
      samples.add("patchMs", patch_ms);
      last_value = value;
    } else {
      out["problem"] = problem;
      ++not_hot;
    }
    std::cout << out.dump() << std::endl;
    if (o.verbose || !problem.empty()) {
      std::fprintf(stderr,
                   "run %3d: config.get %.3f ms  config.patch %.3f ms (apply %s ms) %s%s%s\n", run,
                   get_ms, patch_ms, out.value("applyMs", json(nullptr)).dump().c_str(),
                   kind.c_str(), problem.empty() ? "" : "  PROBLEM: ", problem.c_str());
    }
  }
  // The last value is what the gateway runs on now.
  bool effective = false;
  if (auto got = payload_of(ws.request("config.get", json::object(), Millis(o.timeout_ms)))) {
    const json& c = (*got)["config"];
    const json* at = &c;
    std::istringstream parts(path);
    for (std::string part; std::getline(parts, part, '.');) {
      if (!at->is_object() || !at->contains(part)) {
        at = nullptr;
        break;
      }
      at = &(*at)[part];
    }
    effective = at != nullptr && *at == last_value;
  }
  if (!effective) ++failures;
  json summary = {{"mode", o.mode},
                  {"summary", true},
                  {"runs", o.runs},
                  {"failures", failures},
                  {"notHot", not_hot},
                  {"path", path},
                  {"lastValueEffective", effective},
                  {"stats", samples.summary()}};
  std::cout << summary.dump() << std::endl;
  std::fprintf(stderr, "%s: %d runs, %d failed, %d not hot, last value effective: %s\n",
               o.mode.c_str(), o.runs, failures, not_hot, effective ? "yes" : "NO");
  for (const auto& name : samples.names()) {
    std::fprintf(stderr, "  %-12s ms: %s\n", name.c_str(),
                 stats_text(summary["stats"][name]).c_str());
  }
  return failures == 0 && not_hot == 0 ? 0 : 1;
}

// ---- --mode edit ---------------------------------------------------------------------------

std::optional<json> read_json_file(const std::string& path, std::string& why) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    why = "cannot read " + path + ": " + std::strerror(errno);
    return std::nullopt;
  }
  std::ostringstream buf;
  buf << in.rdbuf();
  json doc = json::parse(buf.str(), nullptr, /*allow_exceptions=*/false, /*ignore_comments=*/true);
  if (doc.is_discarded() || !doc.is_object()) {
    why = path + " is not a JSON object";
    return std::nullopt;
  }
  return doc;
}

// In place, as `echo > file` or an editor without backup files would: the file keeps its inode.
bool write_in_place(const std::string& path, const std::string& text, std::string& why) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
  if (fd < 0) {
    why = "open " + path + ": " + std::strerror(errno);
    return false;
  }
  std::size_t off = 0;
  while (off < text.size()) {
    const ssize_t n = ::write(fd, text.data() + off, text.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      why = "write " + path + ": " + std::strerror(errno);
      ::close(fd);
      return false;
    }
    off += static_cast<std::size_t>(n);
  }
  if (::close(fd) != 0) {
    why = "close " + path + ": " + std::strerror(errno);
    return false;
  }
  return true;
}

json last_reload(const json& status) {
  if (!status.contains("config") || !status["config"].is_object()) return nullptr;
  return status["config"].value("lastReload", json(nullptr));
}

std::optional<std::int64_t> applied_at(const json& lr) {
  if (!lr.is_object() || !lr.contains("appliedAtUnixUs") ||
      !lr["appliedAtUnixUs"].is_number_integer()) {
    return std::nullopt;
  }
  return lr["appliedAtUnixUs"].get<std::int64_t>();
}

int mode_edit(const Options& o, Ws& ws, const std::string& tag) {
  std::string why;
  auto doc = read_json_file(o.config, why);
  if (!doc) {
    std::cerr << why << "\n";
    return 1;
  }
  auto got = payload_of(ws.request("config.get", json::object(), Millis(o.timeout_ms)));
  if (!got) {
    std::cerr << "config.get: " << ws.last_error() << "\n";
    return 1;
  }
  const json& eff = (*got)["config"];
  double debounce_ms = -1;
  if (eff.contains("gateway") && eff["gateway"].contains("reload") &&
      eff["gateway"]["reload"].contains("debounceMs")) {
    debounce_ms = eff["gateway"]["reload"]["debounceMs"].get<double>();
  }
  if (debounce_ms < 0) {
    std::cerr << "config.get shows no gateway.reload.debounceMs\n";
    return 1;
  }
  if ((*got).value("path", "") != o.config) {
    // Different spellings of one file are fine; the gateway watches what it was given.
    std::fprintf(stderr, "note: the gateway's config is %s, editing %s\n",
                 (*got).value("path", "").c_str(), o.config.c_str());
  }
  Samples samples;
  int failures = 0, not_hot = 0;
  for (int run = 1; run <= o.runs; ++run) {
    json out = {{"mode", "edit"}, {"run", run}, {"debounceMs", debounce_ms}};
    auto fail = [&](const std::string& reason) {
      out["error"] = reason;
      std::cout << out.dump() << std::endl;
      std::fprintf(stderr, "run %3d: FAILED: %s\n", run, reason.c_str());
      ++failures;
    };
    auto st = payload_of(ws.request("status", json::object(), Millis(o.timeout_ms)));
    if (!st) {
      fail("status: " + ws.last_error());
      break;
    }
    const auto before = applied_at(last_reload(*st));
    const std::string prefix = "edit-" + tag + "-" + std::to_string(run) + ":";
    (*doc)["agents"]["main"]["prefix"] = prefix;
    const std::string text = doc->dump(2) + "\n";
    const std::int64_t write_begin_us = unix_us_now();
    if (!write_in_place(o.config, text, why)) {
      fail(why);
      break;
    }
    const std::int64_t written_us = unix_us_now();
    const auto deadline = Clock::now() + Millis(static_cast<int>(debounce_ms) + o.timeout_ms);
    json lr;
    std::int64_t at = 0;
    bool changed = false;
    int polls = 0;
    while (Clock::now() < deadline) {
      auto s = payload_of(ws.request("status", json::object(), Millis(o.timeout_ms)));
      ++polls;
      if (!s) break;
      lr = last_reload(*s);
      if (auto now = applied_at(lr); now && now != before) {
        at = *now;
        changed = true;
        break;
      }
      std::this_thread::sleep_for(std::chrono::microseconds(o.poll_us));
    }
    const std::int64_t seen_us = unix_us_now();
    if (!changed) {
      if (!lr.is_null() && !lr.contains("appliedAtUnixUs")) {
        fail("status.config.lastReload has no appliedAtUnixUs (gateway too old?): " + lr.dump());
        break;
      }
      fail("not applied within " + std::to_string(static_cast<int>(debounce_ms) + o.timeout_ms) +
           " ms: lastReload " + lr.dump());
      continue;
    }
    const double applied_ms = static_cast<double>(at - written_us) / 1000.0;
    out["writeUs"] = written_us - write_begin_us;
    out["appliedMs"] = applied_ms;
    out["overDebounceMs"] = applied_ms - debounce_ms;
    out["seenMs"] = static_cast<double>(seen_us - written_us) / 1000.0;
    out["polls"] = polls;
    out["lastReload"] = lr;
    std::string problem;
    if (lr.value("source", "") != "file watcher")
      problem += "source " + lr.value("source", "") + "; ";
    if (lr.value("kind", "") != "hot") problem += "kind " + lr.value("kind", "") + "; ";
    if (!lr.value("applied", false)) problem += "not applied; ";
    if (!lr.value("ok", false)) problem += "not ok; ";
    if (lr.value("paths", json::array()) != json::array({"agents.main.prefix"})) {
      problem += "paths " + lr.value("paths", json::array()).dump() + "; ";
    }
    if (problem.empty()) {
      samples.add("appliedMs", applied_ms);
      samples.add("overDebounceMs", applied_ms - debounce_ms);
      if (lr.contains("durationMs") && lr["durationMs"].is_number()) {
        samples.add("applyMs", lr["durationMs"].get<double>());
      }
    } else {
      out["problem"] = problem;
      ++not_hot;
    }
    std::cout << out.dump() << std::endl;
    if (o.verbose || !problem.empty()) {
      std::fprintf(stderr,
                   "run %3d: write -> applied %.3f ms (debounce %.0f, over it %.3f ms; apply "
                   "%s ms; seen by the poll after %.3f ms, %d polls)%s%s\n",
                   run, applied_ms, debounce_ms, applied_ms - debounce_ms,
                   lr.value("durationMs", json(nullptr)).dump().c_str(),
                   static_cast<double>(seen_us - written_us) / 1000.0, polls,
                   problem.empty() ? "" : "  PROBLEM: ", problem.c_str());
    }
  }
  json summary = {{"mode", "edit"},
                  {"summary", true},
                  {"runs", o.runs},
                  {"failures", failures},
                  {"notHot", not_hot},
                  {"debounceMs", debounce_ms},
                  {"stats", samples.summary()}};
  std::cout << summary.dump() << std::endl;
  std::fprintf(stderr, "edit (debounce %.0f ms): %d runs, %d failed, %d not hot\n", debounce_ms,
               o.runs, failures, not_hot);
  for (const auto& name : samples.names()) {
    std::fprintf(stderr, "  %-15s ms: %s\n", name.c_str(),
                 stats_text(summary["stats"][name]).c_str());
  }
  return failures == 0 && not_hot == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"drawbridge_reload_probe: measures hot config reloads of a running gateway"};
  app.add_option("--port", o.port, "Gateway port on 127.0.0.1")->required();
  app.add_option("--token", o.token, "Gateway auth token")->required();
  app.add_option("--mode", o.mode,
                 "patch-channel, patch-agent: config.patch round trip; edit: file write -> "
                 "applied")
      ->required()
      ->check(CLI::IsMember({"patch-channel", "patch-agent", "edit"}));
  app.add_option("--config", o.config, "The gateway's config file (--mode edit rewrites it)");
  app.add_option("--runs,-n", o.runs, "Changes to measure")->check(CLI::Range(1, 100000));
  app.add_option("--poll-us", o.poll_us, "Pause between status polls (--mode edit)")
      ->check(CLI::Range(0, 1000000));
  app.add_option("--timeout-ms", o.timeout_ms,
                 "Bound on each request (and on each edit, "
                 "beyond the debounce)")
      ->check(CLI::Range(100, 600000));
  app.add_flag("--verbose,-v", o.verbose, "A line per run on stderr");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 64;
  }
  if (o.mode == "edit" && o.config.empty()) {
    std::cerr << "--mode edit needs --config\n";
    return 64;
  }
  ::signal(SIGPIPE, SIG_IGN);
  char tag[16];
  std::snprintf(tag, sizeof tag, "%08x", static_cast<unsigned>(std::random_device{}()));
  Ws ws(o.port, "drawbridge-reload-probe");
  ws.keep_events(false);
  if (auto why = ws.open(o.token, Millis(5000)); !why.empty()) {
    std::cerr << "cannot connect: " << why << "\n";
    return 1;
  }
  return o.mode == "edit" ? mode_edit(o, ws, tag) : mode_patch(o, ws, tag);
}
