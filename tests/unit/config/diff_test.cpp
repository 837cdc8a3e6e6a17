#include "config/diff.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "config/config.h"

namespace drawbridge::config {
namespace {

using nlohmann::json;
using Paths = std::vector<std::string>;

Paths diff(const char* before, const char* after) {
  return diff_paths(json::parse(before), json::parse(after));
}

Config parsed(const std::string& text) {
  auto result = parse_config(text);
  EXPECT_TRUE(result.errors.empty()) << result.errors.front().to_string();
  return result.config.value_or(Config{});
}

TEST(ConfigDiff, EqualDocumentsGiveNoPaths) {
  EXPECT_EQ(diff("{}", "{}"), Paths{});
  EXPECT_EQ(diff(R"({"a":{"b":[1,2],"c":"x"},"d":null})", R"({"d":null,"a":{"c":"x","b":[1,2]}})"),
            Paths{});
  EXPECT_EQ(diff("3", "3"), Paths{});
}

TEST(ConfigDiff, ChangedLeafIsItsPath) {
  EXPECT_EQ(
      diff(R"({"gateway":{"port":1,"bind":"lan"}})", R"({"gateway":{"port":2,"bind":"lan"}})"),
      Paths{"gateway.port"});
}

TEST(ConfigDiff, KeyOnOneSideIsOnePathForItsWholeSubtree) {
  EXPECT_EQ(
      diff(R"({"channels":{"local":{}}})",
           R"({"channels":{"local":{},"telegram":{"botToken":"t","notices":{"enabled":false}}}})"),
      Paths{"channels.telegram"});
  EXPECT_EQ(diff(R"({"agents":{"main":{"type":"echo"},"shell":{"type":"exec","command":["x"]}}})",
                 R"({"agents":{"main":{"type":"echo"}}})"),
            Paths{"agents.shell"});
  EXPECT_EQ(diff(R"({})", R"({"logging":{"level":"debug"}})"), Paths{"logging"});
  // A key holding null is still a key.
  EXPECT_EQ(diff(R"({"a":null})", R"({})"), Paths{"a"});
}

TEST(ConfigDiff, NestedChangesAreReportedAtTheirDepth) {
  EXPECT_EQ(diff(R"({"channels":{"local":{"notices":{"enabled":true,"stopping":"a"}}}})",
                 R"({"channels":{"local":{"notices":{"enabled":false,"stopping":"a"}}}})"),
            Paths{"channels.local.notices.enabled"});
  EXPECT_EQ(diff(R"({"a":{"b":{"c":1,"d":2}},"e":1})", R"({"a":{"b":{"c":1,"d":3,"f":4}},"e":1})"),
            (Paths{"a.b.d", "a.b.f"}));
}

TEST(ConfigDiff, ArraysAreComparedWhole) {
  const char* before = R"({"agents":{"shell":{"command":["sh","-c","a"],"type":"exec"}}})";
  EXPECT_EQ(diff(before, R"({"agents":{"shell":{"command":["sh","-c","b"],"type":"exec"}}})"),
            Paths{"agents.shell.command"});
  EXPECT_EQ(diff(before, R"({"agents":{"shell":{"command":["sh","-c","a","x"],"type":"exec"}}})"),
            Paths{"agents.shell.command"});
  EXPECT_EQ(diff(before, R"({"agents":{"shell":{"command":["sh"],"type":"exec"}}})"),
            Paths{"agents.shell.command"});
  // Objects inside arrays are not looked into either.
  EXPECT_EQ(diff(R"({"x":[{"a":1}]})", R"({"x":[{"a":2}]})"), Paths{"x"});
}

TEST(ConfigDiff, ArrayReplacedByObjectIsOnePath) {
  EXPECT_EQ(diff(R"({"x":[1]})", R"({"x":{"0":1}})"), Paths{"x"});
  EXPECT_EQ(diff(R"({"x":{"0":1}})", R"({"x":[1]})"), Paths{"x"});
}

TEST(ConfigDiff, TypeChangeIsOnePath) {
  EXPECT_EQ(diff(R"({"gateway":{"port":18789}})", R"({"gateway":{"port":"18789"}})"),
            Paths{"gateway.port"});
  // An object replaced by a scalar: the object's path, not its former keys.
  EXPECT_EQ(diff(R"({"channels":{"local":{"enabled":true}}})", R"({"channels":7})"),
            Paths{"channels"});
  EXPECT_EQ(diff(R"({"a":1})", R"({"a":null})"), Paths{"a"});
}

TEST(ConfigDiff, NonObjectRootThatDiffersIsTheRoot) {
  EXPECT_EQ(diff("[1]", "[2]"), Paths{""});
  EXPECT_EQ(diff("{}", "[]"), Paths{""});
  EXPECT_EQ(diff("null", R"({"a":1})"), Paths{""});
}

TEST(ConfigDiff, PathsAreSorted) {
  const char* before = R"({"store": {"driver": "a"}, "agents": {"main": {"prefix": "a"}},
                           "gateway": {"port": 1, "bind": "x"}, "a-b": 1})";
  const char* after = R"({"store": {"driver": "b"}, "agents": {"main": {"prefix": "b"}},
                          "gateway": {"port": 2, "bind": "y"}, "a-b": 2, "zeta": 0})";
  EXPECT_EQ(diff(before, after), (Paths{"a-b", "agents.main.prefix", "gateway.bind", "gateway.port",
                                        "store.driver", "zeta"}));
  // Added keys come in order with changed ones, and a path sorts by its whole text.
  EXPECT_EQ(diff(R"({"b":1})", R"({"a":1,"b":2})"), (Paths{"a", "b"}));
  EXPECT_EQ(diff(R"({"a":{"b":1},"a-b":1})", R"({"a":{"b":2},"a-b":2})"), (Paths{"a-b", "a.b"}));
}

