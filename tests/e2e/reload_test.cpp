// Config reload with the real binary: config.get/patch/apply, the file watcher, the reload
// plan (none / hot / restart), one restart per change whoever notices it first, and the
// last-known-good copy.

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "e2e/harness.h"

namespace drawbridge::e2e {
namespace {

using Clock = std::chrono::steady_clock;

std::size_t count_of(const std::string& haystack, const std::string& needle) {
  std::size_t n = 0;
  for (auto pos = haystack.find(needle); pos != std::string::npos;
       pos = haystack.find(needle, pos + needle.size())) {
    ++n;
  }
  return n;
}

// A config that reloads quickly: `debounce_ms` for the watcher, restarts `delay_ms` after
// they are asked for, no cooldown.
json reloadable(int debounce_ms = 50, int delay_ms = 0) {
  json c = echo_config();
  c["gateway"]["reload"]["debounceMs"] = debounce_ms;
  c["gateway"]["restart"]["delayMs"] = delay_ms;
  c["gateway"]["restart"]["cooldownMs"] = 0;
  // Spelled out: tests that write the file by hand keep the token the harness connects with.
  c["gateway"]["auth"]["token"] = Gateway::kToken;
  return c;
}

// `status`, retried while the gateway is between generations (connections refused).
json status_of(const Gateway& gw, Millis timeout = 5s) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    try {
      auto c = gw.client({"operator.read"});
      return c->request("status", json::object());
    } catch (const server::ClientError& e) {
      if (Clock::now() > deadline) throw;
      std::this_thread::sleep_for(20ms);
    }
  }
}

json channel_status(const json& status, const std::string& id) {
  for (const auto& ch : status["channels"]) {
    if (ch.value("id", "") == id) return ch;
  }
  return nullptr;
}

// Polls `status` until `pred` holds (bounded).
template <typename Pred>
json wait_status(const Gateway& gw, Pred pred, Millis timeout = 5s) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    json s = status_of(gw);
    if (pred(s) || Clock::now() > deadline) return s;
    std::this_thread::sleep_for(20ms);
  }
}

// Settled: the watcher has read the file since its last event (at least `reads` times, and
// no read is due), no reload runs, no restart is scheduled, and the gateway runs. From here
// nothing can come of the writes so far: what a test asserts absent now stays absent, with
// no fixed wait.
bool settled(const json& s, int reads = 1) {
  const json& w = s["config"]["watcher"];
  return s.value("state", "") == "running" && !s.contains("scheduledRestart") &&
         !s["config"].value("reloading", true) && w.is_object() &&
         w.value("reads", 0) >= reads && !w.value("pending", true);
}

json wait_settled(const Gateway& gw, int reads = 1) {
  json s = wait_status(gw, [reads](const json& s) { return settled(s, reads); }, 10s);
  EXPECT_TRUE(settled(s, reads)) << "not settled: " << s.dump(2);
  return s;
}

std::unique_ptr<server::GatewayClient> admin(const Gateway& gw) {
  return gw.client({"operator.admin"});
}

json patch(server::GatewayClient& c, const json& change) {
  json got = c.request("config.get", json::object());
  return c.request("config.patch", {{"raw", change.dump()}, {"baseHash", got["hash"]}});
}

std::string reply_to(const Gateway& gw, const std::string& text, const std::string& key) {
  auto c = gw.client();
  json ack = c->request("chat.send", {{"sessionKey", "s-" + key}, {"message", text},
                                      {"idempotencyKey", key}});
  return await_run(*c, ack.value("runId", ""), 5s).text();
}

// Writes `text` the way editors do: a temp file in the same folder renamed over the config.
void write_by_rename(const fs::path& file, const std::string& text) {
  const fs::path tmp = file.parent_path() / (".edit-" + file.filename().string() + ".swp");
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
  }
  fs::rename(tmp, file);
}

void write_in_place(const fs::path& file, const std::string& text) {
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  out << text;
}

