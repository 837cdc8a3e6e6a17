// drawbridge on a real PostgreSQL (tests/fakes/pg_server.h: started by the tests on a Unix
// socket): the message path on store.driver "postgres", replicas (each runs the sessions it
// holds; a message through another replica runs on the session's holder; a replica's sessions
// pass to another when it dies or freezes), and the Telegram poller
// across a pause past the lease: fenced, never two getUpdates at once.

#include <gtest/gtest.h>

#include <csignal>
#include <string>

#include "e2e/cluster_helpers.h"
#include "e2e/cut_proxy.h"
#include "e2e/lifecycle_helpers.h"

namespace drawbridge::e2e {
namespace {

using namespace cluster;

TEST_F(ClusterTest, MessagesSurviveAKillNineOnPostgres) {
  TempDir dir;
  Gateway gw(dir, pg_config(conninfo, "solo"));
  gw.start();
  for (int i = 0; i < 5; ++i) {
    auto post = gw.post_message({{"sessionKey", "pg"},
                                 {"message", "m" + std::to_string(i)},
                                 {"idempotencyKey", "pg-" + std::to_string(i)}});
    ASSERT_EQ(post.status, 202) << post.body;
  }
  ASSERT_TRUE(answered(gw, "pg", "m4")) << gw.log();
  gw.kill9();
  gw.start();  // same replica id: it renews its own lease at once
  // A duplicate is recognised across the restart; nothing is answered twice.
  auto again =
      gw.post_message({{"sessionKey", "pg"}, {"message", "m0"}, {"idempotencyKey", "pg-0"}});
  EXPECT_EQ(again.json_body().value("duplicate", false), true) << again.body;
  auto messages = gw.history("pg");
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(count_of(messages, "user", "m" + std::to_string(i)), 1u) << messages.dump(1);
    EXPECT_EQ(count_of(messages, "assistant", "m" + std::to_string(i)), 1u) << messages.dump(1);
  }
  auto status = gw.client({"operator.read"})->request("status", json::object());
  EXPECT_EQ(status["cluster"].value("replicaId", ""), "solo") << status.dump();
  EXPECT_EQ(status["cluster"]["replicas"].size(), 1u) << status.dump();
}

// Every replica serves clients; a plain stop leaves the cluster at once (its presence is
// given back: the others need not wait out its lease).
TEST_F(ClusterTest, AReplicaServesClientsAndAPlainStopLeavesTheClusterAtOnce) {
  TempDir dir_a, dir_b;
  Gateway a(dir_a, pg_config(conninfo, "a", 60000));  // a lease nobody waits out here
  Gateway b(dir_b, pg_config(conninfo, "b", 60000));
  a.start();
  b.start();
  auto st = cluster_status(b);
  EXPECT_EQ(st["replicas"].size(), 2u) << st.dump();
  EXPECT_FALSE(st.contains("role")) << "no replica is special any more";
  // A client of b sends; the session is b's (it accepted it first) and runs there.
  auto c = b.client();
  json ack = c->request("chat.send", {{"sessionKey", "x"}, {"message", "via b"},
                                      {"idempotencyKey", "x1"}});
  ASSERT_FALSE(ack.value("runId", "").empty()) << ack.dump();
  ChatRun run = await_run(*c, ack.value("runId", ""), 10s);
  EXPECT_EQ(run.state(), "final") << b.log() << a.log();
  EXPECT_EQ(run.text(), "via b");
  EXPECT_EQ(cluster_status(b).value("sessionsHeld", 0), 1);
  b.signal(SIGTERM);
  EXPECT_EQ(b.wait_exit(15s).code, 0) << b.log();
  st = cluster_status(a);
  ASSERT_EQ(st["replicas"].size(), 1u) << st.dump();
  EXPECT_EQ(st["replicas"][0].value("id", ""), "a");
  // b's session was given back: a message of it through a runs on a.
  auto after = a.post_message({{"sessionKey", "x"}, {"message", "after"}, {"idempotencyKey", "x2"}});
  ASSERT_EQ(after.status, 202);
  ASSERT_TRUE(answered(a, "x", "after")) << a.log();
  EXPECT_EQ(count_of(a.history("x"), "assistant", "via b"), 1u) << "answered twice";
}

// The turns completed by one replica, from its /metrics.
long turns_completed(const Gateway& gw) {
  const std::string body = gw.get("/metrics").body;
  const std::string key = "drawbridge_turns_total{outcome=\"completed\"} ";
  const auto at = body.find(key);
  return at == std::string::npos ? -1 : std::stol(body.substr(at + key.size()));
}

// Sessions on every replica: each replica claims the sessions whose messages it accepts first
// and runs their turns; a message of a session sent through the other replica runs on its
// holder, once; when a holder dies, the other takes its sessions over after the lease.
TEST_F(ClusterTest, EveryReplicaRunsTheTurnsOfTheSessionsItHolds) {
  TempDir dir_a, dir_b;
  Gateway a(dir_a, pg_config(conninfo, "a", 1500));
  Gateway b(dir_b, pg_config(conninfo, "b", 1500));
  a.start();
  b.start();
  for (int i = 0; i < 3; ++i) {
    const auto n = std::to_string(i);
    ASSERT_EQ(a.post_message({{"sessionKey", "on-a"}, {"message", "a" + n}, {"idempotencyKey", "a" + n}})
                  .status,
              202);
    ASSERT_EQ(b.post_message({{"sessionKey", "on-b"}, {"message", "b" + n}, {"idempotencyKey", "b" + n}})
                  .status,
              202);
  }
  ASSERT_TRUE(answered(a, "on-a", "a2")) << a.log();
  ASSERT_TRUE(answered(b, "on-b", "b2")) << b.log();
  EXPECT_EQ(turns_completed(a), 3) << "a ran on-a's turns";
  EXPECT_EQ(turns_completed(b), 3) << "b ran on-b's turns";
  EXPECT_EQ(cluster_status(a).value("sessionsHeld", 0), 1) << cluster_status(a).dump();
  EXPECT_EQ(cluster_status(b).value("sessionsHeld", 0), 1) << cluster_status(b).dump();
  // Through the replica that does not hold it: run by its holder.
  ASSERT_EQ(b.post_message({{"sessionKey", "on-a"}, {"message", "via b"}, {"idempotencyKey", "x"}})
                .status,
            202);
  ASSERT_TRUE(answered(a, "on-a", "via b")) << a.log() << b.log();
  EXPECT_EQ(turns_completed(a), 4);
  EXPECT_EQ(turns_completed(b), 3);
  // a dies with a message of on-a accepted by b waiting: b takes on-a over and runs it once.
  a.signal(SIGSTOP);
  ASSERT_EQ(b.post_message({{"sessionKey", "on-a"}, {"message", "after a"}, {"idempotencyKey", "y"}})
                .status,
            202);
  a.kill9();
  ASSERT_TRUE(b.wait_for_log("session on-a taken from replica a", 10s)) << b.log();
  ASSERT_TRUE(answered(b, "on-a", "after a")) << b.log();
  EXPECT_EQ(turns_completed(b), 4);
  const json history = b.history("on-a");
  for (const char* text : {"a0", "a1", "a2", "via b", "after a"}) {
    EXPECT_EQ(count_of(history, "assistant", text), 1u) << text << history.dump(1);
  }
}

// chat.abort reaches the replica it is sent to; the turn runs on the session's holder: the
// abort is passed on (a notice) and ends the turn there.
TEST_F(ClusterTest, AnAbortThroughAnotherReplicaEndsTheTurnWhereItRuns) {
  TempDir dir_a, dir_b;
  json slow = pg_config(conninfo, "a");
  slow["agents"]["main"]["delayMs"] = 3000;  // each turn waits 3 s before it answers
  Gateway a(dir_a, slow);
  Gateway b(dir_b, pg_config(conninfo, "b"));
  a.start();
  b.start();
  auto ca = a.client();
  // A first turn makes the session a's (its final is the event waited on); a's next message
  // then starts its turn right after its acknowledgement, in the same loop turn on a.
  json first = ca->request("chat.send", {{"sessionKey", "long"}, {"message", "first"},
                                         {"idempotencyKey", "l0"}});
  ASSERT_EQ(await_run(*ca, first.value("runId", ""), 10s).state(), "final") << a.log();
  json ack = ca->request("chat.send", {{"sessionKey", "long"}, {"message", "second"},
                                       {"idempotencyKey", "l1"}});
  const std::string run_id = ack.value("runId", "");
  ASSERT_FALSE(run_id.empty()) << ack.dump();
  auto cb = b.client();
  json res = cb->request("chat.abort", {{"sessionKey", "long"}});
  EXPECT_EQ(res.value("passedOn", false), true) << res.dump();
  ChatRun run = await_run(*ca, run_id, 8s);
  EXPECT_EQ(run.state(), "aborted") << a.log() << b.log();
}

TEST_F(ClusterTest, MessagesOfAFrozenReplicasSessionsAreRunOnceAfterTakeOver) {
  TempDir dir_a, dir_b;
  Gateway a(dir_a, pg_config(conninfo, "a", 3000));
  Gateway b(dir_b, pg_config(conninfo, "b", 3000));
  a.start();
  b.start();
  for (int i = 0; i < 2; ++i) {  // both sessions are a's
    const auto s = "gap" + std::to_string(i);
    ASSERT_EQ(a.post_message({{"sessionKey", s}, {"message", "first"}, {"idempotencyKey", s}})
                  .status,
              202);
    ASSERT_TRUE(answered(a, s, "first")) << a.log();
  }
  a.signal(SIGSTOP);  // a is frozen: b accepts, nobody runs, until a's lease runs out
  for (int i = 0; i < 5; ++i) {
    auto post = b.post_message({{"sessionKey", "gap" + std::to_string(i % 2)},
                                {"message", "g" + std::to_string(i)},
                                {"idempotencyKey", "g-" + std::to_string(i)}});
    ASSERT_EQ(post.status, 202) << post.body;
  }
  ASSERT_TRUE(b.wait_for_log("session gap1 taken from replica a", 15s)) << b.log();
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(answered(b, "gap" + std::to_string(i % 2), "g" + std::to_string(i))) << b.log();
  }
  // a wakes: its lease is gone, it exits for its supervisor without running anything.
  a.signal(SIGCONT);
  EXPECT_EQ(a.wait_exit(20s).code, 75) << a.log();
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(count_of(b.history("gap" + std::to_string(i % 2)), "assistant",
                       "g" + std::to_string(i)),
              1u);
  }
}

