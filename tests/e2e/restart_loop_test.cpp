// Restarts that must not repeat themselves (issue 5): a message that kills the gateway every
// time it runs is suspended after three crashes instead of crashing it forever, and a
// "/restart" seen again (the same idempotency key, or replayed after a SIGKILL) restarts
// nothing.

#include <gtest/gtest.h>
#include <signal.h>

#include <thread>

#include "e2e/harness.h"

namespace drawbridge::e2e {
namespace {

using Clock = std::chrono::steady_clock;

const std::string kSuspendedNotice =
    "This conversation was interrupted by 3 restarts in a row and is paused so it cannot crash "
    "the gateway again. Send a new message to continue.";

// An exec agent that kills its gateway when asked "poison" and answers anything else. The
// command is spawned by the gateway itself (in a process group of its own), so the gateway is
// its parent: $PPID, checked by name before the kill. The request's own text is the last key
// of the JSON line (the history also holds earlier texts, so only the line's end is matched).
// The kill comes a moment after the turn starts, so the harness sees the gateway ready first.
json poison_config() {
  const std::string script = R"sh(
read -r line
case "$line" in
  *'"text":"poison"}')
    if [ "$(cat /proc/$PPID/comm)" != drawbridge ]; then
      echo "my parent $PPID is not the gateway"; exit 1
    fi
    sleep 1
    kill -9 "$PPID"
    exit 0 ;;
  *) echo "still here" ;;
esac
)sh";
  return {{"agents",
           {{"main", {{"type", "exec"}, {"command", {"sh", "-c", script}}, {"timeoutMs", 20000}}}}},
          {"channels", {{"local", {{"maxMessageChars", 0}}}}}};
}

std::vector<std::string> assistant_texts(const json& history) {
  std::vector<std::string> out;
  for (const auto& m : history) {
    if (m.value("role", "") == "assistant") out.push_back(entry_text(m));
  }
  return out;
}

// The history of `session` once it holds `n` assistant entries (bounded wait).
json wait_for_replies(const Gateway& gw, const std::string& session, std::size_t n,
                      Millis timeout = 10s) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    json h = gw.history(session);
    if (assistant_texts(h).size() >= n || Clock::now() >= deadline) return h;
    // Another process's progress: polled, bounded by the deadline.
    std::this_thread::sleep_for(20ms);
  }
}

TEST(RestartLoop, MessageThatKillsTheGatewayIsSuspendedAfterThreeCrashesAndTheSessionResumes) {
  TempDir dir;
  Gateway gw(dir, poison_config());
  gw.start();
  auto ack = gw.post_message(
      {{"sessionKey", "loop"}, {"message", "poison"}, {"idempotencyKey", "poison-1"}});
  ASSERT_EQ(ack.status, 202) << ack.body;
  const std::string poison_run = ack.json_body().value("runId", "");

  // Crash 1 is the live turn; crashes 2 and 3 are the replays of the next two starts.
  for (int crash = 1; crash <= 3; ++crash) {
    auto st = gw.wait_exit(15s);
    ASSERT_EQ(st.signal, SIGKILL) << "crash " << crash << ": " << st.describe() << "\n" << gw.log();
    gw.start();
  }

  // The fourth start suspends the session instead of running the message a fourth time.
  json h = wait_for_replies(gw, "loop", 1);
  EXPECT_EQ(assistant_texts(h), std::vector<std::string>{kSuspendedNotice}) << h.dump(2);
  EXPECT_TRUE(entries_of_run(h, "assistant", poison_run).empty()) << "the poison is not answered";
  EXPECT_TRUE(gw.wait_for_log("session loop is suspended", 5s)) << gw.log();
  EXPECT_NE(gw.log().find("3 restarts in a row"), std::string::npos) << gw.log();
  // It stays up: nothing is left to run the poison (the inbox has no unfinished row, the
  // session is suspended), so no fixed wait is needed to show the kill does not come again.
  auto c = gw.client({"operator.read"});
  ASSERT_TRUE(gw.running()) << gw.log();
  json status = c->request("status", json::object());
  EXPECT_EQ(status["store"].value("inboxUnfinished", -1), 0) << status.dump(2);
  EXPECT_TRUE(status.value("activeRuns", json::array()).empty()) << status.dump(2);
  EXPECT_EQ(status.value("cleanStart", true), false) << status.dump(2);

  // A new message resumes the session and runs normally.
  auto next = gw.post_message(
      {{"sessionKey", "loop"}, {"message", "are you there?"}, {"idempotencyKey", "after-1"}});
  ASSERT_EQ(next.status, 202) << next.body;
  h = wait_for_replies(gw, "loop", 2);
  auto reply = entries_of_run(h, "assistant", next.json_body().value("runId", ""));
  ASSERT_EQ(reply.size(), 1u) << h.dump(2);
  EXPECT_EQ(entry_text(reply[0]), "still here");
  EXPECT_TRUE(gw.running());

  gw.signal(SIGTERM);
  auto st = gw.wait_exit(10s);
  EXPECT_TRUE(st.exited && st.code == 0) << st.describe();
}

// --- /restart seen again ---

constexpr int kRestartDelayMs = 200;