TEST(ConfigReload, GetReturnsRawHashConfigAndPathWithSecretsRedacted) {
  TempDir dir;
  Gateway gw(dir, reloadable());
  gw.start();
  auto c = gw.client({"operator.read"});
  json got = c->request("config.get", json::object());
  EXPECT_EQ(got["path"], (dir.path() / "config.json").string());
  EXPECT_EQ(got["hash"].get<std::string>().size(), 64u);
  EXPECT_TRUE(got["valid"].get<bool>());
  EXPECT_FALSE(got["pending"].get<bool>());
  EXPECT_EQ(got["hash"], got["appliedHash"]);
  EXPECT_EQ(got["config"]["agents"]["main"]["type"], "echo");
  EXPECT_EQ(got["config"]["gateway"]["reload"]["debounceMs"], 50);
  // The token is a secret: neither the effective config nor the raw text shows it.
  EXPECT_EQ(got["config"]["gateway"]["auth"]["token"], "__DRAWBRIDGE_REDACTED__");
  EXPECT_TRUE(got["rawRedacted"].get<bool>());
  EXPECT_EQ(got["raw"].get<std::string>().find(Gateway::kToken), std::string::npos);
  json raw = json::parse(got["raw"].get<std::string>());
  EXPECT_EQ(raw["gateway"]["auth"]["token"], "__DRAWBRIDGE_REDACTED__");
}

TEST(ConfigReload, ApplyOfARedactedDocumentKeepsTheSecret) {
  TempDir dir;
  Gateway gw(dir, reloadable());
  gw.start();
  auto c = admin(gw);
  json got = c->request("config.get", json::object());
  json doc = json::parse(got["raw"].get<std::string>());
  doc["agents"]["main"]["prefix"] = "P:";
  json res = c->request("config.apply", {{"raw", doc.dump()}, {"baseHash", got["hash"]}});
  EXPECT_EQ(res["plan"]["kind"], "hot") << res.dump();
  json file = json::parse(read_text(dir.path() / "config.json"));
  EXPECT_EQ(file["gateway"]["auth"]["token"], Gateway::kToken);
  EXPECT_EQ(file["agents"]["main"]["prefix"], "P:");
  // The agent was swapped for new turns, and the old token still connects.
  EXPECT_EQ(reply_to(gw, "hello", "apply-1"), "P:hello");
}

// The OpenClaw bug this prevents: the RPC wrote the file, the watcher hot-reloaded the channel,
// then the restart scheduled by the RPC started it a second time.
TEST(ConfigReload, ChannelOnlyPatchRestartsThatChannelOnceAndNothingElse) {
  TempDir dir;
  Gateway gw(dir, reloadable(/*debounce_ms=*/30));
  gw.start();
  ASSERT_EQ(channel_status(status_of(gw), "local")["starts"], 1);
  auto c = admin(gw);
  json res = patch(*c, {{"channels", {{"local", {{"maxMessageChars", 5}}}}}});
  EXPECT_EQ(res["plan"]["kind"], "hot") << res.dump();
  EXPECT_TRUE(res["plan"]["applied"].get<bool>());
  ASSERT_EQ(res["plan"]["actions"].size(), 1u) << res.dump();
  EXPECT_EQ(res["plan"]["actions"][0]["action"], "restart-channel");
  EXPECT_EQ(res["plan"]["actions"][0]["target"], "local");
  EXPECT_EQ(res["changedPaths"], json::array({"channels.local.maxMessageChars"}));
  // Once the watcher has read the RPC's own write and nothing is scheduled: still one new
  // start, no restart.
  json s = wait_settled(gw);
  EXPECT_EQ(channel_status(s, "local")["starts"], 2) << s.dump();
  EXPECT_EQ(s["generation"], 1);
  EXPECT_EQ(s["restarts"], 0);
  EXPECT_EQ(s["config"]["reloads"], 1) << s.dump();
  EXPECT_EQ(count_of(gw.log(), "channel local started"), 2u) << gw.log();
  EXPECT_EQ(count_of(gw.log(), "changed (file watcher)"), 0u) << gw.log();
  EXPECT_FALSE(s.contains("scheduledRestart")) << s.dump();
}

