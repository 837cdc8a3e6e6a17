// IRC in a cluster (docs/DECISIONS.md "IRC under a lease"): replicas on one PostgreSQL and one
// real IRC server (ngircd). Only the holder of the account's lease keeps the connection (the
// others stand by); when it dies another connects within the lease; one frozen past its lease
// writes nothing when it wakes (its messages are answered once, by the replica that took over)
// and exits for its supervisor.

#include <gtest/gtest.h>

#include <csignal>
#include <regex>
#include <string>

#include "e2e/cluster_helpers.h"
#include "e2e/irc_fixture.h"

namespace drawbridge::e2e {
namespace {

class ClusterIrcTest : public cluster::ClusterTest {
 protected:
  void SetUp() override {
    cluster::ClusterTest::SetUp();
    if (IsSkipped()) return;
    if (ngircd_binary().empty()) {
      GTEST_SKIP() << "ngircd is not installed (scripts/install-deps.sh --with-tests)";
    }
    server = std::make_unique<Ngircd>(irc_dir);
  }
  // Replica `name` with the bot on the test's server; each turn answers after `delay_ms`.
  std::unique_ptr<Gateway> replica(TempDir& dir, const std::string& name, int delay_ms = 0) {
    json cfg = irc_config(server->port(), delay_ms);
    const json pg = cluster::pg_config(conninfo, name, 1500);
    cfg["store"] = pg["store"];
    cfg["cluster"] = pg["cluster"];
    auto gw = std::make_unique<Gateway>(dir, cfg);
    gw->set_env("E2E_IRC_PASSWORD", kServerPassword);
    gw->set_env("DRAWBRIDGE_SUPERVISOR", "none");
    return gw;
  }
  // A line the bot (under its nick or a fallback of it) sent to alice with exactly `text`.
  static bool bot_said(const std::string& line, const std::string& text) {
    return line.rfind(std::string(":") + kBot, 0) == 0 &&
           line.find(" PRIVMSG alice :" + text + "\r\n") != std::string::npos;
  }
  static bool bot_joined(const std::string& line) {
    return line.rfind(std::string(":") + kBot, 0) == 0 && line.find(" JOIN ") != std::string::npos;
  }
  // Bounded: until `gw` runs a turn.
  static bool turn_running(const Gateway& gw) {
    auto c = gw.client({"operator.read"});
    const auto deadline = SteadyClock::now() + 10s;
    while (SteadyClock::now() < deadline) {
      if (!c->request("status", json::object()).value("activeRuns", json::array()).empty()) {
        return true;
      }
    }
    return false;
  }

