// Config text written to hurt: nested too deep, too large, with NUL bytes or repeated keys,
// and errors about secrets. Each is refused with a clear error, never a crash or a quote of
// the secret.

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "config/config.h"
#include "config/config_text.h"
#include "config/document.h"
#include "unit/config/test_util.h"

namespace drawbridge::config {
namespace {

using nlohmann::json;
using testing::errors_of;

// {"meta":[[[ ... ]]]} with `levels` arrays: valid JSON, 2 bytes a level.
std::string deep_meta(std::size_t levels) {
  return "{\"meta\":" + std::string(levels, '[') + std::string(levels, ']') + "}";
}

// {"meta":{"a":{"a":...{}}}} with `depth` objects in all, the root included.
std::string nested_objects(std::size_t depth) {
  std::string text;
  for (std::size_t i = 0; i + 1 < depth; ++i) text += i == 0 ? "{\"meta\":" : "{\"a\":";
  text += "{}";
  for (std::size_t i = 0; i + 1 < depth; ++i) text += "}";
  return text;
}

TEST(ConfigHostileInput, HundredThousandLevelsAreRefusedWithThePositionNotACrash) {
  const std::string text = deep_meta(100'000);
  ASSERT_GT(text.size(), 190'000u);
  const auto result = parse_config(text);
  EXPECT_FALSE(result.config);
  ASSERT_EQ(result.errors.size(), 1u);
  // {"meta": is 8 bytes; the root object and 63 arrays are 64 levels, so the '[' at column 72
  // is one too many.
  EXPECT_EQ(result.errors[0].to_string(),
            "meta[0][0][0]: line 1, column 72: nested deeper than 64 levels");
  EXPECT_EQ(result.errors[0].pointer, "/meta/0/0/0");
}

TEST(ConfigHostileInput, SixtyFourLevelsAreTheLimit) {
  EXPECT_TRUE(parse_config(nested_objects(63)).config);
  EXPECT_TRUE(parse_config(nested_objects(64)).config);
  const auto deeper = parse_config(nested_objects(65));
  ASSERT_EQ(deeper.errors.size(), 1u);
  EXPECT_NE(deeper.errors[0].message.find("nested deeper than 64 levels"), std::string::npos);
}

TEST(ConfigHostileInput, DeepPatchTextIsRefusedByParseJsonText) {
  std::string error;
  EXPECT_FALSE(parse_json_text(std::string(50'000, '[') + std::string(50'000, ']'), error));
  EXPECT_EQ(error, "line 1, column 65: nested deeper than 64 levels (at [0][0][0][0])");
}

TEST(ConfigHostileInput, TextAfterANulByteIsNotIgnored) {
  const std::string text("{}\0{\"gateway\": 5}", 17);
  const auto lines = errors_of(text);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0], "(root): line 1, column 3: a NUL byte, which JSON does not allow");
  std::string error;
  EXPECT_FALSE(parse_json_text(text, error));
}

TEST(ConfigHostileInput, ARepeatedTopLevelKeyIsAnErrorNamingIt) {
  const auto result = parse_config(
      "{\n  \"logging\": {\"level\": \"info\"},\n  \"logging\": {\"level\": \"debug\"}\n}");
  EXPECT_FALSE(result.config);
  ASSERT_EQ(result.errors.size(), 1u);
  EXPECT_EQ(result.errors[0].pointer, "/logging");
  EXPECT_EQ(result.errors[0].to_string(), "logging: line 3, column 11: duplicate key \"logging\"");
}

TEST(ConfigHostileInput, ARepeatedNestedKeyIsAnErrorWithItsPath) {
  EXPECT_EQ(errors_of(R"({"gateway": {"port": 1, "bind": "lan", "port": 2}})"),
            std::vector<std::string>{"gateway.port: line 1, column 45: duplicate key \"port\""});
  const auto in_array = parse_config(R"({"meta": {"x": [{}, {"a": 1, "a": 2}]}})");
  ASSERT_EQ(in_array.errors.size(), 1u);
  EXPECT_EQ(in_array.errors[0].path, "meta.x[1].a");
  EXPECT_EQ(in_array.errors[0].pointer, "/meta/x/1/a");
  std::string error;
  EXPECT_FALSE(parse_json_text(R"({"a": {"b": 1, "b": 1}})", error));
  EXPECT_EQ(error, "line 1, column 18: duplicate key \"b\" (at a.b)");
}

TEST(ConfigHostileInput, TheSameKeyInSiblingObjectsIsFine) {
  const auto result = parse_config(
      R"({"gateway": {"port": 1}, "meta": {"port": 2, "x": {"port": 3}}, "logging": {}})");
  EXPECT_TRUE(result.config) << testing::error_lines(result)[0];
}

TEST(ConfigHostileInput, CommentsStillParseWithinTheLimits) {
  const auto result = parse_config(
      "// a comment\n{ /* \"gateway\": {\"port\": 1}, */ \"gateway\": {\"port\": 2} // "
      "\"port\"\n}");
  ASSERT_TRUE(result.config) << testing::error_lines(result)[0];
  EXPECT_EQ(result.config->gateway.port, 2);
}

TEST(ConfigHostileInput, TextOverOneMebibyteIsRefused) {
  const std::string pad(kMaxConfigBytes, 'x');
  const auto lines = errors_of("{\"meta\": {\"pad\": \"" + pad + "\"}}");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0], "(root): larger than the limit of 1 MiB (1048576 bytes)");
  const std::string fits(kMaxConfigBytes - 100, 'x');
  EXPECT_TRUE(parse_config("{\"meta\": {\"pad\": \"" + fits + "\"}}").config);
}

// Every error of `text` in one string, as a probe, the log and the CLI would show it.
std::string all_errors(const std::string& text) {
  std::string out;
  for (const auto& line : errors_of(text)) out += line + "\n";
  return out;
}

TEST(ConfigHostileInput, ParseErrorsNeverQuoteTheSecretAroundThem) {
  const std::string secret = "cfg-token-SECRET-4242";
  const std::vector<std::string> broken = {
      // an unterminated string, a control character, a bad escape, invalid UTF-8
      R"({"gateway": {"auth": {"token": ")" + secret,
      "{\"gateway\": {\"auth\": {\"token\": \"" + secret + "\n\"}}}",
      R"({"gateway": {"auth": {"token": ")" + secret + R"(\q"}}})",
      "{\"gateway\": {\"auth\": {\"token\": \"" + secret + "\xff\"}}}",
      // a bare word, a number glued to a word, a number too large for a double
      R"({"gateway": {"auth": {"token": )" + secret + "}}}",
      R"({"gateway": {"auth": {"token": 987654321987654321x}}})",
      R"({"gateway": {"auth": {"token": 9876543219876e987654}}})",
  };
  for (const auto& text : broken) {
    const std::string errors = all_errors(text);
    EXPECT_NE(errors.find("(root): invalid JSON at line "), std::string::npos) << errors;
    EXPECT_EQ(errors.find("SECRET"), std::string::npos) << errors;
    EXPECT_EQ(errors.find("98765432198"), std::string::npos) << errors;
    EXPECT_EQ(errors.find("last read"), std::string::npos) << errors;
    std::string error;
    EXPECT_FALSE(parse_json_text(text, error));
    EXPECT_EQ(error.find("SECRET"), std::string::npos) << error;
    EXPECT_EQ(error.find("98765432198"), std::string::npos) << error;
  }
}