TEST_F(ClusterTest, APausedPollerIsFencedAndTwoPollsNeverOverlap) {
  TelegramFake fake;
  fake.add_bot(kBot, 777001, "cluster_bot");
  TempDir dir_a, dir_b, machine;
  Gateway a(dir_a, with_bot(pg_config(conninfo, "a", 2000), fake));
  Gateway b(dir_b, with_bot(pg_config(conninfo, "b", 2000), fake));
  bot_env(a);
  bot_env(b);
  // Both on one machine (one runtime folder): the bot's lease is the rule in a cluster, not
  // the machine-wide lock, which the frozen a would hold for ever.
  a.set_env("XDG_RUNTIME_DIR", machine.path().string());
  b.set_env("XDG_RUNTIME_DIR", machine.path().string());
  a.start();
  // Recorded as sent first: a freeze between a send and its record is the one window where a
  // part can go twice (README "Answered once"), which this test is not about.
  ASSERT_TRUE(first_message_answered(fake, a));
  b.start();  // a standby: its bot channel waits for the account's lease, which a holds
  // a stops dead (SIGSTOP) past its lease; b takes over the store and the bot.
  a.signal(SIGSTOP);
  ASSERT_TRUE(b.wait_for_log("replica b polls bot", 15s)) << b.log();
  fake.push_message(kBot, kAlice, kAlice, "two");
  ASSERT_TRUE(fake.wait_for([&] { return fake.sent(kBot).size() >= 2; }, 10s)) << b.log();
  // a wakes: its leases are gone; it exits (75: a supervisor brings it back as a standby)
  // instead of polling or committing as holder.
  a.signal(SIGCONT);
  EXPECT_EQ(a.wait_exit(20s).code, 75) << a.log();
  EXPECT_NE(a.log().find("its presence lease ran out"), std::string::npos) << a.log();
  fake.push_message(kBot, kAlice, kAlice, "three");
  ASSERT_TRUE(fake.wait_for([&] { return fake.sent(kBot).size() >= 3; }, 10s)) << b.log();
  EXPECT_EQ(texts_sent(fake), (std::vector<std::string>{"one", "two", "three"}));
  EXPECT_LE(fake.max_concurrent_polls(kBot), 1) << "two getUpdates overlapped";
}