  TempDir irc_dir;
  std::unique_ptr<Ngircd> server;
};

TEST_F(ClusterIrcTest, OneReplicaKeepsTheConnectionAndAnotherTakesItOverOnce) {
  auto alice = std::make_unique<IrcClient>(server->port(), "alice");
  alice->send("JOIN #ops");
  ASSERT_TRUE(alice->wait_for([](const std::string& l) { return is_join(l, "alice", "#ops"); }, 10s));
  TempDir dir_a, dir_b;
  auto a = replica(dir_a, "a");
  auto b = replica(dir_b, "b", 2000);
  a->start();
  ASSERT_TRUE(alice->wait_for(bot_joined, 10s)) << a->log();
  b->start();
  ASSERT_TRUE(b->wait_for_log("is connected by replica a", 10s)) << b->log();
  alice->say(kBot, "one");
  ASSERT_TRUE(alice->wait_for([](const std::string& l) { return bot_said(l, "one"); }, 15s))
      << a->log();
  EXPECT_EQ(count_lines(*alice, bot_joined), 1u) << "two connections as the bot";
  json status = cluster::cluster_status(*b);
  bool listed = false;
  for (const auto& acc : status.value("accounts", json::array())) {
    listed = listed || (acc.value("name", "").rfind("channel:irc:drawbot@127.0.0.1:", 0) == 0 &&
                        acc.value("holder", "") == "a");
  }
  EXPECT_TRUE(listed) << status.dump();

  // a dies: b connects once its lease is gone (1.5 s), as the bot, and answers.
  a->kill9();
  ASSERT_TRUE(b->wait_for_log("replica b keeps the connection of drawbot", 10s)) << b->log();
  ASSERT_TRUE(alice->wait_for(bot_joined, 10s)) << b->log();
  alice->say(kBot, "two");
  ASSERT_TRUE(alice->wait_for([](const std::string& l) { return bot_said(l, "two"); }, 15s))
      << b->log();

  // a comes back (standing by); b freezes in the middle of a turn past its lease: a takes the
  // connection and the session over and answers; b, woken, writes nothing and exits.
  a->start();
  ASSERT_TRUE(a->wait_for_log("is connected by replica b", 10s)) << a->log();
  alice->say(kBot, "three");
  ASSERT_TRUE(turn_running(*b)) << b->log();
  b->signal(SIGSTOP);
  ASSERT_TRUE(a->wait_for_log("replica a keeps the connection of drawbot", 10s)) << a->log();
  ASSERT_TRUE(alice->wait_for([](const std::string& l) { return bot_said(l, "three"); }, 20s))
      << a->log();
  b->signal(SIGCONT);
  EXPECT_EQ(b->wait_exit(20s).code, 75) << b->log();
  // After b's exit, one more round trip: whatever b could have written is in by then.
  alice->say(std::string(kBot) + "_", "four");
  alice->say(kBot, "four");
  ASSERT_TRUE(alice->wait_for([](const std::string& l) { return bot_said(l, "four"); }, 20s))
      << a->log();
  for (const char* text : {"one", "two", "three"}) {
    EXPECT_EQ(count_lines(*alice, [&](const std::string& l) { return bot_said(l, text); }), 1u)
        << text << "\n" << alice->transcript();
  }
}

// A re-exec hands the connection to the successor, the same replica, which renews the lease
// (same epoch) before it reads from it: no QUIT, no second connection. Its plain stop QUITs and
// gives the lease back.
TEST_F(ClusterIrcTest, AReexecHandsTheConnectionAndItsLeaseToTheSuccessor) {
  lifecycle::Subreaper subreaper;  // the successor becomes our child: ended by its pid below
  auto alice = std::make_unique<IrcClient>(server->port(), "alice");
  alice->send("JOIN #ops");
  ASSERT_TRUE(alice->wait_for([](const std::string& l) { return is_join(l, "alice", "#ops"); }, 10s));
  TempDir dir;
  auto a = replica(dir, "a");
  // The successor's pid, from the log it shares ("handed over to pid N"); stopped at the end,
  // passed or not.
  struct Successor {
    Gateway& gw;
    bool stopped = false;
    pid_t pid() const {
      static const std::regex re("handed over to pid ([0-9]+)");
      std::smatch m;
      const std::string log = gw.log();
      return std::regex_search(log, m, re) ? std::stoi(m[1]) : -1;
    }
    void stop() {
      if (!stopped) lifecycle::stop_successor(pid());
      stopped = true;
    }
    ~Successor() { stop(); }
  } successor{*a};
  a->start();
  ASSERT_TRUE(alice->wait_for(bot_joined, 10s)) << a->log();
  const std::string lease = "channel:irc:drawbot@127.0.0.1:" + std::to_string(server->port());
  EXPECT_EQ(cluster::lease_row(conninfo, lease), "a:1");
  a->signal(SIGUSR2);
  ASSERT_TRUE(a->wait_for_log("handed over to pid", 15s)) << a->log();
  EXPECT_EQ(a->wait_exit(10s).code, 0) << a->log();
  alice->say(kBot, "after");
  ASSERT_TRUE(alice->wait_for([](const std::string& l) { return bot_said(l, "after"); }, 15s))
      << a->log();
  EXPECT_NE(a->log().find("took over the connection"), std::string::npos) << a->log();
  EXPECT_EQ(cluster::lease_row(conninfo, lease), "a:1") << "the successor renewed it";
  EXPECT_EQ(count_lines(*alice, is_bot_quit), 0u) << alice->transcript();
  EXPECT_EQ(count_lines(*alice, bot_joined), 1u) << alice->transcript();
  ASSERT_GT(successor.pid(), 0);
  successor.stop();  // SIGTERM: a plain stop
  EXPECT_EQ(cluster::lease_row(conninfo, lease), ":1") << "given back at the stop";
  EXPECT_TRUE(alice->wait_for(is_bot_quit, 10s)) << alice->transcript();
}

}  // namespace
}  // namespace drawbridge::e2e