json restart_config(int debounce_ms = 0) {
  json cfg = echo_config();
  cfg["gateway"]["restart"] = {{"delayMs", kRestartDelayMs}, {"cooldownMs", 0}};
  cfg["gateway"]["auth"]["token"] = Gateway::kToken;
  if (debounce_ms > 0) cfg["messages"]["inbound"]["debounceMs"] = debounce_ms;
  return cfg;
}

// Status on a fresh connection; null while the gateway does not answer (it is restarting).
json try_status(const Gateway& gw) {
  try {
    return gw.client({"operator.read"})->request("status", json::object());
  } catch (const std::exception&) {
    return nullptr;
  }
}

json wait_for_generation(const Gateway& gw, int generation, Millis timeout = 10s) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    json s = try_status(gw);
    if (s.is_object() && s.value("generation", 0) == generation &&
        s.value("state", "") == "running") {
      return s;
    }
    if (Clock::now() >= deadline) return s;
    // Another process's restart: polled, bounded by the deadline.
    std::this_thread::sleep_for(20ms);
  }
}

// No restart is coming: the gateway runs and none is scheduled. A /restart schedules its
// restart when its turn runs, before its answer is stored, so once the answer is in the
// history (the callers wait for it) and none is scheduled, none will be.
void expect_no_restart_pending(const Gateway& gw) {
  json s = try_status(gw);
  EXPECT_EQ(s.value("state", ""), "running") << s.dump(2);
  EXPECT_FALSE(s.contains("scheduledRestart")) << s.dump(2);
}

HttpResponse post_restart(const Gateway& gw, const std::string& key) {
  return gw.post_message({{"sessionKey", "cmd"}, {"message", "/restart"}, {"idempotencyKey", key}});
}

TEST(RestartCommand, SentAgainWithTheSameKeyDoesNotRestartASecondTime) {
  TempDir dir;
  Gateway gw(dir, restart_config());
  gw.start();
  auto first = post_restart(gw, "restart-K");
  ASSERT_EQ(first.status, 202) << first.body;
  json s = wait_for_generation(gw, 2);
  ASSERT_EQ(s.value("generation", 0), 2) << s.dump(2) << gw.log();

  auto again = post_restart(gw, "restart-K");
  ASSERT_EQ(again.status, 200) << again.body;
  EXPECT_TRUE(again.json_body().value("duplicate", false)) << again.body;
  EXPECT_EQ(again.json_body().value("runId", ""), first.json_body().value("runId", ""));
  s = try_status(gw);
  EXPECT_FALSE(s.contains("scheduledRestart")) << s.dump(2);
  expect_no_restart_pending(gw);
  s = try_status(gw);
  EXPECT_EQ(s.value("generation", 0), 2) << s.dump(2);
  EXPECT_EQ(s.value("restarts", -1), 1) << s.dump(2);
  json h = gw.history("cmd");
  EXPECT_EQ(assistant_texts(h), std::vector<std::string>{"Restarting the gateway."}) << h.dump(2);
}

TEST(RestartCommand, AcknowledgedThenSigkilledIsNotReplayedAsARestart) {
  TempDir dir;
  Gateway gw(dir, restart_config());

  // (a) Killed right after the acknowledgement, before the restart it asked for began: its
  // answer may or may not have been committed; either way the next process restarts nothing.
  gw.start();
  auto ack = post_restart(gw, "restart-a");
  ASSERT_EQ(ack.status, 202) << ack.body;
  ASSERT_EQ(gw.kill9().signal, SIGKILL);
  gw.start();
  json h = wait_for_replies(gw, "cmd", 1);
  EXPECT_EQ(entries_of_run(h, "assistant", ack.json_body().value("runId", "")).size(), 1u)
      << h.dump(2);
  expect_no_restart_pending(gw);
  json s = try_status(gw);
  EXPECT_EQ(s.value("generation", 0), 1) << s.dump(2);
  EXPECT_EQ(s.value("restarts", -1), 0) << s.dump(2);
  EXPECT_EQ(s.value("cleanStart", true), false) << s.dump(2);
  ASSERT_EQ(gw.kill9().signal, SIGKILL);

  // (b) The /restart still unanswered at the kill (it waits in the debouncer, so the replay
  // runs it for sure): the replay answers it and does not restart.
  dir.write("config.json", restart_config(/*debounce_ms=*/60000).dump(2));
  gw.start();
  ack = post_restart(gw, "restart-b");
  ASSERT_EQ(ack.status, 202) << ack.body;
  EXPECT_EQ(ack.json_body().value("reason", ""), "debounce") << ack.body;
  ASSERT_EQ(gw.kill9().signal, SIGKILL);
  gw.start();
  h = wait_for_replies(gw, "cmd", 2);
  auto reply = entries_of_run(h, "assistant", ack.json_body().value("runId", ""));
  ASSERT_EQ(reply.size(), 1u) << h.dump(2);
  EXPECT_EQ(entry_text(reply[0]), "The gateway has restarted since you asked.");
  expect_no_restart_pending(gw);
  s = try_status(gw);
  EXPECT_EQ(s.value("generation", 0), 1) << s.dump(2);
  EXPECT_EQ(s.value("restarts", -1), 0) << s.dump(2);

  gw.signal(SIGTERM);
  auto st = gw.wait_exit(10s);
  EXPECT_TRUE(st.exited && st.code == 0) << st.describe();
}

}  // namespace
}  // namespace drawbridge::e2e