TEST_F(ClusterTest, InProcessRestartsOfEitherReplicaKeepTheBotPolledAndAnswerOnce) {
  TelegramFake fake;
  fake.add_bot(kBot, 777001, "cluster_bot");
  TempDir dir_a, dir_b;
  Gateway a(dir_a, with_bot(pg_config(conninfo, "a", 2000), fake));
  Gateway b(dir_b, with_bot(pg_config(conninfo, "b", 2000), fake));
  bot_env(a);
  bot_env(b);
  a.start();
  b.start();
  std::vector<std::string> pushed;
  auto push_and_wait = [&](const std::string& text) {
    pushed.push_back(text);
    fake.push_message(kBot, kAlice, kAlice, text);
    return fake.wait_for([&] { return fake.sent(kBot).size() >= pushed.size(); }, 15s);
  };
  ASSERT_TRUE(push_and_wait("first")) << a.log();
  // Each replica restarts in turn (SIGUSR1, in-process): the bot stays polled (the account's
  // lease goes to the other replica when the restarting one stops its channel) and every
  // message is answered once.
  for (int round = 0; round < 4; ++round) {
    Gateway& target = round % 2 == 0 ? a : b;
    target.signal(SIGUSR1);
    fake.push_message(kBot, kAlice, kAlice, "during " + std::to_string(round));
    pushed.push_back("during " + std::to_string(round));
    ASSERT_TRUE(lifecycle::wait_generation(target, 2 + round / 2, 15s)) << target.log();
    ASSERT_TRUE(push_and_wait("after " + std::to_string(round))) << a.log() << b.log();
  }
  EXPECT_EQ(texts_sent(fake), pushed);
  EXPECT_LE(fake.max_concurrent_polls(kBot), 1) << "two getUpdates overlapped";
}

