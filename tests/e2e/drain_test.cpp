// The drain as the outside sees it: readiness, the status of a drain under way, the notices a
// chat gets, the clean-shutdown marker, a start that fails after a restart, the force-exit
// watchdog, who may ask for a restart (signals, RPC, "/restart" in chat, the CLI).

#include <signal.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <iostream>
#include <sstream>
#include <thread>

#include "e2e/harness.h"
#include "e2e/lifecycle_helpers.h"

namespace drawbridge::e2e {
namespace {

using Clock = std::chrono::steady_clock;


using namespace lifecycle;


json request_restart(const Gateway& gw, const json& params) {
  auto c = gw.client({"operator.admin"});
  return c->request("gateway.restart.request", params);
}

// Waits (bounded) for a file another process writes.
bool wait_for_file(const fs::path& file, Millis timeout = 5s) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (!read_text(file).empty()) return true;
    if (Clock::now() >= deadline) return false;
    // A file of another process: polled, bounded by the deadline.
    std::this_thread::sleep_for(10ms);
  }
}

std::string proc_cmdline(pid_t pid) {
  std::string s = read_text("/proc/" + std::to_string(pid) + "/cmdline");
  for (auto& ch : s) {
    if (ch == '\0') ch = ' ';
  }
  return s;
}

// Connects a RawWs with write and admin scopes and sends one message on `session`; returns
// its run id (the turn must have started).
std::string start_turn(RawWs& ws, const std::string& session, const std::string& text,
                       const std::string& key) {
  json ack = ws.request("chat.send", {{"sessionKey", session}, {"message", text},
                                      {"idempotencyKey", key}});
  EXPECT_EQ(ack["payload"].value("status", ""), "started") << ack.dump();
  return ack["payload"].value("runId", "");
}

TEST(Drain, ReadyzIs503WhileDrainingAnd200After) {
  TempDir dir;
  Gateway gw(dir, restartable(echo_config(/*delay_ms=*/1500)));
  gw.start();
  RawWs ws(gw.port());
  ASSERT_EQ(ws.connect(gw.token(), {"operator.write", "operator.admin"}).value("ok", false), true);
  start_turn(ws, "ready", "hold the drain", "rd-1");
  json res = ws.request("gateway.restart.request", {{"reason", "e2e readyz"}, {"delayMs", 0}});
  ASSERT_EQ(res["payload"].value("ok", false), true) << res.dump();
  EXPECT_TRUE(wait_readyz(gw, 503, "draining", 3s)) << gw.log();
  ASSERT_TRUE(wait_generation(gw, 2)) << gw.log();
  auto ready = http(gw.port(), "GET", "/readyz");
  EXPECT_EQ(ready.status, 200) << ready.body;
}

// A connection that arrives during an in-process restart's teardown waits in the socket's
// backlog and is served by the next generation: never refused (issue 14).
TEST(Drain, AConnectionDuringTheTeardownIsServedByTheNextGenerationNotRefused) {
  TempDir dir;
  Gateway gw(dir, restartable(echo_config()));
  gw.start();
  RawWs watcher(gw.port());
  ASSERT_EQ(watcher.connect(gw.token(), {"operator.admin"}).value("ok", false), true);
  json res = watcher.request("gateway.restart.request", {{"reason", "e2e backlog"}, {"delayMs", 0}});
  ASSERT_EQ(res["payload"].value("ok", false), true) << res.dump();
  // The shutdown event: the teardown has begun. The watcher stops reading, so it never answers
  // the close frame and the teardown waits its whole bound (100 ms) for it.
  for (;;) {
    auto ev = watcher.next_event(5s);
    ASSERT_TRUE(ev) << gw.log();
    if (is_shutdown(*ev)) break;
  }
  RawWs late(gw.port());  // TCP connect and upgrade: accepted once the next generation is up
  const json hello = late.connect(gw.token(), {"operator.read"});
  EXPECT_EQ(hello.value("ok", false), true) << hello.dump() << gw.log();
  ASSERT_TRUE(wait_generation(gw, 2)) << gw.log();
  EXPECT_EQ(gw.log().find("connect refused"), std::string::npos) << gw.log();
  EXPECT_EQ(late.request("health", json::object())["payload"].value("ok", false), true);
}

