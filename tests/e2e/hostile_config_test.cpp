// Config input written to hurt, against the real binary: nested 100,000 levels deep, a device,
// a FIFO, repeated keys, secrets in broken files. Each is refused with a clear error (exit 78
// for the CLI and a start without a fallback); a running gateway keeps running on what it had.

#include <signal.h>
#include <sys/stat.h>

#include <gtest/gtest.h>

#include <fstream>
#include <thread>

#include "e2e/harness.h"

namespace drawbridge::e2e {
namespace {

using Clock = std::chrono::steady_clock;

// The 364f714 file: valid JSON, 200 KB, {"meta":[[[ ... 100,000 ... ]]]}.
std::string deep_meta(std::size_t levels = 100'000) {
  return "{\"meta\":" + std::string(levels, '[') + std::string(levels, ']') + "}";
}

// A config that reloads quickly and keeps the harness's token.
json reloadable() {
  json c = echo_config();
  c["gateway"]["reload"]["debounceMs"] = 30;
  c["gateway"]["restart"]["delayMs"] = 0;
  c["gateway"]["restart"]["cooldownMs"] = 0;
  c["gateway"]["auth"]["token"] = Gateway::kToken;
  return c;
}

std::string describe(const CliResult& r) {
  return r.status.describe() + "\nstdout:\n" + r.out + "\nstderr:\n" + r.err;
}

bool exited_with(const CliResult& r, int code) { return r.status.exited && r.status.code == code; }

// `drawbridge config validate FILE`: offline, whatever runs.
CliResult validate(const TempDir& dir, const fs::path& file) {
  // A refusal is immediate; 5 s leaves room for a loaded machine, not for reading a device.
  return run_cli(dir, {"config", "validate", file.string()}, 5s);
}

void write_by_rename(const fs::path& file, const std::string& text) {
  const fs::path tmp = file.parent_path() / (".edit-" + file.filename().string());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
  }
  fs::rename(tmp, file);
}

// `status`, retried while the gateway is between generations.
json status_of(const Gateway& gw, Millis timeout = 5s) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    try {
      return gw.client({"operator.read"})->request("status", json::object());
    } catch (const server::ClientError&) {
      if (Clock::now() > deadline) throw;
      std::this_thread::sleep_for(20ms);
    }
  }
}

std::string reply_to(const Gateway& gw, const std::string& text, const std::string& key) {
  auto c = gw.client();
  json ack = c->request("chat.send", {{"sessionKey", "s-" + key}, {"message", text},
                                      {"idempotencyKey", key}});
  return await_run(*c, ack.value("runId", ""), 5s).text();
}

// --- drawbridge config validate ------------------------------------------------------------

TEST(HostileConfigCli, ValidateOfAFileNestedHundredThousandDeepExits78) {
  TempDir dir;
  const fs::path deep = dir.write("deep.json", deep_meta());
  auto r = validate(dir, deep);
  // Before: exit 139 (a stack overflow copying the document).
  EXPECT_TRUE(exited_with(r, 78)) << describe(r);
  EXPECT_NE(r.err.find("meta[0][0][0]: line 1, column 72: nested deeper than 64 levels"),
            std::string::npos)
      << describe(r);
}

TEST(HostileConfigCli, ValidateOfADeviceExits78WithoutReadingIt) {
  TempDir dir;
  auto r = validate(dir, "/dev/zero");
  // Before: read until std::bad_alloc.
  EXPECT_TRUE(exited_with(r, 78)) << describe(r);
  EXPECT_NE(r.err.find("cannot read /dev/zero: not a regular file (a character device)"),
            std::string::npos)
      << describe(r);
}

TEST(HostileConfigCli, ValidateOfAFifoExits78WithoutWaitingForAWriter) {
  TempDir dir;
  const fs::path fifo = dir.path() / "config.fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  auto r = validate(dir, fifo);
  // Before: blocked in open() for a writer that never comes.
  EXPECT_TRUE(exited_with(r, 78)) << describe(r);
  EXPECT_NE(r.err.find("not a regular file (a FIFO)"), std::string::npos) << describe(r);
}