TEST(ConfigReload, NoneClassPatchAppliesWithoutTouchingChannels) {
  TempDir dir;
  Gateway gw(dir, reloadable());
  gw.start();
  auto c = admin(gw);
  json res = patch(*c, {{"messages", {{"queue", {{"cap", 5}}}}}, {"logging", {{"level", "debug"}}}});
  EXPECT_EQ(res["plan"]["kind"], "none") << res.dump();
  EXPECT_TRUE(res["plan"]["applied"].get<bool>());
  json got = c->request("config.get", json::object());
  EXPECT_EQ(got["config"]["messages"]["queue"]["cap"], 5);
  EXPECT_FALSE(got["pending"].get<bool>());
  json s = status_of(gw);
  EXPECT_EQ(channel_status(s, "local")["starts"], 1);
  EXPECT_EQ(s["generation"], 1);
}

// Who notices the write first must not matter: the watcher (debounce shorter than the restart
// delay), the scheduled restart (longer debounce), or both at once.
class RestartClassPatch : public ::testing::TestWithParam<std::pair<int, int>> {};

TEST_P(RestartClassPatch, RestartsExactlyOnce) {
  const auto [debounce_ms, delay_ms] = GetParam();
  TempDir dir;
  Gateway gw(dir, reloadable(debounce_ms, delay_ms));
  gw.start();
  auto c = admin(gw);
  // gateway.bind is restart-class (the port comes from the command line here).
  json res = patch(*c, {{"gateway", {{"bind", "127.0.0.1"}}}});
  EXPECT_EQ(res["plan"]["kind"], "restart") << res.dump();
  EXPECT_EQ(res["plan"]["restart"]["status"], "scheduled") << res.dump();
  c.reset();  // an idle client would hold the drain's close handshake to its timeout
  json s = wait_status(gw, [](const json& s) { return s.value("generation", 0) >= 2; });
  ASSERT_EQ(s["generation"], 2) << gw.log();
  // The watcher has read the write too and nothing is scheduled: no second restart can come.
  s = wait_settled(gw);
  EXPECT_EQ(s["generation"], 2) << gw.log();
  EXPECT_EQ(s["restarts"], 1);
  EXPECT_EQ(s["bind"], "127.0.0.1");
  EXPECT_EQ(channel_status(s, "local")["starts"], 2);
  EXPECT_EQ(count_of(gw.log(), "ready: restart"), 1u) << gw.log();
  json got = status_of(gw);
  EXPECT_FALSE(got.contains("scheduledRestart"));
}

INSTANTIATE_TEST_SUITE_P(WatcherBeforeAfterOrWithTheRestart, RestartClassPatch,
                         ::testing::Values(std::pair{0, 300}, std::pair{300, 0},
                                           std::pair{150, 150}));

TEST(ConfigReload, RapidRestartClassPatchesCoalesceIntoOneRestart) {
  TempDir dir;
  Gateway gw(dir, reloadable(/*debounce_ms=*/20, /*delay_ms=*/600));
  gw.start();
  auto c = admin(gw);
  for (const char* bind : {"127.0.0.1", "loopback", "127.0.0.1", "loopback", "127.0.0.1"}) {
    json res = patch(*c, {{"gateway", {{"bind", bind}}}});
    ASSERT_TRUE(res.value("ok", false)) << res.dump();
  }
  c.reset();
  json s = wait_status(gw, [](const json& s) { return s.value("generation", 0) >= 2; });
  ASSERT_EQ(s["generation"], 2) << gw.log();
  s = wait_settled(gw);
  EXPECT_EQ(s["generation"], 2) << gw.log();
  EXPECT_EQ(s["restarts"], 1);
  EXPECT_EQ(s["bind"], "127.0.0.1");
}