// A message acknowledged `queued` during a restart's drain runs in the next generation while
// its client is away; the client that comes back and subscribes gets its final event, once.
TEST(Drain, AClientThatComesBackGetsTheFinalOfARunThatEndedWhileItWasAway) {
  TempDir dir;
  Gateway gw(dir, restartable(echo_config(/*delay_ms=*/800)));
  gw.start();
  RawWs ws(gw.port());
  ASSERT_EQ(ws.connect(gw.token(), {"operator.write", "operator.admin"}).value("ok", false), true);
  EventTape tape(ws);
  start_turn(ws, "away", "hold the drain", "aw-1");
  json res = ws.request("gateway.restart.request", {{"reason", "e2e away"}, {"delayMs", 0}});
  ASSERT_EQ(res["payload"].value("ok", false), true) << res.dump();
  ASSERT_FALSE(tape.wait_for(is_notice, 5s).is_null()) << tape.dump() << gw.log();
  json late = ws.request("chat.send", {{"sessionKey", "away"},
                                       {"message", "while draining"},
                                       {"idempotencyKey", "aw-2"}});
  ASSERT_EQ(late["payload"].value("status", ""), "queued") << late.dump();
  tape.until_close(8s);
  ASSERT_TRUE(wait_generation(gw, 2)) << gw.log();
  // The next generation answers "aw-2" (an 800 ms turn) whether or not the client is back yet:
  // either way the client that subscribes gets its final event (kept, or live). That the kept
  // one comes is the unit test ServerTest.TheEndOfARunThatFinishedWhileTheClientWasAway...
  auto back = gw.client();
  back->request("chat.history", {{"sessionKey", "away"}});
  ChatRun run = await_run(*back, "aw-2", 5s);
  EXPECT_EQ(run.state(), "final") << run.terminal.dump() << gw.log();
  EXPECT_NE(run.text().find("while draining"), std::string::npos) << run.text();

  // Once: a second client that subscribes gets no copy before the end of its own run.
  auto again = gw.client();
  again->request("chat.history", {{"sessionKey", "away"}});
  json ack = again->request("chat.send", {{"sessionKey", "away"},
                                          {"message", "next"},
                                          {"idempotencyKey", "aw-3"}});
  ChatRun next = await_run(*again, ack.value("runId", ""), 5s);
  ASSERT_EQ(next.state(), "final") << next.terminal.dump();
  for (const auto& ev : next.other) {
    EXPECT_NE(ev["payload"].value("runId", ""), "aw-2") << "a second copy: " << ev.dump();
  }
}

TEST(Drain, StatusDuringTheDrainNamesTheBlockingRun) {
  TempDir dir;
  Gateway gw(dir, restartable(echo_config(/*delay_ms=*/3000)));
  gw.start();
  RawWs ws(gw.port());
  ASSERT_EQ(ws.connect(gw.token(), {"operator.write", "operator.admin"}).value("ok", false), true);
  EventTape tape(ws);
  const std::string run_id = start_turn(ws, "blocker", "three seconds", "bl-1");
  json res = ws.request("gateway.restart.request", {{"reason", "e2e status"}, {"delayMs", 0}});
  ASSERT_EQ(res["payload"].value("ok", false), true) << res.dump();
  // The notice goes out when the drain starts waiting for turns.
  ASSERT_FALSE(tape.wait_for(is_notice, 5s).is_null()) << tape.dump() << gw.log();

  json status = status_of(gw);
  EXPECT_EQ(status.value("state", ""), "draining") << status.dump(2);
  const json drain = status.value("drain", json());
  ASSERT_TRUE(drain.is_object()) << status.dump(2);
  EXPECT_EQ(drain.value("kind", ""), "restart") << drain.dump(2);
  EXPECT_FALSE(drain.value("phase", "").empty()) << drain.dump(2);
  const json waiting = drain.value("waitingOn", json::array());
  ASSERT_EQ(waiting.size(), 1u) << drain.dump(2);
  EXPECT_EQ(waiting[0].value("runId", ""), run_id) << drain.dump(2);
  EXPECT_EQ(waiting[0].value("sessionKey", ""), "blocker") << drain.dump(2);
  for (const char* key : {"taskId", "status", "label"}) {
    EXPECT_TRUE(waiting[0].contains(key)) << key << " missing: " << drain.dump(2);
  }
  EXPECT_NE(waiting[0].value("label", "").find("echo"), std::string::npos) << drain.dump(2);
  EXPECT_TRUE(waiting[0]["elapsedMs"].is_number_integer()) << drain.dump(2);
  EXPECT_EQ(drain.value("more", -1), 0) << drain.dump(2);

  WsFrame close = tape.until_close(8s);
  EXPECT_EQ(close.close_code, 1012) << close.error << close.close_reason;
  ASSERT_TRUE(wait_generation(gw, 2)) << gw.log();
  status = status_of(gw);
  EXPECT_TRUE(status.value("drain", json::object()).is_null()) << status.dump(2);
}

