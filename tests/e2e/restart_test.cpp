// In-process restart: a new generation in the same process (same pid, same port) after a
// drain that lets running turns finish (or aborts them at the budget), flushes debounce
// buffers, journals what arrives meanwhile, and does not wait for the turn that asked for it.

#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <sstream>
#include <string_view>
#include <thread>

#include "e2e/harness.h"
#include "e2e/lifecycle_helpers.h"

namespace drawbridge::e2e {
namespace {

using Clock = std::chrono::steady_clock;


using namespace lifecycle;


// Reply of `run_id` in `session`: in the history already, or still to come as an event.
// chat.history subscribes before it reads, so nothing falls in between.
json answered_history(server::GatewayClient& c, const std::string& session,
                      const std::string& run_id, Millis timeout = 5s) {
  json history = c.request("chat.history", {{"sessionKey", session}})["messages"];
  if (entries_of_run(history, "assistant", run_id).empty()) {
    ChatRun run = await_run(c, run_id, timeout);
    EXPECT_EQ(run.state(), "final") << "run " << run_id << ": " << run.terminal.dump();
    history = c.request("chat.history", {{"sessionKey", session}})["messages"];
  }
  return history;
}

// The time of a log line, in ms, in the log's own clock (local time read as if it were UTC:
// only differences between lines of one log mean something). Accepts spdlog's default prefix
// "[2025-01-02 03:04:05.678] ..." and the ISO form "2025-01-02T03:04:05.678 ...".
std::optional<std::int64_t> log_line_ms(std::string_view line) {
  if (!line.empty() && line.front() == '[') line.remove_prefix(1);
  if (line.size() < 23) return std::nullopt;
  const std::string head(line.substr(0, 23));
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0, ms = 0;
  char sep = 0;
  int used = 0;
  if (std::sscanf(head.c_str(), "%4d-%2d-%2d%c%2d:%2d:%2d.%3d%n", &y, &mo, &d, &sep, &h, &mi, &s,
                  &ms, &used) != 8 ||
      used != 23 || (sep != ' ' && sep != 'T')) {
    return std::nullopt;
  }
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = s;
  const std::time_t t = ::timegm(&tm);
  return static_cast<std::int64_t>(t) * 1000 + ms;
}

// The time of the first log line holding `needle` (nullopt: no such line, or no timestamp).
std::optional<std::int64_t> log_time_of(const std::string& log, const std::string& needle) {
  std::istringstream in(log);
  std::string line;
  while (std::getline(in, line)) {
    if (line.find(needle) != std::string::npos) return log_line_ms(line);
  }
  return std::nullopt;
}

std::int64_t wall_ms() {
  return std::chrono::duration_cast<Millis>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// (1) The reply being generated when the restart is asked for is delivered before the
// shutdown event; then 1012; the same process comes back as generation 2.
TEST(Restart, RpcRestartDeliversTheRunningReplyBeforeShutdownThenGeneration2) {
  TempDir dir;
  Gateway gw(dir, restartable(echo_config(/*delay_ms=*/1500)));
  gw.start();
  const pid_t pid = gw.pid();
  RawWs ws(gw.port());
  ASSERT_EQ(ws.connect(gw.token(), {"operator.write", "operator.admin"}).value("ok", false), true);
  EventTape tape(ws);
  json ack = ws.request("chat.send", {{"sessionKey", "rpc-restart"}, {"message", "finish me first"},
                                      {"idempotencyKey", "rr-1"}});
  ASSERT_EQ(ack["payload"].value("status", ""), "started") << ack.dump();
  const std::string run_id = ack["payload"].value("runId", "");

  json res = ws.request("gateway.restart.request", {{"reason", "e2e rpc"}, {"delayMs", 0}});
  ASSERT_EQ(res.value("ok", false), true) << res.dump();
  EXPECT_EQ(res["payload"].value("ok", false), true) << res.dump();
  EXPECT_EQ(res["payload"].value("status", ""), "scheduled") << res.dump();
  EXPECT_TRUE(res["payload"].contains("cycle")) << res.dump();
  EXPECT_EQ(res["payload"].value("dueInMs", -1), 0) << res.dump();

  WsFrame close = tape.until_close(10s);
  const auto& events = tape.seen();
  const int final_at = find_event(events, [&](const json& e) { return is_chat(e, run_id, "final"); });
  const int shutdown_at = find_event(events, is_shutdown);
  ASSERT_GE(final_at, 0) << "the reply never reached the client; events: " << tape.dump();
  EXPECT_EQ(entry_text(events[final_at]["payload"]["message"]), "finish me first");
  ASSERT_GE(shutdown_at, 0) << tape.dump();
  EXPECT_LT(final_at, shutdown_at) << tape.dump();
  EXPECT_EQ(shutdown_at, static_cast<int>(events.size()) - 1) << tape.dump();
  EXPECT_EQ(events[shutdown_at]["payload"].value("restartExpectedMs", 0), 1500)
      << events[shutdown_at].dump();
  EXPECT_TRUE(events[shutdown_at]["payload"].contains("reason")) << events[shutdown_at].dump();
  EXPECT_TRUE(close.closed) << close.error;
  EXPECT_EQ(close.close_code, 1012) << close.close_reason;

  ASSERT_TRUE(wait_generation(gw, 2)) << gw.log();
  EXPECT_TRUE(gw.running());
  EXPECT_EQ(gw.pid(), pid);
  json status = status_of(gw);
  EXPECT_EQ(status.value("pid", 0), pid) << status.dump(2);
  EXPECT_EQ(status.value("generation", 0), 2) << status.dump(2);
  EXPECT_EQ(status.value("state", ""), "running") << status.dump(2);
  EXPECT_EQ(status.value("cleanStart", false), true) << status.dump(2);
  const json last = status.value("lastRestart", json());
  ASSERT_TRUE(last.is_object()) << status.dump(2);
  EXPECT_EQ(last.value("reason", ""), "e2e rpc") << last.dump();
  EXPECT_EQ(last.value("source", ""), "rpc") << last.dump();
  EXPECT_EQ(last.value("generation", 0), 2) << last.dump();
  EXPECT_EQ(last.value("interrupted", true), false) << last.dump();
  EXPECT_GE(last.value("durationMs", -1), 0) << last.dump();
  EXPECT_LT(last.value("durationMs", 1 << 30), 10000) << last.dump();

  json history = gw.history("rpc-restart");
  auto replies = entries_of_run(history, "assistant", run_id);
  ASSERT_EQ(replies.size(), 1u) << history.dump(2);
  EXPECT_EQ(entry_text(replies[0]), "finish me first");
  // The new generation answers on the same port.
  auto c = gw.client();
  json ack2 = c->request("chat.send", {{"sessionKey", "rpc-restart"}, {"message", "again"},
                                       {"idempotencyKey", "rr-2"}});
  EXPECT_EQ(await_run(*c, ack2.value("runId", ""), 5s).text(), "again");
}

// (1b) Input arriving during the drain is journaled (ack "queued", "gateway-restarting") and
// answered by the next generation, once.
TEST(Restart, ChatSendDuringTheDrainIsQueuedAndAnsweredAfterTheRestart) {
  TempDir dir;
  Gateway gw(dir, restartable(echo_config(/*delay_ms=*/1500)));
  gw.start();
  RawWs ws(gw.port());
  ASSERT_EQ(ws.connect(gw.token(), {"operator.write", "operator.admin"}).value("ok", false), true);
  EventTape tape(ws);
  json ack = ws.request("chat.send", {{"sessionKey", "drain-busy"}, {"message", "slow one"},
                                      {"idempotencyKey", "dq-1"}});
  ASSERT_EQ(ack["payload"].value("status", ""), "started") << ack.dump();
  json res = ws.request("gateway.restart.request", {{"reason", "e2e queued"}, {"delayMs", 0}});
  ASSERT_EQ(res["payload"].value("ok", false), true) << res.dump();

  // The notice goes out once the gateway marks itself draining.
  ASSERT_FALSE(tape.wait_for(is_notice, 5s).is_null()) << tape.dump() << gw.log();
  json late = ws.request("chat.send", {{"sessionKey", "drain-late"}, {"message", "after the restart"},
                                       {"idempotencyKey", "dq-2"}});
  EXPECT_EQ(late.value("ok", false), true) << late.dump();
  EXPECT_EQ(late["payload"].value("status", ""), "queued") << late.dump();
  EXPECT_EQ(late["payload"].value("reason", ""), "gateway-restarting") << late.dump();
  const std::string late_run = late["payload"].value("runId", "");
  auto post = gw.post_message({{"sessionKey", "drain-late-http"}, {"message", "posted meanwhile"},
                               {"idempotencyKey", "dq-3"}});
  EXPECT_EQ(post.status, 202) << post.body;
  EXPECT_EQ(post.json_body().value("status", ""), "queued") << post.body;
  EXPECT_EQ(post.json_body().value("reason", ""), "gateway-restarting") << post.body;
  const std::string posted_run = post.json_body().value("runId", "");

  WsFrame close = tape.until_close(10s);
  EXPECT_EQ(close.close_code, 1012) << close.error << close.close_reason;
  EXPECT_GE(find_event(tape.seen(), [&](const json& e) {
              return is_chat(e, ack["payload"].value("runId", ""), "final");
            }),
            0)
      << tape.dump();
  EXPECT_LT(find_event(tape.seen(), [&](const json& e) { return is_chat(e, late_run, "final"); }), 0)
      << "the queued message ran during the drain: " << tape.dump();

  ASSERT_TRUE(wait_generation(gw, 2)) << gw.log();
  auto c = gw.client();
  json history = answered_history(*c, "drain-late", late_run);
  auto replies = entries_of_run(history, "assistant", late_run);
  ASSERT_EQ(replies.size(), 1u) << history.dump(2);
  EXPECT_EQ(entry_text(replies[0]), "after the restart");
  history = answered_history(*c, "drain-late-http", posted_run);
  auto posted = entries_of_run(history, "assistant", posted_run);
  ASSERT_EQ(posted.size(), 1u) << history.dump(2);
  EXPECT_EQ(entry_text(posted[0]), "posted meanwhile");
}

// (2) A message still inside its debounce window when the restart begins is flushed to its
// turn and answered, not wiped with the old generation's memory.
TEST(Restart, MessageInTheDebounceWindowIsFlushedAndAnswered) {
  TempDir dir;
  json config = restartable(echo_config());
  config["messages"]["inbound"]["debounceMs"] = 10000;
  Gateway gw(dir, config);
  gw.start();
  RawWs ws(gw.port());
  ASSERT_EQ(ws.connect(gw.token(), {"operator.write", "operator.admin"}).value("ok", false), true);
  EventTape tape(ws);
  json ack = ws.request("chat.send", {{"sessionKey", "debounced"}, {"message", "do not wipe me"},
                                      {"idempotencyKey", "deb-1"}});
  ASSERT_EQ(ack.value("ok", false), true) << ack.dump();
  const std::string run_id = ack["payload"].value("runId", "");
  ASSERT_FALSE(run_id.empty()) << ack.dump();

  const auto t0 = Clock::now();
  json res = ws.request("gateway.restart.request", {{"reason", "e2e debounce"}, {"delayMs", 0}});
  ASSERT_EQ(res["payload"].value("ok", false), true) << res.dump();
  WsFrame close = tape.until_close(8s);
  EXPECT_EQ(close.close_code, 1012) << close.error << close.close_reason;
  const int final_at = find_event(tape.seen(), [&](const json& e) { return is_chat(e, run_id, "final"); });
  const int shutdown_at = find_event(tape.seen(), is_shutdown);
  ASSERT_GE(final_at, 0) << "the debounced message was not answered before the restart: "
                         << tape.dump();
  EXPECT_LT(final_at, shutdown_at) << tape.dump();
  EXPECT_LT(elapsed_ms(t0), 5000) << "the drain waited for the debounce window";
  EXPECT_NE(gw.log().find("flushed 1 debounce buffer"), std::string::npos) << gw.log();

  ASSERT_TRUE(wait_generation(gw, 2)) << gw.log();
  json history = gw.history("debounced");
  auto replies = entries_of_run(history, "assistant", run_id);
  ASSERT_EQ(replies.size(), 1u) << history.dump(2);
  EXPECT_EQ(entry_text(replies[0]), "do not wipe me");
  json status = status_of(gw);
  EXPECT_EQ(status["store"].value("inboxUnfinished", -1), 0) << status.dump(2);
}

// (3) A turn that outlives the request's waitMs is aborted at the budget: the client gets
// "aborted" and the interrupted notice, the restart completes, and the message is not run
// again.
TEST(Restart, TurnOutlivingWaitMsIsAbortedWithANoticeAndNotRunAgain) {
  TempDir dir;
  Gateway gw(dir, restartable(echo_config(/*delay_ms=*/60000)));
  gw.start();
  RawWs ws(gw.port());
  ASSERT_EQ(ws.connect(gw.token(), {"operator.write", "operator.admin"}).value("ok", false), true);
  EventTape tape(ws);
  json ack = ws.request("chat.send", {{"sessionKey", "too-slow"}, {"message", "a minute of work"},
                                      {"idempotencyKey", "ts-1"}});
  ASSERT_EQ(ack["payload"].value("status", ""), "started") << ack.dump();
  const std::string run_id = ack["payload"].value("runId", "");

  const auto t0 = Clock::now();
  json res = ws.request("gateway.restart.request",
                        {{"reason", "e2e budget"}, {"waitMs", 1000}, {"delayMs", 0}});
  ASSERT_EQ(res["payload"].value("ok", false), true) << res.dump();
  // The interrupted notice goes out when the budget is spent.
  json interrupted = tape.wait_for(
      [](const json& e) { return is_notice(e) && notice_text(e) == kInterruptedNotice; }, 6s);
  const auto waited = elapsed_ms(t0);
  ASSERT_FALSE(interrupted.is_null()) << "no interrupted notice; events: " << tape.dump()
                                      << gw.log();
  EXPECT_GE(waited, 900) << "aborted before the 1000 ms budget was spent";
  EXPECT_LT(waited, 4000) << "aborted long after the 1000 ms budget";

  WsFrame close = tape.until_close(8s);
  EXPECT_EQ(close.close_code, 1012) << close.error << close.close_reason;
  const auto& events = tape.seen();
  const int aborted_at = find_event(events, [&](const json& e) { return is_chat(e, run_id, "aborted"); });
  const int interrupted_at = find_event(
      events, [](const json& e) { return is_notice(e) && notice_text(e) == kInterruptedNotice; });
  // Both reach the client before the shutdown event (in either order).
  EXPECT_GE(aborted_at, 0) << "the client never heard that its run was aborted: " << tape.dump();
  EXPECT_LT(aborted_at, find_event(events, is_shutdown)) << tape.dump();
  EXPECT_LT(interrupted_at, find_event(events, is_shutdown)) << tape.dump();
  auto texts = notice_texts(events);
  EXPECT_EQ(std::count(texts.begin(), texts.end(), kInterruptedNotice), 1) << tape.dump();
  // Before the budget was spent the turn was expected to finish, and the notice said so.
  EXPECT_EQ(std::count(texts.begin(), texts.end(), kRestartingNotice), 1) << tape.dump();
  EXPECT_LT(find_event(events, [&](const json& e) { return is_chat(e, run_id, "final"); }), 0)
      << tape.dump();
  EXPECT_NE(gw.log().find("aborting"), std::string::npos) << gw.log();

  ASSERT_TRUE(wait_generation(gw, 2)) << gw.log();
  json status = status_of(gw);
  EXPECT_EQ(status.value("generation", 0), 2) << status.dump(2);
  EXPECT_EQ(status.value("cleanStart", true), false) << status.dump(2);
  EXPECT_EQ(status["lastRestart"].value("interrupted", false), true) << status.dump(2);
  // Not replayed: generation 2 started with its inbox empty and no turn running (a replayed
  // message would be running again right now, for a minute).
  EXPECT_EQ(status["store"].value("inboxUnfinished", -1), 0) << status.dump(2);
  EXPECT_TRUE(status.value("activeRuns", json::array()).empty()) << status.dump(2);
  json history = gw.history("too-slow");
  // Kept as interrupted (nothing said), never as a reply.
  const auto cut = entries_of_run(history, "assistant", run_id);
  ASSERT_EQ(cut.size(), 1u) << history.dump(2);
  EXPECT_EQ(cut[0].value("stopReason", ""), "aborted") << history.dump(2);
}

// (3) force: true does not wait at all; the one notice says "interrupted", not "will finish".
TEST(Restart, ForceAbortsAtOnceWithTheInterruptedNotice) {
  TempDir dir;
  Gateway gw(dir, restartable(echo_config(/*delay_ms=*/60000)));
  gw.start();
  RawWs ws(gw.port());
  ASSERT_EQ(ws.connect(gw.token(), {"operator.write", "operator.admin"}).value("ok", false), true);
  EventTape tape(ws);
  json ack = ws.request("chat.send", {{"sessionKey", "forced"}, {"message", "never mind"},
                                      {"idempotencyKey", "fo-1"}});
  ASSERT_EQ(ack["payload"].value("status", ""), "started") << ack.dump();
  const std::string run_id = ack["payload"].value("runId", "");

  const auto t0 = Clock::now();
  json res = ws.request("gateway.restart.request",
                        {{"reason", "e2e force"}, {"force", true}, {"delayMs", 0}});
  ASSERT_EQ(res["payload"].value("ok", false), true) << res.dump();
  WsFrame close = tape.until_close(8s);
  EXPECT_LT(elapsed_ms(t0), 1000) << "force waited for the turn";
  EXPECT_EQ(close.close_code, 1012) << close.error << close.close_reason;
  const int aborted_at =
      find_event(tape.seen(), [&](const json& e) { return is_chat(e, run_id, "aborted"); });
  EXPECT_GE(aborted_at, 0) << "the client never heard that its run was aborted: " << tape.dump();
  EXPECT_LT(aborted_at, find_event(tape.seen(), is_shutdown)) << tape.dump();
  auto texts = notice_texts(tape.seen());
  ASSERT_EQ(texts.size(), 1u) << tape.dump();
  EXPECT_EQ(texts[0], kInterruptedNotice);

  ASSERT_TRUE(wait_generation(gw, 2)) << gw.log();
  json status = status_of(gw);
  EXPECT_EQ(status["lastRestart"].value("interrupted", false), true) << status.dump(2);
  EXPECT_EQ(status.value("cleanStart", true), false) << status.dump(2);
  EXPECT_EQ(status["store"].value("inboxUnfinished", -1), 0) << status.dump(2);
  EXPECT_TRUE(status.value("activeRuns", json::array()).empty()) << status.dump(2);
  json history = gw.history("forced");
  // Kept as interrupted (nothing said), never as a reply.
  const auto cut = entries_of_run(history, "assistant", run_id);
  ASSERT_EQ(cut.size(), 1u) << history.dump(2);
  EXPECT_EQ(cut[0].value("stopReason", ""), "aborted") << history.dump(2);
}

// Waits (bounded, on a pidfd: no polling) until `pid` has exited; true when it is gone.
bool wait_pid_gone(pid_t pid, Millis timeout) {
  const int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) return errno == ESRCH;
  pollfd p{fd, POLLIN, 0};
  const int r = ::poll(&p, 1, static_cast<int>(timeout.count()));
  ::close(fd);
  return r > 0;
}

std::string proc_cmdline(pid_t pid) {
  std::string s = read_text("/proc/" + std::to_string(pid) + "/cmdline");
  for (auto& ch : s) {
    if (ch == '\0') ch = ' ';
  }
  return s;
}

// When the test ends, kills the process whose pid a test script wrote to `pid_file`, if it still
// runs as the `sleep` that script became (so a reused pid is left alone).
class KillScriptOnExit {
 public:
  explicit KillScriptOnExit(fs::path pid_file) : pid_file_(std::move(pid_file)) {}
  ~KillScriptOnExit() {
    const pid_t pid = static_cast<pid_t>(std::atol(read_text(pid_file_).c_str()));
    if (pid > 1 && proc_cmdline(pid).find("sleep") != std::string::npos) ::kill(pid, SIGKILL);
  }

