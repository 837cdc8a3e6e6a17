#include "config/json_schema.h"

#include <gtest/gtest.h>

#include "config/schema.h"

namespace drawbridge::config {
namespace {

using nlohmann::json;

const json& props(const json& node) {
  return node.at("properties");
}

TEST(ConfigJsonSchema, EveryRowOfTheTableHasAHintAndASchemaNode) {
  const auto& doc = json_schema();
  for (const auto& field : schema::config_fields()) {
    const std::string path(field.path);
    EXPECT_TRUE(doc.ui_hints.contains(path)) << path;
    EXPECT_EQ(doc.ui_hints[path]["help"], std::string(field.help)) << path;
    const json* node = &doc.schema;
    for (std::string_view rest = field.path; !rest.empty();) {
      const auto dot = rest.find('.');
      const std::string key(rest.substr(0, dot));
      ASSERT_TRUE(props(*node).contains(key)) << path;
      node = &props(*node)[key];
      rest = dot == std::string_view::npos ? std::string_view{} : rest.substr(dot + 1);
    }
  }
  for (const auto& field : schema::agent_fields()) {
    EXPECT_TRUE(doc.ui_hints.contains("agents.*." + std::string(field.path))) << field.path;
  }
}

TEST(ConfigJsonSchema, TypesRangesEnumsDefaultsAndRequiredComeFromTheTable) {
  const auto& s = json_schema().schema;
  EXPECT_EQ(s["$schema"], "http://json-schema.org/draft-07/schema#");
  EXPECT_EQ(s["additionalProperties"], false);
  const auto& port = props(props(s)["gateway"])["port"];
  EXPECT_EQ(port["type"], "integer");
  EXPECT_EQ(port["minimum"], 1);
  EXPECT_EQ(port["maximum"], 65535);
  EXPECT_EQ(port["default"], Config{}.gateway.port);
  EXPECT_EQ(port["title"], "Port");
  const auto& level = props(props(s)["logging"])["level"];
  EXPECT_EQ(level["enum"], json({"trace", "debug", "info", "warn", "error"}));
  // gateway.bind takes an IP literal too: its list is examples, not an enum.
  const auto& bind = props(props(s)["gateway"])["bind"];
  EXPECT_FALSE(bind.contains("enum"));
  EXPECT_EQ(bind["examples"], json({"loopback", "lan"}));
  // A generated token has no default to show.
  EXPECT_FALSE(props(props(props(s)["gateway"])["auth"])["token"].contains("default"));
  const auto& agent = s["properties"]["agents"]["additionalProperties"];
  EXPECT_EQ(agent["required"], json({"type"}));
  // command is required of exec agents only.
  ASSERT_EQ(agent["allOf"].size(), 1u);
  EXPECT_EQ(agent["allOf"][0]["if"]["properties"]["type"]["const"], "exec");
  EXPECT_EQ(agent["allOf"][0]["then"]["required"], json({"command"}));
  EXPECT_EQ(props(agent)["type"]["enum"], json({"echo", "exec", "openai"}));
  EXPECT_EQ(s["properties"]["agents"]["default"], schema::default_agents());
  const auto& telegram = props(props(s)["channels"])["telegram"];
  EXPECT_EQ(telegram["additionalProperties"], true);
  EXPECT_TRUE(props(telegram).contains("botToken"));
  EXPECT_EQ(props(props(telegram)["notices"])["enabled"]["type"], "boolean");
  EXPECT_EQ(props(props(s)["channels"])["local"]["additionalProperties"], false);
}

TEST(ConfigJsonSchema, SecretsAreSensitiveAndBookkeepingIsAdvanced) {
  const auto& hints = json_schema().ui_hints;
  for (const char* path : {"gateway.auth.token", "agents.*.apiKey", "channels.telegram.botToken",
                           "channels.irc.password", "agents.*.env.*"}) {
    EXPECT_EQ(hints.value(path, json::object()).value("sensitive", false), true) << path;
  }
  EXPECT_FALSE(hints["gateway.port"].contains("sensitive"));
  EXPECT_FALSE(hints["agents.*.apiKeyEnv"].contains("sensitive"))
      << "a variable's name is no secret";
  EXPECT_EQ(hints["meta"]["advanced"], true);
  EXPECT_EQ(hints["gateway.port"]["group"], "Gateway");
  EXPECT_LT(hints["gateway.port"]["order"].get<int>(), hints["logging.level"]["order"].get<int>());
}

TEST(ConfigJsonSchema, LabelsAreWordsOfTheKey) {
  EXPECT_EQ(field_label("maxConnectionsPerPeer"), "Max connections per peer");
  EXPECT_EQ(field_label("debounceMs"), "Debounce (ms)");
  EXPECT_EQ(field_label("baseUrl"), "Base URL");
  EXPECT_EQ(field_label("apiKey"), "API key");
  EXPECT_EQ(field_label("irc"), "IRC");
  EXPECT_EQ(field_label("$schema"), "$schema");
  EXPECT_EQ(field_label(""), "");
}

}  // namespace
}  // namespace drawbridge::config