TEST(Drain, OneRestartingNoticePerChatEvenWithSeveralRequests) {
  TempDir dir;
  Gateway gw(dir, restartable(echo_config(/*delay_ms=*/1500)));
  gw.start();
  RawWs ws(gw.port());
  ASSERT_EQ(ws.connect(gw.token(), {"operator.write", "operator.admin"}).value("ok", false), true);
  EventTape tape(ws);
  const std::string run_a = start_turn(ws, "chat-a", "first chat", "nt-a");
  const std::string run_b = start_turn(ws, "chat-b", "second chat", "nt-b");

  json first = ws.request("gateway.restart.request", {{"reason", "one"}, {"delayMs", 500}});
  EXPECT_EQ(first["payload"].value("status", ""), "scheduled") << first.dump();
  json second = ws.request("gateway.restart.request", {{"reason", "two"}, {"delayMs", 500}});
  EXPECT_EQ(second["payload"].value("status", ""), "coalesced") << second.dump();
  EXPECT_EQ(second["payload"].value("cycle", -1), first["payload"].value("cycle", -2))
      << first.dump() << second.dump();
  ASSERT_FALSE(tape.wait_for(is_notice, 5s).is_null()) << tape.dump() << gw.log();
  json third = ws.request("gateway.restart.request", {{"reason", "three"}, {"delayMs", 0}});
  EXPECT_EQ(third["payload"].value("status", ""), "ignored") << third.dump();
  gw.signal(SIGUSR1);  // a fourth, by signal
  ASSERT_TRUE(gw.wait_for_log("SIGUSR1", 3s)) << gw.log();

  WsFrame close = tape.until_close(10s);
  EXPECT_EQ(close.close_code, 1012) << close.error << close.close_reason;
  for (const auto& chat : {std::pair<std::string, std::string>{"chat-a", run_a},
                           std::pair<std::string, std::string>{"chat-b", run_b}}) {
    const std::string& session = chat.first;
    const std::string& run = chat.second;
    EXPECT_EQ(notice_texts(tape.seen(), session), std::vector<std::string>{kRestartingNotice})
        << session << ": " << tape.dump();
    EXPECT_GE(find_event(tape.seen(), [&](const json& e) { return is_chat(e, run, "final"); }), 0)
        << session << ": " << tape.dump();
  }
  EXPECT_EQ(notice_texts(tape.seen()).size(), 2u) << tape.dump();
  ASSERT_TRUE(wait_generation(gw, 2)) << gw.log();
  EXPECT_EQ(status_of(gw).value("generation", 0), 2);
}

TEST(Drain, NoNoticeWhenNoticesAreDisabled) {
  TempDir dir;
  json config = restartable(echo_config(/*delay_ms=*/1000));
  config["channels"]["local"]["notices"] = {{"enabled", false}};
  Gateway gw(dir, config);
  gw.start();
  RawWs ws(gw.port());
  ASSERT_EQ(ws.connect(gw.token(), {"operator.write", "operator.admin"}).value("ok", false), true);
  EventTape tape(ws);
  const std::string run_id = start_turn(ws, "quiet", "no notices please", "nn-1");
  json res = ws.request("gateway.restart.request", {{"reason", "e2e quiet"}, {"delayMs", 0}});
  ASSERT_EQ(res["payload"].value("ok", false), true) << res.dump();
  WsFrame close = tape.until_close(8s);
  EXPECT_EQ(close.close_code, 1012) << close.error << close.close_reason;
  EXPECT_GE(find_event(tape.seen(), [&](const json& e) { return is_chat(e, run_id, "final"); }), 0)
      << tape.dump();
  EXPECT_TRUE(notice_texts(tape.seen()).empty()) << tape.dump();
  ASSERT_TRUE(wait_generation(gw, 2)) << gw.log();
}

