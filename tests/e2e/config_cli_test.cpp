// `drawbridge config get|set|patch|validate`: on the file when no gateway runs, through the
// gateway's config.get / config.patch when one does.

#include <gtest/gtest.h>

#include "e2e/harness.h"

namespace drawbridge::e2e {
namespace {

// An address where nothing listens: the CLI must take the offline path (connection refused).
std::vector<std::string> no_gateway() {
  return {"--url", "ws://127.0.0.1:" + std::to_string(free_port()), "--token", "unused"};
}

// `drawbridge --config CFG config ARGS... --url <nobody> --token unused`.
CliResult offline(const TempDir& dir, const fs::path& cfg, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"--config", cfg.string(), "config"};
  argv.insert(argv.end(), args.begin(), args.end());
  for (auto& a : no_gateway()) argv.push_back(a);
  return run_cli(dir, argv);
}

// `drawbridge --config <the gateway's file> config ARGS... --url <gw> --token <gw>`.
CliResult online(const TempDir& dir, const Gateway& gw, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"--config", (dir.path() / "config.json").string(), "config"};
  argv.insert(argv.end(), args.begin(), args.end());
  for (const auto& a : {std::string("--url"), gw.url(), std::string("--token"), gw.token()}) {
    argv.push_back(a);
  }
  return run_cli(dir, argv);
}

std::string describe(const CliResult& r) {
  return r.status.describe() + "\nstdout:\n" + r.out + "\nstderr:\n" + r.err;
}

bool exited_with(const CliResult& r, int code) { return r.status.exited && r.status.code == code; }

json read_json(const fs::path& file) {
  return json::parse(read_text(file), nullptr, false, /*ignore_comments=*/true);
}

// --- offline ----------------------------------------------------------------------------------

TEST(ConfigCliOffline, GetPrintsTheDefaultPort) {
  TempDir dir;
  const fs::path cfg = dir.write("drawbridge.json", "{}");
  auto r = offline(dir, cfg, {"get", "gateway.port"});
  EXPECT_TRUE(exited_with(r, 0)) << describe(r);
  EXPECT_EQ(r.out, "18789\n") << describe(r);
  EXPECT_NE(r.err.find("gateway not running"), std::string::npos) << describe(r);
}

TEST(ConfigCliOffline, GetPrintsTheFilesValueAndStringsBare) {
  TempDir dir;
  const fs::path cfg = dir.write("drawbridge.json", R"({
    // comments are fine
    "gateway": {"port": 18800, "bind": "lan"},
    "agents": {"shell": {"type": "exec", "command": ["sh", "-c", "cat"]}}
  })");
  auto port = offline(dir, cfg, {"get", "gateway.port"});
  EXPECT_TRUE(exited_with(port, 0)) << describe(port);
  EXPECT_EQ(port.out, "18800\n") << describe(port);

  auto bind = offline(dir, cfg, {"get", "gateway.bind"});
  EXPECT_EQ(bind.out, "lan\n") << describe(bind);
  auto bind_json = offline(dir, cfg, {"get", "gateway.bind", "--json"});
  EXPECT_EQ(bind_json.out, "\"lan\"\n") << describe(bind_json);

  auto arg = offline(dir, cfg, {"get", "agents.shell.command[1]"});
  EXPECT_TRUE(exited_with(arg, 0)) << describe(arg);
  EXPECT_EQ(arg.out, "-c\n") << describe(arg);

  auto gateway = offline(dir, cfg, {"get", "gateway"});
  EXPECT_TRUE(exited_with(gateway, 0)) << describe(gateway);
  json g = json::parse(gateway.out, nullptr, false);
  ASSERT_TRUE(g.is_object()) << describe(gateway);
  EXPECT_EQ(g.value("port", 0), 18800) << g.dump(2);
  EXPECT_NE(gateway.out.find("\n  \"port\": 18800"), std::string::npos)
      << "objects are indented by 2:\n" << gateway.out;
}

