// The IRC channel against a real IRC server (tests/e2e/irc_fixture.h): messages, reloads,
// accounts, TLS and nicks. Restarts are in irc_restart_test.cpp.

#include "e2e/irc_fixture.h"

namespace drawbridge::e2e {
namespace {

TEST_F(IrcTest, AnswersPrivateAndAddressedChannelMessagesOnceAndSplitsLongReplies) {
  auto alice = alice_in_ops();
  make_gateway(irc_config(server->port()));
  gw->start();
  ASSERT_TRUE(alice->wait_for([](const std::string& l) { return is_join(l, kBot, "#ops"); }, 15s))
      << alice->transcript() << gw->log();

  alice->say(kBot, "hello in private");
  ASSERT_TRUE(alice->wait_privmsg(kBot, "alice", "hello in private"))
      << alice->transcript() << gw->log();

  alice->say("#ops", "just chatting, not for the bot");
  alice->say(kBot, "\x01VERSION\x01");  // CTCP: never answered
  alice->say("#ops", std::string(kBot) + ": hi there");
  ASSERT_TRUE(alice->wait_privmsg(kBot, "#ops", "hi there")) << alice->transcript() << gw->log();
  // A marker behind them: once it is answered, nothing sent before it is still on its way.
  alice->say(kBot, "marker");
  ASSERT_TRUE(alice->wait_privmsg(kBot, "alice", "marker")) << alice->transcript();
  EXPECT_EQ(alice->privmsgs(kBot, "#ops"), (std::vector<std::string>{"hi there"}))
      << alice->transcript();
  EXPECT_EQ(alice->privmsgs(kBot, "alice"),
            (std::vector<std::string>{"hello in private", "marker"}))
      << alice->transcript();

  std::string long_text;
  for (int i = 0; i < 160; ++i) {
    long_text += (i ? " " : "") + std::string("w\xc3\xa9rd") + std::to_string(i);
  }
  ASSERT_GT(long_text.size(), 1000u);
  // A reply longer than one IRC line (the echo agent's prefix makes it long): lines of at most
  // 512 bytes as alice receives them (the server's ":drawbot!user@host " included), split at
  // spaces, never inside a UTF-8 character, nothing lost.
  gw->signal(SIGTERM);
  gw->wait_exit();
  json cfg = irc_config(server->port());
  cfg["agents"]["main"]["prefix"] = long_text + " ";
  make_gateway(cfg);
  gw->start();
  ASSERT_TRUE(alice->wait_for([](const std::string& l) { return is_join(l, kBot, "#ops"); }, 15s))
      << alice->transcript() << gw->log();
  alice->say(kBot, "tail");
  ASSERT_TRUE(alice->wait_for(
      [](const std::string& l) {
        return l.rfind(std::string(":") + kBot + "!", 0) == 0 &&
               l.find(" w\xc3\xa9rd159 tail\r\n") != std::string::npos;
      },
      20s))
      << alice->transcript() << gw->log();
  std::string joined;
  std::size_t parts = 0;
  for (const auto& l : alice->lines()) {
    if (l.rfind(std::string(":") + kBot + "!", 0) != 0) continue;
    const std::string mark = " PRIVMSG alice :";
    const auto at = l.find(mark);
    if (at == std::string::npos) continue;
    const std::string text = l.substr(at + mark.size(), l.size() - 2 - at - mark.size());
    if (text == "hello in private" || text == "marker") continue;
    EXPECT_LE(l.size(), 512u) << l;
    joined += (joined.empty() ? "" : " ") + text;
    ++parts;
  }
  EXPECT_GE(parts, 3u);
  EXPECT_EQ(joined, long_text + " tail");

  gw->signal(SIGTERM);
  gw->wait_exit();
  EXPECT_EQ(gw->log().find(kServerPassword), std::string::npos) << "the password is in the log";
  EXPECT_NE(gw->log().find("channels.irc.groupAllowFrom"), std::string::npos) << gw->log();
}

TEST_F(IrcTest, AHotReloadOfTheChannelQuitsAndRejoinsWithTheNewSettings) {
  auto alice = alice_in_ops();
  make_gateway(irc_config(server->port()));
  gw->start();
  ASSERT_TRUE(alice->wait_for([](const std::string& l) { return is_join(l, kBot, "#ops"); }, 15s))
      << alice->transcript() << gw->log();
  alice->say("#ops", "!before");  // no commandPrefix yet: not for the bot
  auto admin = gw->client({"operator.admin"});
  const json got = admin->request("config.get", json::object());
  const json res = admin->request(
      "config.patch",
      {{"raw", R"({"channels":{"irc":{"commandPrefix":"!"}}})"}, {"baseHash", got["hash"]}});
  ASSERT_EQ(res["plan"]["kind"], "hot") << res.dump();
  ASSERT_TRUE(alice->wait_for(
      [](const std::string& l) {
        return l.rfind(std::string(":") + kBot + "!", 0) == 0 &&
               l.find(" QUIT :") != std::string::npos && l.find("restarting") != std::string::npos;
      },
      15s))
      << alice->transcript() << gw->log();
  ASSERT_TRUE(alice->wait_for([](const std::string& l) { return is_join(l, kBot, "#ops"); }, 15s))
      << "no rejoin\n"
      << alice->transcript() << gw->log();
  alice->say("#ops", "!after");
  ASSERT_TRUE(alice->wait_privmsg(kBot, "#ops", "after")) << alice->transcript() << gw->log();
  EXPECT_EQ(alice->privmsgs(kBot, "#ops"), (std::vector<std::string>{"after"}))
      << alice->transcript();
  ASSERT_TRUE(gw->wait_for_log("channel irc started (start 2", 5s)) << gw->log();
  EXPECT_EQ(gw->log().find("channel irc started (start 3"), std::string::npos) << gw->log();
}

// Two accounts of channels.irc: two connections with their own nicks and sessions; a change
// to one account's object restarts that account alone, the other stays connected.
TEST_F(IrcTest, SeveralAccountsEachConnectAnswerAndReloadAlone) {
  auto alice = alice_in_ops();
  const std::string second = std::string(kBot) + "2";
  json cfg = irc_config(server->port());
  cfg["channels"]["irc"]["defaultAccount"] = "main";
  cfg["channels"]["irc"]["accounts"] = {{"main", json::object()}, {"second", {{"nick", second}}}};
  make_gateway(cfg);
  gw->start();
  ASSERT_TRUE(alice->wait_for([](const std::string& l) { return is_join(l, kBot, "#ops"); }, 15s))
      << alice->transcript() << gw->log();
  ASSERT_TRUE(
      alice->wait_for([&](const std::string& l) { return is_join(l, second, "#ops"); }, 15s))
      << alice->transcript() << gw->log();
  alice->say(kBot, "to main");
  alice->say(second, "to second");
  // The two answers come in either order.
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(alice->wait_for(
        [&](const std::string& l) {
          return IrcClient::is_privmsg(l, kBot, "alice", "to main") ||
                 IrcClient::is_privmsg(l, second, "alice", "to second");
        },
        15s))
        << alice->transcript() << gw->log();
  }
  EXPECT_EQ(alice->privmsgs(kBot, "alice"), std::vector<std::string>{"to main"});
  EXPECT_EQ(alice->privmsgs(second, "alice"), std::vector<std::string>{"to second"});
  auto admin = gw->client({"operator.admin"});
  const json health = admin->request("health", json::object());
  EXPECT_EQ(health["channels"]["irc"].value("state", ""), "connected") << health.dump();
  EXPECT_EQ(health["channels"]["irc:second"].value("state", ""), "connected") << health.dump();
  const json hist = admin->request("chat.history", {{"sessionKey", "irc:second:dm:alice"}});
  ASSERT_EQ(hist["messages"].size(), 2u) << "the second account's chat is its own session\n"
                                         << hist.dump();

