#include <gtest/gtest.h>

#include "config/config.h"
#include "unit/config/test_util.h"

namespace drawbridge::config {
namespace {

using testing::errors_of;
using Lines = std::vector<std::string>;

TEST(ConfigValidate, IntegerOutOfRangeOrWrongType) {
  EXPECT_EQ(errors_of(R"({"gateway":{"port":"abc"}})"),
            Lines{R"(gateway.port: expected an integer in 1..65535, got "abc")"});
  EXPECT_EQ(errors_of(R"({"gateway":{"port":0}})"),
            Lines{"gateway.port: expected an integer in 1..65535, got 0"});
  EXPECT_EQ(errors_of(R"({"gateway":{"port":65536}})"),
            Lines{"gateway.port: expected an integer in 1..65535, got 65536"});
  EXPECT_EQ(errors_of(R"({"gateway":{"port":80.5}})"),
            Lines{"gateway.port: expected an integer in 1..65535, got 80.5"});
  EXPECT_EQ(errors_of(R"({"gateway":{"port":18446744073709551615}})"),
            Lines{"gateway.port: expected an integer in 1..65535, got 18446744073709551615"});
  EXPECT_EQ(errors_of(R"({"gateway":{"reload":{"deferralTimeoutMs":-1}}})"),
            Lines{"gateway.reload.deferralTimeoutMs: expected an integer >= 0, got -1"});
  EXPECT_EQ(errors_of(R"({"messages":{"queue":{"cap":0}}})"),
            Lines{"messages.queue.cap: expected an integer in 1..1000, got 0"});
}

TEST(ConfigValidate, ErrorCarriesPointerAndPath) {
  const auto result = parse_config(R"({"gateway":{"reload":{"debounceMs":60001}}})");
  ASSERT_EQ(result.errors.size(), 1u);
  EXPECT_EQ(result.errors[0].pointer, "/gateway/reload/debounceMs");
  EXPECT_EQ(result.errors[0].path, "gateway.reload.debounceMs");
  EXPECT_EQ(result.errors[0].message, "expected an integer in 0..60000, got 60001");
  EXPECT_FALSE(result.config);
}

TEST(ConfigValidate, WrongStringBooleanAndObjectTypes) {
  // A secret's errors name its type, never its value (issue 10).
  EXPECT_EQ(errors_of(R"({"gateway":{"auth":{"token":42}}})"),
            Lines{"gateway.auth.token: expected a non-empty string, got a number"});
  EXPECT_EQ(errors_of(R"({"gateway":{"auth":{"token":""}}})"),
            Lines{"gateway.auth.token: expected a non-empty string, got an empty string"});
  EXPECT_EQ(errors_of(R"({"commands":{"restart":"yes"}})"),
            Lines{R"(commands.restart: expected a boolean, got "yes")"});
  EXPECT_EQ(errors_of(R"({"gateway":5})"), Lines{"gateway: expected an object, got 5"});
  EXPECT_EQ(errors_of(R"({"messages":{"queue":null}})"),
            Lines{"messages.queue: expected an object, got null"});
  EXPECT_EQ(errors_of(R"({"meta":[]})"), Lines{"meta: expected an object, got []"});
  EXPECT_EQ(errors_of(R"({"agents":{"main":{"type":"echo","prefix":42}}})"),
            Lines{"agents.main.prefix: expected a string, got 42"});
}

TEST(ConfigValidate, EnumValues) {
  EXPECT_EQ(errors_of(R"({"gateway":{"reload":{"mode":"foo"}}})"),
            Lines{R"(gateway.reload.mode: expected one of "hybrid", "off", got "foo")"});
  EXPECT_EQ(errors_of(R"({"gateway":{"auth":{"mode":"password"}}})"),
            Lines{R"(gateway.auth.mode: expected one of "token", got "password")"});
  EXPECT_EQ(
      errors_of(R"({"messages":{"queue":{"mode":"queue","drop":"all"}}})"),
      (Lines{
          R"(messages.queue.drop: expected one of "old", "new", "summarize", got "all")",
          R"(messages.queue.mode: expected one of "steer", "followup", "collect", "interrupt", got "queue")"}));
  EXPECT_EQ(errors_of(R"({"store":{"driver":"mysql"}})"),
            Lines{R"(store.driver: expected one of "sqlite", "postgres", got "mysql")"});
  EXPECT_EQ(errors_of(R"({"store":{"dataDir":""}})"),
            Lines{R"(store.dataDir: expected a non-empty string, got "")"});
  EXPECT_EQ(
      errors_of(R"({"logging":{"level":"verbose"}})"),
      Lines{
          R"(logging.level: expected one of "trace", "debug", "info", "warn", "error", got "verbose")"});
}

TEST(ConfigValidate, BindMustBeAKeywordOrAnIpLiteral) {
  EXPECT_EQ(
      errors_of(R"({"gateway":{"bind":"localhost"}})"),
      Lines{
          R"(gateway.bind: expected "loopback", "lan" or an IP address literal, got "localhost")"});
  EXPECT_EQ(
      errors_of(R"({"gateway":{"bind":"256.0.0.1"}})"),
      Lines{
          R"(gateway.bind: expected "loopback", "lan" or an IP address literal, got "256.0.0.1")"});
}

TEST(ConfigValidate, UnknownKeySuggestsTheClosest) {
  const auto result = parse_config(R"({"gateway":{"prot":1}})");
  ASSERT_EQ(result.errors.size(), 1u);
  EXPECT_EQ(result.errors[0].pointer, "/gateway/prot");
  EXPECT_EQ(result.errors[0].path, "gateway.prot");
  EXPECT_EQ(result.errors[0].message, R"(unknown key "prot"; did you mean "port"?)");
}

TEST(ConfigValidate, UnknownKeyByPrefixAndCase) {
  EXPECT_EQ(
      errors_of(R"({"gateway":{"reload":{"debounce":1}}})"),
      Lines{R"(gateway.reload.debounce: unknown key "debounce"; did you mean "debounceMs"?)"});
  EXPECT_EQ(
      errors_of(R"({"messages":{"inbound":{"debouncems":1}}})"),
      Lines{
          R"(messages.inbound.debouncems: unknown key "debouncems"; did you mean "debounceMs"?)"});
  EXPECT_EQ(errors_of(R"({"logging":{"levle":"info"}})"),
            Lines{R"(logging.levle: unknown key "levle"; did you mean "level"?)"});
}

TEST(ConfigValidate, UnknownKeyWithNothingCloseListsTheAllowed) {
  EXPECT_EQ(
      errors_of(R"({"gateway":{"zzzzzz":1}})"),
      Lines{R"(gateway.zzzzzz: unknown key "zzzzzz"; allowed: allowedHosts, auth, bind, controlUi, limits, port, reload, restart)"});
  // Two edits away from "cap", but that rewrites the whole key: no hint.
  EXPECT_EQ(errors_of(R"({"messages":{"queue":{"ab":1}}})"),
            Lines{R"(messages.queue.ab: unknown key "ab"; allowed: cap, drop, mode)"});
}

TEST(ConfigValidate, UnknownTopLevelKey) {
  EXPECT_EQ(errors_of(R"({"gatway":{}})"),
            Lines{R"(gatway: unknown key "gatway"; did you mean "gateway"?)"});
  EXPECT_EQ(
      errors_of(R"({"plugins":{}})"),
      Lines{
          R"(plugins: unknown key "plugins"; allowed: $schema, agents, channels, cluster, commands, gateway, logging, messages, meta, store)"});
}

TEST(ConfigValidate, SchemaAndMetaAreIgnored) {
  const auto result = parse_config(R"({"$schema":"x","meta":{"written":{"by":"gateway"}}})");
  EXPECT_TRUE(result.errors.empty());
  EXPECT_TRUE(result.config);
}

TEST(ConfigValidate, ReportsEveryProblemAtOnce) {
  const auto result = parse_config(R"({"gateway":{"port":"abc","prot":1}})");
  ASSERT_EQ(result.errors.size(), 2u);
  EXPECT_FALSE(result.config);
  EXPECT_EQ(testing::error_lines(result),
            (Lines{R"(gateway.port: expected an integer in 1..65535, got "abc")",
                   R"(gateway.prot: unknown key "prot"; did you mean "port"?)"}));
}

TEST(ConfigValidate, ReportsProblemsAcrossSections) {
  EXPECT_EQ(
      errors_of(R"({
      "commands": {"restart": 1},
      "gateway": {"port": 0, "reload": {"mode": "on"}},
      "logging": {"level": "loud"},
      "agents": {"main": {"type": "echo", "delayMs": -5}},
      "channels": {"local": {"enabled": "no"}}
    })"),
      (Lines{
          "commands.restart: expected a boolean, got 1",
          "gateway.port: expected an integer in 1..65535, got 0",
          R"(gateway.reload.mode: expected one of "hybrid", "off", got "on")",
          R"(logging.level: expected one of "trace", "debug", "info", "warn", "error", got "loud")",
          R"(channels.local.enabled: expected a boolean, got "no")",
          "agents.main.delayMs: expected an integer in 0..3600000, got -5",
      }));
}

TEST(ConfigValidate, LongValuesAreCutInMessages) {
  const std::string long_text(200, 'x');
  const auto errors = errors_of(R"({"gateway":{"port":")" + long_text + R"("}})");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0],
            "gateway.port: expected an integer in 1..65535, got \"" + std::string(79, 'x') + "...");
}

TEST(ConfigValidate, PointerEscapesSlashAndTilde) {
  const auto result = parse_config(R"({"gateway":{"a/b~c":1}})");
  ASSERT_EQ(result.errors.size(), 1u);
  EXPECT_EQ(result.errors[0].pointer, "/gateway/a~1b~0c");
  EXPECT_EQ(result.errors[0].path, "gateway.a/b~c");
}

}  // namespace
}  // namespace drawbridge::config