TEST(Drain, NoticeTextComesFromTheConfig) {
  TempDir dir;
  json config = restartable(echo_config(/*delay_ms=*/1000));
  config["channels"]["local"]["notices"] = {{"restarting", "Back in a moment."}};
  Gateway gw(dir, config);
  gw.start();
  RawWs ws(gw.port());
  ASSERT_EQ(ws.connect(gw.token(), {"operator.write", "operator.admin"}).value("ok", false), true);
  EventTape tape(ws);
  start_turn(ws, "custom", "custom notice", "cn-1");
  json res = ws.request("gateway.restart.request", {{"reason", "e2e custom"}, {"delayMs", 0}});
  ASSERT_EQ(res["payload"].value("ok", false), true) << res.dump();
  WsFrame close = tape.until_close(8s);
  EXPECT_EQ(close.close_code, 1012) << close.error << close.close_reason;
  EXPECT_EQ(notice_texts(tape.seen(), "custom"), std::vector<std::string>{"Back in a moment."})
      << tape.dump();
  ASSERT_TRUE(wait_generation(gw, 2)) << gw.log();
}

TEST(Drain, SigtermSendsTheStoppingNotice) {
  TempDir dir;
  Gateway gw(dir, echo_config(/*delay_ms=*/1000));
  gw.start();
  RawWs ws(gw.port());
  ASSERT_EQ(ws.connect(gw.token(), {"operator.write"}).value("ok", false), true);
  EventTape tape(ws);
  const std::string run_id = start_turn(ws, "stopping", "answer before you go", "sn-1");
  gw.signal(SIGTERM);
  WsFrame close = tape.until_close(8s);
  EXPECT_EQ(close.close_code, 1012) << close.error << close.close_reason;
  const auto& events = tape.seen();
  EXPECT_EQ(notice_texts(events, "stopping"), std::vector<std::string>{kStoppingNotice})
      << tape.dump();
  const int notice_at = find_event(events, is_notice);
  const int final_at = find_event(events, [&](const json& e) { return is_chat(e, run_id, "final"); });
  EXPECT_GE(final_at, 0) << tape.dump();
  EXPECT_LT(notice_at, final_at) << tape.dump();
  EXPECT_LT(final_at, find_event(events, is_shutdown)) << tape.dump();
  auto st = gw.wait_exit(10s);
  EXPECT_TRUE(st.exited && st.code == 0) << st.describe();
}

TEST(Drain, CleanRestartLeavesTheCleanMarker) {
  TempDir dir;
  Gateway gw(dir, restartable(echo_config()));
  gw.start();
  auto c = gw.client();
  json ack = c->request("chat.send", {{"sessionKey", "clean"}, {"message", "before"},
                                      {"idempotencyKey", "cl-1"}});
  ASSERT_EQ(await_run(*c, ack.value("runId", ""), 5s).state(), "final");
  json res = request_restart(gw, {{"reason", "e2e clean"}, {"delayMs", 0}});
  EXPECT_EQ(res.value("status", ""), "scheduled") << res.dump();
  ASSERT_TRUE(wait_generation(gw, 2)) << gw.log();
  json status = status_of(gw);
  EXPECT_EQ(status.value("cleanStart", false), true) << status.dump(2);
  EXPECT_EQ(status["lastRestart"].value("interrupted", true), false) << status.dump(2);
  EXPECT_EQ(status["lastRestart"].value("reason", ""), "e2e clean") << status.dump(2);
  EXPECT_NE(gw.log().find("drain finished in"), std::string::npos) << gw.log();
  EXPECT_EQ(gw.log().find("no clean-shutdown marker"), std::string::npos) << gw.log();
}