TEST(HostileConfigCli, ValidateOfAFileOverOneMebibyteNamesTheLimit) {
  TempDir dir;
  const fs::path big =
      dir.write("big.json", "{\"meta\": {\"pad\": \"" + std::string(1100 * 1024, 'x') + "\"}}");
  auto r = validate(dir, big);
  EXPECT_TRUE(exited_with(r, 78)) << describe(r);
  EXPECT_NE(r.err.find("larger than the limit of 1 MiB (1048576 bytes)"), std::string::npos)
      << describe(r);
}

TEST(HostileConfigCli, ValidateRefusesARepeatedKeyAndShowsNoSecret) {
  TempDir dir;
  const fs::path file = dir.write("dup.json", R"({
    "gateway": {"auth": {"token": 987654321987654321}},
    "logging": {"level": "info", "level": "debug"}
  })");
  auto r = validate(dir, file);
  // Before: "logging.level" was silently the last one, and the error quoted the number.
  EXPECT_TRUE(exited_with(r, 78)) << describe(r);
  EXPECT_NE(r.err.find("logging.level: line 3, column 40: duplicate key \"level\""),
            std::string::npos)
      << describe(r);
  const fs::path typed =
      dir.write("typed.json", R"({"gateway": {"auth": {"token": 987654321987654321}}})");
  r = validate(dir, typed);
  EXPECT_TRUE(exited_with(r, 78)) << describe(r);
  EXPECT_NE(r.err.find("gateway.auth.token: expected a non-empty string, got a number"),
            std::string::npos)
      << describe(r);
  EXPECT_EQ(r.err.find("987654321987654321"), std::string::npos) << describe(r);
}

TEST(HostileConfigCli, SetOfAValueNestingTooDeepExits78AndLeavesTheFileAlone) {
  TempDir dir;
  const fs::path cfg = dir.write("drawbridge.json", "{}");
  const std::string value = std::string(100, '[') + std::string(100, ']');
  auto r = run_cli(dir, {"--config", cfg.string(), "config", "set", "meta.x", value, "--url",
                         "ws://127.0.0.1:" + std::to_string(free_port()), "--token", "unused"});
  // Before: written, and every later start refused the file.
  EXPECT_TRUE(exited_with(r, 78)) << describe(r);
  EXPECT_NE(r.err.find("nested deeper than 64 levels"), std::string::npos) << describe(r);
  EXPECT_EQ(read_text(cfg), "{}");
}

// --- a running gateway --------------------------------------------------------------------

TEST(HostileConfigGateway, ADeepFileWrittenOverTheConfigIsRefusedAndTheGatewayKeepsServing) {
  TempDir dir;
  Gateway gw(dir, reloadable());
  gw.start();
  const pid_t pid = gw.pid();
  const fs::path file = dir.path() / "config.json";
  write_by_rename(file, deep_meta());
  // Before: the watcher's read took the process down (exit 139).
  ASSERT_TRUE(gw.wait_for_log("is invalid (1 problem(s))", 10s)) << gw.log();
  EXPECT_EQ(gw.get("/healthz").status, 200);
  json s = status_of(gw);
  EXPECT_EQ(s["pid"], pid);
  EXPECT_FALSE(s["config"]["valid"].get<bool>()) << s.dump();
  EXPECT_EQ(s["config"]["errors"][0]["path"], "meta[0][0][0]") << s.dump();
  EXPECT_NE(s["config"]["errors"][0]["message"].get<std::string>().find(
                "nested deeper than 64 levels"),
            std::string::npos)
      << s.dump();
  json got = gw.client({"operator.read"})->request("config.get", json::object());
  EXPECT_FALSE(got["valid"].get<bool>()) << got.dump();
  EXPECT_EQ(reply_to(gw, "still here", "deep-1"), "still here");
  EXPECT_EQ(read_text(file), deep_meta());
}

TEST(HostileConfigGateway, ABrokenFileWithASecretNeverShowsIt) {
  TempDir dir;
  Gateway gw(dir, reloadable());
  gw.start();
  json broken = reloadable();
  broken["gateway"]["auth"]["token"] = "cfg-token-SECRET-0042";
  std::string text = broken.dump(2);
  // Cut right after the secret: the parser stops inside the string that holds it.
  text.resize(text.find("SECRET-0042") + 11);
  write_by_rename(dir.path() / "config.json", text);
  ASSERT_TRUE(gw.wait_for_log("the running config stays", 10s)) << gw.log();
  const json s = status_of(gw);
  EXPECT_FALSE(s["config"]["valid"].get<bool>()) << s.dump();
  const json got = gw.client({"operator.read"})->request("config.get", json::object());
  const auto ready = gw.get("/readyz");
  for (const std::string& where : {s.dump(), got.dump(), ready.body, gw.log()}) {
    EXPECT_EQ(where.find("SECRET"), std::string::npos) << where;
  }
}