TEST(ConfigCliOffline, GetRedactsSecretsLikeTheGateway) {
  TempDir dir;
  const fs::path cfg = dir.write("drawbridge.json", R"({"gateway": {"auth": {"token": "s3cret"}}})");
  auto r = offline(dir, cfg, {"get"});
  EXPECT_TRUE(exited_with(r, 0)) << describe(r);
  EXPECT_EQ(r.out.find("s3cret"), std::string::npos) << describe(r);
  EXPECT_NE(r.out.find("__DRAWBRIDGE_REDACTED__"), std::string::npos) << describe(r);
}

TEST(ConfigCliOffline, GetOfAnUnknownKeyExits1) {
  TempDir dir;
  const fs::path cfg = dir.write("drawbridge.json", "{}");
  auto r = offline(dir, cfg, {"get", "nope.x"});
  EXPECT_TRUE(exited_with(r, 1)) << describe(r);
  EXPECT_NE(r.err.find("no such key: nope.x"), std::string::npos) << describe(r);
  EXPECT_TRUE(r.out.empty()) << describe(r);
}

TEST(ConfigCliOffline, SetWritesTheFileAndKeepsTheOldTextAsLastGood) {
  TempDir dir;
  const std::string old_text = "{\n  // the port\n  \"gateway\": {\"port\": 18789}\n}\n";
  const fs::path cfg = dir.write("drawbridge.json", old_text);
  auto r = offline(dir, cfg, {"set", "gateway.port", "18800"});
  EXPECT_TRUE(exited_with(r, 0)) << describe(r);
  EXPECT_NE(r.err.find("gateway not running; editing " + cfg.string() + " directly"),
            std::string::npos)
      << describe(r);
  EXPECT_NE(r.out.find("gateway.port"), std::string::npos) << describe(r);

  json doc = read_json(cfg);
  ASSERT_TRUE(doc.is_object()) << read_text(cfg);
  EXPECT_EQ(doc["gateway"].value("port", 0), 18800) << doc.dump(2);
  // The same bookkeeping as a write through the gateway.
  EXPECT_EQ(doc["meta"].value("lastTouchedVersion", ""), DRAWBRIDGE_VERSION) << doc.dump(2);
  const fs::path last_good = cfg.string() + ".last-good";
  ASSERT_TRUE(fs::exists(last_good));
  EXPECT_EQ(read_text(last_good), old_text);

  auto again = offline(dir, cfg, {"get", "gateway.port"});
  EXPECT_EQ(again.out, "18800\n") << describe(again);
}

TEST(ConfigCliOffline, SetOfAnInvalidValueExits78AndLeavesTheFileAlone) {
  TempDir dir;
  const std::string old_text = "{\"gateway\": {\"port\": 18789}} // unchanged\n";
  const fs::path cfg = dir.write("drawbridge.json", old_text);
  auto r = offline(dir, cfg, {"set", "gateway.port", "\"abc\""});
  EXPECT_TRUE(exited_with(r, 78)) << describe(r);
  EXPECT_NE(r.err.find("  gateway.port: expected an integer"), std::string::npos) << describe(r);
  EXPECT_EQ(read_text(cfg), old_text);
  EXPECT_FALSE(fs::exists(cfg.string() + ".last-good"));
}

TEST(ConfigCliOffline, SetCreatesANestedKeyAndTakesPlainTextAsAString) {
  TempDir dir;
  const fs::path cfg = dir.write("drawbridge.json", R"({"agents": {"main": {"type": "echo"}}})");
  auto chars = offline(dir, cfg, {"set", "channels.local.maxMessageChars", "7"});
  EXPECT_TRUE(exited_with(chars, 0)) << describe(chars);
  auto prefix = offline(dir, cfg, {"set", "agents.main.prefix", "bot says:"});
  EXPECT_TRUE(exited_with(prefix, 0)) << describe(prefix);

  json doc = read_json(cfg);
  ASSERT_TRUE(doc.is_object()) << read_text(cfg);
  EXPECT_EQ(doc["channels"]["local"].value("maxMessageChars", 0), 7) << doc.dump(2);
  EXPECT_EQ(doc["agents"]["main"].value("prefix", ""), "bot says:") << doc.dump(2);
  EXPECT_EQ(doc["agents"]["main"].value("type", ""), "echo") << doc.dump(2);
}