// A start that fails after an in-process restart keeps the process alive, reports, releases
// the lock (another gateway can take the data folder), and a later restart retries.
TEST(Drain, FailedStartAfterARestartReleasesTheLockAndCanBeRetried) {
  TempDir dir;
  Gateway gw(dir, restartable(echo_config()));
  gw.start();
  const fs::path config_file = dir.path() / "config.json";
  const std::string good = read_text(config_file);
  // A valid config this machine cannot serve: an address it does not have. (An invalid file
  // would not do: the restart falls back to the last valid config.)
  json unservable = json::parse(good);
  unservable["gateway"]["bind"] = "192.0.2.1";  // TEST-NET-1, never local
  dir.write("config.json", unservable.dump(2));
  gw.signal(SIGUSR1);
  ASSERT_TRUE(gw.wait_for_log("failed to start", 8s)) << gw.log();
  ASSERT_TRUE(gw.running()) << gw.log();
  json status = status_of(gw);
  EXPECT_EQ(status.value("state", ""), "failed") << status.dump(2);
  EXPECT_NE(status.value("lastStartError", json("")).dump().find("192.0.2.1"),
            std::string::npos)
      << status.dump(2);
  auto ready = http(gw.port(), "GET", "/readyz");
  EXPECT_EQ(ready.status, 503) << ready.body;

  // The lock is free: a second gateway starts on the same data folder.
  TempDir other_dir;
  Gateway other(other_dir, echo_config(), gw.data_dir());
  ASSERT_NO_THROW(other.start()) << gw.log();

  // Fixed, but the folder is taken: the retry fails again, naming the holder.
  dir.write("config.json", good);
  gw.signal(SIGUSR1);
  ASSERT_TRUE(wait_for_log_count(gw, "failed to start", 2, 5s)) << gw.log();
  status = status_of(gw);
  EXPECT_EQ(status.value("state", ""), "failed") << status.dump(2);
  EXPECT_NE(status.value("lastStartError", json("")).dump().find(std::to_string(other.pid())),
            std::string::npos)
      << status.dump(2);

  other.signal(SIGTERM);
  auto st = other.wait_exit(10s);
  EXPECT_TRUE(st.exited && st.code == 0) << st.describe();
  gw.signal(SIGUSR1);
  ASSERT_TRUE(wait_generation(gw, 2)) << gw.log();
  status = status_of(gw);
  EXPECT_EQ(status.value("state", ""), "running") << status.dump(2);
  EXPECT_EQ(status.value("generation", 0), 2) << status.dump(2);
  EXPECT_TRUE(status.value("lastStartError", json("x")).is_null()) << status.dump(2);
  auto c = gw.client();
  json ack = c->request("chat.send", {{"sessionKey", "retried"}, {"message", "alive"},
                                      {"idempotencyKey", "fs-1"}});
  EXPECT_EQ(await_run(*c, ack.value("runId", ""), 5s).text(), "alive");
}

// A drain stuck on a command that ignores SIGTERM: the watchdog exits 1 before the
// supervisor's stop timeout and leaves a diagnostic bundle.
TEST(Drain, WatchdogExits1AndWritesADiagnosticBundle) {
  TempDir dir;
  const fs::path pid_file = dir.path() / "stuck.pid";
  const std::string script =
      "trap '' TERM; echo $$ > '" + pid_file.string() + "'; echo started; exec sleep 30";
  json config = {{"agents", {{"main", {{"type", "exec"},
                                       {"command", {"sh", "-c", script}},
                                       {"killGraceMs", 60000},
                                       {"timeoutMs", 60000}}}}},
                 {"channels", {{"local", {{"maxMessageChars", 0}}}}}};
  // Whatever happens, the stuck command goes when the test ends (only if it still is the
  // `sleep` it became: a reused pid is left alone).
  struct KillStuck {
    fs::path file;
    ~KillStuck() {
      const pid_t pid = static_cast<pid_t>(std::atol(read_text(file).c_str()));
      if (pid > 1 && proc_cmdline(pid).find("sleep") != std::string::npos) ::kill(pid, SIGKILL);
    }
  } kill_stuck{pid_file};
  Gateway gw(dir, config);
  gw.set_env("DRAWBRIDGE_STOP_TIMEOUT_MS", "3000");
  gw.start();
  auto c = gw.client();
  json ack = c->request("chat.send", {{"sessionKey", "stuck"}, {"message", "go"},
                                      {"idempotencyKey", "wd-1"}});
  const std::string run_id = ack.value("runId", "");
  ASSERT_TRUE(wait_for_file(pid_file)) << gw.log();

  const auto t0 = Clock::now();
  gw.signal(SIGTERM);
  auto st = gw.wait_exit(8s);
  const auto took = elapsed_ms(t0);
  EXPECT_TRUE(st.exited && st.code == 1) << st.describe() << "\n" << gw.log();
  // 3000 ms supervisor timeout: min(3000 - 5000, ...) is negative, so half of it: 1500 ms.
  EXPECT_GE(took, 1300) << gw.log();
  EXPECT_LT(took, 4000) << gw.log();

  std::vector<fs::path> bundles;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(gw.data_dir() / "diagnostics", ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("watchdog-", 0) == 0 && e.path().extension() == ".json") {
      bundles.push_back(e.path());
    }
  }
  ASSERT_EQ(bundles.size(), 1u) << ec.message() << "\n" << gw.log();
  json bundle = json::parse(read_text(bundles[0]), nullptr, false);
  ASSERT_TRUE(bundle.is_object()) << read_text(bundles[0]);
  EXPECT_FALSE(bundle.value("reason", "").empty()) << bundle.dump(2);
  EXPECT_EQ(bundle.value("pid", 0), gw.pid()) << bundle.dump(2);
  EXPECT_EQ(bundle.value("generation", 0), 1) << bundle.dump(2);
  ASSERT_TRUE(bundle.value("drain", json()).is_object()) << bundle.dump(2);
  EXPECT_EQ(bundle["drain"].value("kind", ""), "stop") << bundle.dump(2);
  const json blockers = bundle.value("blockers", json::array());
  EXPECT_GE(find_event(blockers.get<std::vector<json>>(),
                       [&](const json& b) { return b.value("runId", "") == run_id; }),
            0)
      << bundle.dump(2);
  EXPECT_TRUE(bundle.value("recentLog", json::array()).is_array() &&
              !bundle["recentLog"].empty())
      << bundle.dump(2);
  EXPECT_NE(gw.log().find("watchdog"), std::string::npos) << gw.log();

  // The watchdog ended the command's process group before exiting: a trapped command does not
  // outlive the gateway. (Bounded wait: the kernel delivers SIGKILL asynchronously.)
  const pid_t stuck = static_cast<pid_t>(std::atol(read_text(pid_file).c_str()));
  ASSERT_GT(stuck, 1);
  const auto gone_by = Clock::now() + 2s;
  while (proc_cmdline(stuck).find("sleep") != std::string::npos && Clock::now() < gone_by) {
    std::this_thread::sleep_for(10ms);  // another process's exit: polled, bounded
  }
  EXPECT_EQ(proc_cmdline(stuck).find("sleep"), std::string::npos)
      << "the stuck command (pid " << stuck << ") outlived the gateway's watchdog exit";
}

