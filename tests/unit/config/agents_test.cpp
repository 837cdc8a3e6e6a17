#include <gtest/gtest.h>

#include "config/config.h"
#include "unit/config/test_util.h"

namespace drawbridge::config {
namespace {

using testing::errors_of;
using Lines = std::vector<std::string>;

TEST(ConfigAgents, ExecAgentIsRead) {
  const auto result = parse_config(R"({"agents":{
      "default": "shell",
      "shell": {"type": "exec", "command": ["bash", "-c", "cat"], "timeoutMs": 5000,
                "killGraceMs": 0, "cwd": "/tmp", "env": {"A": "1", "B": ""}}
    }})");
  ASSERT_TRUE(result.errors.empty()) << result.errors.front().to_string();
  const Config& c = *result.config;
  EXPECT_EQ(c.default_agent, "shell");
  ASSERT_EQ(c.agents.size(), 1u);
  const AgentSettings& shell = c.agents.at("shell");
  EXPECT_EQ(shell.id, "shell");
  EXPECT_EQ(shell.type, "exec");
  EXPECT_EQ(shell.command, (std::vector<std::string>{"bash", "-c", "cat"}));
  EXPECT_EQ(shell.timeout_ms, 5000);
  EXPECT_EQ(shell.kill_grace_ms, 0);
  EXPECT_EQ(shell.cwd, "/tmp");
  EXPECT_EQ(shell.env, (std::map<std::string, std::string>{{"A", "1"}, {"B", ""}}));
  EXPECT_EQ(shell.raw["command"][2], "cat");
}

TEST(ConfigAgents, ExecDefaults) {
  const auto result = parse_config(R"({"agents":{"x":{"type":"exec","command":["true"]}}})");
  ASSERT_TRUE(result.config);
  EXPECT_EQ(result.config->agents.at("x").timeout_ms, 120000);
  EXPECT_EQ(result.config->agents.at("x").kill_grace_ms, 2000);
}

TEST(ConfigAgents, EchoAndOpenaiAgentsAreRead) {
  const auto result = parse_config(R"({"agents":{
      "main": {"type": "echo", "delayMs": 250, "chunkChars": 3, "prefix": "> "},
      "gpt": {"type": "openai", "baseUrl": "http://127.0.0.1:8080/v1", "model": "m",
              "apiKey": "k", "timeoutMs": 9000}
    }})");
  ASSERT_TRUE(result.errors.empty()) << result.errors.front().to_string();
  const AgentSettings& main = result.config->agents.at("main");
  EXPECT_EQ(main.delay_ms, 250);
  EXPECT_EQ(main.chunk_chars, 3);
  EXPECT_EQ(main.prefix, "> ");
  const AgentSettings& gpt = result.config->agents.at("gpt");
  EXPECT_EQ(gpt.type, "openai");
  EXPECT_EQ(gpt.base_url, "http://127.0.0.1:8080/v1");
  EXPECT_EQ(gpt.model, "m");
  EXPECT_EQ(gpt.api_key, "k");
  EXPECT_EQ(gpt.timeout_ms, 9000);
}

TEST(ConfigAgents, CommandArrayElementsHaveIndexedPaths) {
  const auto result =
      parse_config(R"({"agents":{"shell":{"type":"exec","command":["ls", 3, ""]}}})");
  ASSERT_EQ(result.errors.size(), 2u);
  EXPECT_EQ(result.errors[0].path, "agents.shell.command[1]");
  EXPECT_EQ(result.errors[0].pointer, "/agents/shell/command/1");
  EXPECT_EQ(result.errors[0].message, "expected a non-empty string, got 3");
  EXPECT_EQ(result.errors[1].to_string(),
            R"(agents.shell.command[2]: expected a non-empty string, got "")");
}

TEST(ConfigAgents, CommandMustBeANonEmptyArray) {
  EXPECT_EQ(errors_of(R"({"agents":{"shell":{"type":"exec","command":[]}}})"),
            Lines{"agents.shell.command: expected a non-empty array of strings, got []"});
  EXPECT_EQ(errors_of(R"({"agents":{"shell":{"type":"exec","command":"ls -l"}}})"),
            Lines{R"(agents.shell.command: expected a non-empty array of strings, got "ls -l")"});
  EXPECT_EQ(
      errors_of(R"({"agents":{"shell":{"type":"exec"}}})"),
      Lines{"agents.shell.command: missing required key; expected a non-empty array of strings"});
}