// The watcher and SIGHUP react to the same hand edit: one restart.
TEST(ConfigReload, HandEditSeenByTheWatcherAndBySighupRestartsOnce) {
  TempDir dir;
  json cfg = reloadable(/*debounce_ms=*/100, /*delay_ms=*/100);
  Gateway gw(dir, cfg);
  gw.start();
  cfg["gateway"]["bind"] = "127.0.0.1";
  write_in_place(dir.path() / "config.json", cfg.dump(2));
  gw.signal(SIGHUP);
  json s = wait_status(gw, [](const json& s) { return s.value("generation", 0) >= 2; });
  ASSERT_EQ(s["generation"], 2) << gw.log();
  s = wait_settled(gw);
  EXPECT_EQ(s["generation"], 2) << gw.log();
  EXPECT_EQ(s["restarts"], 1);
  EXPECT_EQ(count_of(gw.log(), "restart scheduled"), 1u) << gw.log();
}

// A restart-class edit, then an edit that takes it back and changes a hot key: the hot
// reload applies the file and the scheduled restart is no longer needed.
TEST(ConfigReload, HotReloadCancelsTheRestartScheduledForTheSameChange) {
  TempDir dir;
  json cfg = reloadable(/*debounce_ms=*/30, /*delay_ms=*/1500);
  Gateway gw(dir, cfg);
  gw.start();
  const fs::path file = dir.path() / "config.json";
  json edited = cfg;
  edited["gateway"]["bind"] = "127.0.0.1";
  write_in_place(file, edited.dump(2));
  json s = wait_status(gw, [](const json& s) { return s.contains("scheduledRestart"); });
  ASSERT_TRUE(s.contains("scheduledRestart")) << gw.log();
  cfg["agents"]["main"]["prefix"] = "hot:";
  write_in_place(file, cfg.dump(2));
  ASSERT_TRUE(gw.wait_for_log("scheduled config restart is no longer needed", 5s)) << gw.log();
  // Nothing scheduled any more (the cancelled restart's timer is stale: a timer of a consumed
  // or cancelled cycle does nothing, RestartScheduler's unit tests show it in simulated time).
  s = wait_settled(gw, 2);
  EXPECT_EQ(s["generation"], 1) << gw.log();
  EXPECT_EQ(s["restarts"], 0);
  EXPECT_FALSE(s.contains("scheduledRestart"));
  EXPECT_EQ(reply_to(gw, "hi", "cancel-1"), "hot:hi");
}

TEST(ConfigReload, RapidHandEditsCoalesceIntoOneReload) {
  TempDir dir;
  json cfg = reloadable(/*debounce_ms=*/200);
  Gateway gw(dir, cfg);
  gw.start();
  const fs::path file = dir.path() / "config.json";
  for (int i = 1; i <= 5; ++i) {
    cfg["agents"]["main"]["prefix"] = "v" + std::to_string(i) + ":";
    write_in_place(file, cfg.dump(2));
    std::this_thread::sleep_for(10ms);
  }
  json s = wait_status(gw, [](const json& s) { return s["config"].value("reloads", 0) >= 1; });
  s = wait_settled(gw);
  EXPECT_EQ(s["config"]["reloads"], 1) << gw.log();
  EXPECT_EQ(reply_to(gw, "x", "rapid-1"), "v5:x");
}