 private:
  fs::path pid_file_;
};

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) out.push_back(line);
  }
  return out;
}

// (4) A turn that runs `drawbridge restart` is not waited for: the restart proceeds at once,
// the turn is closed with what it printed so far, and it is not run again.
TEST(Restart, TurnThatAsksForTheRestartIsNotWaitedForNorRunAgain) {
  TempDir dir;
  const fs::path invocations = dir.path() / "invocations";
  const fs::path turn_pid = dir.path() / "turn.pid";
  const std::string script =
      "read line\n"
      "echo \"$DRAWBRIDGE_RUN_ID\" >> '" + invocations.string() + "'\n"
      "case \"$line\" in *barrier*) echo barrier-done; exit 0;; esac\n"
      "echo $$ > '" + turn_pid.string() + "'\n"
      "echo before-restart\n"
      "'" DRAWBRIDGE_BINARY "' restart --delay-ms 0 --reason from-a-turn "
      "--url \"$DRAWBRIDGE_GATEWAY_URL\" --token '" + std::string(Gateway::kToken) + "' >&2\n"
      "exec sleep 20\n";
  json config = restartable({{"agents", {{"main", {{"type", "exec"},
                                                  {"command", {"sh", "-c", script}},
                                                  {"killGraceMs", 500}}}}},
                             {"channels", {{"local", {{"maxMessageChars", 0}}}}}});
  KillScriptOnExit cleanup(turn_pid);  // declared before the gateway: runs after its end
  Gateway gw(dir, config);
  gw.start();
  RawWs ws(gw.port());
  ASSERT_EQ(ws.connect(gw.token(), {"operator.write"}).value("ok", false), true);
  EventTape tape(ws);
  const auto t0 = Clock::now();
  json ack = ws.request("chat.send", {{"sessionKey", "asker"}, {"message", "please restart"},
                                      {"idempotencyKey", "ask-1"}});
  ASSERT_EQ(ack["payload"].value("status", ""), "started") << ack.dump();
  const std::string run_id = ack["payload"].value("runId", "");

  WsFrame close = tape.until_close(8s);
  EXPECT_EQ(close.close_code, 1012) << close.error << close.close_reason << tape.dump();
  ASSERT_TRUE(wait_generation(gw, 2, 6s)) << "the restart waited for the turn that asked for it\n"
                                          << gw.log();
  EXPECT_LT(elapsed_ms(t0), 6000);
  EXPECT_NE(gw.log().find("asked for the restart"), std::string::npos) << gw.log();

  json status = status_of(gw);
  EXPECT_EQ(status.value("generation", 0), 2) << status.dump(2);
  EXPECT_EQ(status["lastRestart"].value("reason", ""), "from-a-turn") << status.dump(2);
  EXPECT_LT(status["lastRestart"].value("durationMs", 1 << 30), 3000) << status.dump(2);
  EXPECT_EQ(status["store"].value("inboxUnfinished", -1), 0) << status.dump(2);

  // Closed with what it printed before asking.
  json history = gw.history("asker");
  auto replies = entries_of_run(history, "assistant", run_id);
  ASSERT_EQ(replies.size(), 1u) << history.dump(2);
  EXPECT_NE(entry_text(replies[0]).find("before-restart"), std::string::npos) << history.dump(2);

  // A barrier in the same session: had the asking turn been replayed, it would hold the
  // session for 20 s and the barrier would wait behind it.
  auto c = gw.client();
  json barrier = c->request("chat.send", {{"sessionKey", "asker"}, {"message", "barrier"},
                                          {"idempotencyKey", "ask-barrier"}});
  ChatRun run = await_run(*c, barrier.value("runId", ""), 5s);
  ASSERT_EQ(run.state(), "final") << run.terminal.dump() << gw.log();
  EXPECT_EQ(run.text(), "barrier-done");
  auto ran = lines_of(read_text(invocations));
  EXPECT_EQ(ran, (std::vector<std::string>{run_id, "ask-barrier"})) << read_text(invocations);

  // The command of the closed turn does not outlive it.
  const std::string pid_text = read_text(turn_pid);
  const pid_t child = static_cast<pid_t>(std::atol(pid_text.c_str()));
  ASSERT_GT(child, 1) << pid_text;
  EXPECT_TRUE(wait_pid_gone(child, 5s))
      << "the closed turn's command (pid " << child << ", " << proc_cmdline(child)
      << ") still runs 5 s after generation 2 started";
}

