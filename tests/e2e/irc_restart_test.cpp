// IRC across restarts against ngircd (tests/e2e/irc_fixture.h): an in-process restart and a
// re-exec keep the bot's connection (docs/DECISIONS.md "An IRC connection outlives a restart");
// a restart that changed the account QUITs before the new connection registers.

#include <regex>
#include <string>

#include "e2e/irc_fixture.h"

namespace drawbridge::e2e {
namespace {

// An in-process restart keeps the bot's connection (docs/DECISIONS.md "An IRC connection
// outlives an in-process restart"): no QUIT, no rejoin, and what came during the drain is
// answered once by the next generation over the same connection.
TEST_F(IrcTest, ARestartKeepsTheConnectionAndAnswersWhatCameDuringTheDrainOnce) {
  auto alice = alice_in_ops();
  make_gateway(irc_config(server->port(), /*delay_ms=*/2500));
  gw->start();
  ASSERT_TRUE(alice->wait_for([](const std::string& l) { return is_join(l, kBot, "#ops"); }, 15s))
      << alice->transcript() << gw->log();
  const std::string to_bot = std::string(kBot) + ": ";

  alice->say("#ops", to_bot + "m0");  // a turn of 2.5 s: the drain waits for it
  ASSERT_TRUE(turn_running(5s)) << gw->log();
  gw->signal(SIGUSR1);
  ASSERT_TRUE(gw->wait_for_log("SIGUSR1", 5s)) << gw->log();
  alice->say("#ops", to_bot + "m1");  // during the drain: journaled, answered after it
  alice->say(kBot, "m2");
  ASSERT_TRUE(gw->wait_for_log("generation 2 ready", 15s)) << gw->log();
  EXPECT_TRUE(gw->wait_for_log("channel irc carried over", 1s)) << gw->log();
  ASSERT_TRUE(alice->wait_privmsg(kBot, "alice", "m2", 20s)) << alice->transcript() << gw->log();
  alice->say("#ops", to_bot + "last");
  ASSERT_TRUE(alice->wait_privmsg(kBot, "#ops", "last", 20s)) << alice->transcript() << gw->log();

  std::map<std::string, int> times;
  for (const auto& t : alice->privmsgs(kBot, "#ops")) {
    if (t.find("restart") != std::string::npos) continue;  // the restart notice
    ++times[t];
  }
  for (const auto& t : alice->privmsgs(kBot, "alice")) ++times[t];
  EXPECT_EQ(times, (std::map<std::string, int>{{"m0", 1}, {"m1", 1}, {"m2", 1}, {"last", 1}}))
      << alice->transcript();
  EXPECT_EQ(count_lines(*alice, is_bot_quit), 0u) << alice->transcript();
  EXPECT_EQ(count_lines(*alice, [](const std::string& l) { return is_join(l, kBot, "#ops"); }), 1u)
      << alice->transcript();
  EXPECT_EQ(gw->log().find("channel irc started (start 2"), std::string::npos) << gw->log();
}

// A restart whose config changed the channel: the kept connection QUITs first, then the new
// one registers with the new settings (one connection per account at every instant). (A
// re-exec or a stop stops the channel as before: the drain keeps nothing for another process.)
TEST_F(IrcTest, ARestartThatChangesTheChannelQuitsBeforeReconnectingWithTheNewSettings) {
  auto alice = alice_in_ops();
  make_gateway(irc_config(server->port()));
  gw->start();
  ASSERT_TRUE(alice->wait_for([](const std::string& l) { return is_join(l, kBot, "#ops"); }, 15s))
      << alice->transcript() << gw->log();
  auto admin = gw->client({"operator.admin"});
  const json got = admin->request("config.get", json::object());
  // maxHistoryBytes makes the plan a restart; the realname changes the IRC account.
  const json res = admin->request("config.patch",
                                  {{"raw", R"({"gateway":{"limits":{"maxHistoryBytes":4194305}},)"
                                           R"("channels":{"irc":{"realname":"changed"}}})"},
                                   {"baseHash", got["hash"]}});
  ASSERT_EQ(res["plan"]["kind"], "restart") << res.dump();
  ASSERT_TRUE(alice->wait_for(is_bot_quit, 15s)) << alice->transcript() << gw->log();
  ASSERT_TRUE(alice->wait_for([](const std::string& l) { return is_join(l, kBot, "#ops"); }, 15s))
      << "no rejoin after the QUIT\n"
      << alice->transcript() << gw->log();
  EXPECT_TRUE(gw->wait_for_log("the new config changed or removed it", 1s)) << gw->log();
  alice->say("#ops", std::string(kBot) + ": after");
  ASSERT_TRUE(alice->wait_privmsg(kBot, "#ops", "after", 20s)) << alice->transcript() << gw->log();
  alice->send(std::string("WHOIS ") + kBot);
  EXPECT_TRUE(alice->wait_for(
      [](const std::string& l) {
        return l.find(" 311 ") != std::string::npos && l.find(":changed") != std::string::npos;
      },
      10s))
      << alice->transcript();
  EXPECT_EQ(alice->privmsgs(kBot, "#ops"), (std::vector<std::string>{"after"}))
      << alice->transcript();
}

// The processes the gateway handed over to (its log, shared with them, says "handed over to
// pid N"), in order; each is stopped and reaped when the test ends, passed or not.
struct Successors {
  const std::unique_ptr<Gateway>& gw;
  pid_t nth(std::size_t n) const {
    if (!gw) return -1;
    const std::string log = gw->log();
    static const std::regex re("handed over to pid ([0-9]+)");
    std::size_t i = 0;
    for (auto it = std::sregex_iterator(log.begin(), log.end(), re); it != std::sregex_iterator();
         ++it) {
      if (++i == n) return std::stoi((*it)[1]);
    }
    return -1;
  }
  ~Successors() {
    for (std::size_t n = 1; nth(n) > 0; ++n) lifecycle::stop_successor(nth(n));
  }
};

// A re-exec (SIGUSR2, no supervisor) hands the registered connection to the new process: no
// QUIT, no rejoin; what came during the drain and after is answered once, by the new process.
TEST_F(IrcTest, AReexecHandsTheConnectionToTheNextProcess) {
  lifecycle::Subreaper subreaper;
  Successors successors{gw};
  auto alice = alice_in_ops();
  make_gateway(irc_config(server->port(), /*delay_ms=*/1500));
  gw->set_env("DRAWBRIDGE_SUPERVISOR", "none");
  gw->start();
  ASSERT_TRUE(alice->wait_for([](const std::string& l) { return is_join(l, kBot, "#ops"); }, 15s))
      << alice->transcript() << gw->log();
  const std::string to_bot = std::string(kBot) + ": ";
  alice->say("#ops", to_bot + "m0");  // a turn of 1.5 s: the drain waits for it
  ASSERT_TRUE(turn_running(5s)) << gw->log();
  gw->signal(SIGUSR2);
  ASSERT_TRUE(gw->wait_for_log("SIGUSR2", 5s)) << gw->log();
  alice->say(kBot, "m1");  // during the drain: journaled by this process
  ASSERT_TRUE(gw->wait_for_log("handed over to pid", 15s)) << gw->log();
  EXPECT_EQ(gw->wait_exit(10s).code, 0) << gw->log();
  alice->say(kBot, "m2");  // to the new process, over the same connection
  ASSERT_TRUE(alice->wait_privmsg(kBot, "alice", "m2", 20s)) << alice->transcript() << gw->log();
  EXPECT_NE(gw->log().find("took over the connection"), std::string::npos) << gw->log();

  std::map<std::string, int> times;
  for (const auto& t : alice->privmsgs(kBot, "#ops")) {
    if (t.find("restart") != std::string::npos) continue;  // the restart notice
    ++times[t];
  }
  for (const auto& t : alice->privmsgs(kBot, "alice")) ++times[t];
  EXPECT_EQ(times, (std::map<std::string, int>{{"m0", 1}, {"m1", 1}, {"m2", 1}}))
      << alice->transcript();
  EXPECT_EQ(count_lines(*alice, is_bot_quit), 0u) << alice->transcript();
  EXPECT_EQ(count_lines(*alice, [](const std::string& l) { return is_join(l, kBot, "#ops"); }), 1u)
      << alice->transcript();
}

// An update to a binary that says it takes connections over (`drawbridge capabilities`) hands
// the connection over like a re-exec; the same update with a binary that does not (an older
// drawbridge) QUITs first, and the new process reconnects.
TEST_F(IrcTest, AnUpdateHandsTheConnectionOverOnlyToABinaryThatTakesIt) {
  lifecycle::Subreaper subreaper;
  Successors successors{gw};
  auto alice = alice_in_ops();
  make_gateway(irc_config(server->port()));
  gw->set_env("DRAWBRIDGE_SUPERVISOR", "none");
  gw->start();
  ASSERT_TRUE(alice->wait_for([](const std::string& l) { return is_join(l, kBot, "#ops"); }, 15s))
      << alice->transcript() << gw->log();
  const fs::path next = dir.path() / "drawbridge-next";
  fs::copy_file(DRAWBRIDGE_BINARY, next);
  fs::permissions(next, fs::perms::owner_all);
  auto update = [&](const fs::path& binary) {
    auto admin = gw->client({"operator.admin"});
    admin->request("gateway.update", {{"binary", binary.string()}, {"reason", "e2e"}});
  };
  update(next);
  ASSERT_TRUE(gw->wait_for_log("took over the connection", 15s)) << gw->log();
  EXPECT_EQ(gw->wait_exit(10s).code, 0) << gw->log();
  ASSERT_GT(successors.nth(1), 0) << gw->log();
  alice->say(kBot, "after the update");
  ASSERT_TRUE(alice->wait_privmsg(kBot, "alice", "after the update", 20s)) << alice->transcript();
  EXPECT_EQ(count_lines(*alice, is_bot_quit), 0u) << alice->transcript();

  // A binary that does not answer `capabilities` as drawbridge does (an older one; here a
  // script that then runs the real binary): QUIT first, and the new process reconnects.
  const fs::path older = dir.write(
      "drawbridge-older", std::string("#!/bin/sh\n[ \"$1\" = capabilities ] && exit 2\nexec ") +
                              DRAWBRIDGE_BINARY + " \"$@\"\n");
  fs::permissions(older, fs::perms::owner_all);
  update(older);
  ASSERT_TRUE(alice->wait_for(is_bot_quit, 15s)) << alice->transcript() << gw->log();
  ASSERT_TRUE(alice->wait_for([](const std::string& l) { return is_join(l, kBot, "#ops"); }, 15s))
      << alice->transcript() << gw->log();
  EXPECT_TRUE(gw->wait_for_log("does not take connections over", 5s)) << gw->log();
  ASSERT_TRUE(gw->wait_for_log("handed over to pid", 1s)) << gw->log();
  alice->say(kBot, "after the second");
  ASSERT_TRUE(alice->wait_privmsg(kBot, "alice", "after the second", 20s)) << alice->transcript();
}

}  // namespace
}  // namespace drawbridge::e2e
