#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include "channels/telegram/telegram_channel.h"

// channels.telegram as OpenClaw writes it: where the token comes from, and what is refused
// with an error that names the key and never shows the token.

namespace drawbridge::channels {
namespace {

using nlohmann::json;
constexpr const char* kToken = "123456:ABC-def_ghi";

std::optional<TelegramOptions> parse(const json& raw, std::string& error,
                                     std::map<std::string, std::string> env = {}) {
  return TelegramOptions::parse(raw, error, [&](const std::string& name) {
    auto it = env.find(name);
    return it == env.end() ? std::nullopt : std::optional<std::string>(it->second);
  });
}

TEST(TelegramOptions, TheTokenComesFromTheFileTheEnvironmentOrTelegramBotToken) {
  std::string error;
  auto o = parse({{"botToken", kToken}}, error);
  ASSERT_TRUE(o) << error;
  EXPECT_EQ(o->token, kToken);
  EXPECT_EQ(o->api_root, "https://api.telegram.org");

  o = parse({{"botTokenEnv", "MY_BOT"}}, error, {{"MY_BOT", kToken}});
  ASSERT_TRUE(o) << error;
  EXPECT_EQ(o->token, kToken);

  o = parse(json::object(), error, {{"TELEGRAM_BOT_TOKEN", kToken}});
  ASSERT_TRUE(o) << error;
  EXPECT_EQ(o->token, kToken);

  std::string path = (std::filesystem::temp_directory_path() / "drawbridge-tg-XXXXXX").string();
  const int fd = mkstemp(path.data());
  ASSERT_GE(fd, 0);
  ::close(fd);
  std::ofstream(path) << kToken << "\n";
  o = parse({{"tokenFile", path}}, error);
  std::filesystem::remove(path);
  ASSERT_TRUE(o) << error;
  EXPECT_EQ(o->token, kToken);
}

TEST(TelegramOptions, AMissingOrMalformedTokenIsRefusedWithoutShowingIt) {
  std::string error;
  EXPECT_FALSE(parse(json::object(), error));
  EXPECT_NE(error.find("no bot token"), std::string::npos) << error;

  EXPECT_FALSE(parse({{"botTokenEnv", "UNSET_VAR"}}, error));
  EXPECT_NE(error.find("UNSET_VAR is not set"), std::string::npos) << error;

  const std::string bad = "123/../../evil?x=1";
  EXPECT_FALSE(parse({{"botToken", bad}}, error));
  EXPECT_EQ(error.find(bad), std::string::npos) << error;
  EXPECT_NE(error.find("not of the form"), std::string::npos) << error;

  EXPECT_FALSE(parse({{"botToken", 12345}}, error));
  EXPECT_NE(error.find("botToken: expected a string"), std::string::npos) << error;
}

TEST(TelegramOptions, PoliciesAllowListAndApiRootAreChecked) {
  std::string error;
  auto o = parse({{"botToken", kToken},
                  {"apiRoot", "http://127.0.0.1:8081"},
                  {"dmPolicy", "pairing"},
                  {"allowFrom", json::array({42, "telegram:43", "44"})},
                  {"pollTimeoutSeconds", 5}},
                 error);
  ASSERT_TRUE(o) << error;
  EXPECT_EQ(o->api_root, "http://127.0.0.1:8081");
  EXPECT_EQ(o->dm_policy, "allowlist") << "pairing is answered as an allowlist";
  EXPECT_EQ(o->allow_from, (std::set<std::string>{"42", "43", "44"}));
  EXPECT_EQ(o->poll_timeout_s, 5);

  EXPECT_FALSE(parse({{"botToken", kToken}, {"apiRoot", "ftp://x"}}, error));
  EXPECT_NE(error.find("apiRoot"), std::string::npos);
  EXPECT_FALSE(parse({{"botToken", kToken}, {"apiRoot", "https://a b"}}, error));
  EXPECT_FALSE(parse({{"botToken", kToken}, {"dmPolicy", "everyone"}}, error));
  EXPECT_NE(error.find("dmPolicy"), std::string::npos);
  EXPECT_FALSE(parse({{"botToken", kToken}, {"allowFrom", "42"}}, error));
  EXPECT_FALSE(parse({{"botToken", kToken}, {"allowFrom", json::array({json::object()})}}, error));
  EXPECT_FALSE(parse({{"botToken", kToken}, {"pollTimeoutSeconds", 0}}, error));
  EXPECT_FALSE(parse({{"botToken", kToken}, {"pollTimeoutSeconds", 51}}, error));
}

TEST(TelegramOptions, GroupsReplyModeUpdatesWebhookAndRatesAreChecked) {
  std::string error;
  auto o = parse({{"botToken", kToken},
                  {"groupPolicy", "open"},
                  {"groups", {{"-100123", {{"requireMention", false}, {"skills", 1}}}}},
                  {"replyToMode", "all"},
                  {"allowedUpdates", json::array({"message", "edited_message"})},
                  {"webhookUrl", "https://bot.example.org/hook"},
                  {"sendRate", {{"chatPerSecond", 0}}},
                  {"historyLimit", 20},
                  {"streamMode", "partial"}},
                 error);
  ASSERT_TRUE(o) << error;
  EXPECT_EQ(o->group_policy, "open");
  EXPECT_FALSE(o->groups.at("-100123").require_mention);
  EXPECT_EQ(o->reply_to_mode, "all");
  EXPECT_EQ(o->allowed_updates, json::array({"message", "edited_message"}));
  EXPECT_EQ(o->webhook_path, "/hook");
  EXPECT_EQ(o->chat_per_second, 0);
  EXPECT_EQ(o->bot_per_second, 30);
  // One warning per key not honoured, naming it.
  EXPECT_EQ(o->warnings.size(), 2u) << ::testing::PrintToString(o->warnings);
  EXPECT_NE(o->warnings.at(0).find("groups.-100123.skills"), std::string::npos);
  EXPECT_NE(o->warnings.at(1).find("streamMode"), std::string::npos);

  EXPECT_FALSE(parse({{"botToken", kToken}, {"groups", {{"general", json::object()}}}}, error));
  EXPECT_NE(error.find("groups.general"), std::string::npos) << error;
  EXPECT_FALSE(parse({{"botToken", kToken}, {"replyToMode", "sometimes"}}, error));
  EXPECT_FALSE(parse({{"botToken", kToken}, {"allowedUpdates", json::array({"Message!"})}}, error));
  EXPECT_FALSE(parse({{"botToken", kToken}, {"webhookUrl", "ftp://x/y"}}, error));
  EXPECT_FALSE(parse({{"botToken", kToken},
                      {"webhookUrl", "https://x/y"},
                      {"webhookPath", "/v1/messages"}},
                     error));
  EXPECT_NE(error.find("webhookPath"), std::string::npos);
  EXPECT_FALSE(
      parse({{"botToken", kToken}, {"webhookUrl", "https://x/y"}, {"webhookSecret", "a b"}}, error));
  EXPECT_EQ(error.find("a b"), std::string::npos) << "the secret is quoted: " << error;
  EXPECT_FALSE(parse({{"botToken", kToken}, {"sendRate", {{"chatBurst", 0}}}}, error));
}

}  // namespace
}  // namespace drawbridge::channels