TEST(ConfigHostileInput, TypeErrorsAtSecretPathsNameTheTypeNotTheValue) {
  EXPECT_EQ(
      errors_of(R"({"gateway": {"auth": {"token": 987654321987654321}}})"),
      std::vector<std::string>{"gateway.auth.token: expected a non-empty string, got a number"});
  EXPECT_EQ(
      errors_of(R"({"gateway": {"auth": {"token": ["cfg-token-SECRET"]}}})"),
      std::vector<std::string>{"gateway.auth.token: expected a non-empty string, got an array"});
  // The token written one level too high.
  EXPECT_EQ(errors_of(R"({"gateway": {"auth": "cfg-token-SECRET"}})"),
            std::vector<std::string>{"gateway.auth: expected an object, got a string"});
  const std::string agents =
      R"({"agents": {"ai": {"type": "openai", "model": "m", "apiKey": 123456789012},)"
      R"( "sh": {"type": "exec", "command": ["x"], "env": {"API_KEY": 55555555555}},)"
      R"( "sh2": {"type": "exec", "command": ["x"], "env": "API_KEY=sk-SECRET"}}})";
  const std::string errors = all_errors(agents);
  EXPECT_NE(errors.find("agents.ai.apiKey: expected a string, got a number"), std::string::npos)
      << errors;
  EXPECT_NE(errors.find("agents.sh.env.API_KEY: expected a string, got a number"),
            std::string::npos)
      << errors;
  EXPECT_NE(errors.find("agents.sh2.env: expected "), std::string::npos) << errors;
  for (const char* value : {"123456789012", "55555555555", "SECRET"}) {
    EXPECT_EQ(errors.find(value), std::string::npos) << value << " in " << errors;
  }
  // Values that are not secrets are still shown: they help.
  EXPECT_EQ(
      errors_of(R"({"gateway": {"port": "eighty"}})"),
      std::vector<std::string>{"gateway.port: expected an integer in 1..65535, got \"eighty\""});
}

