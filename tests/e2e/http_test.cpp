// The HTTP door of the gateway: health, readiness, metrics and the local channel's REST API.

#include <gtest/gtest.h>

#include "e2e/harness.h"

namespace drawbridge::e2e {
namespace {

TEST(Http, HealthzAnswers200) {
  TempDir dir;
  Gateway gw(dir, echo_config());
  gw.start();
  auto res = http(gw.port(), "GET", "/healthz");
  EXPECT_EQ(res.status, 200) << res.body;
  EXPECT_EQ(res.json_body().value("ok", false), true) << res.body;
}

TEST(Http, ReadyzAnswers200OnceStarted) {
  TempDir dir;
  Gateway gw(dir, echo_config());
  gw.start();  // returns once /readyz said 200
  auto res = http(gw.port(), "GET", "/readyz");
  EXPECT_EQ(res.status, 200) << res.body;
  EXPECT_EQ(res.json_body().value("ready", false), true) << res.body;
}

TEST(Http, MetricsCountInboundMessagesAndGrowAfterAPost) {
  TempDir dir;
  Gateway gw(dir, echo_config());
  gw.start();
  auto before = http(gw.port(), "GET", "/metrics");
  ASSERT_EQ(before.status, 200);
  EXPECT_NE(before.header("content-type").find("text/plain"), std::string::npos);
  auto n0 = metric_value(before.body, "drawbridge_inbound_messages_total");
  ASSERT_TRUE(n0.has_value()) << before.body;

  auto post = gw.post_message({{"sessionKey", "metrics"}, {"message", "count me"},
                               {"idempotencyKey", "metrics-1"}});
  ASSERT_EQ(post.status, 202) << post.body;

  // The counter moves when the message is committed, before the POST is answered.
  auto after = http(gw.port(), "GET", "/metrics");
  auto n1 = metric_value(after.body, "drawbridge_inbound_messages_total");
  ASSERT_TRUE(n1.has_value()) << after.body;
  EXPECT_EQ(*n1, *n0 + 1) << after.body;
}

TEST(Http, PostWithoutTokenIs401) {
  TempDir dir;
  Gateway gw(dir, echo_config());
  gw.start();
  const std::string body = json{{"sessionKey", "s"}, {"message", "hi"}}.dump();
  auto none = http(gw.port(), "POST", "/v1/messages", body, {{"Content-Type", "application/json"}});
  EXPECT_EQ(none.status, 401) << none.body;
  EXPECT_EQ(none.header("www-authenticate"), "Bearer");
  auto wrong = http(gw.port(), "POST", "/v1/messages", body,
                    {{"Content-Type", "application/json"}, {"Authorization", "Bearer nope"}});
  EXPECT_EQ(wrong.status, 401) << wrong.body;
  // Nothing was accepted.
  auto m = http(gw.port(), "GET", "/metrics");
  EXPECT_EQ(metric_value(m.body, "drawbridge_inbound_messages_total"), 0.0) << m.body;
  // Reading the history needs the token too.
  auto history = http(gw.port(), "GET", "/v1/messages?sessionKey=s");
  EXPECT_EQ(history.status, 401) << history.body;
}

TEST(Http, PostWithMalformedJsonIs400) {
  TempDir dir;
  Gateway gw(dir, echo_config());
  gw.start();
  auto res = http(gw.port(), "POST", "/v1/messages", "{\"sessionKey\": \"s\", \"message\": ",
                  {{"Authorization", "Bearer " + gw.token()},
                   {"Content-Type", "application/json"}});
  EXPECT_EQ(res.status, 400) << res.body;
  json body = res.json_body();
  ASSERT_TRUE(body.is_object()) << res.body;
  EXPECT_EQ(body.value("ok", true), false);
  EXPECT_EQ(body["error"].value("code", ""), "INVALID_REQUEST") << res.body;
  EXPECT_NE(body["error"].value("message", "").find("malformed JSON"), std::string::npos)
      << res.body;
}

TEST(Http, HistoryShowsTheUserMessageAndTheAssistantReply) {
  TempDir dir;
  Gateway gw(dir, echo_config());
  gw.start();
  auto watcher = gw.client();
  watcher->request("chat.history", {{"sessionKey", "hist"}});  // subscribes to the session

  auto post = gw.post_message({{"sessionKey", "hist"}, {"message", "hello history"},
                               {"idempotencyKey", "hist-1"}});
  ASSERT_EQ(post.status, 202) << post.body;
  json ack = post.json_body();
  EXPECT_EQ(ack.value("ok", false), true);
  EXPECT_EQ(ack.value("duplicate", true), false);
  const std::string run_id = ack.value("runId", "");
  ASSERT_FALSE(run_id.empty()) << post.body;

  auto run = await_run(*watcher, run_id);
  ASSERT_EQ(run.state(), "final");

  json messages = gw.history("hist");
  auto user = entries_of_run(messages, "user", run_id);
  auto assistant = entries_of_run(messages, "assistant", run_id);
  ASSERT_EQ(user.size(), 1u) << messages.dump(2);
  ASSERT_EQ(assistant.size(), 1u) << messages.dump(2);
  EXPECT_EQ(entry_text(user[0]), "hello history");
  EXPECT_EQ(entry_text(assistant[0]), "hello history");
  // The reply comes after the message it answers.
  EXPECT_LT(user[0]["__openclaw"].value("seq", 0), assistant[0]["__openclaw"].value("seq", 0));
}

TEST(Http, UnknownRouteIs404) {
  TempDir dir;
  Gateway gw(dir, echo_config());
  gw.start();
  auto res = http(gw.port(), "GET", "/no/such/route");
  EXPECT_EQ(res.status, 404) << res.body;
  EXPECT_EQ(res.json_body()["error"].value("code", ""), "NOT_FOUND") << res.body;
  auto authed = gw.get("/v1/nothing-here");
  EXPECT_EQ(authed.status, 404) << authed.body;
}

TEST(Http, DuplicatePostWithTheSameIdempotencyKeyIsAnsweredOnce) {
  TempDir dir;
  Gateway gw(dir, echo_config());
  gw.start();
  auto watcher = gw.client();
  watcher->request("chat.history", {{"sessionKey", "dup"}});

  const json msg = {{"sessionKey", "dup"}, {"message", "only once"}, {"idempotencyKey", "dup-1"}};
  auto first = gw.post_message(msg);
  ASSERT_EQ(first.status, 202) << first.body;
  const std::string run_id = first.json_body().value("runId", "");
  ASSERT_FALSE(run_id.empty());
  ASSERT_EQ(await_run(*watcher, run_id).state(), "final");

  auto again = gw.post_message(msg);
  EXPECT_EQ(again.status, 200) << again.body;
  EXPECT_EQ(again.json_body().value("duplicate", false), true) << again.body;
  EXPECT_EQ(again.json_body().value("runId", ""), run_id) << again.body;

  // The key may also come as a header.
  auto header = gw.post_message({{"sessionKey", "dup"}, {"message", "only once"}},
                                {{"Idempotency-Key", "dup-1"}});
  EXPECT_EQ(header.status, 200) << header.body;
  EXPECT_EQ(header.json_body().value("duplicate", false), true) << header.body;
  EXPECT_EQ(header.json_body().value("runId", ""), run_id) << header.body;

  // A later message of the same session runs after anything the duplicates could have
  // started; once it is answered, a second answer to the first would be visible.
  auto sentinel = gw.post_message({{"sessionKey", "dup"}, {"message", "sentinel"},
                                   {"idempotencyKey", "dup-2"}});
  ASSERT_EQ(sentinel.status, 202) << sentinel.body;
  auto sentinel_run = await_run(*watcher, sentinel.json_body().value("runId", ""));
  ASSERT_EQ(sentinel_run.state(), "final");
  for (const auto& ev : sentinel_run.other) {
    EXPECT_NE(ev["payload"].value("runId", ""), run_id) << "second event for the duplicate: "
                                                        << ev.dump();
  }

  json messages = gw.history("dup");
  EXPECT_EQ(entries_of_run(messages, "user", run_id).size(), 1u) << messages.dump(2);
  EXPECT_EQ(entries_of_run(messages, "assistant", run_id).size(), 1u) << messages.dump(2);
  auto metrics = http(gw.port(), "GET", "/metrics").body;
  EXPECT_EQ(metric_value(metrics, "drawbridge_inbound_messages_total"), 2.0) << metrics;
  EXPECT_EQ(metric_value(metrics, "drawbridge_inbound_duplicates_total"), 2.0) << metrics;
  EXPECT_EQ(metric_value(metrics, "drawbridge_turns_total{outcome=\"started\"}"), 2.0) << metrics;
}

}  // namespace
}  // namespace drawbridge::e2e