// (5) A second SIGUSR1 during the drain is logged and ignored: exactly one new generation.
TEST(Restart, SecondSigusr1DuringTheDrainIsIgnored) {
  TempDir dir;
  Gateway gw(dir, restartable(echo_config(/*delay_ms=*/1500)));
  gw.start();
  RawWs ws(gw.port());
  ASSERT_EQ(ws.connect(gw.token(), {"operator.write"}).value("ok", false), true);
  EventTape tape(ws);
  json ack = ws.request("chat.send", {{"sessionKey", "twice"}, {"message", "one restart please"},
                                      {"idempotencyKey", "tw-1"}});
  ASSERT_EQ(ack["payload"].value("status", ""), "started") << ack.dump();
  const std::string run_id = ack["payload"].value("runId", "");

  gw.signal(SIGUSR1);
  ASSERT_FALSE(tape.wait_for(is_notice, 5s).is_null()) << tape.dump() << gw.log();
  const std::size_t ignored_before = log_count(gw, "ignored");
  gw.signal(SIGUSR1);
  EXPECT_TRUE(wait_for_log_count(gw, "ignored", ignored_before + 1, 3s)) << gw.log();

  WsFrame close = tape.until_close(10s);
  EXPECT_EQ(close.close_code, 1012) << close.error << close.close_reason;
  EXPECT_GE(find_event(tape.seen(), [&](const json& e) { return is_chat(e, run_id, "final"); }), 0)
      << tape.dump();
  ASSERT_TRUE(wait_generation(gw, 2)) << gw.log();
  json status = status_of(gw);
  EXPECT_EQ(status.value("generation", 0), 2) << status.dump(2);
  EXPECT_EQ(status["lastRestart"].value("source", ""), "signal") << status.dump(2);
  // Nothing left over to restart again (the cooldown is 0: it would be due at once).
  EXPECT_FALSE(status.contains("scheduledRestart")) << status.dump(2);
  EXPECT_EQ(log_count(gw, "restart scheduled in"), 1u) << gw.log();
  EXPECT_EQ(log_count(gw, "drain finished in"), 1u) << gw.log();
  auto metrics = http(gw.port(), "GET", "/metrics").body;
  EXPECT_EQ(metric_value(metrics, "drawbridge_restarts_total"), 1.0) << metrics;
  EXPECT_EQ(metric_value(metrics, "drawbridge_generation"), 2.0) << metrics;
}