TEST(EffectiveJson, DefaultsSpelledOutGiveTheSameDocument) {
  const json empty = effective_json(parsed("{}"));
  EXPECT_EQ(effective_json(parsed(R"({"gateway":{"port":18789}})")), empty);
  EXPECT_EQ(effective_json(parsed(R"({
      "$schema": "https://example.com/drawbridge.schema.json",
      "meta": {"lastWrittenAt": "2024-01-01"},
      "gateway": {"bind": "loopback", "reload": {"mode": "hybrid"}},
      "channels": {"local": {"enabled": true, "notices": {"enabled": true}}},
      "agents": {"default": "main", "main": {"type": "echo", "delayMs": 0}},
      "logging": {"level": "info"}})")),
            empty);
  EXPECT_EQ(diff_paths(empty, effective_json(parsed(R"({"gateway":{"port":18790}})"))),
            Paths{"gateway.port"});
}

TEST(EffectiveJson, HoldsEveryKnownKeyWithItsValue) {
  const json doc = effective_json(parsed("{}"));
  EXPECT_EQ(doc.at("gateway").at("port"), 18789);
  EXPECT_EQ(doc.at("gateway").at("bind"), "loopback");
  EXPECT_EQ(doc.at("gateway").at("auth").at("mode"), "token");
  EXPECT_EQ(doc.at("gateway").at("reload").at("debounceMs"), 300);
  EXPECT_EQ(doc.at("messages").at("queue").at("cap"), 20);
  EXPECT_EQ(doc.at("store").at("driver"), "sqlite");
  EXPECT_EQ(doc.at("logging").at("level"), "info");
  EXPECT_EQ(doc.at("channels").at("local").at("maxMessageChars"), 0);
  EXPECT_EQ(doc.at("channels").at("local").at("notices").at("enabled"), true);
  EXPECT_EQ(doc.at("agents").at("default"), "main");
  EXPECT_EQ(doc.at("agents").at("main"),
            (json{{"type", "echo"}, {"delayMs", 0}, {"chunkChars", 0}, {"prefix", ""}}));
  EXPECT_FALSE(doc.contains("$schema"));
  EXPECT_FALSE(doc.contains("meta"));
}

TEST(EffectiveJson, AgentsHoldOnlyTheKeysOfTheirType) {
  const json doc = effective_json(parsed(R"({"agents":{
      "default": "shell",
      "shell": {"type": "exec", "command": ["cat"]},
      "ai": {"type": "openai", "model": "m"}}})"));
  const json& shell = doc.at("agents").at("shell");
  EXPECT_EQ(shell.at("command"), json::array({"cat"}));
  EXPECT_EQ(shell.at("timeoutMs"), 120000);
  EXPECT_EQ(shell.at("killGraceMs"), 2000);
  EXPECT_EQ(shell.at("env"), json::object());
  EXPECT_FALSE(shell.contains("delayMs"));
  EXPECT_FALSE(shell.contains("baseUrl"));
  const json& ai = doc.at("agents").at("ai");
  EXPECT_EQ(ai.at("model"), "m");
  EXPECT_EQ(ai.at("baseUrl"), "https://api.openai.com/v1");
  EXPECT_FALSE(ai.contains("command"));
  EXPECT_EQ(doc.at("agents").at("default"), "shell");
  EXPECT_FALSE(doc.at("agents").contains("main"));
}

TEST(EffectiveJson, OpenChannelKeepsItsExtraKeys) {
  const json doc = effective_json(parsed(R"({"channels":{"telegram":{
      "botToken": "123:abc", "allowFrom": [1, 2], "polling": {"timeoutS": 30},
      "maxMessageChars": 4096}}})"));
  const json& telegram = doc.at("channels").at("telegram");
  EXPECT_EQ(telegram.at("botToken"), "123:abc");
  EXPECT_EQ(telegram.at("allowFrom"), json::array({1, 2}));
  EXPECT_EQ(telegram.at("polling"), (json{{"timeoutS", 30}}));
  EXPECT_EQ(telegram.at("maxMessageChars"), 4096);
  EXPECT_EQ(telegram.at("enabled"), true);
  EXPECT_EQ(telegram.at("notices").at("stopping"), NoticeSettings{}.stopping);
  EXPECT_FALSE(doc.at("channels").contains("local"));

  EXPECT_EQ(diff_paths(doc, effective_json(parsed(R"({"channels":{"telegram":{
      "botToken": "456:def", "allowFrom": [1, 2], "polling": {"timeoutS": 30},
      "maxMessageChars": 4096}}})"))),
            Paths{"channels.telegram.botToken"});
}

TEST(EffectiveJson, ChangedChannelSettingIsItsPath) {
  const json before = effective_json(parsed("{}"));
  const json after = effective_json(parsed(R"({"channels":{"local":{"maxMessageChars":500}}})"));
  EXPECT_EQ(diff_paths(before, after), Paths{"channels.local.maxMessageChars"});
}

TEST(EffectiveJson, ReflectsValuesSetAfterParsing) {
  // load_config_file applies environment overrides to the struct; the document follows it.
  Config config = parsed("{}");
  config.gateway.port = 9999;
  config.gateway.auth_token = "from-env";
  const json doc = effective_json(config);
  EXPECT_EQ(doc.at("gateway").at("port"), 9999);
  EXPECT_EQ(doc.at("gateway").at("auth").at("token"), "from-env");
  EXPECT_EQ(diff_paths(effective_json(parsed("{}")), doc),
            (Paths{"gateway.auth.token", "gateway.port"}));
}

}  // namespace
}  // namespace drawbridge::config