TEST(ConfigHostileInput, SecretPointersFollowTheRedactionRules) {
  EXPECT_TRUE(secret_pointer("/gateway/auth/token"));
  EXPECT_TRUE(secret_pointer("/channels/telegram/botToken"));
  EXPECT_TRUE(secret_pointer("/agents/ai/apiKey"));
  EXPECT_TRUE(secret_pointer("/agents/sh/env"));
  EXPECT_TRUE(secret_pointer("/agents/sh/env/ANYTHING"));
  EXPECT_TRUE(secret_pointer("/channels/x/clientSecret/0"));
  EXPECT_FALSE(secret_pointer("/gateway/port"));
  EXPECT_FALSE(secret_pointer("/agents/sh/command/0"));
  EXPECT_FALSE(secret_pointer("/meta/tokens"));
  EXPECT_FALSE(secret_pointer(""));
}

TEST(ConfigHostileInput, LongValuesInErrorsAreCutBetweenCharacters) {
  // 30 three-byte characters: the cut at 80 bytes must not split one.
  std::string euro;
  for (int i = 0; i < 30; ++i) euro += "\xe2\x82\xac";
  const auto lines = errors_of("{\"logging\": {\"level\": \"" + euro + "\"}}");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NO_THROW(static_cast<void>(json(lines[0]).dump())) << lines[0];
  EXPECT_LT(lines[0].size(), 200u);
}

TEST(ConfigHostileInput, UnfinishedJsonIsOnlyASyntaxProblem) {
  EXPECT_EQ(unfinished_json(R"({"a": 1})"), std::nullopt);
  ASSERT_TRUE(unfinished_json(R"({"a": )"));
  EXPECT_EQ(unfinished_json(R"({"a": )")->rfind("parse error at line 1, column 7: ", 0), 0u);
  EXPECT_TRUE(unfinished_json(""));
  EXPECT_TRUE(unfinished_json(std::string("{}\0", 3)));
  // Complete documents that cross a limit: the validation reports them with their path.
  EXPECT_EQ(unfinished_json(deep_meta(1000)), std::nullopt);
  EXPECT_EQ(unfinished_json(R"({"a": 1, "a": 2})"), std::nullopt);
}

}  // namespace
}  // namespace drawbridge::config