  const json got = admin->request("config.get", json::object());
  const json res = admin->request(
      "config.patch",
      {{"raw", R"({"channels":{"irc":{"accounts":{"second":{"commandPrefix":"!"}}}}})"},
       {"baseHash", got["hash"]}});
  ASSERT_EQ(res["plan"]["kind"], "hot") << res.dump();
  ASSERT_TRUE(
      alice->wait_for([&](const std::string& l) { return is_join(l, second, "#ops"); }, 15s))
      << "the second account did not rejoin\n"
      << alice->transcript() << gw->log();
  alice->say("#ops", "!after");
  ASSERT_TRUE(alice->wait_privmsg(second, "#ops", "after")) << alice->transcript() << gw->log();
  alice->say(kBot, "main still here");
  ASSERT_TRUE(alice->wait_privmsg(kBot, "alice", "main still here"))
      << alice->transcript() << gw->log();
  EXPECT_TRUE(alice->privmsgs(kBot, "#ops").empty()) << "only the second account has the prefix";
  for (const auto& l : alice->lines()) {
    EXPECT_FALSE(l.rfind(std::string(":") + kBot + "!", 0) == 0 &&
                 l.find(" QUIT ") != std::string::npos)
        << "the default account was restarted: " << l;
  }
  EXPECT_TRUE(gw->wait_for_log("channel irc:second started (start 2", 5s)) << gw->log();
  EXPECT_EQ(gw->log().find("channel irc started (start 2"), std::string::npos) << gw->log();
}

// TLS with the server's certificate checked: a self-signed one is refused unless tlsInsecure.
TEST_F(IrcTest, TlsIsSpokenAndTheCertificateCheckedUnlessTlsInsecure) {
  if (::access("/usr/bin/openssl", X_OK) != 0) GTEST_SKIP() << "no /usr/bin/openssl";
  server.reset();
  server = std::make_unique<Ngircd>(dir, /*tls=*/true);
  auto alice = std::make_unique<IrcClient>(server->port(), "alice");
  json cfg = irc_config(server->port());
  cfg["channels"]["irc"]["port"] = server->tls_port();
  cfg["channels"]["irc"]["tls"] = true;
  cfg["channels"]["irc"]["tlsInsecure"] = true;
  make_gateway(cfg);
  gw->start();
  ASSERT_TRUE(gw->wait_for_log("registered on 127.0.0.1 as drawbot", 15s)) << gw->log();
  alice->say(kBot, "over tls");
  ASSERT_TRUE(alice->wait_privmsg(kBot, "alice", "over tls")) << alice->transcript() << gw->log();

  // The same server checked: its certificate is self-signed (and names localhost, not
  // 127.0.0.1): the handshake fails, the channel retries with back-off.
  auto admin = gw->client({"operator.admin"});
  const json got = admin->request("config.get", json::object());
  const json res = admin->request(
      "config.patch",
      {{"raw", R"({"channels":{"irc":{"tlsInsecure":false}}})"}, {"baseHash", got["hash"]}});
  ASSERT_EQ(res["plan"]["kind"], "hot") << res.dump();
  ASSERT_TRUE(gw->wait_for_log("TLS handshake", 15s)) << gw->log();
  EXPECT_TRUE(gw->wait_for_log("reconnecting in", 5s)) << gw->log();
  EXPECT_EQ(gw->log().find(kServerPassword), std::string::npos) << "the password is in the log";
}

TEST_F(IrcTest, ATakenNickFallsBackToAnUnderscore) {
  IrcClient squatter(server->port(), kBot);  // holds the bot's nick
  json cfg = irc_config(server->port());
  cfg["channels"]["irc"]["dmPolicy"] = "open";
  make_gateway(cfg);
  gw->start();
  const std::string fallback = std::string(kBot) + "_";
  ASSERT_TRUE(gw->wait_for_log("registered on 127.0.0.1 as " + fallback, 15s)) << gw->log();
  squatter.say(fallback, "are you there");
  ASSERT_TRUE(squatter.wait_privmsg(fallback, kBot, "are you there"))
      << squatter.transcript() << gw->log();
}

}  // namespace
}  // namespace drawbridge::e2e
