// Hostile input against the control plane (issue 10): every case costs at most its own
// connection; the server keeps serving the next client.

#include <sys/resource.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer) && !defined(__SANITIZE_ADDRESS__)
#define __SANITIZE_ADDRESS__ 1
#endif
#endif

#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include "unit/server/server_fixture.h"

namespace drawbridge::server {
namespace {

namespace websocket = beast::websocket;

// A WebSocket client that sends whatever the test wants, frame by frame.
struct RawWs {
  asio::io_context io;
  websocket::stream<beast::tcp_stream> ws{io};
  beast::flat_buffer buffer;

  // Upgrades; returns the HTTP status the server answered (101 on success).
  int open(int port, const std::string& origin = "", const std::string& host = "127.0.0.1") {
    beast::get_lowest_layer(ws).connect(
        asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"),
                                static_cast<unsigned short>(port)));
    beast::get_lowest_layer(ws).expires_after(5s);
    ws.set_option(websocket::stream_base::decorator([origin](websocket::request_type& req) {
      if (!origin.empty()) req.set(http::field::origin, origin);
    }));
    websocket::response_type res;
    beast::error_code ec;
    ws.handshake(res, host, "/", ec);
    if (ec) return static_cast<int>(res.result_int());
    auto challenge = read();  // connect.challenge
    EXPECT_TRUE(challenge && (*challenge)["event"] == "connect.challenge");
    return 101;
  }
  void send(const std::string& text, bool binary = false) {
    beast::get_lowest_layer(ws).expires_after(5s);
    ws.binary(binary);
    ws.write(asio::buffer(text));
  }
  // The next frame, or nullopt once the connection is closed.
  std::optional<json> read() {
    beast::get_lowest_layer(ws).expires_after(5s);
    beast::error_code ec;
    buffer.clear();
    ws.read(buffer, ec);
    if (ec) return std::nullopt;
    return json::parse(beast::buffers_to_string(buffer.data()));
  }
  // Reads until the server closes; its close code.
  int closed_with() {
    while (read()) {
    }
    return ws.reason().code;
  }
  json connect_frame(const json& params_patch = json::object()) {
    json params = {{"minProtocol", 4},
                   {"maxProtocol", 4},
                   {"client", {{"id", "raw"}, {"version", "1"}, {"platform", "test"}, {"mode", "cli"}}},
                   {"auth", {{"token", "tok"}}},
                   {"scopes", {"operator.admin"}}};
    // Replaced, not merged: a merge patch would delete a key set to null.
    for (const auto& [k, v] : params_patch.items()) params[k] = v;
    return {{"type", "req"}, {"id", "c1"}, {"method", "connect"}, {"params", params}};
  }
  // connect with `patch` merged into valid params; the answer.
  json connect(const json& patch = json::object()) {
    send(connect_frame(patch).dump());
    auto res = read();
    return res ? *res : json();
  }
};

// The status of a WebSocket upgrade request with these headers (101: upgraded).
int upgrade_status(int port, const std::string& origin, const std::string& host = "127.0.0.1") {
  asio::io_context io;
  beast::tcp_stream stream(io);
  stream.connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"),
                                         static_cast<unsigned short>(port)));
  stream.expires_after(5s);
  http::request<http::empty_body> req{http::verb::get, "/", 11};
  req.set(http::field::host, host);
  req.set(http::field::upgrade, "websocket");
  req.set(http::field::connection, "Upgrade");
  req.set(http::field::sec_websocket_key, "dGhlIHNhbXBsZSBub25jZQ==");
  req.set(http::field::sec_websocket_version, "13");
  if (!origin.empty()) req.set(http::field::origin, origin);
  http::write(stream, req);
  beast::flat_buffer buffer;
  http::response_parser<http::empty_body> res;
  res.skip(true);  // a 101 has no body to wait for
  beast::error_code ec;
  http::read_header(stream, buffer, res, ec);
  return ec ? 0 : static_cast<int>(res.get().result_int());
}

std::string nested_arrays(std::size_t depth) {
  return std::string(depth, '[') + std::string(depth, ']');
}