TEST(ConfigReload, StaleBaseHashIsRefusedAndNothingIsWritten) {
  TempDir dir;
  Gateway gw(dir, reloadable());
  gw.start();
  auto c = admin(gw);
  const std::string before = read_text(dir.path() / "config.json");
  json got = c->request("config.get", json::object());
  try {
    c->request("config.patch", {{"raw", R"({"logging":{"level":"debug"}})"},
                                {"baseHash", std::string(64, '0')}});
    FAIL() << "a stale baseHash was accepted";
  } catch (const server::ClientError& e) {
    EXPECT_EQ(e.code, "INVALID_REQUEST");
    EXPECT_EQ(e.error["details"]["code"], "CONFIG_CONFLICT") << e.error.dump();
    EXPECT_EQ(e.error["details"]["currentHash"], got["hash"]);
  }
  try {
    c->request("config.patch", {{"raw", R"({"logging":{"level":"debug"}})"}});
    FAIL() << "a patch without baseHash was accepted";
  } catch (const server::ClientError& e) {
    EXPECT_EQ(e.error["details"]["code"], "BASE_HASH_REQUIRED") << e.error.dump();
  }
  EXPECT_EQ(read_text(dir.path() / "config.json"), before);
}

TEST(ConfigReload, BadPatchIsRefusedWithEveryErrorAndChangesNothing) {
  TempDir dir;
  Gateway gw(dir, reloadable());
  gw.start();
  auto c = admin(gw);
  const std::string before = read_text(dir.path() / "config.json");
  json got = c->request("config.get", json::object());
  try {
    patch(*c, {{"gateway", {{"reload", {{"debounceMs", "soon"}}}}},
               {"logging", {{"level", "loud"}}},
               {"channels", {{"local", {{"agent", "nobody"}}}}}});
    FAIL() << "an invalid patch was accepted";
  } catch (const server::ClientError& e) {
    EXPECT_EQ(e.code, "INVALID_REQUEST");
    const json& details = e.error["details"];
    EXPECT_EQ(details["code"], "CONFIG_INVALID") << e.error.dump();
    std::set<std::string> paths;
    for (const auto& err : details["errors"]) paths.insert(err.value("path", ""));
    EXPECT_TRUE(paths.count("gateway.reload.debounceMs")) << e.error.dump();
    EXPECT_TRUE(paths.count("logging.level")) << e.error.dump();
    EXPECT_TRUE(paths.count("channels.local.agent")) << e.error.dump();
  }
  EXPECT_EQ(read_text(dir.path() / "config.json"), before);
  EXPECT_FALSE(fs::exists(dir.path() / "config.json.last-good.tmp"));
  json after = c->request("config.get", json::object());
  EXPECT_EQ(after["hash"], got["hash"]);
  EXPECT_EQ(after["config"], got["config"]);
  json s = status_of(gw);
  EXPECT_EQ(s["config"]["reloads"], 0);
  EXPECT_EQ(channel_status(s, "local")["starts"], 1);
}

class HandEdit : public ::testing::TestWithParam<bool> {};

TEST_P(HandEdit, IsPickedUpAndApplied) {
  const bool by_rename = GetParam();
  TempDir dir;
  json cfg = reloadable(/*debounce_ms=*/50);
  Gateway gw(dir, cfg);
  gw.start();
  cfg["agents"]["main"]["prefix"] = "edited:";
  cfg["channels"]["local"]["maxMessageChars"] = 400;
  const fs::path file = dir.path() / "config.json";
  if (by_rename) {
    write_by_rename(file, cfg.dump(2));
  } else {
    write_in_place(file, cfg.dump(2));
  }
  ASSERT_TRUE(gw.wait_for_log("config applied", 5s)) << gw.log();
  json s = status_of(gw);
  EXPECT_EQ(channel_status(s, "local")["starts"], 2);
  EXPECT_EQ(s["generation"], 1);
  EXPECT_EQ(s["config"]["lastReload"]["source"], "file watcher");
  EXPECT_EQ(reply_to(gw, "hi", "edit-1"), "edited:hi");
}

INSTANTIATE_TEST_SUITE_P(ByRenameAndInPlace, HandEdit, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? "Rename" : "InPlace"; });

TEST(ConfigReload, DeletedThenRecreatedFileIsPickedUp) {
  TempDir dir;
  json cfg = reloadable(/*debounce_ms=*/50);
  Gateway gw(dir, cfg);
  gw.start();
  const fs::path file = dir.path() / "config.json";
  fs::remove(file);
  std::this_thread::sleep_for(20ms);
  cfg["agents"]["main"]["prefix"] = "back:";
  write_in_place(file, cfg.dump(2));
  ASSERT_TRUE(gw.wait_for_log("config applied", 5s)) << gw.log();
  EXPECT_EQ(reply_to(gw, "hi", "recreate-1"), "back:hi");
}