TEST(ConfigCliOffline, SetNullDeletesTheKey) {
  TempDir dir;
  const fs::path cfg = dir.write("drawbridge.json", R"({"messages": {"queue": {"cap": 5}}})");
  auto r = offline(dir, cfg, {"set", "messages.queue.cap", "null"});
  EXPECT_TRUE(exited_with(r, 0)) << describe(r);
  json doc = read_json(cfg);
  ASSERT_TRUE(doc.is_object()) << read_text(cfg);
  EXPECT_FALSE(doc["messages"]["queue"].contains("cap")) << doc.dump(2);
  auto cap = offline(dir, cfg, {"get", "messages.queue.cap"});
  EXPECT_EQ(cap.out, "20\n") << describe(cap);
}

TEST(ConfigCliOffline, SetOfAnArrayElementIsRefused) {
  TempDir dir;
  const std::string old_text = R"({"agents": {"shell": {"type": "exec", "command": ["a", "b"]}}})";
  const fs::path cfg = dir.write("drawbridge.json", old_text);
  auto r = offline(dir, cfg, {"set", "agents.shell.command[1]", "c"});
  EXPECT_TRUE(exited_with(r, 64)) << describe(r);
  EXPECT_NE(r.err.find("config set cannot address array elements; set the whole array"),
            std::string::npos)
      << describe(r);
  EXPECT_EQ(read_text(cfg), old_text);
}

TEST(ConfigCliOffline, SetOfTheSameValueChangesNothing) {
  TempDir dir;
  const std::string old_text = R"({"gateway": {"port": 18800}})";
  const fs::path cfg = dir.write("drawbridge.json", old_text);
  auto r = offline(dir, cfg, {"set", "gateway.port", "18800"});
  EXPECT_TRUE(exited_with(r, 0)) << describe(r);
  EXPECT_EQ(r.out, "no change\n") << describe(r);
  EXPECT_EQ(read_text(cfg), old_text);
}

TEST(ConfigCliOffline, PatchFromStdin) {
  TempDir dir;
  const fs::path cfg = dir.write("drawbridge.json", R"({"gateway": {"port": 18800}})");
  const fs::path patch = dir.write("patch.jsonc", R"(// a merge patch with comments
  {"messages": {"queue": {"cap": 5}}, "gateway": {"port": null}})");
  // stdin of run_cli is /dev/null: a shell redirects the patch into it.
  std::vector<std::string> argv = {"/bin/sh", "-c", "exec \"$@\" < \"$DRAWBRIDGE_PATCH\"", "sh",
                                   DRAWBRIDGE_BINARY, "--config", cfg.string(), "config",
                                   "patch", "-"};
  for (auto& a : no_gateway()) argv.push_back(a);
  Process p(argv, dir.path(), dir.path() / "patch.out", dir.path() / "patch.err",
            {{"DRAWBRIDGE_PATCH", patch.string()}});
  auto st = p.wait(10s);
  ASSERT_TRUE(st) << "config patch - did not finish";
  EXPECT_TRUE(st->exited && st->code == 0)
      << st->describe() << "\nstdout:\n" << read_text(dir.path() / "patch.out") << "\nstderr:\n"
      << read_text(dir.path() / "patch.err");

  json doc = read_json(cfg);
  ASSERT_TRUE(doc.is_object()) << read_text(cfg);
  EXPECT_EQ(doc["messages"]["queue"].value("cap", 0), 5) << doc.dump(2);
  EXPECT_FALSE(doc["gateway"].contains("port")) << doc.dump(2);
}

TEST(ConfigCliOffline, PatchFromAFileThatBreaksTheConfigExits78ListingEveryError) {
  TempDir dir;
  const std::string old_text = "{}";
  const fs::path cfg = dir.write("drawbridge.json", old_text);
  const fs::path patch =
      dir.write("patch.json", R"({"gateway": {"port": "abc"}, "logging": {"level": "loud"}})");
  auto r = offline(dir, cfg, {"patch", patch.string()});
  EXPECT_TRUE(exited_with(r, 78)) << describe(r);
  EXPECT_NE(r.err.find("  gateway.port: "), std::string::npos) << describe(r);
  EXPECT_NE(r.err.find("  logging.level: "), std::string::npos) << describe(r);
  EXPECT_EQ(read_text(cfg), old_text);
}