class HostileInputTest : public ServerTest {
 protected:
  // The server still serves a normal client end to end.
  void expect_still_serving() {
    auto c = connected();
    EXPECT_EQ(c->request("health", json::object())["ok"], true);
    EXPECT_TRUE(c->request("chat.history", {{"sessionKey", "s"}}).contains("messages"));
  }
  // A request whose answer waits for the pipeline's commit, which is work posted to the
  // manual executor: it is run on the server's loop until the answer comes. A wait FOR the
  // answer (no simulated time moves), failing after 10 s.
  json pumped(GatewayClient& c, const std::string& method, const json& params) {
    auto answer = std::async(std::launch::async, [&] { return c.request(method, params); });
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (answer.wait_for(1ms) != std::future_status::ready) {
      if (std::chrono::steady_clock::now() > deadline) {
        ADD_FAILURE() << method << ": no answer within 10 s";
        break;
      }
      on_io([this] { executor_.run_ready(); });
    }
    return answer.get();
  }
};

TEST_F(HostileInputTest, FirstFrameOfAnyJsonTypeClosesOnlyThatConnection) {
  // {"type":1} ended the process on 364f714 (type_error.302 from frame.value("type", "")).
  for (const std::string& frame : std::vector<std::string>{
        R"({"type":1})", "null", "[]", "1", "\"req\"", "true", "{}", R"({"type":null})",
        R"({"type":["req"]})", R"({"type":"req","id":1,"method":"connect"})",
        R"({"type":"req","id":{},"method":"connect"})", R"({"type":"req","id":"a","method":5})",
        R"({"type":"req","id":"a","method":null})", R"({"type":"req","id":"a"})", "not json",
        std::string("{\"type\":\"req\"}\0tail", 19)}) {
    SCOPED_TRACE(frame);
    RawWs ws;
    ASSERT_EQ(ws.open(port()), 101);
    ws.send(frame);
    EXPECT_EQ(ws.closed_with(), 1008);
  }
  expect_still_serving();
}

TEST_F(HostileInputTest, ConnectParamsOfTheWrongTypeAreRefusedNotGranted) {
  for (const json& patch :
       {json{{"client", {{"id", 5}}}}, json{{"client", {{"id", json::array()}}}},
        json{{"role", 5}}, json{{"role", json::object()}}, json{{"scopes", "operator.admin"}},
        json{{"scopes", nullptr}}, json{{"scopes", json::object()}}, json{{"scopes", 5}},
        json{{"scopes", {1, 2}}}, json{{"scopes", {"operator.read", nullptr}}},
        json{{"auth", "tok"}}, json{{"auth", {{"token", 5}}}}, json{{"client", "x"}},
        json{{"minProtocol", "4"}}}) {
    SCOPED_TRACE(patch.dump());
    RawWs ws;
    ASSERT_EQ(ws.open(port()), 101);
    auto res = ws.connect(patch);
    EXPECT_EQ(res["ok"], false);
    EXPECT_EQ(res["error"]["code"], "INVALID_REQUEST");
    EXPECT_EQ(ws.closed_with(), 1008);
  }
  expect_still_serving();
}

TEST_F(HostileInputTest, MalformedFramesAfterConnectAnswerErrorsAndKeepTheConnection) {
  RawWs ws;
  ASSERT_EQ(ws.open(port()), 101);
  ASSERT_EQ(ws.connect()["ok"], true);
  const json values = {nullptr, true, 1, -1.5, "x", json::array(), json::object(),
                       json::array({1, "a"}), json{{"k", "v"}}};
  int sent = 0;
  for (const char* field : {"type", "id", "method", "params"}) {
    for (const auto& v : values) {
      json frame = {{"type", "req"}, {"id", "r"}, {"method", "chat.send"},
                    {"params", {{"sessionKey", "s"}, {"message", "m"}, {"idempotencyKey", "k"}}}};
      frame[field] = v;
      if (std::string(field) == "params" && v.is_object() && !v.empty()) continue;
      if (std::string(field) == "id" && v.is_string() && !v.empty()) continue;  // valid
      ws.send(frame.dump());
      ++sent;
      auto res = ws.read();
      ASSERT_TRUE(res) << frame.dump() << " closed the connection";
      EXPECT_EQ((*res)["ok"], false) << frame.dump();
    }
  }
  // Every param of every method, of every type.
  for (const char* method : {"chat.send", "chat.history", "chat.abort", "send", "status",
                             "gateway.restart.request", "config.patch", "config.apply",
                             "gateway.update", "gateway.stop", "no.such.method"}) {
    for (const char* key : {"sessionKey", "message", "idempotencyKey", "limit", "before", "runId",
                            "to", "channel", "waitMs", "delayMs", "force", "raw", "baseHash",
                            "binary", "reason", "restartIntent"}) {
      for (const auto& v : values) {
        if (std::string(method) == "gateway.stop" || std::string(method) == "gateway.update" ||
            std::string(method) == "gateway.restart.request") {
          if (v.is_string() || v.is_boolean() || v.is_number()) continue;  // might be valid
        }
        json frame = {{"type", "req"}, {"id", "m"}, {"method", method}, {"params", {{key, v}}}};
        ws.send(frame.dump());
        auto res = ws.read();
        ASSERT_TRUE(res) << frame.dump() << " closed the connection";
        EXPECT_EQ((*res)["type"], "res");
      }
    }
  }
  ws.send(R"({"type":"req","id":"h","method":"health"})");
  auto res = ws.read();
  ASSERT_TRUE(res);
  EXPECT_EQ((*res)["ok"], true);
  EXPECT_GT(sent, 30);
  expect_still_serving();
}