TEST(HostileConfigGateway, AStartOnADeepFileFallsBackToLastGoodOrExits78) {
  TempDir dir;
  json cfg = reloadable();
  cfg["agents"]["main"]["prefix"] = "good:";
  Gateway gw(dir, cfg);
  gw.start();
  ASSERT_TRUE(fs::exists(dir.path() / "config.json.last-good"));
  gw.signal(SIGTERM);
  ASSERT_EQ(gw.wait_exit().code, 0);

  const fs::path file = dir.path() / "config.json";
  std::ofstream(file, std::ios::binary | std::ios::trunc) << deep_meta();
  gw.start();  // ready: on the last-known-good copy. Before: exit 139 on every start.
  EXPECT_NE(gw.log().find("DEGRADED"), std::string::npos) << gw.log();
  EXPECT_NE(gw.log().find("nested deeper than 64 levels"), std::string::npos) << gw.log();
  json s = status_of(gw);
  EXPECT_TRUE(s["degraded"].is_string()) << s.dump();
  EXPECT_FALSE(s["config"]["valid"].get<bool>()) << s.dump();
  EXPECT_EQ(reply_to(gw, "hi", "deep-start-1"), "good:hi");
  gw.signal(SIGTERM);
  ASSERT_EQ(gw.wait_exit().code, 0);

  fs::remove(dir.path() / "config.json.last-good");
  EXPECT_ANY_THROW(gw.start());
  EXPECT_EQ(gw.wait_exit().code, 78) << gw.log();
  EXPECT_NE(gw.log().find("nested deeper than 64 levels"), std::string::npos) << gw.log();
  EXPECT_NE(gw.log().find("no last-known-good copy"), std::string::npos) << gw.log();
}

TEST(HostileConfigGateway, AStartOnAFifoExits78WithoutWaiting) {
  TempDir dir;
  Gateway gw(dir, reloadable());
  const fs::path file = dir.path() / "config.json";
  fs::remove(file);
  ASSERT_EQ(::mkfifo(file.c_str(), 0600), 0);
  // Before: blocked opening the FIFO; the harness gave up waiting for readiness.
  EXPECT_ANY_THROW(gw.start());
  EXPECT_EQ(gw.wait_exit(5s).code, 78) << gw.log();
  EXPECT_NE(gw.log().find("not a regular file (a FIFO)"), std::string::npos) << gw.log();
}

TEST(HostileConfigGateway, APatchNestedFiftyThousandDeepIsConfigInvalid) {
  TempDir dir;
  Gateway gw(dir, reloadable());
  gw.start();
  const pid_t pid = gw.pid();
  const fs::path file = dir.path() / "config.json";
  const std::string before = read_text(file);
  auto c = gw.client({"operator.admin"});
  const json got = c->request("config.get", json::object());
  const auto refused = [&](const std::string& raw) -> json {
    try {
      c->request("config.patch", {{"raw", raw}, {"baseHash", got["hash"]}});
    } catch (const server::ClientError& e) {
      return e.error;
    }
    ADD_FAILURE() << "accepted: " << raw.substr(0, 80);
    return nullptr;
  };
  // Before: the gateway segfaulted.
  json e = refused(deep_meta(50'000));
  EXPECT_EQ(e["details"]["code"], "CONFIG_INVALID") << e.dump();
  EXPECT_NE(e.dump().find("nested deeper than 64 levels"), std::string::npos) << e.dump();
  // Before: the second "level" won silently.
  e = refused(R"({"logging": {"level": "debug", "level": "warn"}})");
  EXPECT_EQ(e["details"]["code"], "CONFIG_INVALID") << e.dump();
  EXPECT_NE(e.dump().find("duplicate key \\\"level\\\" (at logging.level)"), std::string::npos)
      << e.dump();
  EXPECT_EQ(read_text(file), before);
  EXPECT_EQ(status_of(gw)["pid"], pid);
  EXPECT_EQ(gw.get("/healthz").status, 200);
}

}  // namespace
}  // namespace drawbridge::e2e