TEST(ConfigCliOffline, ValidateWithoutAGatewayChecksTheConfigFileListingEveryError) {
  TempDir dir;
  const fs::path bad = dir.write("bad.json", R"({
    "gateway": {"port": "abc", "bind": "nowhere"},
    "logging": {"level": "loud"}
  })");
  auto r = offline(dir, bad, {"validate"});
  EXPECT_TRUE(exited_with(r, 78)) << describe(r);
  EXPECT_NE(r.err.find("3 problem(s)"), std::string::npos) << describe(r);
  for (const char* path : {"  gateway.port:", "  gateway.bind:", "  logging.level:"}) {
    EXPECT_NE(r.err.find(path), std::string::npos) << path << " missing:\n" << describe(r);
  }
}

TEST(ConfigCliOffline, ValidateOfAGoodFileSaysValid) {
  TempDir dir;
  const fs::path good = dir.write("good.json", echo_config().dump());
  auto r = offline(dir, good, {"validate"});
  EXPECT_TRUE(exited_with(r, 0)) << describe(r);
  EXPECT_EQ(r.out, good.string() + ": valid\n") << describe(r);
}

TEST(ConfigCliOffline, SetWithoutAnyConfigFileExits1) {
  TempDir dir;
  auto argv = std::vector<std::string>{"config", "set", "gateway.port", "18800"};
  for (auto& a : no_gateway()) argv.push_back(a);
  auto r = run_cli(dir, argv);
  EXPECT_TRUE(exited_with(r, 1)) << describe(r);
  EXPECT_NE(r.err.find("no config file"), std::string::npos) << describe(r);
}

// --- online -----------------------------------------------------------------------------------

// A gateway that is there but refuses the client is an error, never a reason to edit the file
// behind its back.
TEST(ConfigCliOnline, AWrongTokenIsAnErrorNotAFallbackToTheFile) {
  TempDir dir;
  Gateway gw(dir, echo_config());
  gw.start();
  const fs::path cfg = dir.path() / "config.json";
  const std::string before = read_text(cfg);
  auto r = run_cli(dir, {"--config", cfg.string(), "config", "set", "messages.queue.cap", "5",
                         "--url", gw.url(), "--token", "wrong"});
  EXPECT_TRUE(exited_with(r, 1)) << describe(r);
  EXPECT_EQ(r.err.find("gateway not running"), std::string::npos) << describe(r);
  EXPECT_EQ(read_text(cfg), before);
}

TEST(ConfigCliOnline, GetAsksTheRunningGateway) {
  TempDir dir;
  json config = echo_config();
  config["messages"]["queue"]["cap"] = 7;
  Gateway gw(dir, config);
  gw.start();
  auto port = online(dir, gw, {"get", "gateway.port"});
  EXPECT_TRUE(exited_with(port, 0)) << describe(port);
  EXPECT_EQ(port.err.find("gateway not running"), std::string::npos) << describe(port);
  // The effective port: the gateway runs with --port, which wins over the file.
  EXPECT_EQ(port.out, std::to_string(gw.port()) + "\n") << describe(port);

  // --config names another file: the answer must come from the gateway, not from that file.
  const fs::path other = dir.write("other.json", R"({"messages": {"queue": {"cap": 9}}})");
  auto cap = run_cli(dir, {"--config", other.string(), "config", "get", "messages.queue.cap",
                           "--url", gw.url(), "--token", gw.token()});
  EXPECT_TRUE(exited_with(cap, 0)) << describe(cap);
  EXPECT_EQ(cap.out, "7\n") << describe(cap);

  auto token = online(dir, gw, {"get", "gateway.auth.token"});
  EXPECT_EQ(token.out, "__DRAWBRIDGE_REDACTED__\n") << describe(token);
  auto none = online(dir, gw, {"get", "nope.x"});
  EXPECT_TRUE(exited_with(none, 1)) << describe(none);
  EXPECT_NE(none.err.find("no such key: nope.x"), std::string::npos) << describe(none);
}