TEST(Drain, CommandsRestartFalseIgnoresSigusr1AndChatButNotTheRpc) {
  TempDir dir;
  json config = restartable(echo_config());
  config["commands"]["restart"] = false;
  Gateway gw(dir, config);
  gw.start();
  gw.signal(SIGUSR1);
  ASSERT_TRUE(gw.wait_for_log("ignored", 3s)) << gw.log();
  EXPECT_NE(gw.log().find("commands.restart"), std::string::npos) << gw.log();
  EXPECT_NE(gw.log().find("warn"), std::string::npos) << "not logged as a warning:\n" << gw.log();

  auto c = gw.client();
  json ack = c->request("chat.send", {{"sessionKey", "cmd-off"}, {"message", "/restart"},
                                      {"idempotencyKey", "co-1"}});
  ChatRun run = await_run(*c, ack.value("runId", ""), 5s);
  ASSERT_EQ(run.state(), "final") << run.terminal.dump();
  EXPECT_NE(run.text(), "Restarting the gateway.");
  EXPECT_EQ(gw.log().find("restart scheduled"), std::string::npos) << gw.log();
  json status = status_of(gw);
  EXPECT_EQ(status.value("generation", 0), 1) << status.dump(2);
  EXPECT_EQ(status.value("state", ""), "running") << status.dump(2);
  EXPECT_FALSE(status.contains("scheduledRestart")) << status.dump(2);

  // The operator's RPC still restarts, as a new request (nothing was pending to merge with).
  json res = request_restart(gw, {{"reason", "operator"}, {"delayMs", 0}});
  EXPECT_EQ(res.value("status", ""), "scheduled") << res.dump();
  ASSERT_TRUE(wait_generation(gw, 2)) << gw.log();
}