TEST_F(ClusterTest, AReexecKeepsThePresenceLeaseAndAPlainStopReleasesIt) {
  lifecycle::Subreaper subreaper;  // the successor becomes our child: ended by its pid below
  TempDir dir;
  json cfg = pg_config(conninfo, "a");
  cfg["gateway"]["restart"]["delayMs"] = 0;
  Gateway gw(dir, cfg);
  gw.set_env("DRAWBRIDGE_SUPERVISOR", "none");
  gw.start();
  const pid_t old_pid = gw.pid();
  gw.signal(SIGUSR2);
  EXPECT_EQ(gw.wait_exit(15s).code, 0) << gw.log();  // after its successor reported ready
  // The successor renewed the lease the old process held; the old one gave nothing back.
  EXPECT_EQ(lease_row(conninfo, "replica:a"), "a:1");
  server::GatewayClient c("127.0.0.1", gw.port());
  c.connect(Gateway::kToken, {"operator.read"});
  const pid_t new_pid = c.request("status", json::object()).value("pid", 0);
  c.close();
  ASSERT_NE(new_pid, old_pid) << gw.log();
  lifecycle::stop_successor(new_pid);  // SIGTERM: a plain stop hands the lease over at once
  EXPECT_EQ(lease_row(conninfo, "replica:a"), ":1");
}

TEST_F(ClusterTest, AReplicaCutOffFromTheDatabaseHandsOverAndStaysOut) {
  // a reaches PostgreSQL through a link this test cuts; b directly.
  CutProxy link(pg_socket(conninfo));
  TelegramFake fake;
  fake.add_bot(kBot, 777001, "cluster_bot");
  TempDir dir_a, dir_b;
  Gateway a(dir_a, with_bot(pg_config(through(link, conninfo), "a", 2000), fake));
  Gateway b(dir_b, with_bot(pg_config(conninfo, "b", 2000), fake));
  bot_env(a);
  bot_env(b);
  a.start();
  ASSERT_TRUE(first_message_answered(fake, a));
  b.start();
  link.cut();  // a still runs, but neither renews nor writes: b takes over after the lease
  ASSERT_TRUE(b.wait_for_log("replica b polls bot", 20s)) << b.log();
  fake.push_message(kBot, kAlice, kAlice, "two");
  ASSERT_TRUE(fake.wait_for([&] { return fake.sent(kBot).size() >= 2; }, 10s)) << b.log();
  // The link comes back: a's next heartbeat finds the lease taken and a exits for its
  // supervisor, without polling the bot or committing anything.
  link.heal();
  EXPECT_EQ(a.wait_exit(30s).code, 75) << a.log();
  fake.push_message(kBot, kAlice, kAlice, "three");
  ASSERT_TRUE(fake.wait_for([&] { return fake.sent(kBot).size() >= 3; }, 10s)) << b.log();
  EXPECT_EQ(texts_sent(fake), (std::vector<std::string>{"one", "two", "three"}));
  EXPECT_LE(fake.max_concurrent_polls(kBot), 1) << "two getUpdates overlapped";
}

}  // namespace
}  // namespace drawbridge::e2e