TEST(ConfigReload, GatewaysOwnWritesCauseNoReloadLoop) {
  TempDir dir;
  Gateway gw(dir, reloadable(/*debounce_ms=*/30));
  gw.start();
  auto c = admin(gw);
  for (int i = 0; i < 3; ++i) {
    json res = patch(*c, {{"agents", {{"main", {{"prefix", "p" + std::to_string(i)}}}}}});
    ASSERT_EQ(res["plan"]["kind"], "hot") << res.dump();
  }
  // The file carries the gateway's bookkeeping now.
  json file = json::parse(read_text(dir.path() / "config.json"));
  EXPECT_TRUE(file["meta"].contains("lastTouchedAt")) << file.dump();
  json s = wait_settled(gw);
  EXPECT_EQ(s["config"]["reloads"], 3) << gw.log();
  EXPECT_EQ(count_of(gw.log(), "changed (file watcher)"), 0u) << gw.log();
  // A hand edit of only the bookkeeping changes nothing that runs.
  file["meta"]["note"] = "touched by hand";
  write_in_place(dir.path() / "config.json", file.dump(2));
  ASSERT_TRUE(gw.wait_for_log("changed (file watcher): none", 5s)) << gw.log();
  s = status_of(gw);
  EXPECT_EQ(channel_status(s, "local")["starts"], 1);
}

TEST(ConfigReload, InvalidHandEditStaysOnDiskAndIsNotApplied) {
  TempDir dir;
  json cfg = reloadable(/*debounce_ms=*/30);
  Gateway gw(dir, cfg);
  gw.start();
  const fs::path file = dir.path() / "config.json";
  json bad = cfg;
  bad["gateway"]["reload"]["debounceMs"] = -5;
  bad["agents"]["main"]["prefix"] = "never:";
  const std::string bad_text = bad.dump(2);
  write_in_place(file, bad_text);
  ASSERT_TRUE(gw.wait_for_log("is invalid (1 problem(s))", 5s)) << gw.log();
  EXPECT_EQ(read_text(file), bad_text);
  json s = status_of(gw);
  EXPECT_FALSE(s["config"]["valid"].get<bool>());
  EXPECT_EQ(s["config"]["errors"][0]["path"], "gateway.reload.debounceMs") << s.dump();
  auto ready = gw.get("/readyz");
  EXPECT_EQ(ready.status, 200);
  EXPECT_FALSE(ready.json_body()["details"]["config"]["valid"].get<bool>()) << ready.body;
  EXPECT_EQ(reply_to(gw, "hi", "invalid-1"), "hi");
  // Fixing the file applies it.
  bad["gateway"]["reload"]["debounceMs"] = 30;
  write_in_place(file, bad.dump(2));
  ASSERT_TRUE(gw.wait_for_log("config applied", 5s)) << gw.log();
  EXPECT_EQ(reply_to(gw, "hi", "invalid-2"), "never:hi");
  EXPECT_TRUE(status_of(gw)["config"]["valid"].get<bool>());
}

TEST(ConfigReload, ModeOffAppliesNothingUntilAnExplicitRestart) {
  TempDir dir;
  json cfg = reloadable(/*debounce_ms=*/30);
  cfg["gateway"]["reload"]["mode"] = "off";
  Gateway gw(dir, cfg);
  gw.start();
  auto c = admin(gw);
  json res = patch(*c, {{"agents", {{"main", {{"prefix", "later:"}}}}}});
  EXPECT_EQ(res["plan"]["kind"], "hot") << res.dump();
  EXPECT_EQ(res["plan"]["mode"], "off");
  EXPECT_FALSE(res["plan"]["applied"].get<bool>());
  EXPECT_EQ(reply_to(gw, "hi", "off-1"), "hi");
  json got = c->request("config.get", json::object());
  EXPECT_TRUE(got["pending"].get<bool>());
  c.reset();
  gw.signal(SIGUSR1);
  json s = wait_status(gw, [](const json& s) { return s.value("generation", 0) >= 2; });
  ASSERT_EQ(s["generation"], 2) << gw.log();
  EXPECT_EQ(reply_to(gw, "hi", "off-2"), "later:hi");
}

