#include <gtest/gtest.h>

#include "config/config.h"
#include "unit/config/test_util.h"

namespace drawbridge::config {
namespace {

using testing::errors_of;
using Lines = std::vector<std::string>;

TEST(ConfigChannels, PresentChannelsAreTakenAsGiven) {
  const auto result = parse_config(R"({"channels":{"telegram":{"enabled":false}}})");
  ASSERT_TRUE(result.config);
  ASSERT_EQ(result.config->channels.size(), 1u);
  EXPECT_FALSE(result.config->channels.at("telegram").enabled);
  EXPECT_EQ(result.config->channels.count("local"), 0u);
}

TEST(ConfigChannels, LocalChannelIsRead) {
  const auto result = parse_config(R"({"channels":{"local":{
      "enabled": false, "agent": "main", "maxMessageChars": 500}}})");
  ASSERT_TRUE(result.errors.empty()) << result.errors.front().to_string();
  const ChannelSettings& local = result.config->channels.at("local");
  EXPECT_EQ(local.id, "local");
  EXPECT_FALSE(local.enabled);
  EXPECT_EQ(local.agent, "main");
  EXPECT_EQ(local.max_message_chars, 500);
}

TEST(ConfigChannels, NoticesHaveDefaults) {
  const auto result = parse_config("{}");
  ASSERT_TRUE(result.config);
  const NoticeSettings& n = result.config->channels.at("local").notices;
  EXPECT_TRUE(n.enabled);
  EXPECT_EQ(n.restarting, "The gateway is restarting; it will finish your reply first.");
  EXPECT_EQ(n.interrupted,
            "Your task was interrupted by a gateway restart. Send a message to continue.");
  EXPECT_EQ(n.stopping, "The gateway is shutting down; your reply will come when it is back.");
}

TEST(ConfigChannels, NoticesAreReadPerChannelAndKeepDefaultsForWhatIsAbsent) {
  const auto result = parse_config(R"({"channels":{
      "local": {"notices": {"restarting": "brb", "enabled": false}},
      "telegram": {"notices": {"stopping": "going down"}}}})");
  ASSERT_TRUE(result.errors.empty()) << result.errors.front().to_string();
  const NoticeSettings& local = result.config->channels.at("local").notices;
  EXPECT_FALSE(local.enabled);
  EXPECT_EQ(local.restarting, "brb");
  EXPECT_EQ(local.stopping, NoticeSettings{}.stopping);
  const NoticeSettings& telegram = result.config->channels.at("telegram").notices;
  EXPECT_TRUE(telegram.enabled);
  EXPECT_EQ(telegram.stopping, "going down");
  EXPECT_EQ(telegram.restarting, NoticeSettings{}.restarting);
}

TEST(ConfigChannels, NoticesOfTheWrongTypeAreErrorsWithTheirPath) {
  const auto result = parse_config(R"({"channels":{"local":{"notices":{"enabled":"no"}}}})");
  ASSERT_EQ(result.errors.size(), 1u);
  EXPECT_EQ(result.errors[0].pointer, "/channels/local/notices/enabled");
  EXPECT_EQ(result.errors[0].to_string(),
            R"(channels.local.notices.enabled: expected a boolean, got "no")");
  EXPECT_EQ(errors_of(R"({"channels":{"local":{"notices":{"restarting":42,"stopping":""}}}})"),
            (Lines{"channels.local.notices.restarting: expected a non-empty string, got 42",
                   R"(channels.local.notices.stopping: expected a non-empty string, got "")"}));
  EXPECT_EQ(errors_of(R"({"channels":{"local":{"notices":"quiet"}}})"),
            Lines{R"(channels.local.notices: expected an object, got "quiet")"});
}

// The adapters to come accept any key, but not inside a section the schema describes.
TEST(ConfigChannels, UnknownNoticeKeysSuggestTheKnownOneInEveryChannel) {
  EXPECT_EQ(
      errors_of(R"({"channels":{"local":{"notices":{"restart":"brb"}}}})"),
      Lines{
          R"(channels.local.notices.restart: unknown key "restart" in channel "local"; did you mean "restarting"?)"});
  EXPECT_EQ(
      errors_of(R"({"channels":{"telegram":{"notices":{"interupted":"x"}}}})"),
      Lines{
          R"(channels.telegram.notices.interupted: unknown key "interupted" in channel "telegram"; did you mean "interrupted"?)"});
}

TEST(ConfigChannels, LocalRejectsUnknownKeys) {
  EXPECT_EQ(
      errors_of(R"({"channels":{"local":{"enable":true}}})"),
      Lines{
          R"(channels.local.enable: unknown key "enable" in channel "local"; did you mean "enabled"?)"});
}

TEST(ConfigChannels, AdaptersToComeAcceptAnyKeyButCheckTheCommonOnes) {
  const auto result = parse_config(R"({"channels":{
      "telegram": {"enabled": true, "botToken": "123:abc", "allowFrom": [1, 2]},
      "irc": {"server": "irc.example.org", "nick": "db", "maxMessageChars": 400}
    }})");
  ASSERT_TRUE(result.errors.empty()) << result.errors.front().to_string();
  EXPECT_EQ(result.config->channels.at("telegram").raw["botToken"], "123:abc");
  EXPECT_EQ(result.config->channels.at("irc").max_message_chars, 400);
  EXPECT_EQ(errors_of(R"({"channels":{"irc":{"enabled":"yes","maxMessageChars":-1}}})"),
            (Lines{R"(channels.irc.enabled: expected a boolean, got "yes")",
                   "channels.irc.maxMessageChars: expected an integer >= 0, got -1"}));
}

TEST(ConfigChannels, UnknownChannelIdSuggestsAKnownOne) {
  const auto result = parse_config(R"({"channels":{"telegarm":{}}})");
  ASSERT_EQ(result.errors.size(), 1u);
  EXPECT_EQ(result.errors[0].pointer, "/channels/telegarm");
  EXPECT_EQ(result.errors[0].path, "channels.telegarm");
  EXPECT_EQ(result.errors[0].message, R"(unknown channel "telegarm"; did you mean "telegram"?)");
  EXPECT_EQ(errors_of(R"({"channels":{"discord":{}}})"),
            Lines{R"(channels.discord: unknown channel "discord"; known: irc, local, telegram)"});
}

TEST(ConfigChannels, AgentMustBeDefined) {
  const auto result = parse_config(R"({
      "channels": {"local": {"agent": "x"}},
      "agents": {"main": {"type": "echo"}, "shell": {"type": "exec", "command": ["cat"]}}
    })");
  ASSERT_EQ(result.errors.size(), 1u);
  EXPECT_EQ(result.errors[0].pointer, "/channels/local/agent");
  EXPECT_EQ(result.errors[0].to_string(),
            R"(channels.local.agent: unknown agent "x"; defined: main, shell)");
}

TEST(ConfigChannels, AgentMayNameAnAgentWithErrorsWithoutASecondError) {
  EXPECT_EQ(
      errors_of(R"({"channels":{"local":{"agent":"sh"}},
                          "agents":{"sh":{"type":"exec"}}})"),
      Lines{"agents.sh.command: missing required key; expected a non-empty array of strings"});
}

TEST(ConfigChannels, ChannelMustBeAnObject) {
  EXPECT_EQ(errors_of(R"({"channels":{"local":true}})"),
            Lines{"channels.local: expected an object, got true"});
  EXPECT_EQ(errors_of(R"({"channels":"local"})"),
            Lines{R"(channels: expected an object, got "local")"});
}

}  // namespace
}  // namespace drawbridge::config
