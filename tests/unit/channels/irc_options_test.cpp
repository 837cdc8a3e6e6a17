#include <gtest/gtest.h>

#include <map>
#include <string>

#include "channels/irc/irc_channel.h"

// channels.irc as OpenClaw writes it: defaults, where the password comes from, OpenClaw keys
// drawbridge does not honour (accepted, one warning each), and errors that name the key and
// never show the password.

namespace drawbridge::channels {
namespace {

using nlohmann::json;

std::optional<IrcOptions> parse(const json& raw, std::string& error,
                                std::map<std::string, std::string> env = {}) {
  return IrcOptions::parse(raw, error, [&](const std::string& name) {
    auto it = env.find(name);
    return it == env.end() ? std::nullopt : std::optional<std::string>(it->second);
  });
}

json minimal() {
  return {{"host", "irc.example.org"}, {"nick", "drawbot"}};
}

TEST(IrcOptions, DefaultsFollowOpenClaw) {
  std::string error;
  auto o = parse(minimal(), error);
  ASSERT_TRUE(o) << error;
  EXPECT_EQ(o->host, "irc.example.org");
  EXPECT_EQ(o->port, 6667);
  EXPECT_FALSE(o->tls);
  EXPECT_EQ(o->username, "drawbot");
  EXPECT_EQ(o->group_policy, "allowlist");
  EXPECT_EQ(o->dm_policy, "allowlist");
  EXPECT_TRUE(o->warnings.empty());

  json raw = minimal();
  raw["tls"] = true;
  o = parse(raw, error);
  ASSERT_TRUE(o) << error;
  EXPECT_EQ(o->port, 6697) << "the TLS port by default with tls";
  raw["port"] = 7000;
  o = parse(raw, error);
  ASSERT_TRUE(o) << error;
  EXPECT_EQ(o->port, 7000);
}

TEST(IrcOptions, ReadsEveryHonouredKey) {
  std::string error;
  json raw = minimal();
  raw.update({{"username", "db"},
              {"realname", "Draw Bridge"},
              {"channels", json::array({"#ops", "#Dev"})},
              {"groupPolicy", "open"},
              {"groups", {{"#Ops", {{"requireMention", false}}}, {"*", json::object()}}},
              {"dmPolicy", "pairing"},
              {"allowFrom", {"Alice", "irc:bob", "carol!c@host"}},
              {"commandPrefix", "!"},
              {"tlsInsecure", true},
              // The generic keys every channel has (config/schema.cpp).
              {"enabled", true},
              {"agent", "main"},
              {"maxMessageChars", 0},
              {"notices", {{"enabled", false}}}});
  auto o = parse(raw, error);
  ASSERT_TRUE(o) << error;
  EXPECT_EQ(o->username, "db");
  EXPECT_EQ(o->realname, "Draw Bridge");
  EXPECT_EQ(o->channels, (std::vector<std::string>{"#ops", "#Dev"}));
  EXPECT_EQ(o->group_policy, "open");
  ASSERT_EQ(o->groups.count("#ops"), 1u) << "keys are lower-cased";
  EXPECT_FALSE(o->groups.at("#ops").require_mention);
  EXPECT_TRUE(o->groups.at("*").require_mention) << "requireMention defaults to true";
  EXPECT_EQ(o->dm_policy, "allowlist") << "pairing is not implemented: allowFrom only";
  EXPECT_EQ(o->allow_from, (std::set<std::string>{"alice", "bob", "carol!c@host"}));
  EXPECT_EQ(o->command_prefix, "!");
  EXPECT_TRUE(o->tls_insecure);
  EXPECT_TRUE(o->warnings.empty()) << o->warnings.front();
}

TEST(IrcOptions, ThePasswordComesFromTheConfigOrANamedVariable) {
  std::string error;
  json raw = minimal();
  raw["passwordEnv"] = "IRC_PASS";
  auto o = parse(raw, error, {{"IRC_PASS", "s3cret"}});
  ASSERT_TRUE(o) << error;
  EXPECT_EQ(o->password, "s3cret");

  EXPECT_FALSE(parse(raw, error));
  EXPECT_EQ(error, "channels.irc.passwordEnv: the variable IRC_PASS is not set");

  EXPECT_FALSE(parse(raw, error, {{"IRC_PASS", "s3cret\r\nQUIT"}}));
  EXPECT_NE(error.find("channels.irc.passwordEnv"), std::string::npos) << error;
  EXPECT_EQ(error.find("s3cret"), std::string::npos) << "the password is in the error";

  raw = minimal();
  raw["password"] = "in-file\nJOIN #x";
  EXPECT_FALSE(parse(raw, error));
  EXPECT_NE(error.find("channels.irc.password:"), std::string::npos) << error;
  EXPECT_EQ(error.find("in-file"), std::string::npos) << error;
}

TEST(IrcOptions, ErrorsNameTheKey) {
  struct Case {
    json patch;
    std::string error_starts;
  };
  const std::vector<Case> cases = {
      {{{"host", ""}}, "channels.irc.host:"},
      {{{"host", 42}}, "channels.irc.host: expected a string"},
      {{{"nick", "9lives"}}, "channels.irc.nick:"},
      {{{"nick", "a b"}}, "channels.irc.nick:"},
      {{{"port", 0}}, "channels.irc.port: expected an integer in 1..65535"},
      {{{"port", "6667"}}, "channels.irc.port:"},
      {{{"tls", "yes"}}, "channels.irc.tls: expected true or false"},
      {{{"channels", "#ops"}}, "channels.irc.channels: expected an array"},
      {{{"channels", json::array({"#ops", "ops"})}}, "channels.irc.channels[1]:"},
      {{{"groupPolicy", "some"}}, "channels.irc.groupPolicy:"},
      {{{"dmPolicy", "everyone"}}, "channels.irc.dmPolicy:"},
      {{{"groups", {"#ops"}}}, "channels.irc.groups: expected an object"},
      {{{"groups", {{"ops", json::object()}}}}, "channels.irc.groups.ops:"},
      {{{"groups", {{"#ops", {{"requireMention", "no"}}}}}},
       "channels.irc.groups.#ops.requireMention:"},
      {{{"allowFrom", {42}}}, "channels.irc.allowFrom[0]:"},
      {{{"username", "a@b"}}, "channels.irc.username:"},
  };
  for (const auto& c : cases) {
    json raw = minimal();
    raw.update(c.patch);
    std::string error;
    EXPECT_FALSE(parse(raw, error)) << c.patch.dump();
    EXPECT_EQ(error.rfind(c.error_starts, 0), 0u) << c.patch.dump() << " -> " << error;
  }
  std::string error;
  EXPECT_FALSE(parse({{"nick", "drawbot"}}, error));
  EXPECT_EQ(error.rfind("channels.irc.host:", 0), 0u) << error;
  EXPECT_FALSE(parse({{"host", "h"}}, error));
  EXPECT_EQ(error.rfind("channels.irc.nick:", 0), 0u) << error;
}

TEST(IrcOptions, OpenClawKeysNotHonouredAreAcceptedWithOneWarningEach) {
  json raw = minimal();
  raw.update({{"groupAllowFrom", {"alice"}},
              {"nickserv", {{"password", "x"}}},
              {"groups", {{"#ops", {{"allowFrom", {"bob"}}, {"requireMention", true}}}}}});
  std::string error;
  auto o = parse(raw, error);
  ASSERT_TRUE(o) << error;
  ASSERT_EQ(o->warnings.size(), 3u);
  std::string all;
  for (const auto& w : o->warnings) all += w + "\n";
  EXPECT_NE(all.find("channels.irc.groupAllowFrom"), std::string::npos) << all;
  EXPECT_NE(all.find("channels.irc.nickserv"), std::string::npos) << all;
  EXPECT_EQ(all.find("\"x\""), std::string::npos) << "a warning shows a value: " << all;
  EXPECT_NE(all.find("channels.irc.groups.#ops.allowFrom"), std::string::npos) << all;
}

}  // namespace
}  // namespace drawbridge::channels
