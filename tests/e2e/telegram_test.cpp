// The Telegram channel against the fake Bot API (tests/fakes/telegram_fake.h) on loopback: the
// real gateway binary polls it, answers allowed senders once, keeps one getUpdates in flight
// per token through restarts and a kill -9, and rides out 409 and 429.

#include <gtest/gtest.h>

#include <csignal>
#include <map>
#include <set>
#include <string>

#include "e2e/harness.h"
#include "e2e/lifecycle_helpers.h"
#include "fakes/telegram_fake.h"

namespace drawbridge::e2e {
namespace {

using testing::TelegramFake;
constexpr const char* kBot = "123456:fake-bot-token";
constexpr std::int64_t kAlice = 42;
constexpr std::int64_t kMallory = 666;

json telegram_config(const TelegramFake& fake) {
  json cfg = lifecycle::restartable(echo_config());
  cfg["channels"]["telegram"] = {{"botTokenEnv", "E2E_BOT_TOKEN"},
                                 {"apiRoot", fake.base_url()},
                                 {"allowFrom", json::array({kAlice})},
                                 {"pollTimeoutSeconds", 5},
                                 // Tests send bursts to one chat: the per-chat limit has a
                                 // test of its own.
                                 {"sendRate", {{"chatPerSecond", 0}}},
                                 // An OpenClaw key drawbridge does not honour: accepted.
                                 {"streamMode", "partial"}};
  return cfg;
}

// Replies the bot sent to `chat`, in order: the echoes, not the restart notices.
std::vector<std::string> sent_to(const TelegramFake& fake, std::int64_t chat) {
  std::vector<std::string> out;
  for (const auto& m : fake.sent(kBot)) {
    if (m.chat_id != chat) continue;
    if (m.text.find("restart") != std::string::npos ||
        m.text.find("stopping") != std::string::npos) {
      continue;  // a notice (channels.*.notices): a turn was running when a restart began
    }
    out.push_back(m.text);
  }
  return out;
}

// How many reply parts the gateway's log says it sent again at a start because the last run
// died before recording them as sent: the one documented window where a part can arrive twice
// (README "Answered once").
int parts_replayed(const std::string& log) {
  int n = 0;
  const std::string needle = " unfinished message(s) and ";
  for (auto at = log.find(needle); at != std::string::npos; at = log.find(needle, at + 1)) {
    n += std::stoi(log.substr(at + needle.size(), 12));
  }
  return n;
}

struct TelegramTest : ::testing::Test {
  TelegramFake fake;
  TempDir dir;
  std::unique_ptr<Gateway> gw;
  void SetUp() override {
    fake.add_bot(kBot, 123456, "drawbridge_e2e_bot");
    gw = std::make_unique<Gateway>(dir, telegram_config(fake));
    gw->set_env("E2E_BOT_TOKEN", kBot);
  }
  // Whatever a test did, the fake never saw two getUpdates of the bot at once.
  void TearDown() override {
    EXPECT_LE(fake.max_concurrent_polls(kBot), 1) << "two getUpdates overlapped";
  }
  bool answered(std::int64_t chat, std::size_t n, Millis timeout = 10s) {
    return fake.wait_for([&] { return sent_to(fake, chat).size() >= n; }, timeout);
  }
};

TEST_F(TelegramTest, AnswersAllowedSendersOnceAndNeverShowsTheToken) {
  gw->start();
  ASSERT_TRUE(fake.wait_for([&] { return fake.poll_waiting(kBot); }, 10s)) << gw->log();
  fake.push_message(kBot, kAlice, kAlice, "hello bot");
  const auto ignored = fake.push_message(kBot, kMallory, kMallory, "let me in");
  fake.push_message(kBot, kAlice, kAlice, "second");
  ASSERT_TRUE(answered(kAlice, 2)) << gw->log();
  EXPECT_EQ(sent_to(fake, kAlice), (std::vector<std::string>{"hello bot", "second"}));
  // Everything up to the last update is confirmed by the next poll, Mallory's too, unanswered.
  ASSERT_TRUE(fake.wait_for([&] { return fake.confirmed_offset(kBot) > ignored + 1; }, 10s));
  EXPECT_TRUE(sent_to(fake, kMallory).empty());
  EXPECT_EQ(fake.max_concurrent_polls(kBot), 1);
  // The history holds the exchange under the chat's session.
  const json h = gw->history("telegram:" + std::to_string(kAlice));
  ASSERT_EQ(h.size(), 4u) << h.dump(1);
  EXPECT_EQ(entry_text(h[0]), "hello bot");
  gw->signal(SIGTERM);
  gw->wait_exit();
  EXPECT_EQ(gw->log().find(kBot), std::string::npos) << "the token is in the log";
  EXPECT_NE(gw->log().find("update " + std::to_string(ignored) + " ignored"), std::string::npos);
}

TEST_F(TelegramTest, RestartsAndAKillNineNeitherLoseNorDoubleAnUpdateNorOverlapPolls) {
  gw->start();
  ASSERT_TRUE(fake.wait_for([&] { return fake.poll_waiting(kBot); }, 10s)) << gw->log();
  int sent = 0;
  auto say = [&](int n) {
    for (int i = 0; i < n; ++i)
      fake.push_message(kBot, kAlice, kAlice, "m" + std::to_string(sent++));
  };
  // Three in-process restarts with messages arriving before, during and after each.
  for (int round = 0; round < 3; ++round) {
    say(5);
    gw->signal(SIGUSR1);
    say(5);
    ASSERT_TRUE(answered(kAlice, static_cast<std::size_t>(sent))) << "round " << round << "\n"
                                                                  << gw->log();
  }
  // Updates queued while the gateway is dead are answered after the next start, and a batch
  // journaled but not yet confirmed to Telegram when the kill lands is not answered twice (the
  // inbox knows its update ids). A reply whose sendMessage was under way at the kill is sent
  // again (README "Answered once": the one window): the log counts those, and only those may
  // arrive twice.
  say(10);
  gw->kill9();
  say(5);
  gw->start();
  ASSERT_TRUE(answered(kAlice, static_cast<std::size_t>(sent), 15s)) << gw->log();
  ASSERT_TRUE(fake.wait_for([&] { return fake.pending_updates(kBot) == 0; }, 15s)) << gw->log();
  ASSERT_EQ(wait_until_idle(*gw, 15s)["store"].value("inboxUnfinished", -1), 0) << gw->log();
  const int replayed = parts_replayed(gw->log());

  const auto texts = sent_to(fake, kAlice);
  std::map<std::string, int> times;
  for (const auto& t : texts) ++times[t];
  std::string all;
  for (const auto& t : texts) all += "[" + t + "] ";
  int doubled = 0;
  for (int i = 0; i < sent; ++i) {
    const int n = times["m" + std::to_string(i)];
    EXPECT_GE(n, 1) << "m" << i << " never answered: " << all;
    EXPECT_LE(n, 2) << "m" << i << " answered " << n << " times: " << all;
    if (n == 2) ++doubled;
  }
  EXPECT_LE(doubled, replayed) << "a reply arrived twice that was not in flight at the kill: "
                               << all << "\n"
                               << gw->log();
  EXPECT_EQ(texts.size(), static_cast<std::size_t>(sent + doubled)) << all;
  EXPECT_EQ(fake.max_concurrent_polls(kBot), 1) << "two getUpdates overlapped";
}

TEST_F(TelegramTest, AConflictAndARateLimitAreRiddenOutAndABlockedChatIsNotRetried) {
  fake.fail_next(kBot, "getUpdates", 409,
                 "Conflict: terminated by other getUpdates request; make sure that only one bot "
                 "instance is running",
                 0, 2);
  fake.fail_next(kBot, "getUpdates", 429, "Too Many Requests: retry after 1", 1);
  gw->start();
  fake.push_message(kBot, kAlice, kAlice, "after the storm");
  ASSERT_TRUE(answered(kAlice, 1, 20s)) << gw->log();
  EXPECT_NE(gw->log().find("getUpdates conflict"), std::string::npos) << gw->log();
  EXPECT_NE(gw->log().find("rate-limited"), std::string::npos) << gw->log();

  // 403 from sendMessage: recorded as failed once, not retried.
  fake.block_chat(kBot, kAlice);
  fake.push_message(kBot, kAlice, kAlice, "into the void");
  ASSERT_TRUE(fake.wait_for([&] { return fake.requests(kBot, "sendMessage") >= 2; }, 10s));
  ASSERT_TRUE(gw->wait_for_log("blocked", 10s)) << gw->log();
  fake.unblock_chat(kBot, kAlice);
  fake.push_message(kBot, kAlice, kAlice, "back again");
  ASSERT_TRUE(answered(kAlice, 2)) << gw->log();
  EXPECT_EQ(fake.requests(kBot, "sendMessage"), 3) << "the blocked send was retried";
  EXPECT_EQ(sent_to(fake, kAlice), (std::vector<std::string>{"after the storm", "back again"}));
  EXPECT_EQ(fake.max_concurrent_polls(kBot), 1);
}

// The telegram channel's entry in /readyz's details (null once it is ready).
json readyz_channel(const Gateway& g) {
  auto body = g.get("/readyz").json_body();
  if (!body.is_object() || !body.contains("details")) return nullptr;
  return body["details"].value("channels", json::object()).value("telegram", json(nullptr));
}

TEST_F(TelegramTest, ASecondGatewayWithTheSameBotRefusesTheChannelUntilTheFirstStops) {
  // Two gateways (two data folders) on one machine: the same runtime folder.
  const auto run_dir = dir.path() / "shared-run";
  fs::create_directories(run_dir);
  gw->set_env("XDG_RUNTIME_DIR", run_dir.string());
  gw->start();
  fake.push_message(kBot, kAlice, kAlice, "one");
  ASSERT_TRUE(answered(kAlice, 1)) << gw->log();

  TempDir other_dir;
  Gateway second(other_dir, telegram_config(fake));
  second.set_env("E2E_BOT_TOKEN", kBot);
  second.set_env("XDG_RUNTIME_DIR", run_dir.string());
  second.set_wait_for_channels(false);
  second.start();
  ASSERT_TRUE(second.wait_for_log("polled by another drawbridge", 10s)) << second.log();
  json ch = readyz_channel(second);
  ASSERT_TRUE(ch.is_object()) << second.get("/readyz").body;
  EXPECT_EQ(ch.value("state", ""), "failed") << ch;
  EXPECT_NE(ch.value("lastError", "").find("polled by another drawbridge"), std::string::npos)
      << ch;
  EXPECT_NE(second.get("/metrics").body.find(
                "drawbridge_channel_state{channel=\"telegram\",state=\"failed\"} 1"),
            std::string::npos);

  fake.push_message(kBot, kAlice, kAlice, "two");
  ASSERT_TRUE(answered(kAlice, 2)) << gw->log();

  // The first one stops: the second takes the bot over (its retry backs off up to 30 s).
  gw->signal(SIGTERM);
  gw->wait_exit(15s);
  ASSERT_TRUE(fake.wait_for([&] { return second.get("/readyz").status == 200; }, 40s))
      << second.log();
  fake.push_message(kBot, kAlice, kAlice, "three");
  ASSERT_TRUE(answered(kAlice, 3)) << second.log();
  EXPECT_EQ(sent_to(fake, kAlice), (std::vector<std::string>{"one", "two", "three"}));
  EXPECT_EQ(fake.max_concurrent_polls(kBot), 1) << "two getUpdates overlapped";
  second.signal(SIGTERM);
  second.wait_exit(15s);
}

TEST_F(TelegramTest, AConflictIsShownAsSuchAfterItsGraceAndEndsWhenAPollSucceeds) {
  json cfg = telegram_config(fake);
  cfg["channels"]["telegram"]["conflictFailAfterSeconds"] = 1;
  gw = std::make_unique<Gateway>(dir, cfg);
  gw->set_env("E2E_BOT_TOKEN", kBot);
  gw->set_wait_for_channels(false);
  // Three 409s back off 1 s then 2 s: about three seconds of conflict.
  fake.fail_next(kBot, "getUpdates", 409,
                 "Conflict: terminated by other getUpdates request; make sure that only one bot "
                 "instance is running",
                 0, 3);
  gw->start();
  json seen;
  ASSERT_TRUE(fake.wait_for(
      [&] {
        seen = readyz_channel(*gw);
        return seen.is_object() && seen.value("state", "") == "conflict";
      },
      10s))
      << seen << gw->log();
  EXPECT_NE(seen.value("lastError", "").find("409"), std::string::npos) << seen;
  const auto metrics = gw->get("/metrics").body;
  EXPECT_NE(metrics.find("drawbridge_channel_state{channel=\"telegram\",state=\"conflict\"} 1"),
            std::string::npos)
      << metrics;
  EXPECT_EQ(metrics.find("drawbridge_channel_state{channel=\"telegram\",state=\"connected\"} 1"),
            std::string::npos);
  // The fake lets the fourth poll through: connected, and /readyz is 200 again.
  ASSERT_TRUE(fake.wait_for([&] { return gw->get("/readyz").status == 200; }, 15s)) << gw->log();
  auto health = gw->client()->request("health", json::object());
  EXPECT_EQ(health["channels"]["telegram"].value("state", ""), "connected") << health;
  EXPECT_EQ(health["channels"]["telegram"].value("connected", false), true) << health;
  fake.push_message(kBot, kAlice, kAlice, "heard");
  ASSERT_TRUE(answered(kAlice, 1)) << gw->log();
}

TEST_F(TelegramTest, AStartConfirmsTheSavedOffsetAtItsFirstPoll) {
  gw->start();
  fake.push_message(kBot, kAlice, kAlice, "a");
  fake.push_message(kBot, kAlice, kAlice, "b");
  ASSERT_TRUE(answered(kAlice, 2)) << gw->log();
  gw->signal(SIGTERM);
  gw->wait_exit(15s);

  // Another API root that has never seen this bot: only the saved offset can tell the first
  // poll where the bot stands.
  TelegramFake fresh;
  fresh.add_bot(kBot, 123456, "drawbridge_e2e_bot");
  json cfg = telegram_config(fake);
  cfg["channels"]["telegram"]["apiRoot"] = fresh.base_url();
  Gateway again(dir, cfg, gw->data_dir());
  again.set_env("E2E_BOT_TOKEN", kBot);
  again.start();
  ASSERT_TRUE(fresh.wait_for([&] { return fresh.poll_waiting(kBot); }, 10s)) << again.log();
  EXPECT_EQ(fresh.confirmed_offset(kBot), fake.confirmed_offset(kBot)) << again.log();
  EXPECT_GT(fresh.confirmed_offset(kBot), 0);
  again.signal(SIGTERM);
  again.wait_exit(15s);
}

// Replies to `chat` as the fake received them (text, reply-to).
std::vector<TelegramFake::SentMessage> messages_to(const TelegramFake& fake, std::int64_t chat) {
  std::vector<TelegramFake::SentMessage> out;
  for (auto& m : fake.sent(kBot)) {
    if (m.chat_id == chat) out.push_back(m);
  }
  return out;
}

TEST_F(TelegramTest, GroupsAreAnsweredWhenAdmittedAndAddressedAndRepliesQuoteTheMessage) {
  constexpr std::int64_t kTeam = -1001, kOther = -1002, kOpenRoom = -1003;
  json cfg = telegram_config(fake);
  cfg["channels"]["telegram"]["groups"] = {{std::to_string(kTeam), json::object()},
                                           {std::to_string(kOpenRoom), {{"requireMention", false}}}};
  gw = std::make_unique<Gateway>(dir, cfg);
  gw->set_env("E2E_BOT_TOKEN", kBot);
  gw->start();
  EXPECT_NE(gw->log().find("channels.telegram.streamMode: not supported"), std::string::npos)
      << gw->log();
  fake.push_message(kBot, kTeam, kMallory, "chatter among people", "supergroup");  // message 1
  fake.push_message(kBot, kTeam, kMallory, "@Drawbridge_E2E_Bot what time is it", "supergroup");
  fake.push_message(kBot, kOther, kAlice, "@drawbridge_e2e_bot hello", "group");
  fake.push_message(kBot, kOpenRoom, kMallory, "no mention needed here", "supergroup");
  fake.push_message(kBot, kAlice, kAlice, "and a private one");
  ASSERT_TRUE(answered(kAlice, 1)) << gw->log();
  ASSERT_TRUE(fake.wait_for([&] { return !messages_to(fake, kTeam).empty() &&
                                         !messages_to(fake, kOpenRoom).empty(); },
                            10s))
      << gw->log();
  ASSERT_TRUE(gw->wait_for_log("not addressed to the bot", 5s)) << gw->log();
  ASSERT_TRUE(gw->wait_for_log("is not in groups", 5s)) << gw->log();
  const auto team = messages_to(fake, kTeam);
  ASSERT_EQ(team.size(), 1u);
  EXPECT_EQ(team[0].text, "what time is it");  // the mention taken out
  EXPECT_EQ(team[0].reply_to_message_id, std::optional<std::int64_t>(2));  // quotes message 2
  EXPECT_TRUE(messages_to(fake, kOther).empty());
  EXPECT_EQ(messages_to(fake, kOpenRoom).at(0).text, "no mention needed here");
  EXPECT_EQ(messages_to(fake, kAlice).at(0).reply_to_message_id,
            std::optional<std::int64_t>(1));
  // The commands are offered in Telegram's menu.
  ASSERT_TRUE(fake.wait_for([&] { return fake.my_commands(kBot).size() == 3; }, 5s));
}

TEST_F(TelegramTest, StopEndsTheRunningTurnStatusAnswersAndTypingShowsMeanwhile) {
  constexpr std::int64_t kRoom = -1005;
  json cfg = telegram_config(fake);
  cfg["agents"]["main"]["delayMs"] = 60000;  // a turn that runs until stopped
  cfg["channels"]["telegram"]["groupPolicy"] = "open";
  cfg["channels"]["telegram"]["groups"] = {{"*", {{"requireMention", false}}}};
  gw = std::make_unique<Gateway>(dir, cfg);
  gw->set_env("E2E_BOT_TOKEN", kBot);
  gw->start();
  fake.push_message(kBot, kAlice, kAlice, "think hard");
  ASSERT_TRUE(fake.wait_for(
      [&] {
        for (const auto& a : fake.chat_actions(kBot)) {
          if (a.chat_id == kAlice && a.action == "typing") return true;
        }
        return false;
      },
      10s))
      << "no typing indicator while the turn ran\n"
      << gw->log();
  fake.push_message(kBot, kAlice, kAlice, "/stop");
  ASSERT_TRUE(answered(kAlice, 1, 10s)) << gw->log();
  EXPECT_EQ(sent_to(fake, kAlice).at(0), "Stopped.");
  fake.push_message(kBot, kAlice, kAlice, "/status@drawbridge_e2e_bot");
  ASSERT_TRUE(answered(kAlice, 2, 10s)) << gw->log();
  EXPECT_NE(sent_to(fake, kAlice).at(1).find("drawbridge is running"), std::string::npos)
      << sent_to(fake, kAlice).at(1);
  // Someone in an open group who is not in allowFrom cannot stop or restart the gateway.
  fake.push_message(kBot, kRoom, kMallory, "/restart", "group");
  ASSERT_TRUE(gw->wait_for_log("/restart from sender 666, who is not in allowFrom", 10s))
      << gw->log();
  EXPECT_EQ(gw->client()->request("status", json::object()).value("generation", 0), 1);
  EXPECT_TRUE(messages_to(fake, kRoom).empty());
  // The stopped turn never answers.
  EXPECT_EQ(sent_to(fake, kAlice).size(), 2u);
}

TEST_F(TelegramTest, RepliesToOneChatAreSpacedAndA429RetryAfterIsWaitedOut) {
  json cfg = telegram_config(fake);
  cfg["channels"]["telegram"].erase("sendRate");  // the defaults: a burst of 3, then 1/s
  gw = std::make_unique<Gateway>(dir, cfg);
  gw->set_env("E2E_BOT_TOKEN", kBot);
  gw->start();
  for (int i = 0; i < 5; ++i) fake.push_message(kBot, kAlice, kAlice, "b" + std::to_string(i));
  ASSERT_TRUE(answered(kAlice, 5, 15s)) << gw->log();
  auto burst = messages_to(fake, kAlice);
  // Three at once, then one a second: the fifth at least ~2 s after the first.
  EXPECT_GE(burst.at(4).time - burst.at(0).time, 1800ms);

  fake.fail_next(kBot, "sendMessage", 429, "Too Many Requests: retry after 2", 2, 1);
  const auto pushed = std::chrono::system_clock::now();
  fake.push_message(kBot, kAlice, kAlice, "after the limit");
  ASSERT_TRUE(answered(kAlice, 6, 15s)) << gw->log();
  // The first try was refused with retry_after 2: the reply came no sooner.
  EXPECT_GE(messages_to(fake, kAlice).back().time - pushed, 2s);
  EXPECT_EQ(messages_to(fake, kAlice).back().text, "after the limit");
}

TEST_F(TelegramTest, ATokenChangedByAConfigPatchMovesThePollerToTheNewBotWithoutOverlap) {
  constexpr const char* kBot2 = "654321:second-fake-token";
  fake.add_bot(kBot2, 654321, "second_bot");
  json cfg = telegram_config(fake);
  cfg["gateway"]["auth"]["token"] = Gateway::kToken;
  gw = std::make_unique<Gateway>(dir, cfg);
  gw->set_env("E2E_BOT_TOKEN", kBot);
  gw->set_env("E2E_BOT_TOKEN_2", kBot2);
  gw->start();
  fake.push_message(kBot, kAlice, kAlice, "to the first bot");
  ASSERT_TRUE(answered(kAlice, 1)) << gw->log();
  ASSERT_TRUE(fake.wait_for([&] { return fake.poll_waiting(kBot); }, 10s));

  // The token's variable changes while the first bot's long poll waits: a hot reload of the
  // channel alone (the secret never enters the file).
  auto c = gw->client({"operator.admin"});
  const json got = c->request("config.get", json::object());
  c->request("config.patch",
             {{"raw", json({{"channels", {{"telegram", {{"botTokenEnv", "E2E_BOT_TOKEN_2"}}}}}})
                          .dump()},
              {"baseHash", got["hash"]}});
  ASSERT_TRUE(fake.wait_for([&] { return fake.poll_waiting(kBot2); }, 10s)) << gw->log();
  EXPECT_EQ(fake.polls_in_flight(kBot), 0) << "the first bot is still polled";
  fake.push_message(kBot2, kAlice, kAlice, "to the second bot");
  fake.push_message(kBot, kAlice, kAlice, "to the first bot, unheard now");
  ASSERT_TRUE(fake.wait_for(
      [&] {
        for (const auto& m : fake.sent(kBot2)) {
          if (m.text == "to the second bot") return true;
        }
        return false;
      },
      10s))
      << gw->log();
  EXPECT_EQ(fake.pending_updates(kBot), 1u);
  EXPECT_EQ(sent_to(fake, kAlice), (std::vector<std::string>{"to the first bot"}));
  EXPECT_EQ(fake.max_concurrent_polls(kBot), 1);
  EXPECT_EQ(fake.max_concurrent_polls(kBot2), 1);
  EXPECT_EQ(gw->log().find(kBot2), std::string::npos) << "the token is in the log";
}

TEST_F(TelegramTest, ADebouncedBurstIsOneTurnAndARestartFlushesItIntoTheJournal) {
  json cfg = telegram_config(fake);
  cfg["messages"]["inbound"]["debounceMs"] = 400;
  gw = std::make_unique<Gateway>(dir, cfg);
  gw->set_env("E2E_BOT_TOKEN", kBot);
  gw->start();
  fake.push_message(kBot, kAlice, kAlice, "part one");
  fake.push_message(kBot, kAlice, kAlice, "part two");
  ASSERT_TRUE(answered(kAlice, 1)) << gw->log();
  auto replies = sent_to(fake, kAlice);
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_NE(replies[0].find("part one"), std::string::npos) << replies[0];
  EXPECT_NE(replies[0].find("part two"), std::string::npos) << replies[0];

  // A restart while a burst waits in the debouncer: handed to its session before the drain,
  // answered once.
  fake.push_message(kBot, kAlice, kAlice, "late three");
  fake.push_message(kBot, kAlice, kAlice, "late four");
  ASSERT_TRUE(fake.wait_for([&] { return fake.pending_updates(kBot) == 0; }, 10s)) << gw->log();
  gw->signal(SIGUSR1);
  ASSERT_TRUE(answered(kAlice, 2, 15s)) << gw->log();
  // The flush answered them during the drain: the restart is still under way.
  ASSERT_TRUE(fake.wait_for([&] { return gw->get("/readyz").status == 200; }, 15s)) << gw->log();
  ASSERT_EQ(wait_until_idle(*gw, 15s)["store"].value("inboxUnfinished", -1), 0) << gw->log();
  std::string all;
  for (const auto& r : sent_to(fake, kAlice)) all += r + "|";
  for (const char* t : {"late three", "late four"}) {
    const auto first = all.find(t);
    EXPECT_NE(first, std::string::npos) << all;
    EXPECT_EQ(all.find(t, first + 1), std::string::npos) << t << " answered twice: " << all;
  }
}

// An update as Telegram POSTs it to a webhook.
std::string update_json(std::int64_t update_id, std::int64_t chat, std::int64_t message_id,
                        const std::string& text) {
  return json({{"update_id", update_id},
               {"message",
                {{"message_id", message_id},
                 {"date", 1700000000},
                 {"chat", {{"id", chat}, {"type", "private"}}},
                 {"from", {{"id", chat}, {"is_bot", false}, {"first_name", "A"}}},
                 {"text", text}}}})
      .dump();
}

TEST_F(TelegramTest, AWebhookIsSetWithItsSecretAndAnsweredOnceAfterTheCommit) {
  constexpr const char* kSecret = "webhook-secret_0123456789";
  json cfg = telegram_config(fake);
  cfg["channels"]["telegram"]["webhookUrl"] = "https://bot.example.org/tg/hook";
  cfg["channels"]["telegram"]["webhookSecretEnv"] = "E2E_WEBHOOK_SECRET";
  gw = std::make_unique<Gateway>(dir, cfg);
  gw->set_env("E2E_BOT_TOKEN", kBot);
  gw->set_env("E2E_WEBHOOK_SECRET", kSecret);
  gw->start();
  EXPECT_EQ(fake.webhook_url(kBot), "https://bot.example.org/tg/hook");
  const std::map<std::string, std::string> right = {{"X-Telegram-Bot-Api-Secret-Token", kSecret}};
  const std::map<std::string, std::string> wrong = {{"X-Telegram-Bot-Api-Secret-Token", "guess"}};
  const auto body = update_json(500, kAlice, 7, "by webhook");
  EXPECT_EQ(http(gw->port(), "POST", "/tg/hook", body, wrong).status, 401);
  EXPECT_EQ(http(gw->port(), "POST", "/tg/hook", body).status, 401);
  EXPECT_EQ(http(gw->port(), "POST", "/tg/hook", "{not json", right).status, 400);
  EXPECT_EQ(http(gw->port(), "POST", "/tg/hook", R"({"update_id":"x"})", right).status, 400);
  // 200 means journaled; Telegram's retry of the same update is 200 too and answered once.
  EXPECT_EQ(http(gw->port(), "POST", "/tg/hook", body, right).status, 200);
  EXPECT_EQ(http(gw->port(), "POST", "/tg/hook", body, right).status, 200);
  ASSERT_TRUE(answered(kAlice, 1)) << gw->log();
  // A sender not in allowFrom: 200 (not wanted again), not answered.
  EXPECT_EQ(
      http(gw->port(), "POST", "/tg/hook", update_json(501, kMallory, 1, "hi"), right).status,
      200);
  EXPECT_EQ(http(gw->port(), "POST", "/tg/hook", update_json(502, kAlice, 8, "second"), right)
                .status,
            200);
  ASSERT_TRUE(answered(kAlice, 2)) << gw->log();
  EXPECT_EQ(sent_to(fake, kAlice), (std::vector<std::string>{"by webhook", "second"}));
  EXPECT_EQ(messages_to(fake, kAlice).at(0).reply_to_message_id, std::optional<std::int64_t>(7));
  EXPECT_EQ(fake.requests(kBot, "getUpdates"), 0) << "a webhook bot polled";
  const auto log = gw->log();
  EXPECT_EQ(log.find(kSecret), std::string::npos) << "the secret is in the log";
  EXPECT_NE(log.find("without the right secret token"), std::string::npos) << log;

  // Back to polling: the webhook Telegram still has is deleted once, then the bot polls.
  gw->signal(SIGTERM);
  gw->wait_exit(15s);
  Gateway polling(dir, telegram_config(fake), gw->data_dir());
  polling.set_env("E2E_BOT_TOKEN", kBot);
  polling.start();
  ASSERT_TRUE(fake.wait_for([&] { return fake.poll_waiting(kBot); }, 15s)) << polling.log();
  EXPECT_EQ(fake.webhook_url(kBot), "");
  fake.push_message(kBot, kAlice, kAlice, "polled again");
  ASSERT_TRUE(answered(kAlice, 3)) << polling.log();
}

// A webhook bot hears nothing until setWebhook has succeeded: it is not ready before, even
// though getMe answered.
TEST_F(TelegramTest, AWebhookBotIsNotReadyUntilItsWebhookIsSet) {
  json cfg = telegram_config(fake);
  cfg["channels"]["telegram"]["webhookUrl"] = "https://bot.example.org/tg/hook";
  fake.fail_next(kBot, "setWebhook", 500, "Internal Server Error", 0, 3);  // 1 + 2 + 4 s
  gw = std::make_unique<Gateway>(dir, cfg);
  gw->set_env("E2E_BOT_TOKEN", kBot);
  gw->set_wait_for_channels(false);
  gw->start();
  ASSERT_TRUE(gw->wait_for_log("connected as @drawbridge_e2e_bot", 10s)) << gw->log();
  ASSERT_TRUE(gw->wait_for_log("setWebhook: 500", 10s)) << gw->log();
  EXPECT_EQ(gw->get("/readyz").status, 503) << "ready while deaf";
  const json health = gw->client()->request("health", json::object());
  EXPECT_EQ(health["channels"]["telegram"].value("state", ""), "connecting") << health;
  ASSERT_TRUE(fake.wait_for([&] { return gw->get("/readyz").status == 200; }, 15s)) << gw->log();
  EXPECT_EQ(fake.webhook_url(kBot), "https://bot.example.org/tg/hook");
}

TEST_F(TelegramTest, AccountsAreBotsOfTheirOwnAndOneReloadsAlone) {
  constexpr const char* kBot2 = "654321:alerts-fake-token";
  constexpr std::int64_t kBob = 43;
  fake.add_bot(kBot2, 654321, "alerts_bot");
  json cfg = telegram_config(fake);
  cfg["gateway"]["auth"]["token"] = Gateway::kToken;
  cfg["channels"]["telegram"].erase("botTokenEnv");
  cfg["channels"]["telegram"]["defaultAccount"] = "main";
  cfg["channels"]["telegram"]["accounts"] = {
      {"main", {{"botTokenEnv", "E2E_BOT_TOKEN"}}},
      {"alerts", {{"botTokenEnv", "E2E_BOT_TOKEN_2"}, {"allowFrom", json::array({kBob})}}}};
  gw = std::make_unique<Gateway>(dir, cfg);
  gw->set_env("E2E_BOT_TOKEN", kBot);
  gw->set_env("E2E_BOT_TOKEN_2", kBot2);
  gw->start();
  auto texts_of = [&](const char* token, std::int64_t chat) {
    std::vector<std::string> out;
    for (const auto& m : fake.sent(token)) {
      if (m.chat_id == chat) out.push_back(m.text);
    }
    return out;
  };
  fake.push_message(kBot, kAlice, kAlice, "to main");
  fake.push_message(kBot2, kAlice, kAlice, "alice to alerts");  // not in alerts' allowFrom
  fake.push_message(kBot2, kBob, kBob, "bob to alerts");
  ASSERT_TRUE(fake.wait_for([&] { return texts_of(kBot2, kBob).size() == 1; }, 10s)) << gw->log();
  ASSERT_TRUE(answered(kAlice, 1)) << gw->log();
  ASSERT_TRUE(gw->wait_for_log("sender 42 is not in allowFrom", 5s)) << gw->log();
  EXPECT_EQ(texts_of(kBot2, kBob), std::vector<std::string>{"bob to alerts"});
  EXPECT_TRUE(texts_of(kBot2, kAlice).empty());
  const json status = gw->client()->request("status", json::object());
  std::set<std::string> ids;
  for (const auto& c : status["channels"]) ids.insert(c.value("id", ""));
  EXPECT_TRUE(ids.count("telegram") && ids.count("telegram:alerts")) << status["channels"];

  // One account's change restarts that account only.
  ASSERT_TRUE(fake.wait_for([&] { return fake.poll_waiting(kBot) && fake.poll_waiting(kBot2); },
                            10s));
  auto c = gw->client({"operator.admin"});
  const json got = c->request("config.get", json::object());
  c->request("config.patch",
             {{"raw", json({{"channels",
                             {{"telegram",
                               {{"accounts", {{"alerts", {{"pollTimeoutSeconds", 7}}}}}}}}}})
                          .dump()},
              {"baseHash", got["hash"]}});
  ASSERT_TRUE(gw->wait_for_log("channel telegram:alerts started (start 2", 10s)) << gw->log();
  EXPECT_EQ(gw->log().find("channel telegram: stopping"), std::string::npos) << gw->log();
  fake.push_message(kBot2, kBob, kBob, "after the reload");
  ASSERT_TRUE(fake.wait_for([&] { return texts_of(kBot2, kBob).size() == 2; }, 10s)) << gw->log();
  EXPECT_EQ(fake.max_concurrent_polls(kBot), 1);
  EXPECT_EQ(fake.max_concurrent_polls(kBot2), 1);
}

TEST_F(TelegramTest, AReloadDuringASendLetsItEndAndSendsItOnce) {
  json cfg = telegram_config(fake);
  cfg["gateway"]["auth"]["token"] = Gateway::kToken;
  gw = std::make_unique<Gateway>(dir, cfg);
  gw->set_env("E2E_BOT_TOKEN", kBot);
  gw->start();
  // Telegram takes the message at once and answers a second later.
  fake.delay_next(kBot, "sendMessage", 1000ms);
  fake.push_message(kBot, kAlice, kAlice, "in flight");
  ASSERT_TRUE(fake.wait_for([&] { return fake.requests(kBot, "sendMessage") >= 1; }, 10s));
  ASSERT_EQ(sent_to(fake, kAlice).size(), 1u);  // delivered; the answer is still on its way
  auto c = gw->client({"operator.admin"});
  const json got = c->request("config.get", json::object());
  c->request("config.patch",
             {{"raw", json({{"channels", {{"telegram", {{"pollTimeoutSeconds", 6}}}}}}).dump()},
              {"baseHash", got["hash"]}});
  ASSERT_TRUE(gw->wait_for_log("channel telegram started (start 2", 10s)) << gw->log();
  fake.push_message(kBot, kAlice, kAlice, "after");
  ASSERT_TRUE(answered(kAlice, 2)) << gw->log();
  ASSERT_EQ(wait_until_idle(*gw, 15s)["store"].value("outboxPending", -1), 0) << gw->log();
  EXPECT_EQ(sent_to(fake, kAlice), (std::vector<std::string>{"in flight", "after"}));
  EXPECT_EQ(gw->log().find("cancelled"), std::string::npos) << gw->log();
  EXPECT_EQ(fake.max_concurrent_polls(kBot), 1);
}

TEST_F(TelegramTest, AMissingTokenStopsTheStartWithAClearError) {
  Gateway bad(dir, telegram_config(fake));  // E2E_BOT_TOKEN not set for this one
  EXPECT_THROW(bad.start(), std::exception);
  EXPECT_NE(bad.log().find("E2E_BOT_TOKEN is not set"), std::string::npos) << bad.log();
}

}  // namespace
}  // namespace drawbridge::e2e