TEST(ConfigAgents, ExecLimits) {
  EXPECT_EQ(errors_of(R"({"agents":{"s":{"type":"exec","command":["x"],"timeoutMs":0,
                                         "killGraceMs":60001,"env":{"A":1}}}})"),
            // env values are secrets: the type, not the value (issue 10).
            (Lines{"agents.s.env.A: expected a string, got a number",
                   "agents.s.killGraceMs: expected an integer in 0..60000, got 60001",
                   "agents.s.timeoutMs: expected an integer in 1..86400000, got 0"}));
}

TEST(ConfigAgents, TypeIsRequiredAndChecked) {
  EXPECT_EQ(
      errors_of(R"({"agents":{"main":{}}})"),
      Lines{R"(agents.main.type: missing required key; expected one of "echo", "exec", "openai")"});
  EXPECT_EQ(errors_of(R"({"agents":{"main":{"type":"claude","command":["x"]}}})"),
            Lines{R"(agents.main.type: expected one of "echo", "exec", "openai", got "claude")"});
  EXPECT_EQ(errors_of(R"({"agents":{"main":"echo"}})"),
            Lines{R"(agents.main: expected an object, got "echo")"});
}

TEST(ConfigAgents, KeysOfAnotherTypeAreUnknown) {
  EXPECT_EQ(
      errors_of(R"({"agents":{"main":{"type":"echo","command":["x"]}}})"),
      Lines{
          R"(agents.main.command: unknown key "command" for type "echo"; allowed: chunkChars, delayMs, prefix, type)"});
  EXPECT_EQ(
      errors_of(R"({"agents":{"sh":{"type":"exec","command":["x"],"comand":1}}})"),
      Lines{R"(agents.sh.comand: unknown key "comand" for type "exec"; did you mean "command"?)"});
}

TEST(ConfigAgents, DefaultMustNameADefinedAgent) {
  const auto result = parse_config(R"({"agents":{
      "default": "x",
      "main": {"type": "echo"},
      "shell": {"type": "exec", "command": ["cat"]}
    }})");
  ASSERT_EQ(result.errors.size(), 1u);
  EXPECT_EQ(result.errors[0].pointer, "/agents/default");
  EXPECT_EQ(result.errors[0].path, "agents.default");
  EXPECT_EQ(result.errors[0].message, R"(unknown agent "x"; defined: main, shell)");
  EXPECT_EQ(errors_of(R"({"agents":{"default":1,"main":{"type":"echo"}}})"),
            Lines{"agents.default: expected a string, got 1"});
}

TEST(ConfigAgents, DefaultIsMainWhenDefined) {
  const auto result = parse_config(R"({"agents":{"a":{"type":"echo"},"main":{"type":"echo"}}})");
  ASSERT_TRUE(result.config);
  EXPECT_EQ(result.config->default_agent, "main");
}

TEST(ConfigAgents, DefaultIsTheFirstIdWithoutMain) {
  const auto result = parse_config(R"({"agents":{"zed":{"type":"echo"},"bob":{"type":"echo"}}})");
  ASSERT_TRUE(result.config);
  EXPECT_EQ(result.config->default_agent, "bob");
  EXPECT_EQ(result.config->agents.size(), 2u);
}

TEST(ConfigAgents, NoAgentsIsAnError) {
  const auto expected =
      Lines{R"(agents: no agents defined; add one, e.g. "main": {"type": "echo"})"};
  EXPECT_EQ(errors_of(R"({"agents":{}})"), expected);
  EXPECT_EQ(errors_of(R"({"agents":{"default":"main"}})"), expected);
  EXPECT_EQ(errors_of(R"({"agents":[]})"), Lines{"agents: expected an object, got []"});
}

TEST(ConfigAgents, IdMustMatchThePattern) {
  EXPECT_EQ(
      errors_of(R"({"agents":{"main":{"type":"echo"},"my agent":{"type":"echo"}}})"),
      Lines{
          R"(agents.my agent: invalid agent id "my agent": use 1 to 64 of A-Z, a-z, 0-9, "_", "-")"});
  const std::string long_id(65, 'a');
  EXPECT_EQ(errors_of(R"({"agents":{"main":{"type":"echo"},")" + long_id + R"(":{"type":"echo"}}})")
                .size(),
            1u);
  EXPECT_TRUE(parse_config(R"({"agents":{"A-z_09":{"type":"echo"}}})").config);
}

}  // namespace
}  // namespace drawbridge::config