// (5) SIGTERM during a restart's drain: the drain finishes (the turn is answered), then the
// process exits 0 instead of starting generation 2; no second teardown.
TEST(Restart, SigtermDuringARestartDrainExitsZeroAfterTheDrain) {
  TempDir dir;
  Gateway gw(dir, restartable(echo_config(/*delay_ms=*/1500)));
  gw.start();
  RawWs ws(gw.port());
  ASSERT_EQ(ws.connect(gw.token(), {"operator.write"}).value("ok", false), true);
  EventTape tape(ws);
  json ack = ws.request("chat.send", {{"sessionKey", "term-in-restart"}, {"message", "finish"},
                                      {"idempotencyKey", "tr-1"}});
  ASSERT_EQ(ack["payload"].value("status", ""), "started") << ack.dump();
  const std::string run_id = ack["payload"].value("runId", "");

  gw.signal(SIGUSR1);
  ASSERT_FALSE(tape.wait_for(is_notice, 5s).is_null()) << tape.dump() << gw.log();
  gw.signal(SIGTERM);
  WsFrame close = tape.until_close(10s);
  EXPECT_EQ(close.close_code, 1012) << close.error << close.close_reason;
  const int final_at = find_event(tape.seen(), [&](const json& e) { return is_chat(e, run_id, "final"); });
  ASSERT_GE(final_at, 0) << tape.dump();
  EXPECT_LT(final_at, find_event(tape.seen(), is_shutdown)) << tape.dump();

  auto st = gw.wait_exit(10s);
  EXPECT_TRUE(st.exited && st.code == 0) << st.describe() << "\n" << gw.log();
  EXPECT_EQ(gw.log().find("generation 2 ready"), std::string::npos) << gw.log();
  EXPECT_EQ(log_count(gw, "drain finished in"), 1u) << "a second teardown?\n" << gw.log();

  gw.start();
  json status = status_of(gw);
  EXPECT_EQ(status.value("cleanStart", false), true) << status.dump(2);
  EXPECT_EQ(status["store"].value("inboxUnfinished", -1), 0) << status.dump(2);
  json history = gw.history("term-in-restart");
  EXPECT_EQ(entries_of_run(history, "assistant", run_id).size(), 1u) << history.dump(2);
}

