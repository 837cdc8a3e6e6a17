// Stopping: SIGTERM lets turns in flight finish, delivers their replies, tells the clients,
// closes with 1012 and exits 0; input that arrives meanwhile is journaled for the next start.

#include <signal.h>

#include <gtest/gtest.h>

#include <thread>

#include "e2e/harness.h"

namespace drawbridge::e2e {
namespace {

using Clock = std::chrono::steady_clock;

// Index of the first event matching `pred` in `events`, or -1.
template <typename Pred>
int find_event(const std::vector<json>& events, Pred pred) {
  for (std::size_t i = 0; i < events.size(); ++i) {
    if (pred(events[i])) return static_cast<int>(i);
  }
  return -1;
}

bool is_chat(const json& ev, const std::string& run_id, const std::string& state) {
  return ev.value("event", "") == "chat" && ev["payload"].value("runId", "") == run_id &&
         ev["payload"].value("state", "") == state;
}

// Waits (bounded) until /readyz says 503 with `reason`; readiness of another process is
// polled, as a load balancer would.
bool wait_not_ready(const Gateway& gw, const std::string& reason, Millis timeout = 3s) {
  const auto deadline = Clock::now() + timeout;
  HttpClient c(gw.port(), 1s);
  while (Clock::now() < deadline) {
    auto res = c.request("GET", "/readyz");
    if (res && res->status == 503 && res->json_body().value("reason", "") == reason) return true;
    std::this_thread::sleep_for(10ms);
  }
  return false;
}

TEST(Lifecycle, IdleSigtermExitsZeroAndTheNextStartIsClean) {
  TempDir dir;
  Gateway gw(dir, echo_config());
  gw.start();
  gw.signal(SIGTERM);
  auto st = gw.wait_exit(5s);
  EXPECT_TRUE(st.exited && st.code == 0) << st.describe();
  gw.start();
  auto c = gw.client({"operator.read"});
  json status = c->request("status", json::object());
  EXPECT_EQ(status.value("cleanStart", false), true) << status.dump(2);
  EXPECT_EQ(status.value("state", ""), "running") << status.dump(2);
}

TEST(Lifecycle, SigtermDeliversTheRunningTurnThenShutdownThenCloses1012) {
  TempDir dir;
  Gateway gw(dir, echo_config(/*delay_ms=*/1500));
  gw.start();
  RawWs ws(gw.port());
  ASSERT_EQ(ws.connect(gw.token(), {"operator.write"}).value("ok", false), true);
  json ack = ws.request("chat.send", {{"sessionKey", "term"}, {"message", "finish me"},
                                      {"idempotencyKey", "term-1"}});
  ASSERT_EQ(ack["payload"].value("status", ""), "started") << ack.dump();
  const std::string run_id = ack["payload"].value("runId", "");

  gw.signal(SIGTERM);  // the turn has about 1.5 s to go
  WsFrame close = ws.read_until_close(10s);
  const auto& events = ws.events();
  const int final_at = find_event(events, [&](const json& e) { return is_chat(e, run_id, "final"); });
  const int shutdown_at =
      find_event(events, [](const json& e) { return e.value("event", "") == "shutdown"; });
  ASSERT_GE(final_at, 0) << "the reply never reached the client; events: " << json(events).dump(2);
  EXPECT_EQ(entry_text(events[final_at]["payload"]["message"]), "finish me");
  ASSERT_GE(shutdown_at, 0) << json(events).dump(2);
  EXPECT_LT(final_at, shutdown_at) << json(events).dump(2);
  EXPECT_EQ(shutdown_at, static_cast<int>(events.size()) - 1) << "events after shutdown: "
                                                              << json(events).dump(2);
  EXPECT_TRUE(events[shutdown_at]["payload"].contains("reason")) << events[shutdown_at].dump();
  EXPECT_TRUE(close.closed) << close.error;
  EXPECT_EQ(close.close_code, 1012) << close.close_reason;

  auto st = gw.wait_exit(10s);
  EXPECT_TRUE(st.exited && st.code == 0) << st.describe();
  EXPECT_NE(gw.log().find("1 turn(s) running"), std::string::npos) << gw.log();

  // The reply is on record exactly once and nothing is left to replay.
  gw.start();
  auto c = gw.client({"operator.read"});
  json status = c->request("status", json::object());
  EXPECT_EQ(status.value("cleanStart", false), true) << status.dump(2);
  EXPECT_EQ(status["store"].value("inboxUnfinished", -1), 0) << status.dump(2);
  json history = gw.history("term");
  EXPECT_EQ(entries_of_run(history, "assistant", run_id).size(), 1u) << history.dump(2);
}

TEST(Lifecycle, SecondSigtermDuringTheStopIsIgnored) {
  TempDir dir;
  Gateway gw(dir, echo_config(/*delay_ms=*/1500));
  gw.start();
  RawWs ws(gw.port());
  ASSERT_EQ(ws.connect(gw.token(), {"operator.write"}).value("ok", false), true);
  json ack = ws.request("chat.send", {{"sessionKey", "twice"}, {"message", "still here"},
                                      {"idempotencyKey", "twice-1"}});
  ASSERT_EQ(ack["payload"].value("status", ""), "started") << ack.dump();

  gw.signal(SIGTERM);
  ASSERT_TRUE(wait_not_ready(gw, "stopping")) << gw.log();
  gw.signal(SIGTERM);
  ASSERT_TRUE(gw.wait_for_log("already stopping", 3s)) << gw.log();

  WsFrame close = ws.read_until_close(10s);
  EXPECT_GE(find_event(ws.events(), [&](const json& e) {
              return is_chat(e, ack["payload"].value("runId", ""), "final");
            }),
            0)
      << json(ws.events()).dump(2);
  EXPECT_EQ(close.close_code, 1012) << close.error << close.close_reason;
  auto st = gw.wait_exit(10s);
  EXPECT_TRUE(st.exited && st.code == 0) << st.describe();
}

TEST(Lifecycle, ChatSendDuringTheStopIsQueuedForTheRestartAndAnsweredThen) {
  TempDir dir;
  Gateway gw(dir, echo_config(/*delay_ms=*/1500));
  gw.start();
  RawWs ws(gw.port());
  ASSERT_EQ(ws.connect(gw.token(), {"operator.write"}).value("ok", false), true);
  json first = ws.request("chat.send", {{"sessionKey", "busy"}, {"message", "slow one"},
                                        {"idempotencyKey", "stop-1"}});
  ASSERT_EQ(first["payload"].value("status", ""), "started") << first.dump();

  gw.signal(SIGTERM);
  // While the slow turn keeps the gateway stopping, new input is journaled, not refused.
  ASSERT_TRUE(wait_not_ready(gw, "stopping")) << gw.log();
  json late = ws.request("chat.send", {{"sessionKey", "late"}, {"message", "after the bell"},
                                       {"idempotencyKey", "stop-2"}});
  EXPECT_EQ(late.value("ok", false), true) << late.dump();
  EXPECT_EQ(late["payload"].value("status", ""), "queued") << late.dump();
  EXPECT_EQ(late["payload"].value("reason", ""), "gateway-restarting") << late.dump();
  const std::string late_run = late["payload"].value("runId", "");
  // The HTTP door journals too.
  auto post = gw.post_message({{"sessionKey", "late-http"}, {"message", "posted after the bell"},
                               {"idempotencyKey", "stop-3"}});
  EXPECT_EQ(post.status, 202) << post.body;
  EXPECT_EQ(post.json_body().value("status", ""), "queued") << post.body;
  EXPECT_EQ(post.json_body().value("reason", ""), "gateway-restarting") << post.body;
  const std::string posted_run = post.json_body().value("runId", "");

  WsFrame close = ws.read_until_close(10s);
  EXPECT_EQ(close.close_code, 1012) << close.error << close.close_reason;
  EXPECT_LT(find_event(ws.events(), [&](const json& e) { return is_chat(e, late_run, "final"); }), 0)
      << "the queued message ran during the stop";
  auto st = gw.wait_exit(10s);
  EXPECT_TRUE(st.exited && st.code == 0) << st.describe();

  // The next start answers them, once each. chat.history subscribes before it reads, so a
  // reply is either in the history already or still to come as an event.
  gw.start();
  auto c = gw.client();
  auto answered = [&](const std::string& session, const std::string& run_id) {
    json history = c->request("chat.history", {{"sessionKey", session}})["messages"];
    if (entries_of_run(history, "assistant", run_id).empty()) {
      ChatRun run = await_run(*c, run_id, 5s);
      EXPECT_EQ(run.state(), "final") << run.terminal.dump();
      history = c->request("chat.history", {{"sessionKey", session}})["messages"];
    }
    return history;
  };
  json history = answered("late", late_run);
  auto replies = entries_of_run(history, "assistant", late_run);
  ASSERT_EQ(replies.size(), 1u) << history.dump(2);
  EXPECT_EQ(entry_text(replies[0]), "after the bell");
  history = answered("late-http", posted_run);
  auto posted = entries_of_run(history, "assistant", posted_run);
  ASSERT_EQ(posted.size(), 1u) << history.dump(2);
  EXPECT_EQ(entry_text(posted[0]), "posted after the bell");
}

}  // namespace
}  // namespace drawbridge::e2e