TEST(Drain, ChatRestartCommandAnswersThenRestarts) {
  TempDir dir;
  Gateway gw(dir, restartable(echo_config()));
  gw.start();
  RawWs ws(gw.port());
  ASSERT_EQ(ws.connect(gw.token(), {"operator.write"}).value("ok", false), true);
  EventTape tape(ws);
  json ack = ws.request("chat.send", {{"sessionKey", "cmd"}, {"message", "/restart"},
                                      {"idempotencyKey", "cmd-1"}});
  ASSERT_EQ(ack.value("ok", false), true) << ack.dump();
  const std::string run_id = ack["payload"].value("runId", "");
  WsFrame close = tape.until_close(8s);
  EXPECT_EQ(close.close_code, 1012) << close.error << close.close_reason;
  const int final_at = find_event(tape.seen(), [&](const json& e) { return is_chat(e, run_id, "final"); });
  ASSERT_GE(final_at, 0) << tape.dump();
  EXPECT_EQ(entry_text(tape.seen()[final_at]["payload"]["message"]), "Restarting the gateway.");
  EXPECT_LT(final_at, find_event(tape.seen(), is_shutdown)) << tape.dump();

  ASSERT_TRUE(wait_generation(gw, 2)) << gw.log();
  json status = status_of(gw);
  EXPECT_EQ(status.value("generation", 0), 2) << status.dump(2);
  EXPECT_EQ(status["lastRestart"].value("source", ""), "chat") << status.dump(2);
  EXPECT_EQ(status["store"].value("inboxUnfinished", -1), 0) << status.dump(2);
  // Answered once, and not taken as a second request by the new generation.
  json history = gw.history("cmd");
  EXPECT_EQ(entries_of_run(history, "assistant", run_id).size(), 1u) << history.dump(2);
  EXPECT_FALSE(status.contains("scheduledRestart")) << status.dump(2);
  EXPECT_EQ(log_count(gw, "restart scheduled in"), 1u) << gw.log();
}

TEST(Drain, CliRestartWaitReturnsOnceGeneration2IsReady) {
  TempDir dir;
  Gateway gw(dir, restartable(echo_config()));
  gw.start();
  auto r = run_cli(dir, {"restart", "--wait", "--delay-ms", "0", "--reason", "cli restart",
                         "--timeout", "10", "--url", gw.url(), "--token", gw.token()},
                   15s);
  EXPECT_TRUE(r.status.exited && r.status.code == 0)
      << r.status.describe() << "\nstdout:\n" << r.out << "\nstderr:\n" << r.err << gw.log();
  // --wait: the new generation is ready by the time the command returns.
  auto ready = http(gw.port(), "GET", "/readyz");
  EXPECT_EQ(ready.status, 200) << ready.body;
  json status = status_of(gw);
  EXPECT_EQ(status.value("generation", 0), 2) << status.dump(2);
  EXPECT_EQ(status["lastRestart"].value("reason", ""), "cli restart") << status.dump(2);
}

TEST(Drain, CliStatusShowsTheGeneration) {
  TempDir dir;
  Gateway gw(dir, restartable(echo_config()));
  gw.start();
  json res = request_restart(gw, {{"reason", "before status"}, {"delayMs", 0}});
  ASSERT_EQ(res.value("ok", false), true) << res.dump();
  ASSERT_TRUE(wait_generation(gw, 2)) << gw.log();
  auto r = run_cli(dir, {"status", "--url", gw.url(), "--token", gw.token()});
  EXPECT_TRUE(r.status.exited && r.status.code == 0) << r.status.describe() << "\n" << r.err;
  bool shown = false;
  std::istringstream lines(r.out);
  for (std::string line; std::getline(lines, line);) {
    const auto at = line.find("generation");
    if (at != std::string::npos && line.find('2', at) != std::string::npos) shown = true;
  }
  EXPECT_TRUE(shown) << "no \"generation ... 2\" in:\n" << r.out;
}

TEST(Drain, CliStopStopsTheGateway) {
  TempDir dir;
  Gateway gw(dir, echo_config());
  gw.start();
  auto r = run_cli(dir, {"stop", "--url", gw.url(), "--token", gw.token()});
  EXPECT_TRUE(r.status.exited && r.status.code == 0)
      << r.status.describe() << "\nstdout:\n" << r.out << "\nstderr:\n" << r.err;
  auto st = gw.wait_exit(10s);
  EXPECT_TRUE(st.exited && st.code == 0) << st.describe() << "\n" << gw.log();
}

TEST(Drain, StopRpcStopsTheGateway) {
  TempDir dir;
  Gateway gw(dir, echo_config());
  gw.start();
  {
    auto c = gw.client({"operator.admin"});
    json res = c->request("gateway.stop", {{"reason", "e2e stop"}});
    EXPECT_EQ(res.value("ok", false), true) << res.dump();
    EXPECT_EQ(res.value("status", ""), "stopping") << res.dump();
  }
  auto st = gw.wait_exit(10s);
  EXPECT_TRUE(st.exited && st.code == 0) << st.describe() << "\n" << gw.log();
}

}  // namespace
}  // namespace drawbridge::e2e