// (6) The drain is event-driven: it moves on as soon as the last turn is delivered, not at the
// next tick of a poll. The gateway's log says when the drain finished; the reply's delivery is
// the moment the client got it, put on the log's clock with the "restart scheduled" line.
TEST(Restart, DrainMovesOnRightAfterTheLastTurnIsDelivered) {
  TempDir dir;
  Gateway gw(dir, restartable(echo_config(/*delay_ms=*/300)));
  gw.start();
  RawWs ws(gw.port());
  ASSERT_EQ(ws.connect(gw.token(), {"operator.write", "operator.admin"}).value("ok", false), true);
  EventTape tape(ws);
  json ack = ws.request("chat.send", {{"sessionKey", "idle-fast"}, {"message", "quick"},
                                      {"idempotencyKey", "if-1"}});
  ASSERT_EQ(ack["payload"].value("status", ""), "started") << ack.dump();
  const std::string run_id = ack["payload"].value("runId", "");
  json res = ws.request("gateway.restart.request", {{"reason", "e2e idle"}, {"delayMs", 0}});
  const std::int64_t answered_wall = wall_ms();
  ASSERT_EQ(res["payload"].value("ok", false), true) << res.dump();

  json final_ev = tape.wait_for([&](const json& e) { return is_chat(e, run_id, "final"); }, 5s);
  const std::int64_t delivered_wall = wall_ms();
  ASSERT_FALSE(final_ev.is_null()) << tape.dump() << gw.log();
  WsFrame close = tape.until_close(5s);
  EXPECT_EQ(close.close_code, 1012) << close.error << close.close_reason;
  ASSERT_TRUE(gw.wait_for_log("drain finished", 5s)) << gw.log();

  const std::string log = gw.log();
  const auto scheduled_at = log_time_of(log, "restart scheduled in");
  const auto finished_at = log_time_of(log, "drain finished");
  ASSERT_TRUE(scheduled_at && finished_at) << "log lines without a parsable timestamp:\n" << log;
  // The "scheduled" line was written before the client had the answer: mapping the client's
  // clock by it can only make the delivery look earlier, i.e. the gap look longer.
  const std::int64_t offset = *scheduled_at - answered_wall;
  const std::int64_t delivered_at = delivered_wall + offset;
  const std::int64_t gap = *finished_at - delivered_at;
  EXPECT_LE(gap, 150) << "the drain finished " << gap
                      << " ms after the reply was delivered (a poll?)\n" << log;
  EXPECT_GE(gap, -20) << "clock mapping is off\n" << log;
  RecordProperty("drain_finished_after_delivery_ms", std::to_string(gap));
  ASSERT_TRUE(wait_generation(gw, 2)) << gw.log();
  // The gateway's own measure, where it reports one.
  json last = status_of(gw).value("lastRestart", json::object());
  if (last.contains("afterLastReplyMs")) {
    EXPECT_LE(last["afterLastReplyMs"].get<double>(), 150.0) << last.dump();
  }
}

}  // namespace
}  // namespace drawbridge::e2e
