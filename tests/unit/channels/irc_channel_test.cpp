#include <gtest/gtest.h>

#include <unistd.h>

#include "unit/channels/irc_channel_fixture.h"

// IrcChannel against a scripted server (irc_channel_fixture.h): the protocol (registration, nick
// fallback, PING, CAP), what reaches the pipeline, flood control, hostile lines and stop.

namespace drawbridge::channels {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;
using pipeline::SendStatus;
using nlohmann::json;
using irc_test::IrcChannelTest;

TEST_F(IrcChannelTest, RegistersJoinsAndAnswersPing) {
  register_bot();
  EXPECT_EQ(channel_->health().state, pipeline::LinkState::connected);
  EXPECT_EQ(channel_->health().detail, "drawbot");
  say("PING :irc.test\r\n");
  EXPECT_TRUE(got("PONG irc.test"));
}

TEST_F(IrcChannelTest, SaslPlainWhenOfferedAndAPasswordIsSet) {
  options_.password = "pw";
  connect();
  ASSERT_TRUE(got("PASS pw"));
  say(":irc.test CAP * LS * :multi-prefix\r\n:irc.test CAP * LS :sasl=PLAIN message-tags\r\n");
  ASSERT_TRUE(got("CAP REQ :sasl message-tags"));
  say(":irc.test CAP * ACK :sasl message-tags\r\n");
  ASSERT_TRUE(got("AUTHENTICATE PLAIN"));
  say("AUTHENTICATE +\r\n");
  ASSERT_TRUE(got("AUTHENTICATE ZHJhd2JvdABkcmF3Ym90AHB3"));  // "drawbot\0drawbot\0pw"
  EXPECT_EQ(count_prefix("CAP END"), 0u) << "registration waits for SASL";
  say(":irc.test 903 drawbot :SASL authentication successful\r\n");
  EXPECT_TRUE(got("CAP END"));
}

TEST_F(IrcChannelTest, ATakenNickTriesUnderscoresThenGivesUp) {
  connect();
  ASSERT_TRUE(got("NICK drawbot"));
  for (const char* next :
       {"NICK drawbot_", "NICK drawbot__", "NICK drawbot___", "NICK drawbot____"}) {
    say(":irc.test 433 * x :Nickname already in use\r\n");
    ASSERT_TRUE(got(next));
  }
  say(":irc.test 433 * x :Nickname already in use\r\n");
  ASSERT_TRUE(spin([&] { return server_eof_; }));
  EXPECT_EQ(channel_->health().state, pipeline::LinkState::failed);
  EXPECT_NE(channel_->health().last_error.find("no nick available"), std::string::npos);
  EXPECT_EQ(channel_->health().last_error_at_ms, clock_.wall_ms());
  EXPECT_FALSE(channel_->ready());
}

// Registered as drawbot_ because drawbot was still held (our own previous connection, which the
// server had not closed yet after a restart): the bot asks for its nick again every 10 s, and
// stops once the server confirms it (or after 6 attempts).
TEST_F(IrcChannelTest, AFallbackNickAsksForOursAgainUntilTheServerGivesIt) {
  connect();
  say(":irc.test 433 * drawbot :Nickname already in use\r\n");
  ASSERT_TRUE(got("NICK drawbot_"));
  say(":irc.test CAP * LS :multi-prefix\r\n:irc.test 001 drawbot_ :Welcome\r\n");
  ASSERT_TRUE(got("JOIN #ops"));
  const auto asked = [&] { return count_prefix("NICK drawbot") - count_prefix("NICK drawbot_"); };
  ASSERT_EQ(asked(), 1u);  // the first one, at registration
  executor_.advance(1999ms);
  io_.restart();
  io_.poll();
  EXPECT_EQ(asked(), 1u) << "asked again before 2 s";
  executor_.advance(1ms);
  ASSERT_TRUE(spin([&] { return asked() == 2u; }));
  say(":irc.test 433 drawbot_ drawbot :Nickname already in use\r\n");  // still held
  executor_.advance(9999ms);
  io_.restart();
  io_.poll();
  EXPECT_EQ(asked(), 2u) << "asked again before 10 s";
  executor_.advance(1ms);
  ASSERT_TRUE(spin([&] { return asked() == 3u; }));
  say(":drawbot_!~drawbot@127.0.0.1 NICK :drawbot\r\n");  // now it is free
  ASSERT_TRUE(spin([&] { return channel_->health().detail == "drawbot"; }));
  executor_.advance(60000ms);
  io_.restart();
  io_.poll();
  EXPECT_EQ(asked(), 3u) << "asked again after the server gave it";
}

TEST_F(IrcChannelTest, TheWelcomeNickIsTheOneInUse) {
  connect();
  say(":irc.test 433 * drawbot :Nickname already in use\r\n");
  ASSERT_TRUE(got("NICK drawbot_"));
  say(":irc.test 001 drawbot_ :Welcome\r\n");
  ASSERT_TRUE(got("JOIN #ops"));
  EXPECT_EQ(channel_->nick(), "drawbot_");
  EXPECT_EQ(channel_->health().detail, "drawbot_");
}

TEST_F(IrcChannelTest, PrivateAndAddressedMessagesReachThePipelineWithTheirSessions) {
  register_bot();
  say(":Alice!a@host PRIVMSG drawbot :hello\r\n"
      ":alice!a@host PRIVMSG #Ops :just talking\r\n"
      ":alice!a@host PRIVMSG #Ops :DrawBot, hi there\r\n"
      ":alice!a@host PRIVMSG drawbot :\x01VERSION\x01\r\n"
      ":alice!a@host NOTICE drawbot :a notice\r\n"
      ":irc.test PRIVMSG drawbot :from a server\r\n"
      ":alice!a@host PRIVMSG someoneelse :not ours\r\n");
  ASSERT_TRUE(spin([&] { return agent_.calls.size() >= 2; }));
  say("PING :sync\r\n");
  ASSERT_TRUE(got("PONG sync"));  // every line before it was handled
  executor_.run_ready();
  ASSERT_EQ(agent_.calls.size(), 2u);
  const auto& dm = agent_.calls[0]->request;
  EXPECT_EQ(dm.session_key, "irc:dm:alice");
  EXPECT_EQ(dm.chat_id, "Alice");
  EXPECT_EQ(dm.text, "hello");
  const auto& chan = agent_.calls[1]->request;
  EXPECT_EQ(chan.session_key, "irc:#ops");
  EXPECT_EQ(chan.chat_id, "#Ops");
  EXPECT_EQ(chan.text, "hi there");
  EXPECT_EQ(chan.sender, "alice");
}

TEST_F(IrcChannelTest, AMessageIdTagIsTheExternalIdSoAReplayIsAcceptedOnce) {
  connect();
  say(":irc.test CAP * LS :message-tags\r\n");
  ASSERT_TRUE(got("CAP REQ message-tags"));
  say(":irc.test CAP * ACK :message-tags\r\n");
  ASSERT_TRUE(got("CAP END"));
  say(":irc.test 001 drawbot :Welcome\r\n");
  ASSERT_TRUE(got("JOIN #ops"));
  // A bouncer replaying its history after a reconnect: the same msgid twice.
  say("@msgid=m-1 :alice!a@host PRIVMSG drawbot :once\r\n"
      "@msgid=m-1 :alice!a@host PRIVMSG drawbot :once\r\n"
      "@msgid=m-2 :alice!a@host PRIVMSG #ops :drawbot: other\r\n"
      "PING :sync\r\n");
  ASSERT_TRUE(got("PONG sync"));
  executor_.run_ready();
  std::vector<std::string> texts;
  for (const auto& c : agent_.calls) texts.push_back(c->request.text);
  EXPECT_EQ(texts, (std::vector<std::string>{"once", "other"}));
}

TEST_F(IrcChannelTest, WithoutMessageIdsEachMessageIsNew) {
  register_bot();
  say(":alice!a@host PRIVMSG drawbot :same text\r\n"
      ":alice!a@host PRIVMSG #ops :drawbot: same text\r\n"
      "PING :sync\r\n");
  ASSERT_TRUE(got("PONG sync"));
  executor_.run_ready();
  EXPECT_EQ(agent_.calls.size(), 2u);
}

TEST_F(IrcChannelTest, PoliciesDecideWhoIsAnswered) {
  options_.group_policy = "allowlist";
  options_.groups["#quiet"] = {/*require_mention=*/false};
  options_.dm_policy = "allowlist";
  options_.allow_from = {"bob"};
  options_.command_prefix = "!";
  register_bot();
  say(":alice!a@host PRIVMSG drawbot :not allowed\r\n"
      ":bob!b@host PRIVMSG drawbot :allowed\r\n"
      ":alice!a@host PRIVMSG #ops :drawbot: not in groups\r\n"
      ":alice!a@host PRIVMSG #quiet :no mention needed\r\n"
      ":alice!a@host PRIVMSG #quiet :!prefixed\r\n"
      "PING :sync\r\n");
  ASSERT_TRUE(got("PONG sync"));
  executor_.run_ready();
  for (int i = 0; i < 4; ++i) {  // one turn per session: #quiet's second waits for its first
    agent_.complete_all_open();
    executor_.run_ready();
  }
  std::vector<std::string> texts;
  for (const auto& c : agent_.calls) texts.push_back(c->request.text);
  EXPECT_EQ(texts, (std::vector<std::string>{"allowed", "no mention needed", "prefixed"}));
}

TEST_F(IrcChannelTest, FloodControlSendsFiveLinesThenOneEvery500ms) {
  register_bot();
  const std::size_t before = count_prefix("PRIVMSG");
  std::vector<SendStatus> statuses;
  pipeline::OutboundPart part;
  part.chat_id = "#ops";
  part.text = "l1\nl2\nl3\nl4\nl5\nl6\nl7\nl8";
  channel_->send(part, [&](SendStatus s, std::string) { statuses.push_back(s); });
  ASSERT_TRUE(spin([&] { return count_prefix("PRIVMSG") == before + 5; }));
  EXPECT_TRUE(statuses.empty()) << "sent before its last line was written";
  executor_.advance(500ms);
  ASSERT_TRUE(spin([&] { return count_prefix("PRIVMSG") == before + 6; }));
  executor_.advance(999ms);
  ASSERT_TRUE(spin([&] { return count_prefix("PRIVMSG") == before + 7; }));
  executor_.advance(1ms);
  ASSERT_TRUE(spin([&] { return statuses.size() == 1 && count_prefix("PRIVMSG") == before + 8; }));
  EXPECT_EQ(statuses[0], SendStatus::sent);
  EXPECT_EQ(received_.back(), "PRIVMSG #ops :l8");
}

TEST_F(IrcChannelTest, SendSaysRetryWhenNotConnectedAndFailedForABadTarget) {
  make_channel();
  std::vector<SendStatus> statuses;
  pipeline::OutboundPart part;
  part.chat_id = "alice";
  part.text = "hi";
  channel_->send(part, [&](SendStatus s, std::string) { statuses.push_back(s); });
  part.chat_id = "#ops\r\nQUIT";
  channel_->send(part, [&](SendStatus s, std::string) { statuses.push_back(s); });
  executor_.run_ready();
  EXPECT_EQ(statuses, (std::vector<SendStatus>{SendStatus::retry, SendStatus::failed}));
}

TEST_F(IrcChannelTest, HostileLinesCostNothing) {
  register_bot();
  say(std::string(20000, 'x'));  // no line end: dropped up to the next one
  say("\r\n");
  say(
      std::string(":alice!a@h PRIVMSG drawbot :a\0b\xff\xfe"
                  "c\r\n",
                  36));
  say(":\r\n@\r\n: PRIVMSG\r\nPRIVMSG\r\n:x!y@z PRIVMSG drawbot\r\n:!@ PRIVMSG drawbot :x\r\n");
  say("PING :still-here\r\n");
  ASSERT_TRUE(got("PONG still-here"));
  executor_.run_ready();
  ASSERT_EQ(agent_.calls.size(), 1u);
  EXPECT_EQ(agent_.calls[0]->request.text,
            "ab\xc3\xbf\xc3\xbe"
            "c");
  EXPECT_EQ(channel_->health().state, pipeline::LinkState::connected);
}

TEST_F(IrcChannelTest, StopQuitsWaitsBoundedForTheServerAndReportsDoneOnce) {
  register_bot();
  int done = 0;
  channel_->stop([&] { ++done; });
  ASSERT_TRUE(got("QUIT :restarting"));
  say(":alice!a@host PRIVMSG drawbot :after the stop\r\nPING :x\r\n");
  ASSERT_TRUE(got("PONG x"));  // the line before it was read
  executor_.run_ready();
  EXPECT_EQ(done, 0) << "done before the server closed or the bound";
  executor_.advance(2000ms);  // the server never closes: the bound ends the stop
  EXPECT_EQ(done, 1);
  ASSERT_TRUE(spin([&] { return server_eof_; }));
  executor_.run_ready();
  EXPECT_EQ(done, 1);
  // Relayed before the server read the QUIT: journaled and answered, not dropped.
  ASSERT_EQ(agent_.calls.size(), 1u);
  EXPECT_EQ(agent_.calls[0]->request.text, "after the stop");
  EXPECT_EQ(channel_->health().state, pipeline::LinkState::stopped);
  EXPECT_EQ(executor_.pending_timers(), 0u);
}

TEST_F(IrcChannelTest, StopEndsWhenTheServerClosesAfterQuit) {
  register_bot();
  int done = 0;
  channel_->stop([&] { ++done; });
  ASSERT_TRUE(got("QUIT :restarting"));
  say("ERROR :Closing connection\r\n");
  server_.close();
  ASSERT_TRUE(spin([&] { return done == 1; }));
  EXPECT_EQ(channel_->health().last_error, "") << "the server's goodbye is no error";
  executor_.advance(5000ms);
  EXPECT_EQ(done, 1);
}

// ngircd handles three of a client's commands at a time and holds the rest for a second or two:
// the first write carries at most three (PASS, CAP LS, NICK); USER goes with the answer to CAP LS.
TEST_F(IrcChannelTest, WithAPasswordUserWaitsForTheCapListSoTheFirstWriteHasThreeCommands) {
  options_.password = "pw";
  connect();
  ASSERT_TRUE(got("PASS pw"));
  ASSERT_TRUE(got("CAP LS 302"));
  ASSERT_TRUE(got("NICK drawbot"));
  io_.restart();
  io_.poll();
  EXPECT_EQ(count_prefix("USER "), 0u) << "four commands in the first write";
  say(":irc.test CAP * LS :multi-prefix\r\n");
  ASSERT_TRUE(got("USER drawbot 0 * drawbridge"));
  ASSERT_TRUE(got("CAP END"));
  executor_.advance(5000ms);  // the fallback timer is gone: USER is sent once
  io_.restart();
  io_.poll();
  EXPECT_EQ(count_prefix("USER "), 1u);
}

TEST_F(IrcChannelTest, WithAPasswordAServerWithoutCapStillGetsUser) {
  options_.password = "pw";
  connect();
  ASSERT_TRUE(got("NICK drawbot"));
  say(":irc.test 421 * CAP :Unknown command\r\n");
  ASSERT_TRUE(got("USER drawbot 0 * drawbridge"));
}

TEST_F(IrcChannelTest, WithAPasswordAServerThatIgnoresCapGetsUserAfterASecond) {
  options_.password = "pw";
  connect();
  ASSERT_TRUE(got("NICK drawbot"));
  executor_.advance(999ms);
  io_.restart();
  io_.poll();
  EXPECT_EQ(count_prefix("USER "), 0u);
  executor_.advance(1ms);
  ASSERT_TRUE(got("USER drawbot 0 * drawbridge"));
}

// A connection that never registered has written no reply: its stop does not QUIT and wait for
// a server that may hold the QUIT as long as the registration.
TEST_F(IrcChannelTest, AStopBeforeRegistrationClosesAtOnce) {
  connect();
  ASSERT_TRUE(got("NICK drawbot"));
  int done = 0;
  channel_->stop([&] { ++done; });
  ASSERT_TRUE(spin([&] { return done == 1 && server_eof_; }));
  EXPECT_EQ(count_prefix("QUIT"), 0u);
  EXPECT_EQ(executor_.pending_timers(), 0u);
}

TEST_F(IrcChannelTest, ALostConnectionIsRetriedWithBackoff) {
  register_bot();
  server_.close();
  ASSERT_TRUE(spin([&] { return !channel_->ready(); }));
  EXPECT_EQ(channel_->health().state, pipeline::LinkState::failed);
  tcp::socket next(io_);
  bool accepted = false;
  acceptor_.async_accept(next, [&](boost::system::error_code ec) { accepted = !ec; });
  executor_.advance(999ms);
  io_.restart();
  io_.poll();
  EXPECT_FALSE(accepted) << "reconnected before the first back-off (1 s)";
  executor_.advance(1ms);
  EXPECT_TRUE(spin([&] { return accepted; }));
}

// A re-exec hands the registered connection to the next process (docs/DECISIONS.md "An IRC
// connection outlives a restart"): what was read of an unfinished line and the lines flood
// control still held travel with it; the next channel neither registers nor QUITs.
TEST_F(IrcChannelTest, AReleasedConnectionIsTakenOverWithoutQuitOrReconnect) {
  register_bot();
  pipeline::OutboundPart part;
  part.chat_id = "#ops";
  part.text = "l1\nl2\nl3\nl4\nl5\nl6\nl7";
  std::vector<SendStatus> statuses;
  channel_->send(part, [&](SendStatus s, std::string) { statuses.push_back(s); });
  ASSERT_TRUE(got("PRIVMSG #ops :l5"));
  say(":alice!a@host PRIVMSG drawbot :one\r\nPING :sync\r\n:bob!b@host PRIVMSG drawbot :tw");
  ASSERT_TRUE(got("PONG sync"));
  std::optional<IrcHandover> handed;
  ASSERT_TRUE(release(handed));
  ASSERT_TRUE(handed);
  EXPECT_EQ(channel_->health().state, pipeline::LinkState::stopped);
  EXPECT_FALSE(channel_->ready());
  // The ending process's channel goes away: the connection stays up.
  pipeline_->remove_channel("irc");
  channel_.reset();
  auto next = std::make_unique<IrcChannel>("irc", options_, io_, executor_, clock_, *pipeline_);
  pipeline_->add_channel(next.get(), &agent_, 0);
  std::string error;
  const int fd = handed->fd;
  ASSERT_TRUE(next->adopt(*handed, error)) << error;
  EXPECT_EQ(handed->fd, -1) << "fd " << fd << " is the channel's now";
  next->start();
  EXPECT_TRUE(next->ready());
  EXPECT_EQ(next->nick(), "drawbot");
  say("o\r\nPING :sync2\r\n");
  ASSERT_TRUE(got("PONG sync2"));
  executor_.run_ready();
  std::vector<std::string> texts;
  for (const auto& c : agent_.calls) texts.push_back(c->request.text);
  EXPECT_EQ(texts, (std::vector<std::string>{"one", "two"}));
  // The two lines flood control held go out from the next channel, at its pace.
  executor_.advance(1000ms);
  ASSERT_TRUE(got("PRIVMSG #ops :l7"));
  EXPECT_EQ(count_prefix("PRIVMSG #ops :l6"), 1u);
  EXPECT_EQ(count_prefix("QUIT"), 0u);
  EXPECT_EQ(count_prefix("NICK"), 1u) << "registered again";
  EXPECT_FALSE(server_eof_);
  executor_.run_ready();
  EXPECT_EQ(statuses, (std::vector<SendStatus>{SendStatus::sent}));
  channel_ = std::move(next);
}

TEST_F(IrcChannelTest, OnlyARegisteredPlainConnectionIsReleased) {
  connect();  // not registered
  std::optional<IrcHandover> handed;
  ASSERT_TRUE(release(handed));
  EXPECT_FALSE(handed);
}

TEST_F(IrcChannelTest, AdoptRefusesAStateOrSocketThatDoesNotHoldUp) {
  const json good = {{"v", 1},         {"host", "h"},        {"port", 6667},
                     {"nick", "drawbot"}, {"ownMask", ""},   {"capTags", false},
                     {"sasl", false},  {"epochMs", 1},       {"seq", 0},
                     {"rbuf", ""},     {"skipping", false},  {"tokens", 5},
                     {"regainAttempts", 0}, {"urgent", json::array()}, {"queue", json::array()}};
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  std::string error;
  {
    make_channel();
    IrcHandover h{fds[0], good};
    EXPECT_FALSE(channel_->adopt(h, error));
    EXPECT_NE(error.find("not a connected TCP socket"), std::string::npos) << error;
    EXPECT_EQ(h.fd, fds[0]) << "a refused fd stays the caller's";
  }
  auto with = [&](const char* key, json value) {
    json s = good;
    s[key] = std::move(value);
    return s;
  };
  for (const json& bad :
       {json::object(), with("v", 2), with("v", "1"), with("nick", "a b"), with("nick", ""),
        with("seq", -1), with("tokens", "5"), with("rbuf", "zz"), with("rbuf", "abc"),
        with("queue", json::array({"0d0a"})), with("urgent", json::array({7})),
        with("queue", json(std::vector<std::string>(401, "41")))}) {
    make_channel();
    IrcHandover h{fds[0], bad};
    error.clear();
    EXPECT_FALSE(channel_->adopt(h, error)) << bad.dump();
    EXPECT_NE(error.find("not usable"), std::string::npos) << bad.dump() << ": " << error;
  }
  ::close(fds[0]);
  ::close(fds[1]);
}

}  // namespace
}  // namespace drawbridge::channels