TEST(ConfigCliOnline, SetMaxMessageCharsIsAHotRestartOfTheLocalChannel) {
  TempDir dir;
  Gateway gw(dir, echo_config());
  gw.start();
  auto r = online(dir, gw, {"set", "channels.local.maxMessageChars", "5"});
  EXPECT_TRUE(exited_with(r, 0)) << describe(r) << gw.log();
  EXPECT_NE(r.out.find("hot: restart-channel local"), std::string::npos) << describe(r);

  json doc = read_json(dir.path() / "config.json");
  ASSERT_TRUE(doc.is_object()) << read_text(dir.path() / "config.json");
  EXPECT_EQ(doc["channels"]["local"].value("maxMessageChars", 0), 5) << doc.dump(2);
  auto chars = online(dir, gw, {"get", "channels.local.maxMessageChars"});
  EXPECT_EQ(chars.out, "5\n") << describe(chars);
}

TEST(ConfigCliOnline, SetQueueCapNeedsNoReloadAndJsonPrintsTheWholeAnswer) {
  TempDir dir;
  Gateway gw(dir, echo_config());
  gw.start();
  auto r = online(dir, gw, {"set", "messages.queue.cap", "5", "--json"});
  EXPECT_TRUE(exited_with(r, 0)) << describe(r) << gw.log();
  json answer = json::parse(r.out, nullptr, false);
  ASSERT_TRUE(answer.is_object()) << describe(r);
  EXPECT_EQ(answer.value("ok", false), true) << answer.dump(2);
  EXPECT_EQ(answer.value("written", false), true) << answer.dump(2);
  EXPECT_EQ(answer["plan"].value("kind", ""), "none") << answer.dump(2);
  EXPECT_EQ(answer.value("changedPaths", json::array()), json::array({"messages.queue.cap"}))
      << answer.dump(2);

  auto again = online(dir, gw, {"set", "messages.queue.cap", "5"});
  EXPECT_TRUE(exited_with(again, 0)) << describe(again);
  EXPECT_EQ(again.out, "no change\n") << describe(again);
}

TEST(ConfigCliOnline, SetOfAStoreKeySchedulesARestart) {
  TempDir dir;
  Gateway gw(dir, echo_config());
  gw.start();
  auto r = online(dir, gw, {"set", "store.durability", "power"});
  EXPECT_TRUE(exited_with(r, 0)) << describe(r) << gw.log();
  EXPECT_NE(r.out.find("changed: store.durability"), std::string::npos) << describe(r);
  EXPECT_NE(r.out.find("restart scheduled in "), std::string::npos) << describe(r);
}

TEST(ConfigCliOnline, AnInvalidSetExits78AndTheFileStays) {
  TempDir dir;
  Gateway gw(dir, echo_config());
  gw.start();
  const fs::path cfg = dir.path() / "config.json";
  const std::string before = read_text(cfg);
  auto r = online(dir, gw, {"set", "gateway.port", "\"abc\""});
  EXPECT_TRUE(exited_with(r, 78)) << describe(r) << gw.log();
  EXPECT_NE(r.err.find("  gateway.port: "), std::string::npos) << describe(r);
  EXPECT_EQ(read_text(cfg), before);
}

TEST(ConfigCliOnline, PatchFromAFileGoesThroughTheGateway) {
  TempDir dir;
  Gateway gw(dir, echo_config());
  gw.start();
  const fs::path patch =
      dir.write("patch.jsonc", "// comments are stripped before sending\n"
                               R"({"channels": {"local": {"maxMessageChars": 3}}})");
  auto r = online(dir, gw, {"patch", patch.string()});
  EXPECT_TRUE(exited_with(r, 0)) << describe(r) << gw.log();
  EXPECT_NE(r.out.find("hot: restart-channel local"), std::string::npos) << describe(r);
  json doc = read_json(dir.path() / "config.json");
  ASSERT_TRUE(doc.is_object());
  EXPECT_EQ(doc["channels"]["local"].value("maxMessageChars", 0), 3) << doc.dump(2);
}

TEST(ConfigCliOnline, ValidateAsksTheGateway) {
  TempDir dir;
  Gateway gw(dir, echo_config());
  gw.start();
  auto r = online(dir, gw, {"validate"});
  EXPECT_TRUE(exited_with(r, 0)) << describe(r);
  EXPECT_NE(r.out.find("config.json: valid"), std::string::npos) << describe(r);
  EXPECT_EQ(r.err.find("gateway not running"), std::string::npos) << describe(r);
}

}  // namespace
}  // namespace drawbridge::e2e
