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
      "enabled": false, "agent": "main", "maxMessageChars": 500,
      "notices": {"restart": {"text": "brb"}}}}})");
  ASSERT_TRUE(result.errors.empty()) << result.errors.front().to_string();
  const ChannelSettings& local = result.config->channels.at("local");
  EXPECT_EQ(local.id, "local");
  EXPECT_FALSE(local.enabled);
  EXPECT_EQ(local.agent, "main");
  EXPECT_EQ(local.max_message_chars, 500);
  EXPECT_EQ(local.raw["notices"]["restart"]["text"], "brb");
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
