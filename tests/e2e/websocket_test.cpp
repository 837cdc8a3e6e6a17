// The WebSocket control protocol (shared/PROTOCOL.md) against the real binary.

#include <gtest/gtest.h>

#include <string>

#include "e2e/harness.h"

namespace drawbridge::e2e {
namespace {

using server::ClientError;
using Clock = std::chrono::steady_clock;

// The error a request fails with; an empty code when it did not fail.
ClientError request_error(server::GatewayClient& c, const std::string& method, const json& params) {
  try {
    json payload = c.request(method, params);
    return ClientError("", "no error; payload " + payload.dump());
  } catch (const ClientError& e) {
    return e;
  }
}

TEST(WebSocket, ConnectAnswersHelloOkWithProtocol4) {
  TempDir dir;
  Gateway gw(dir, echo_config());
  gw.start();
  server::GatewayClient c("127.0.0.1", gw.port());
  json hello = c.connect(gw.token(), {"operator.read"});
  EXPECT_EQ(hello.value("type", ""), "hello-ok") << hello.dump();
  EXPECT_EQ(hello.value("protocol", 0), 4) << hello.dump();
  ASSERT_TRUE(hello["features"]["methods"].is_array()) << hello.dump();
  auto methods = hello["features"]["methods"].get<std::vector<std::string>>();
  for (const char* m : {"connect", "health", "status", "chat.send", "chat.history", "chat.abort",
                        "send"}) {
    EXPECT_NE(std::find(methods.begin(), methods.end(), m), methods.end()) << m;
  }
  EXPECT_EQ(c.request("health", json::object()).value("ok", false), true);
}

TEST(WebSocket, WrongTokenIsRejectedAndTheSocketClosedWith1008) {
  TempDir dir;
  Gateway gw(dir, echo_config());
  gw.start();
  RawWs ws(gw.port());
  json res = ws.connect("not-the-token", {"operator.read"});
  EXPECT_EQ(res.value("ok", true), false) << res.dump();
  EXPECT_EQ(res["error"].value("code", ""), "INVALID_REQUEST") << res.dump();
  EXPECT_EQ(res["error"]["details"].value("code", ""), "AUTH_TOKEN_MISMATCH") << res.dump();
  WsFrame close = ws.read_until_close();
  EXPECT_TRUE(close.closed) << close.error;
  EXPECT_EQ(close.close_code, 1008) << close.close_reason;
}

TEST(WebSocket, OversizedFirstFrameClosesWith1009AndTheGatewayKeepsServing) {
  TempDir dir;
  Gateway gw(dir, echo_config());
  gw.start();
  {
    RawWs ws(gw.port());
    ws.read_challenge();
    std::string big = R"({"type":"req","id":"big","method":"connect","params":{"pad":")" +
                      std::string(65 * 1024, 'x') + "\"}}";
    ws.send_raw_text_frame(big);  // the gateway may close while this is in flight
    WsFrame close = ws.read_until_close();
    EXPECT_TRUE(close.closed) << "expected close 1009, got: " << close.error;
    EXPECT_EQ(close.close_code, 1009) << close.close_reason;
  }
  // A new client is served as before.
  auto c = gw.client({"operator.read"});
  EXPECT_EQ(c->request("health", json::object()).value("ok", false), true);
  EXPECT_EQ(http(gw.port(), "GET", "/readyz").status, 200);
}

TEST(WebSocket, FirstRequestOtherThanConnectIsRejectedAndClosed) {
  TempDir dir;
  Gateway gw(dir, echo_config());
  gw.start();
  RawWs ws(gw.port());
  ws.read_challenge();
  ASSERT_TRUE(ws.send_text(R"({"type":"req","id":"h1","method":"health","params":{}})"));
  WsFrame f = ws.read();
  ASSERT_TRUE(f.msg.is_object()) << (f.closed ? "closed " + std::to_string(f.close_code)
                                              : f.error + f.text);
  EXPECT_EQ(f.msg.value("id", ""), "h1") << f.text;
  EXPECT_EQ(f.msg.value("ok", true), false) << f.text;
  EXPECT_EQ(f.msg["error"].value("code", ""), "INVALID_REQUEST") << f.text;
  EXPECT_NE(f.msg["error"].value("message", "").find("first request must be connect"),
            std::string::npos)
      << f.text;
  WsFrame close = ws.read_until_close();
  EXPECT_TRUE(close.closed) << close.error;
  EXPECT_EQ(close.close_code, 1008) << close.close_reason;
}

TEST(WebSocket, MalformedJsonAfterConnectGetsAnErrorAndTheConnectionKeepsWorking) {
  TempDir dir;
  Gateway gw(dir, echo_config());
  gw.start();
  RawWs ws(gw.port());
  json hello = ws.connect(gw.token(), {"operator.read"});
  ASSERT_EQ(hello.value("ok", false), true) << hello.dump();

  ASSERT_TRUE(ws.send_text("{\"type\":\"req\", this is not json"));
  WsFrame f = ws.read();
  ASSERT_TRUE(f.msg.is_object()) << (f.closed ? "closed " + std::to_string(f.close_code)
                                              : f.error + f.text);
  EXPECT_EQ(f.msg.value("type", ""), "res") << f.text;
  EXPECT_EQ(f.msg.value("ok", true), false) << f.text;
  EXPECT_EQ(f.msg["error"].value("code", ""), "INVALID_REQUEST") << f.text;
  EXPECT_NE(f.msg["error"].value("message", "").find("malformed JSON"), std::string::npos)
      << f.text;

  json res = ws.request("health", json::object());
  EXPECT_EQ(res.value("ok", false), true) << res.dump();
  EXPECT_EQ(res["payload"].value("ok", false), true) << res.dump();
}

TEST(WebSocket, UnknownMethodIsInvalidRequest) {
  TempDir dir;
  Gateway gw(dir, echo_config());
  gw.start();
  auto c = gw.client();
  auto e = request_error(*c, "x", json::object());
  EXPECT_EQ(e.code, "INVALID_REQUEST") << e.what();
  EXPECT_STREQ(e.what(), "unknown method: x");
  // And the connection is still usable.
  EXPECT_EQ(c->request("health", json::object()).value("ok", false), true);
}

TEST(WebSocket, ChatSendWithOnlyReadScopeIsForbiddenMissingScope) {
  TempDir dir;
  Gateway gw(dir, echo_config());
  gw.start();
  RawWs ws(gw.port());
  ASSERT_EQ(ws.connect(gw.token(), {"operator.read"}).value("ok", false), true);
  json res = ws.request("chat.send", {{"sessionKey", "s"}, {"message", "hi"},
                                      {"idempotencyKey", "scope-1"}});
  EXPECT_EQ(res.value("ok", true), false) << res.dump();
  EXPECT_EQ(res["error"].value("code", ""), "FORBIDDEN") << res.dump();
  EXPECT_EQ(res["error"]["details"].value("code", ""), "MISSING_SCOPE") << res.dump();
  EXPECT_EQ(res["error"]["details"].value("missingScope", ""), "operator.write") << res.dump();
  // Nothing was accepted.
  auto m = http(gw.port(), "GET", "/metrics");
  EXPECT_EQ(metric_value(m.body, "drawbridge_inbound_messages_total"), 0.0);
}

TEST(WebSocket, ChatSendWithoutSessionKeyNamesTheField) {
  TempDir dir;
  Gateway gw(dir, echo_config());
  gw.start();
  auto c = gw.client();
  auto e = request_error(*c, "chat.send", {{"message", "hi"}, {"idempotencyKey", "nokey-1"}});
  EXPECT_EQ(e.code, "INVALID_REQUEST") << e.what();
  EXPECT_NE(std::string(e.what()).find("params.sessionKey"), std::string::npos) << e.what();
}

TEST(WebSocket, ChatSendStreamsDeltasThenTheFinalEcho) {
  TempDir dir;
  Gateway gw(dir, echo_config(/*delay_ms=*/50, /*chunk_chars=*/3));
  gw.start();
  auto c = gw.client();
  json ack = c->request("chat.send", {{"sessionKey", "stream"}, {"message", "hello world"},
                                      {"idempotencyKey", "stream-1"}});
  EXPECT_EQ(ack.value("status", ""), "started") << ack.dump();
  const std::string run_id = ack.value("runId", "");
  ASSERT_FALSE(run_id.empty()) << ack.dump();

  ChatRun run = await_run(*c, run_id);
  ASSERT_EQ(run.state(), "final") << run.terminal.dump();
  std::vector<std::string> deltas;
  std::string accumulated;
  int last_seq = -1;
  for (const auto& d : run.deltas) {
    deltas.push_back(d.value("deltaText", ""));
    accumulated += deltas.back();
    EXPECT_EQ(entry_text(d["message"]), accumulated) << d.dump();
    EXPECT_GT(d.value("seq", -1), last_seq) << d.dump();
    last_seq = d.value("seq", -1);
    EXPECT_EQ(d.value("sessionKey", ""), "stream");
  }
  EXPECT_EQ(deltas, (std::vector<std::string>{"hel", "lo ", "wor", "ld"}));
  EXPECT_EQ(run.text(), "hello world") << run.terminal.dump();
  EXPECT_GT(run.terminal.value("seq", -1), last_seq);
  EXPECT_EQ(run.terminal.value("sessionKey", ""), "stream");
  EXPECT_EQ(run.terminal["message"].value("role", ""), "assistant");
}

TEST(WebSocket, ChatSendWithTheSameIdempotencyKeyReturnsTheFirstRunAndAnswersOnce) {
  TempDir dir;
  Gateway gw(dir, echo_config(/*delay_ms=*/1000));
  gw.start();
  auto c = gw.client();
  const json params = {{"sessionKey", "idem"}, {"message", "once"}, {"idempotencyKey", "idem-1"}};
  json first = c->request("chat.send", params);
  ASSERT_EQ(first.value("status", ""), "started") << first.dump();
  const std::string run_id = first.value("runId", "");

  // While it runs (1 s), the same key is the same run, in flight.
  json during = c->request("chat.send", params);
  EXPECT_EQ(during.value("runId", ""), run_id) << during.dump();
  EXPECT_EQ(during.value("status", ""), "in_flight") << during.dump();

  ASSERT_EQ(await_run(*c, run_id).state(), "final");
  json after = c->request("chat.send", params);
  EXPECT_EQ(after.value("runId", ""), run_id) << after.dump();
  EXPECT_EQ(after.value("status", ""), "ok") << after.dump();

  // The next message of the session runs after anything the duplicates could have started.
  json sentinel = c->request("chat.send", {{"sessionKey", "idem"}, {"message", "sentinel"},
                                           {"idempotencyKey", "idem-2"}});
  ChatRun s = await_run(*c, sentinel.value("runId", ""));
  ASSERT_EQ(s.state(), "final");
  for (const auto& ev : s.other) {
    EXPECT_NE(ev["payload"].value("runId", ""), run_id) << "second answer: " << ev.dump();
  }
  json history = c->request("chat.history", {{"sessionKey", "idem"}})["messages"];
  EXPECT_EQ(entries_of_run(history, "user", run_id).size(), 1u) << history.dump(2);
  EXPECT_EQ(entries_of_run(history, "assistant", run_id).size(), 1u) << history.dump(2);
}

TEST(WebSocket, ChatAbortOfASlowTurnEndsItQuickly) {
  TempDir dir;
  Gateway gw(dir, echo_config(/*delay_ms=*/5000));
  gw.start();
  auto c = gw.client();
  json ack = c->request("chat.send", {{"sessionKey", "slow"}, {"message", "take your time"},
                                      {"idempotencyKey", "slow-1"}});
  ASSERT_EQ(ack.value("status", ""), "started") << ack.dump();
  const std::string run_id = ack.value("runId", "");

  const auto t0 = Clock::now();
  json res = c->request("chat.abort", {{"sessionKey", "slow"}, {"runId", run_id}});
  EXPECT_EQ(res.value("aborted", false), true) << res.dump();
  EXPECT_EQ(res.value("runIds", json::array()), json::array({run_id})) << res.dump();
  ChatRun run = await_run(*c, run_id, 2s);
  const auto took = std::chrono::duration_cast<Millis>(Clock::now() - t0);
  EXPECT_EQ(run.state(), "aborted") << run.terminal.dump();
  EXPECT_LT(took.count(), 1000) << "the abort took " << took.count() << " ms";

  json history = c->request("chat.history", {{"sessionKey", "slow"}});
  // Kept as interrupted (nothing said), never as a reply.
  const auto cut = entries_of_run(history["messages"], "assistant", run_id);
  ASSERT_EQ(cut.size(), 1u) << history.dump(2);
  EXPECT_EQ(cut[0].value("stopReason", ""), "aborted") << history.dump(2);
  EXPECT_EQ(history["sessionInfo"].value("hasActiveRun", true), false) << history.dump(2);
}

TEST(WebSocket, SendReachesAClientWatchingTheTargetSession) {
  TempDir dir;
  Gateway gw(dir, echo_config());
  gw.start();
  auto watcher = gw.client({"operator.read"});
  watcher->request("chat.history", {{"sessionKey", "dm-42"}});  // subscribes

  auto sender = gw.client({"operator.write"});
  json res = sender->request("send", {{"to", "dm-42"}, {"message", "pushed to you"},
                                      {"idempotencyKey", "send-1"}});
  const std::string run_id = res.value("runId", "");
  ASSERT_FALSE(run_id.empty()) << res.dump();
  EXPECT_EQ(res.value("channel", ""), "local") << res.dump();

  // The runId `send` answers is the one its chat event carries.
  ChatRun run = await_run(*watcher, run_id, 2s);
  ASSERT_EQ(run.state(), "final") << "no final chat event with runId " << run_id
                                  << "; other events: " << json(run.other).dump();
  EXPECT_EQ(run.terminal.value("sessionKey", ""), "dm-42");
  EXPECT_EQ(run.text(), "pushed to you");

  // The same key again is the same message, not a second one.
  json again = sender->request("send", {{"to", "dm-42"}, {"message", "pushed to you"},
                                        {"idempotencyKey", "send-1"}});
  EXPECT_EQ(again.value("runId", ""), run_id) << again.dump();
  EXPECT_EQ(again.value("duplicate", false), true) << again.dump();
  json history = watcher->request("chat.history", {{"sessionKey", "dm-42"}})["messages"];
  EXPECT_EQ(entries_of_run(history, "assistant", run_id).size(), 1u) << history.dump(2);
}

// The client the CLI and these tests use: a quiet moment (no event before the timeout) must
// not break the connection, as client.h promises "nullopt on timeout".
TEST(GatewayClient, StaysUsableAfterNextEventTimesOut) {
  TempDir dir;
  Gateway gw(dir, echo_config());
  gw.start();
  auto c = gw.client({"operator.read"});
  EXPECT_FALSE(c->next_event(50ms).has_value());
  try {
    EXPECT_EQ(c->request("health", json::object()).value("ok", false), true);
  } catch (const ClientError& e) {
    ADD_FAILURE() << "request after an event timeout failed: " << e.code << " " << e.what();
  }
}

}  // namespace
}  // namespace drawbridge::e2e
