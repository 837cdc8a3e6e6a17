#include <gtest/gtest.h>

#include "config/config.h"

namespace drawbridge::config {
namespace {

using nlohmann::json;

TEST(ConfigSchema, DescribesLeavesWithTypeDefaultAndHelp) {
  const json schema = describe_schema();
  EXPECT_EQ(schema["gateway.port"]["type"], "integer");
  EXPECT_EQ(schema["gateway.port"]["default"], 18789);
  EXPECT_EQ(schema["gateway.port"]["minimum"], 1);
  EXPECT_EQ(schema["gateway.port"]["maximum"], 65535);
  EXPECT_FALSE(schema["gateway.port"]["help"].get<std::string>().empty());
  EXPECT_EQ(schema["gateway.reload.mode"]["enum"], json({"hybrid", "off"}));
  EXPECT_EQ(schema["gateway.reload.mode"]["default"], "hybrid");
  EXPECT_EQ(schema["commands.restart"]["type"], "boolean");
  EXPECT_EQ(schema["commands.restart"]["default"], true);
  EXPECT_EQ(schema["store.dataDir"]["default"], "data");
  EXPECT_EQ(schema["gateway"]["type"], "object");
}

TEST(ConfigSchema, DescribesChannelsAndAgents) {
  const json schema = describe_schema();
  EXPECT_EQ(schema["channels"]["default"], json::parse(R"({"local":{"enabled":true}})"));
  EXPECT_EQ(schema["channels.local.enabled"]["default"], true);
  EXPECT_EQ(schema["channels.local.notices"]["type"], "object");
  EXPECT_EQ(schema["channels.local.notices.enabled"]["type"], "boolean");
  EXPECT_EQ(schema["channels.local.notices.enabled"]["default"], true);
  EXPECT_EQ(schema["channels.local.notices.restarting"]["type"], "string");
  EXPECT_EQ(schema["channels.local.notices.restarting"]["default"],
            "The gateway is restarting; it will finish your reply first.");
  EXPECT_EQ(schema["channels.telegram.notices.interrupted"]["default"],
            "Your task was interrupted by a gateway restart. Send a message to continue.");
  EXPECT_EQ(schema["channels.irc.notices.stopping"]["default"],
            "The gateway is shutting down; your reply will come when it is back.");
  EXPECT_FALSE(schema["channels.irc.notices.stopping"]["help"].get<std::string>().empty());
  EXPECT_EQ(schema["channels.telegram"]["additionalKeys"], true);
  EXPECT_EQ(schema["agents.default"]["default"], "main");
  EXPECT_EQ(schema["agents.<id>.type"]["required"], true);
  EXPECT_FALSE(schema["agents.<id>.type"].contains("default"));
  EXPECT_EQ(schema["agents.<id>.command"]["type"], "array");
  EXPECT_EQ(schema["agents.<id>.command"]["agentTypes"], json({"exec"}));
  EXPECT_EQ(schema["agents.<id>.timeoutMs"]["agentTypes"], json({"exec", "openai"}));
  EXPECT_EQ(schema["agents.<id>.timeoutMs"]["default"], 120000);
  EXPECT_EQ(schema["agents.<id>.killGraceMs"]["default"], 2000);
}

// The schema and the validator read one table: every described leaf under a fixed section
// must be accepted by the validator with its own default.
TEST(ConfigSchema, EveryDescribedDefaultValidates) {
  // Held: items() of a temporary would dangle in the range-for (before C++23).
  const json schema = describe_schema();
  std::size_t checked = 0;
  for (const auto& [path, entry] : schema.items()) {
    if (!entry.contains("default") || path.starts_with("agents") || path.starts_with("channels")) {
      continue;
    }
    json doc = json::object();
    std::string p = "/";
    for (char c : path) p += (c == '.') ? '/' : c;
    doc[json::json_pointer(p)] = entry["default"];
    const auto result = validate_config(doc);
    EXPECT_TRUE(result.errors.empty()) << path << ": " << result.errors.front().to_string();
    ++checked;
  }
  EXPECT_GE(checked, 15u);
}

// The same for the rows of every channel kind.
TEST(ConfigSchema, EveryDescribedChannelDefaultValidates) {
  const json schema = describe_schema();
  std::size_t checked = 0;
  for (const auto& [path, entry] : schema.items()) {
    if (!entry.contains("default") || !path.starts_with("channels.")) continue;
    json doc = json::object();
    std::string p = "/";
    for (char c : path) p += (c == '.') ? '/' : c;
    doc[json::json_pointer(p)] = entry["default"];
    const auto result = validate_config(doc);
    EXPECT_TRUE(result.errors.empty()) << path << ": " << result.errors.front().to_string();
    ++checked;
  }
  EXPECT_GE(checked, 12u);  // 3 kinds x (enabled, maxMessageChars, 4 notices)
}

}  // namespace
}  // namespace drawbridge::config