TEST(ConfigReload, AnInvalidFileAtStartFallsBackToTheLastKnownGoodCopy) {
  TempDir dir;
  json cfg = reloadable();
  cfg["agents"]["main"]["prefix"] = "good:";
  Gateway gw(dir, cfg);
  gw.start();
  const fs::path file = dir.path() / "config.json";
  ASSERT_TRUE(fs::exists(dir.path() / "config.json.last-good"));
  gw.signal(SIGTERM);
  ASSERT_EQ(gw.wait_exit().code, 0);
  // Broken while the gateway was down.
  const std::string broken = "{ \"gateway\": { \"reload\": { \"mode\": \"sometimes\" } }, \"logging\": 3 }";
  write_in_place(file, broken);
  gw.start();  // ready: on the last-known-good copy
  EXPECT_NE(gw.log().find("DEGRADED"), std::string::npos) << gw.log();
  EXPECT_NE(gw.log().find("gateway.reload.mode"), std::string::npos) << gw.log();
  json s = status_of(gw);
  EXPECT_TRUE(s["degraded"].is_string()) << s.dump();
  EXPECT_FALSE(s["config"]["valid"].get<bool>());
  EXPECT_EQ(reply_to(gw, "hi", "lkg-1"), "good:hi");
  EXPECT_EQ(read_text(file), broken);
  gw.signal(SIGTERM);
  ASSERT_EQ(gw.wait_exit().code, 0);

  // Without a last-known-good copy: exit 78, the code a supervisor does not restart on.
  fs::remove(dir.path() / "config.json.last-good");
  EXPECT_ANY_THROW(gw.start());
  EXPECT_EQ(gw.wait_exit().code, 78) << gw.log();
  EXPECT_NE(gw.log().find("no last-known-good copy"), std::string::npos) << gw.log();
}

TEST(ConfigReload, WritesWithoutAConfigFileAreRefusedClearly) {
  TempDir dir;
  const int port = free_port();
  const auto out = dir.path() / "nofile.out";
  const auto err = dir.path() / "nofile.err";
  Process p({DRAWBRIDGE_BINARY, "run", "--port", std::to_string(port), "--data-dir",
             (dir.path() / "data").string()},
            dir.path(), out, err, {{"DRAWBRIDGE_GATEWAY_TOKEN", "t0k"}});
  HttpClient probe(port, 1s);
  const auto deadline = Clock::now() + 10s;
  for (;;) {
    auto res = probe.request("GET", "/readyz");
    if (res && res->status == 200) break;
    ASSERT_LT(Clock::now(), deadline) << read_text(out) << read_text(err);
    ASSERT_FALSE(p.wait(15ms).has_value()) << read_text(out) << read_text(err);
  }
  server::GatewayClient c("127.0.0.1", port);
  c.connect("t0k", {"operator.admin"});
  json got = c.request("config.get", json::object());
  EXPECT_EQ(got["path"], "");
  try {
    c.request("config.patch", {{"raw", R"({"logging":{"level":"debug"}})"}});
    FAIL() << "accepted without a file";
  } catch (const server::ClientError& e) {
    EXPECT_EQ(e.error["details"]["code"], "NO_CONFIG_FILE") << e.error.dump();
  }
  c.close();
  p.signal(SIGTERM);
  ASSERT_TRUE(p.wait(10s).has_value());
}

}  // namespace
}  // namespace drawbridge::e2e
