// The exec agent: a local command per turn, the message on stdin, the reply from stdout.

#include <gtest/gtest.h>

#include "e2e/harness.h"

namespace drawbridge::e2e {
namespace {

json exec_config(const std::string& script) {
  return {{"agents",
           {{"main", {{"type", "exec"}, {"command", {"sh", "-c", script}}, {"timeoutMs", 5000}}}}},
          {"channels", {{"local", {{"maxMessageChars", 0}}}}}};
}

TEST(ExecAgent, ReplyIsTheCommandsStdout) {
  TempDir dir;
  Gateway gw(dir, exec_config("read x; echo got-it"));
  gw.start();
  auto c = gw.client();
  json ack = c->request("chat.send", {{"sessionKey", "exec"}, {"message", "anything"},
                                      {"idempotencyKey", "exec-1"}});
  ChatRun run = await_run(*c, ack.value("runId", ""), 5s);
  ASSERT_EQ(run.state(), "final") << run.terminal.dump();
  EXPECT_EQ(run.text(), "got-it");
}

TEST(ExecAgent, TheCommandReadsTheMessageOnStdin) {
  TempDir dir;
  // The request is one JSON line; echo it back so the reply shows what the command got.
  Gateway gw(dir, exec_config("read line; printf '%s' \"$line\""));
  gw.start();
  auto c = gw.client();
  json ack = c->request("chat.send", {{"sessionKey", "exec-in"}, {"message", "ping pong"},
                                      {"idempotencyKey", "exec-in-1"}});
  ChatRun run = await_run(*c, ack.value("runId", ""), 5s);
  ASSERT_EQ(run.state(), "final") << run.terminal.dump();
  json request = json::parse(run.text(), nullptr, false);
  ASSERT_TRUE(request.is_object()) << run.text();
  EXPECT_EQ(request.value("text", ""), "ping pong");
  EXPECT_EQ(request.value("sessionKey", ""), "exec-in");
  EXPECT_EQ(request.value("runId", ""), ack.value("runId", ""));
}

TEST(ExecAgent, FailingCommandAnswersWithAnApology) {
  TempDir dir;
  Gateway gw(dir, exec_config("read x; echo 'backend down' >&2; exit 1"));
  gw.start();
  auto c = gw.client();
  json ack = c->request("chat.send", {{"sessionKey", "exec-fail"}, {"message", "hello?"},
                                      {"idempotencyKey", "exec-fail-1"}});
  ChatRun run = await_run(*c, ack.value("runId", ""), 5s);
  ASSERT_EQ(run.state(), "final") << run.terminal.dump();
  EXPECT_EQ(run.text().rfind("Sorry, I could not answer that", 0), 0u) << run.text();
  // The reason is there for the operator.
  EXPECT_NE(run.text().find("status 1"), std::string::npos) << run.text();

  auto metrics = http(gw.port(), "GET", "/metrics").body;
  EXPECT_EQ(metric_value(metrics, "drawbridge_turns_total{outcome=\"failed\"}"), 1.0) << metrics;
  // The apology is the one reply, kept in the history.
  json history = gw.history("exec-fail");
  EXPECT_EQ(entries_of_run(history, "assistant", ack.value("runId", "")).size(), 1u)
      << history.dump(2);
}

}  // namespace
}  // namespace drawbridge::e2e