TEST_F(HostileInputTest, DeepNestingIsRefusedWhileParsing) {
  // 300,000 levels segfaulted the process on 364f714 (a recursive copy of params).
  RawWs ws;
  ASSERT_EQ(ws.open(port()), 101);
  ASSERT_EQ(ws.connect()["ok"], true);
  ws.send(R"({"type":"req","id":"d","method":"health","params":)" + nested_arrays(300'000) + "}");
  auto res = ws.read();
  ASSERT_TRUE(res);
  EXPECT_EQ((*res)["ok"], false);
  EXPECT_NE((*res)["error"]["message"].get<std::string>().find("nested deeper than 64"),
            std::string::npos)
      << res->dump();
  // Before connect too (within the 64 KiB cap): that connection closes, the server stays.
  RawWs pre;
  ASSERT_EQ(pre.open(port()), 101);
  pre.send(nested_arrays(30'000));
  EXPECT_EQ(pre.closed_with(), 1008);
  expect_still_serving();
}

TEST_F(HostileInputTest, DuplicateKeysAndTextAfterNulAreRefused) {
  RawWs ws;
  ASSERT_EQ(ws.open(port()), 101);
  ASSERT_EQ(ws.connect()["ok"], true);
  ws.send(R"({"type":"req","id":"a","method":"health","method":"status"})");
  auto res = ws.read();
  ASSERT_TRUE(res);
  EXPECT_EQ((*res)["ok"], false);
  EXPECT_NE(res->dump().find("duplicate key"), std::string::npos) << res->dump();
  ws.send(std::string(R"({"type":"req","id":"b","method":"health"})") + std::string(1, '\0') +
          "garbage");
  res = ws.read();
  ASSERT_TRUE(res);
  EXPECT_EQ((*res)["ok"], false);
  EXPECT_NE(res->dump().find("NUL"), std::string::npos) << res->dump();
}

TEST_F(HostileInputTest, BinaryFrameBeforeConnectCloses) {
  RawWs ws;
  ASSERT_EQ(ws.open(port()), 101);
  ws.send("\x01\x02", true);
  EXPECT_EQ(ws.closed_with(), 1008);
}

TEST_F(HostileInputTest, ScopesGivenAsAStringGrantNothing) {
  RawWs ws;
  ASSERT_EQ(ws.open(port()), 101);
  auto res = ws.connect({{"scopes", "operator.admin"}});
  EXPECT_EQ(res["ok"], false);
  // A read-only client stays read-only.
  RawWs ro;
  ASSERT_EQ(ro.open(port()), 101);
  ASSERT_EQ(ro.connect({{"scopes", {"operator.read"}}})["ok"], true);
  ro.send(R"({"type":"req","id":"x","method":"gateway.restart.request","params":{}})");
  auto denied = ro.read();
  ASSERT_TRUE(denied);
  EXPECT_EQ((*denied)["error"]["code"], "FORBIDDEN");
}

TEST_F(HostileInputTest, HugeWaitMsIsRefusedAtItsDocumentedLimit) {
  auto c = connected();
  for (const json& params :
       {json{{"waitMs", 9223372036854775807LL}}, json{{"waitMs", 86'400'001}},
        json{{"delayMs", 9223372036854775807LL}}, json{{"waitMs", -1}},
        json{{"restartIntent", {{"waitMs", 18446744073709551615ULL}}}}}) {
    SCOPED_TRACE(params.dump());
    try {
      c->request("gateway.restart.request", params);
      FAIL() << "accepted";
    } catch (const ClientError& e) {
      EXPECT_EQ(e.code, "INVALID_REQUEST");
    }
  }
  EXPECT_EQ(control_.restart_requests, 0);
  EXPECT_EQ(c->request("gateway.restart.request", {{"waitMs", 86'400'000}})["ok"], true);
}

class SmallLimitsTest : public HostileInputTest {
 protected:
  void tune(ServerOptions& o) override {
    o.max_message_bytes = 1000;
    o.max_history_bytes = 2500;
    o.max_connections_per_peer = 3;
  }
};

TEST_F(SmallLimitsTest, MessagesOverTheLimitAreRefusedAndNothingIsStored) {
  auto c = connected();
  try {
    c->request("chat.send", {{"sessionKey", "s"}, {"message", std::string(1001, 'x')},
                             {"idempotencyKey", "big"}});
    FAIL() << "accepted";
  } catch (const ClientError& e) {
    EXPECT_EQ(e.code, "INVALID_REQUEST");
    EXPECT_NE(std::string(e.what()).find("gateway.limits.maxMessageBytes"), std::string::npos)
        << e.what();
  }
  for (const json& bad :
       {json{{"sessionKey", std::string(513, 's')}, {"message", "m"}, {"idempotencyKey", "k"}},
        json{{"sessionKey", "s"}, {"message", "m"}, {"idempotencyKey", std::string(257, 'k')}}}) {
    EXPECT_THROW(c->request("chat.send", bad), ClientError);
  }
  auto res = post_message(port(), "tok", {{"message", std::string(1001, 'x')}});
  EXPECT_EQ(res.status, 413);
  // A body over the body limit is answered 413 before it is read (the e2e test sends one by
  // hand: a blocking client may still be writing when the answer closes the connection).
  res = post_message(port(), "tok", {{"message", "m"}, {"sessionKey", std::string(600, 's')}});
  EXPECT_EQ(res.status, 400);
  res = post_message(port(), "tok", {{"message", "m"}, {"idempotencyKey", std::string(300, 'k')}});
  EXPECT_EQ(res.status, 400);
  EXPECT_EQ(store_->counts().inbox_total, 0);
  // A message at the limit goes through.
  EXPECT_TRUE(pumped(*c, "chat.send",
                     {{"sessionKey", "s"}, {"message", std::string(1000, 'x')},
                      {"idempotencyKey", "ok"}})
                  .contains("runId"));
}

TEST_F(SmallLimitsTest, HistoryIsPagedByBytes) {
  auto c = connected();
  for (int i = 0; i < 5; ++i) {
    pumped(*c, "chat.send",
           {{"sessionKey", "h"}, {"message", std::string(900, static_cast<char>('a' + i))},
            {"idempotencyKey", "h" + std::to_string(i)}});
  }
  std::vector<char> seen;
  json params = {{"sessionKey", "h"}};
  for (int page = 0; page < 5; ++page) {
    auto res = c->request("chat.history", params);
    const auto& messages = res["messages"];
    std::size_t bytes = 0;
    for (const auto& m : messages) {
      const auto& text = m["content"][0]["text"].get_ref<const std::string&>();
      bytes += text.size();
      seen.push_back(text[0]);
    }
    EXPECT_LE(bytes, 2500u);
    if (!res.value("hasMore", false)) break;
    params["before"] = res["nextBefore"];
  }
  // Newest page first, each page oldest first: [d e] [b c] [a].
  EXPECT_EQ(std::string(seen.begin(), seen.end()), "debca");
}

TEST_F(SmallLimitsTest, ConnectionsPerPeerAreCapped) {
  std::vector<std::unique_ptr<RawWs>> held;
  for (int i = 0; i < 3; ++i) {
    held.push_back(std::make_unique<RawWs>());
    ASSERT_EQ(held.back()->open(port()), 101);
  }
  RawWs over;
  EXPECT_NE(over.open(port()), 101);  // closed at once
  EXPECT_NE(on_io([this] { return server_->metrics_text(); })
                .find("drawbridge_connections_refused_total 1"),
            std::string::npos);
  held.pop_back();  // one closes: room for the next (once the server has seen the close)
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  int status = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    if (on_io([this] { return server_->open_connections(); }) < 3) {
      RawWs again;
      status = again.open(port());
      break;
    }
    // No fixed sleep: each on_io() is a round trip through the server's own loop, which runs
    // the close's completion handlers before the next check.
  }
  EXPECT_EQ(status, 101);
}

TEST_F(HostileInputTest, OriginIsChecked) {
  const std::string p = std::to_string(port());
  EXPECT_EQ(upgrade_status(port(), "https://evil.example"), 403);
  EXPECT_EQ(upgrade_status(port(), "null"), 403);
  EXPECT_EQ(upgrade_status(port(), "http://127.0.0.1:" + p + "/x"), 403);
  // Our own origin: the control UI served by the gateway.
  EXPECT_EQ(upgrade_status(port(), "http://127.0.0.1:" + p), 101);
  EXPECT_EQ(upgrade_status(port(), "http://localhost:" + p), 101);
  EXPECT_EQ(upgrade_status(port(), "http://[::1]:" + p), 101);
  EXPECT_EQ(upgrade_status(port(), ""), 101);  // not a browser
  // A loopback page on another port is another origin.
  EXPECT_EQ(upgrade_status(port(), "http://localhost:1"), 403);
  expect_still_serving();
}

HttpAnswer get(int port, const std::string& target, const std::string& host,
               const std::string& auth = "") {
  asio::io_context io;
  beast::tcp_stream stream(io);
  stream.connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"),
                                         static_cast<unsigned short>(port)));
  stream.expires_after(5s);
  http::request<http::empty_body> req{http::verb::get, target, 11};
  req.set(http::field::host, host);
  if (!auth.empty()) req.set(http::field::authorization, auth);
  http::write(stream, req);
  beast::flat_buffer buffer;
  http::response<http::string_body> res;
  http::read(stream, buffer, res);
  return {static_cast<int>(res.result_int()), std::string(res[http::field::retry_after]),
          json::parse(res.body(), nullptr, false)};
}

TEST_F(HostileInputTest, HostHeaderIsCheckedAgainstLoopbackNames) {
  // DNS rebinding: a page of evil.example resolved to 127.0.0.1 sends its own name.
  EXPECT_EQ(get(port(), "/readyz", "evil.example").status, 421);
  EXPECT_EQ(get(port(), "/readyz", "evil.example:" + std::to_string(port())).status, 421);
  EXPECT_EQ(get(port(), "/readyz", "localhost:" + std::to_string(port())).status, 200);
  EXPECT_EQ(get(port(), "/readyz", "127.0.0.1").status, 200);
  EXPECT_EQ(get(port(), "/readyz", "[::1]:" + std::to_string(port())).status, 200);
  EXPECT_EQ(get(port(), "/readyz", "127.0.0.1@evil.example").status, 421);
  EXPECT_EQ(upgrade_status(port(), "", "evil.example"), 421);
}

class AllowListTest : public HostileInputTest {
 protected:
  void tune(ServerOptions& o) override {
    o.allowed_origins = {"https://ui.example"};
    o.allowed_hosts = {"gw.example"};
  }
};

TEST_F(AllowListTest, ConfiguredOriginsAndHostsAreAllowed) {
  EXPECT_EQ(upgrade_status(port(), "https://ui.example"), 101);
  EXPECT_EQ(upgrade_status(port(), "https://ui.example:444"), 403);
  EXPECT_EQ(upgrade_status(port(), "", "gw.example:" + std::to_string(port())), 101);
  EXPECT_EQ(get(port(), "/healthz", "GW.example").status, 200);
  EXPECT_EQ(get(port(), "/healthz", "other.example").status, 421);
}

TEST_F(HostileInputTest, ReadyzDetailsNeedTheToken) {
  {
    std::lock_guard lock(control_.mu);
    control_.ready = Readiness{false, "config", json{{"config", {{"errors", {"SECRET-x"}}}}}};
  }
  auto anon = get(port(), "/readyz", "127.0.0.1");
  EXPECT_EQ(anon.status, 503);
  EXPECT_EQ(anon.body["reason"], "config");
  EXPECT_FALSE(anon.body.contains("details"));
  EXPECT_EQ(anon.body.dump().find("SECRET"), std::string::npos);
  EXPECT_FALSE(get(port(), "/readyz", "127.0.0.1", "Bearer wrong").body.contains("details"));
  EXPECT_TRUE(get(port(), "/readyz", "127.0.0.1", "Bearer tok").body.contains("details"));
}

TEST_F(HostileInputTest, FailedAuthIsThrottledPerPeerAndTheRightTokenWorksAfterTheLockout) {
  auto attempt = [&](const std::string& token) {
    RawWs ws;
    EXPECT_EQ(ws.open(port()), 101);
    return ws.connect({{"auth", {{"token", token}}}});
  };
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(attempt("wrong")["error"]["details"]["code"], "AUTH_TOKEN_MISMATCH") << i;
  }
  // The sixth failure starts a lockout: even the right token is refused, unchecked.
  EXPECT_EQ(attempt("wrong")["error"]["details"]["code"], "AUTH_TOKEN_MISMATCH");
  auto locked = attempt("tok");
  EXPECT_EQ(locked["error"]["details"]["code"], "AUTH_RATE_LIMITED");
  EXPECT_EQ(locked["error"]["retryable"], true);
  EXPECT_GT(locked["error"]["retryAfterMs"].get<int>(), 0);
  // HTTP shares the throttle.
  auto http_locked = post_message(port(), "tok", {{"message", "m"}});
  EXPECT_EQ(http_locked.status, 429);
  EXPECT_FALSE(http_locked.retry_after.empty());

  on_io([this] { clock_.advance(std::chrono::milliseconds(1001)); });
  EXPECT_EQ(attempt("tok")["ok"], true);
  // A success forgets the address: a new wrong attempt is not locked out.
  EXPECT_EQ(attempt("wrong")["error"]["details"]["code"], "AUTH_TOKEN_MISMATCH");
  const auto metrics = on_io([this] { return server_->metrics_text(); });
  EXPECT_NE(metrics.find("drawbridge_auth_failures_total 7"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("drawbridge_auth_throttled_total 2"), std::string::npos) << metrics;
}

// Out of file descriptors, accept() fails at once every time it is tried: the server retries
// after a back-off (5, 10, 20 ... ms, a timer of its executor, simulated here), never at once
// in a loop. Each count below is waited FOR (bounded); between the steps simulated time does
// not reach the next retry, so a count that moved on would be a retry without the back-off.
TEST_F(HostileInputTest, OutOfDescriptorsAcceptIsRetriedOnlyAfterTheBackOff) {
#if defined(__SANITIZE_ADDRESS__)
  // The sanitizer build also runs UBSan, whose vptr check opens a pipe to test that memory is
  // readable: in a process out of descriptors it cannot, and reports a false "invalid vptr".
  // The normal build runs this test; the e2e OutOfFileDescriptors test runs under ASan.
  GTEST_SKIP() << "UBSan's vptr check needs descriptors this test takes away";
#endif
  auto failures = [&] {
    const auto m = on_io([this] { return server_->metrics_text(); });
    const std::string name = "drawbridge_accept_failures_total ";
    const auto at = m.rfind(name);
    return at == std::string::npos ? -1 : std::stoi(m.substr(at + name.size()));
  };
  auto wait_for_failures = [&](int n) {
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (failures() < n && std::chrono::steady_clock::now() < deadline) {
    }
    return failures();
  };
  auto advance = [&](core::Duration d) { on_io([&] { executor_.advance(d); }); };

  // Three connections wait in the backlog while the server does not accept.
  on_io([this] { server_->pause_accepting(); });
  asio::io_context io;
  std::vector<asio::ip::tcp::socket> waiting;
  for (int i = 0; i < 3; ++i) {
    waiting.emplace_back(io).connect(
        {asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port())});
  }
  // No room for one more descriptor: the soft limit at the lowest free one.
  rlimit old{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &old), 0);
  const int lowest_free = ::dup(0);
  ASSERT_GE(lowest_free, 0);
  ::close(lowest_free);
  struct Restore {
    rlimit limit;
    bool done = false;
    void operator()() {
      if (!done) ::setrlimit(RLIMIT_NOFILE, &limit);
      done = true;
    }
    ~Restore() { (*this)(); }
  } restore{old};
  const rlimit tight{static_cast<rlim_t>(lowest_free), old.rlim_max};
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &tight), 0);

  on_io([this] { server_->resume_accepting(); });
  ASSERT_EQ(wait_for_failures(1), 1);
  advance(4ms);
  EXPECT_EQ(failures(), 1) << "retried before the first 5 ms back-off";
  advance(1ms);
  ASSERT_EQ(wait_for_failures(2), 2);
  advance(9ms);
  EXPECT_EQ(failures(), 2) << "retried before the 10 ms back-off";
  advance(1ms);
  ASSERT_EQ(wait_for_failures(3), 3);

  restore();
  advance(20ms);
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (on_io([this] { return server_->open_connections(); }) < 3 &&
         std::chrono::steady_clock::now() < deadline) {
  }
  EXPECT_EQ(on_io([this] { return server_->open_connections(); }), 3u);
  EXPECT_EQ(failures(), 3);
  waiting.clear();
  expect_still_serving();
}

