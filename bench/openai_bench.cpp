// drawbridge_openai_bench: the OpenAI-compatible agent's streaming overhead (issue 13).
//
// Starts tests/fakes' OpenAiFake in this process (127.0.0.1, a kernel-chosen port, its own
// thread), writes a config whose only agent is `main` {type: "openai", baseUrl: the fake,
// apiKeyEnv: a variable set in the child's environment only}, spawns the real `drawbridge run`
// (fresh data folder, a free 127.0.0.1 port, connection limits raised for many clients on one
// address), waits for /readyz 200, and drives it with WebSocket clients of the control
// protocol (one session each, chat.send, `chat` delta/final events). Each part and each run
// gets a fresh fake and a fresh gateway. The fake stamps (steady clock) each content delta just
// before the write that carries it reaches its socket; a client stamps each `chat` event as its
// read completes, before parsing it. Same process, same clock, so per delta:
//   gateway delay = client receipt - fake write
// which holds the gateway's reading, parsing and forwarding of the delta and both loopback
// hops, plus the client thread's own wake-up (it is an upper bound on the gateway's part).
//
//  direct   the measurement's floor, no gateway: the same streams read straight from the
//           fake by this process (one at a time as in `first` with one session, then
//           concurrently as in `streams`), stamped the same way.
//  first    time to first delta: closed loop, --turns turns per concurrency level of
//           --first-concurrency (1: one session in sequence), each a stream of --first-deltas
//           deltas without gaps; per turn: first delta event received - first delta written.
//           The first --warmup-turns turns are not measured.
//  streams  --streams concurrent streaming turns (one session each), each --deltas deltas
//           --gap-ms apart, started over --stagger-ms; per delta: receipt - write. Counts those
//           later than 1 ms and 5 ms. --pace: steady (each stream on its own fixed schedule,
//           so the streams' deltas stay spread out), grid (every stream's delta at the same
//           instants, as a server decoding a batch of streams: bursts of --streams deltas) or
//           after-write (each a gap after the previous write; the streams drift into bursts).
//  memory   per level of --mem-streams: the gateway's VmRSS with no client, with the clients
//           connected, and with every client's turn held open mid-stream (the fake sends one
//           delta, then nothing; first-token and idle timeouts raised); (RSS_n - RSS_0) / n.
//
// Everything talks to 127.0.0.1 only; every wait has a deadline; the gateway is stopped by its
// PID (SIGTERM, SIGKILL after 10 s). Exit status: 0 every turn completed with all its deltas,
// 1 a turn lost, refused, failed or missing deltas (or an unclean stop), 2 setup failure,
// 64 usage. Missing a latency or memory target is reported, not an error.

#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "openai_bench_parts.h"

namespace {

namespace fs = std::filesystem;
using namespace openai_bench;
using nlohmann::json;

std::vector<int> parse_ints(const std::string& s) {
  std::vector<int> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (!item.empty()) out.push_back(std::stoi(item));
  }
  return out;
}

