#include "runtime/channel_accounts.h"

#include <gtest/gtest.h>

namespace drawbridge::runtime {
namespace {

using nlohmann::json;

TEST(ChannelAccounts, WithoutAccountsTheChannelIsItsOwnAccount) {
  std::string error;
  auto a = channel_accounts("irc", json{{"host", "h"}, {"nick", "n"}, {"accounts", json::object()}},
                            error);
  ASSERT_TRUE(a) << error;
  ASSERT_EQ(a->size(), 1u);
  EXPECT_EQ((*a)[0].channel_id, "irc");
  EXPECT_EQ((*a)[0].name, "");
  EXPECT_EQ((*a)[0].raw, (json{{"host", "h"}, {"nick", "n"}}));
}

TEST(ChannelAccounts, EachAccountIsLaidOverTheTopLevelKeys) {
  std::string error;
  const json raw = {{"host", "irc.example.org"},
                    {"channels", {"#a"}},
                    {"defaultAccount", "work"},
                    {"accounts",
                     {{"work", {{"nick", "workbot"}}},
                      {"home", {{"nick", "homebot"}, {"host", "irc.home.example"}}},
                      {"off", {{"nick", "x"}, {"enabled", false}}}}}};
  auto a = channel_accounts("irc", raw, error);
  ASSERT_TRUE(a) << error;
  ASSERT_EQ(a->size(), 2u) << "a disabled account runs nowhere";
  // Sorted by name (nlohmann's object): home, then work.
  EXPECT_EQ((*a)[0].name, "home");
  EXPECT_EQ((*a)[0].channel_id, "irc:home");
  EXPECT_EQ((*a)[0].raw["host"], "irc.home.example");
  EXPECT_EQ((*a)[0].raw["channels"], json({"#a"}));
  EXPECT_EQ((*a)[1].channel_id, "irc") << "the defaultAccount runs as the channel itself";
  EXPECT_EQ((*a)[1].raw["host"], "irc.example.org");
  EXPECT_EQ((*a)[1].raw["nick"], "workbot");
  EXPECT_FALSE((*a)[1].raw.contains("accounts"));
  EXPECT_FALSE((*a)[1].raw.contains("defaultAccount"));
}

TEST(ChannelAccounts, TheDefaultIsDefaultElseTheFirstByName) {
  std::string error;
  auto a = channel_accounts(
      "telegram", json{{"accounts", {{"b", json::object()}, {"default", json::object()}}}}, error);
  ASSERT_TRUE(a) << error;
  EXPECT_EQ((*a)[0].channel_id, "telegram:b");
  EXPECT_EQ((*a)[1].channel_id, "telegram");
  a = channel_accounts("telegram",
                       json{{"accounts", {{"z", json::object()}, {"c", json::object()}}}}, error);
  ASSERT_TRUE(a) << error;
  EXPECT_EQ((*a)[0].channel_id, "telegram");
  EXPECT_EQ((*a)[1].channel_id, "telegram:z");
}

TEST(ChannelAccounts, ShapesThatCannotBeReadAreRefusedNamingTheKey) {
  std::string error;
  EXPECT_FALSE(channel_accounts("irc", json{{"accounts", {"a"}}}, error));
  EXPECT_EQ(error, "channels.irc.accounts: expected an object keyed by account id");
  EXPECT_FALSE(channel_accounts("irc", json{{"accounts", {{"Bad Name", json::object()}}}}, error));
  EXPECT_NE(error.find("is not an account id"), std::string::npos) << error;
  EXPECT_FALSE(
      channel_accounts("irc", json{{"accounts", {{std::string(65, 'a'), json::object()}}}}, error));
  EXPECT_NE(error.find("is not an account id"), std::string::npos) << error;
  EXPECT_FALSE(channel_accounts("irc", json{{"accounts", {{"a", 1}}}}, error));
  EXPECT_EQ(error, "channels.irc.accounts.a: expected an object");
  EXPECT_FALSE(channel_accounts(
      "irc", json{{"defaultAccount", "nope"}, {"accounts", {{"a", json::object()}}}}, error));
  EXPECT_EQ(error, "channels.irc.defaultAccount: expected the id of one of accounts");
  EXPECT_FALSE(channel_accounts(
      "irc", json{{"accounts", {{"a", {{"accounts", {{"b", json::object()}}}}}}}}, error));
  EXPECT_NE(error.find("cannot have accounts of its own"), std::string::npos) << error;
  EXPECT_FALSE(channel_accounts("irc", json::array(), error));
  EXPECT_EQ(error, "channels.irc: expected an object");
}

}  // namespace
}  // namespace drawbridge::runtime