TEST_F(HostileInputTest, HttpTokenFailuresAreThrottledToo) {
  for (int i = 0; i < 6; ++i) EXPECT_EQ(post_message(port(), "bad", {{"message", "m"}}).status, 401);
  EXPECT_EQ(post_message(port(), "tok", {{"message", "m"}}).status, 429);
}

}  // namespace
}  // namespace drawbridge::server

namespace drawbridge::server {
namespace {

class ShortTimeoutsTest : public ServerTest {
 protected:
  void tune(ServerOptions& o) override {
    o.handshake_timeout_ms = 200;
    o.close_timeout_ms = 200;
  }
};

TEST_F(ShortTimeoutsTest, AClientThatNeverConnectsNorAnswersTheCloseIsCutOffPromptly) {
  // On 364f714 such a client lived the handshake timeout plus Beast's suggested 30 s for the
  // close handshake (15 + 30 s with the defaults, although the README said 15 s). The
  // `connect` deadline is a timer of the server's executor (simulated: moved by the test); the
  // close handshake's bound is Beast's own stream timeout, in real time.
  asio::io_context io;
  asio::ip::tcp::socket s(io);
  s.connect({asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port())});
  const std::string upgrade =
      "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
  asio::write(s, asio::buffer(upgrade));
  // Every read is bounded by 3 s: waiting for something, failing when it does not come.
  timeval tv{3, 0};
  ::setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string seen;
  char buf[4096];
  auto read_some = [&] {
    const ssize_t n = ::recv(s.native_handle(), buf, sizeof buf, 0);
    if (n > 0) seen.append(buf, static_cast<std::size_t>(n));
    return n;
  };
  while (seen.find("connect.challenge") == std::string::npos) {
    ASSERT_GT(read_some(), 0) << "no challenge within 3 s: " << seen;
  }
  EXPECT_NE(seen.find("101 Switching Protocols"), std::string::npos);
  const auto challenged = seen.find("connect.challenge");
  // Just before the deadline the server has not closed: nothing is sent. Then past it.
  on_io([this] { executor_.advance(199ms); });
  on_io([this] { executor_.advance(1ms); });
  const auto start = std::chrono::steady_clock::now();
  for (;;) {
    const ssize_t n = read_some();
    if (n <= 0) {
      EXPECT_TRUE(n == 0 || errno == ECONNRESET) << "no close within 3 s: " << strerror(errno);
      break;
    }
  }
  // A close frame (FIN + opcode 8: 0x88) came after the challenge, and the connection ended
  // within the 200 ms close bound (the 3 s read timeout only bounds the wait).
  EXPECT_NE(seen.find('\x88', challenged), std::string::npos);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
}

TEST_F(ShortTimeoutsTest, TheConnectDeadlineIsNotReachedBeforeItsTime) {
  RawWs ws;
  ASSERT_EQ(ws.open(port()), 101);
  // 199 ms of simulated time: still open, `connect` is still served.
  on_io([this] { executor_.advance(199ms); });
  EXPECT_EQ(ws.connect({{"auth", {{"token", "tok"}}}})["ok"], true);
  // Connected: the deadline passing closes nothing.
  on_io([this] { executor_.advance(10s); });
  ws.send(R"({"type":"req","id":"h","method":"health","params":{}})");
  auto answer = ws.read();
  ASSERT_TRUE(answer);
  EXPECT_EQ((*answer)["id"], "h");
}

}  // namespace
}  // namespace drawbridge::server
