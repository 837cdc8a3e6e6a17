#include <gtest/gtest.h>

#include "config/config.h"
#include "unit/config/test_util.h"

namespace drawbridge::config {
namespace {

using testing::errors_of;

TEST(ConfigParse, EmptyObjectGivesAllDefaults) {
  const auto result = parse_config("{}");
  ASSERT_TRUE(result.errors.empty());
  ASSERT_TRUE(result.config);
  const Config& c = *result.config;
  EXPECT_EQ(c.gateway.port, 18789);
  EXPECT_EQ(c.gateway.bind, "loopback");
  EXPECT_EQ(c.gateway.auth_token, "");
  EXPECT_EQ(c.gateway.reload.mode, "hybrid");
  EXPECT_EQ(c.gateway.reload.debounce_ms, 300);
  EXPECT_EQ(c.gateway.reload.deferral_timeout_ms, 300000);
  EXPECT_TRUE(c.commands.restart);
  EXPECT_EQ(c.messages.inbound_debounce_ms, 0);
  EXPECT_EQ(c.messages.queue.mode, "followup");
  EXPECT_EQ(c.messages.queue.cap, 20);
  EXPECT_EQ(c.messages.queue.drop, "summarize");
  ASSERT_EQ(c.channels.size(), 1u);
  const ChannelSettings& local = c.channels.at("local");
  EXPECT_EQ(local.id, "local");
  EXPECT_TRUE(local.enabled);
  EXPECT_EQ(local.agent, "");
  EXPECT_EQ(local.max_message_chars, 0);
  EXPECT_EQ(local.raw, nlohmann::json({{"enabled", true}}));
  EXPECT_EQ(c.default_agent, "main");
  ASSERT_EQ(c.agents.size(), 1u);
  const AgentSettings& main = c.agents.at("main");
  EXPECT_EQ(main.id, "main");
  EXPECT_EQ(main.type, "echo");
  EXPECT_EQ(main.raw, nlohmann::json({{"type", "echo"}}));
  EXPECT_EQ(c.store.driver, "sqlite");
  EXPECT_EQ(c.store.data_dir, "data");
  EXPECT_EQ(c.logging.level, "info");
  EXPECT_EQ(c.raw, nlohmann::json::object());
}

TEST(ConfigParse, CommentsAreAccepted) {
  const auto result = parse_config(R"(
    // line comment
    {
      /* block
         comment */
      "gateway": { "port": 9000 }, // trailing
      "logging": { "level": "debug" }
    })");
  ASSERT_TRUE(result.errors.empty()) << result.errors.front().to_string();
  EXPECT_EQ(result.config->gateway.port, 9000);
  EXPECT_EQ(result.config->logging.level, "debug");
}

TEST(ConfigParse, RawKeepsTheDocumentWithoutDefaults) {
  const auto result = parse_config(R"({ /* c */ "gateway": { "port": 9000 } })");
  ASSERT_TRUE(result.config);
  EXPECT_EQ(result.config->raw, nlohmann::json::parse(R"({"gateway":{"port":9000}})"));
}

TEST(ConfigParse, EveryKeySetIsRead) {
  const auto result = parse_config(R"({
    "$schema": "https://example.org/drawbridge.schema.json",
    "meta": { "lastWrittenBy": "gateway", "anything": [1, 2] },
    "gateway": {
      "port": 1, "bind": "lan",
      "auth": { "mode": "token", "token": "s3cret" },
      "reload": { "mode": "off", "debounceMs": 60000, "deferralTimeoutMs": 0 }
    },
    "commands": { "restart": false },
    "messages": {
      "inbound": { "debounceMs": 600000 },
      "queue": { "mode": "collect", "cap": 1000, "drop": "old" }
    },
    "store": { "driver": "sqlite", "dataDir": "/var/lib/drawbridge" },
    "logging": { "level": "error" }
  })");
  ASSERT_TRUE(result.errors.empty()) << result.errors.front().to_string();
  const Config& c = *result.config;
  EXPECT_EQ(c.gateway.port, 1);
  EXPECT_EQ(c.gateway.bind, "lan");
  EXPECT_EQ(c.gateway.auth_token, "s3cret");
  EXPECT_EQ(c.gateway.reload.mode, "off");
  EXPECT_EQ(c.gateway.reload.debounce_ms, 60000);
  EXPECT_EQ(c.gateway.reload.deferral_timeout_ms, 0);
  EXPECT_FALSE(c.commands.restart);
  EXPECT_EQ(c.messages.inbound_debounce_ms, 600000);
  EXPECT_EQ(c.messages.queue.mode, "collect");
  EXPECT_EQ(c.messages.queue.cap, 1000);
  EXPECT_EQ(c.messages.queue.drop, "old");
  EXPECT_EQ(c.store.data_dir, "/var/lib/drawbridge");
  EXPECT_EQ(c.logging.level, "error");
}

TEST(ConfigParse, IpLiteralsAreAcceptedAsBind) {
  for (const char* bind : {"127.0.0.1", "0.0.0.0", "::1", "::", "fe80::1"}) {
    const auto result = parse_config(std::string(R"({"gateway":{"bind":")") + bind + "\"}}");
    ASSERT_TRUE(result.config) << bind;
    EXPECT_EQ(result.config->gateway.bind, bind);
  }
}

TEST(ConfigParse, SyntaxErrorIsOneErrorWithLineAndColumn) {
  const auto result = parse_config("{\n  \"gateway\": {\n    port: 1\n  }\n}");
  EXPECT_FALSE(result.config);
  ASSERT_EQ(result.errors.size(), 1u);
  EXPECT_EQ(result.errors[0].path, "");
  EXPECT_EQ(result.errors[0].pointer, "");
  EXPECT_TRUE(result.errors[0].message.starts_with(
      "invalid JSON at line 3, column 5: syntax error while parsing object key"))
      << result.errors[0].message;
  EXPECT_TRUE(result.errors[0].to_string().starts_with("(root): invalid JSON at line 3"));
}

TEST(ConfigParse, EmptyTextIsASyntaxError) {
  const auto errors = errors_of("");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_TRUE(errors[0].starts_with("(root): invalid JSON at line 1, column 1:")) << errors[0];
}

TEST(ConfigParse, RootMustBeAnObject) {
  EXPECT_EQ(errors_of("[1, 2]"), std::vector<std::string>{"(root): expected an object, got [1,2]"});
  EXPECT_EQ(errors_of("42"), std::vector<std::string>{"(root): expected an object, got 42"});
}

TEST(ConfigParse, ValidateConfigTakesADocument) {
  const auto result = validate_config(nlohmann::json{{"gateway", {{"port", 8080}}}});
  ASSERT_TRUE(result.config);
  EXPECT_EQ(result.config->gateway.port, 8080);
}

TEST(ConfigParse, InvalidUtf8InABuiltDocumentDoesNotThrow) {
  nlohmann::json doc = {{"logging", {{"level", std::string("\xff\xfe")}}}};
  const auto result = validate_config(doc);
  ASSERT_EQ(result.errors.size(), 1u);
  EXPECT_EQ(result.errors[0].path, "logging.level");
}

}  // namespace
}  // namespace drawbridge::config