// One line on a run's result.
std::string describe(const json& r) {
  const std::string part = r["part"];
  char what[320];
  if (part == "first" || part == "first-direct") {
    const auto& p = r["firstDeltaOverheadMs"];
    std::snprintf(what, sizeof what,
                  "%d session(s), %d turns (gap %d ms, think %d ms): first-delta overhead p50 "
                  "%.3f, p90 %.3f, p99 %.3f, max %.3f ms",
                  r["concurrency"].get<int>(), r["turns"].get<int>(), r["gapMs"].get<int>(),
                  r["thinkMs"].get<int>(), p["p50"].get<double>(), p["p90"].get<double>(),
                  p["p99"].get<double>(), p["max"].get<double>());
  } else if (part == "streams" || part == "streams-direct") {
    const auto& p = r["deltaDelayMs"];
    std::snprintf(what, sizeof what,
                  "%d streams × %d deltas / %d ms (%s): delay p50 %.3f, p99 %.3f, max %.3f ms; "
                  "%d of %zu > 5 ms",
                  r["streams"].get<int>(), r["deltas"].get<int>(), r["gapMs"].get<int>(),
                  r["pace"].get<std::string>().c_str(), p["p50"].get<double>(),
                  p["p99"].get<double>(), p["max"].get<double>(), r["deltasOver5ms"].get<int>(),
                  p["n"].get<std::size_t>());
  } else {
    std::snprintf(what, sizeof what,
                  "%d streams held: %.1f KiB VmRSS per stream (%.1f over the connected "
                  "clients); VmRSS %.1f -> %.1f MiB",
                  r["streams"].get<int>(), r["perStreamKiB"]["vmRss"].get<double>(),
                  r["perStreamKiB"]["vmRssOverConnected"].get<double>(),
                  r["idle"]["vmRssKiB"].get<double>() / 1024,
                  r["streaming"]["vmRssKiB"].get<double>() / 1024);
  }
  return what;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (const char* b = std::getenv("DRAWBRIDGE_BIN")) o.bin = b;
  if (o.bin.empty()) {  // bench/drawbridge_openai_bench next to the build's drawbridge
    std::error_code ec;
    o.bin = (fs::read_symlink("/proc/self/exe", ec).parent_path().parent_path() / "drawbridge")
                .string();
  }
  if (const char* t = std::getenv("BENCH_TMP")) o.tmp = t;
  if (o.tmp.empty()) o.tmp = std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp";
  std::string first_c = "1,20", mem = "200,1000";

  CLI::App app{"drawbridge_openai_bench: the openai agent's streaming overhead (fake endpoint)"};
  app.add_option("--bin", o.bin, "drawbridge binary (default $DRAWBRIDGE_BIN or ../drawbridge)");
  app.add_option("--tmp", o.tmp, "Where the data folders go (default $BENCH_TMP, $TMPDIR, /tmp)");
  app.add_option("--parts,-p", o.parts, "Comma-separated: direct,first,streams,memory (all)");
  app.add_option("--turns,-n", o.turns, "first: measured turns per concurrency (default 2000)");
  app.add_option("--first-concurrency", first_c, "first: sessions in parallel (default 1,20)");
  app.add_option("--first-deltas", o.first_deltas, "first: deltas per turn (default 3)");
  app.add_option("--first-gap-ms", o.first_gap_ms,
                 "first: the fake waits this long before each delta, the first too (default 0)");
  app.add_option(
      "--first-think-ms", o.first_think_ms,
      "first: a session waits 0..2x this after a final before its next turn (default 0)");
  app.add_option("--warmup-turns", o.warmup_turns, "first: unmeasured turns first (default 20)");
  app.add_option("--streams,-s", o.streams, "streams: concurrent turns (default 200)");
  app.add_option("--deltas,-k", o.deltas, "streams: deltas per turn (default 100)");
  app.add_option("--gap-ms", o.gap_ms, "streams: ms between two deltas (default 20)");
  app.add_option("--pace", o.pace,
                 "streams: steady (each stream's deltas on its own fixed schedule), grid (all "
                 "streams' deltas at the same instants, as a batching server) or after-write "
                 "(each a gap after the last write; drifts into bursts) (default steady)")
      ->check(CLI::IsMember({"steady", "grid", "after-write"}));
  app.add_option("--stagger-ms", o.stagger_ms, "streams: the starts spread over (default 200)");
  app.add_option("--mem-streams", mem, "memory: streams held open, per run (default 200,1000)");
  app.add_option("--settle-ms", o.settle_ms, "memory: wait before each reading (default 1000)");
  app.add_option("--repeats,-R", o.repeats, "Runs of first and streams (default 1)");
  app.add_option("--quiet,-q", o.quiet_s,
                 "Before each run wait up to S s for the machine to be >= 80% idle (default 0)");
  app.add_option("--quiet-pct", o.quiet_pct, "Idle percentage -q waits for (default 80)");
  app.add_option("--keep,-L", o.keep, "Keep the data folders and logs under this folder");
  app.add_option("--json", o.json_out, "Also append every run's result (JSON lines) here");
  app.add_option("--samples", o.samples,
                 "Append every delta of the streams parts here (CSV: run,stream,k,write_ms,"
                 "delay_ms), and to FILE.sched every 10 ms the gateway loop's and the client's "
                 "run and run-queue wait (ms) and the machine's busy and total jiffies");
  app.add_option("--log-level", o.log_level, "The gateway's logging.level (default info)");
  CLI11_PARSE(app, argc, argv);
  try {
    o.first_concurrency = parse_ints(first_c);
    o.mem_streams = parse_ints(mem);
  } catch (const std::exception&) {
    std::fprintf(stderr, "--first-concurrency and --mem-streams take numbers, e.g. 1,20\n");
    return 64;
  }
  auto positive = [](const std::vector<int>& v) {
    return std::all_of(v.begin(), v.end(), [](int x) { return x > 0 && x <= 5000; });
  };
  if (o.turns <= 0 || o.first_deltas <= 0 || o.streams <= 0 || o.streams > 5000 || o.deltas <= 0 ||
      o.gap_ms < 0 || o.first_gap_ms < 0 || o.first_think_ms < 0 || o.stagger_ms < 0 ||
      o.warmup_turns < 0 || !positive(o.first_concurrency) || !positive(o.mem_streams) ||
      o.repeats <= 0) {
    std::fprintf(stderr, "counts must be > 0 (clients at most 5000), times >= 0\n");
    return 64;
  }
  if (::access(o.bin.c_str(), X_OK) != 0) {
    std::fprintf(stderr, "missing %s: build it first (see docs/BENCHMARKS.md)\n", o.bin.c_str());
    return 2;
  }
  ::signal(SIGPIPE, SIG_IGN);

  fs::path dir;
  if (!o.keep.empty()) {
    dir = o.keep;
    fs::create_directories(dir);
  } else {
    std::string tmpl = (fs::path(o.tmp) / "drawbridge-oaibench.XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) {
      std::perror("mkdtemp");
      return 2;
    }
    dir = tmpl;
  }
  std::printf("gateway: %s\nwork folder: %s%s\n", o.bin.c_str(), dir.c_str(),
              o.keep.empty() ? " (removed at the end)" : "");
  std::fflush(stdout);

  auto want = [&](const std::string& part) {
    return ("," + o.parts + ",").find("," + part + ",") != std::string::npos;
  };
  std::vector<json> results;
  int rc = 0;
  auto record = [&](json r) {
    std::printf("%s run %d: %s\n", r["part"].get<std::string>().c_str(), r["run"].get<int>(),
                describe(r).c_str());
    std::fflush(stdout);
    if (r["problems"]["count"].get<int>() > 0) {
      rc = 1;
      std::printf("  PROBLEMS: %s\n", r["problems"].dump().c_str());
    }
    if (!o.json_out.empty()) std::ofstream(o.json_out, std::ios::app) << r.dump() << "\n";
    results.push_back(std::move(r));
  };
  try {
    for (int i = 1; want("direct") && i <= o.repeats; ++i) {
      for (auto& r : run_direct(o, i)) record(r);
    }
    for (int i = 1; want("first") && i <= o.repeats; ++i) {
      for (int c : o.first_concurrency) record(run_first(o, dir, c, i));
    }
    for (int i = 1; want("streams") && i <= o.repeats; ++i) record(run_streams(o, dir, i));
    if (want("memory")) {
      for (int n : o.mem_streams) record(run_memory(o, dir, n));
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "FAILED: %s\n", e.what());
    rc = 2;
  }

  std::printf("\n| part | run | result | gateway CPU | problems | load before |\n");
  std::printf("|---|---|---|---|---|---|\n");
  for (auto& r : results) {
    const std::string what = describe(r);
    const bool has_cpu = r.contains("cpu") && r["cpu"].contains("gatewayCpuPct");
    const std::string cpu =
        has_cpu ? std::to_string(static_cast<int>(r["cpu"]["gatewayCpuPct"].get<double>())) + "%"
                : "—";
    std::printf("| %s | %d | %s | %s | %d | %s |\n", r["part"].get<std::string>().c_str(),
                r["run"].get<int>(), what.c_str(), cpu.c_str(), r["problems"]["count"].get<int>(),
                r["loadBefore"].get<std::string>().c_str());
  }
  std::printf(
      "targets: first-delta overhead p99 < 1 ms; no delta delayed > 5 ms with 200 streams; "
      "(delays are client receipt - fake write: they include the loopback hops and the bench "
      "client's own scheduling on the same 2 cores)\n");
  if (o.keep.empty()) {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  return rc;
}
