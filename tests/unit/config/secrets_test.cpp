#include "config/secrets.h"

#include <gtest/gtest.h>

namespace drawbridge::config {
namespace {

using nlohmann::json;
using Strings = std::vector<std::string>;

TEST(SecretValues, EverythingRedactHidesAndNothingElse) {
  const json doc = {
      {"gateway", {{"port", 18789}, {"auth", {{"token", "cfg-token-SECRET-1"}}}}},
      {"agents",
       {{"ai", {{"type", "openai"}, {"apiKey", "sk-live-123"}, {"model", "gpt"}}},
        {"sh", {{"type", "exec"}, {"env", {{"API_URL", "https://x"}, {"DEBUG", true}}}}}}},
      {"channels", {{"telegram", {{"botToken", 987654321987654321LL}}}}}};
  EXPECT_EQ(secret_values(doc),
            (Strings{"987654321987654321", "cfg-token-SECRET-1", "https://x", "sk-live-123"}));
  EXPECT_TRUE(secret_values(json::object()).empty());
  EXPECT_TRUE(secret_values(json("token")).empty());
}

TEST(SecretValues, OfALoadedConfigIncludeTheTokenTheEnvironmentSet) {
  auto parsed = parse_config(R"({"agents": {"main": {"type": "echo"}}})");
  ASSERT_TRUE(parsed.config);
  Config cfg = *parsed.config;
  cfg.gateway.auth_token = "env-token-0123456789";
  EXPECT_EQ(secret_values(cfg), Strings{"env-token-0123456789"});
}

TEST(SecretValuesInText, ValidJsonWithComments) {
  EXPECT_EQ(secret_values_in_text("// c\n{\"gateway\": {\"auth\": {\"token\": \"abcd-efgh\"}}}"),
            Strings{"abcd-efgh"});
}

TEST(SecretValuesInText, AHandBrokenFileIsScannedForSecretKeys) {
  // A missing comma, a numeric token, a key that only ends in "Token".
  const std::string text = R"({
    "gateway": { "auth": { "token": "cfg-token-SECRET-2" } }
    "channels": { "telegram": { "botToken": 123456789012, "mode": "poll" } },
    "agents": { "ai": { "apiKey" : "sk-\"quoted\"", "model": "token" } }
  )";
  EXPECT_EQ(secret_values_in_text(text),
            (Strings{"123456789012", "cfg-token-SECRET-2", "sk-\\\"quoted\\\""}));
  EXPECT_TRUE(secret_values_in_text("").empty());
  EXPECT_TRUE(secret_values_in_text("{\"token\": ").empty());
  EXPECT_EQ(secret_values_in_text("{\"token\": \"unterminated"), Strings{"unterminated"});
}

}  // namespace
}  // namespace drawbridge::config
