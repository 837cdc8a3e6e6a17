// Issue 17: four lifecycle transitions an operator hits, each with the real binary, its
// sockets and signals (the decisions themselves are tested in simulated time in
// tests/unit/core/lifecycle_test.cpp).

#include <signal.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <memory>
#include <thread>

#include "e2e/harness.h"
#include "e2e/lifecycle_helpers.h"

namespace drawbridge::e2e {
namespace {

using Clock = std::chrono::steady_clock;
using namespace lifecycle;

// Waits (bounded) for a file another process writes.
bool wait_for_file(const fs::path& file, Millis timeout = 5s) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (!read_text(file).empty()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(10ms);  // a file of another process: polled, bounded
  }
}

// GET /readyz on `port` answers 200 within `timeout` (polled: another process's socket).
bool wait_serving(int port, Millis timeout = 8s) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    try {
      if (http(port, "GET", "/readyz", {}, {}, 1s).status == 200) return true;
    } catch (const std::exception&) {
    }
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

// Nothing accepts on `port` any more within `timeout`.
bool wait_not_listening(int port, Millis timeout = 8s) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    try {
      http(port, "GET", "/healthz", {}, {}, 500ms);
    } catch (const std::exception&) {
      return true;
    }
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

json admin(const Gateway& gw, const std::string& method, const json& params,
           int port = 0) {
  server::GatewayClient c("127.0.0.1", port ? port : gw.port());
  c.connect(gw.token(), {"operator.admin", "operator.read"});
  return c.request(method, params);
}

// An exec agent whose turn never ends by itself (it reads its input, then sleeps); its pid
// goes to `pid_file`, and it is killed when the test ends if it still runs.
struct StuckAgent {
  fs::path pid_file;
  json config() const {
    const std::string script =
        "echo $$ > '" + pid_file.string() + "'; cat >/dev/null; exec sleep 1000";
    return {{"agents", {{"main", {{"type", "exec"},
                                  {"command", {"sh", "-c", script}},
                                  {"timeoutMs", 600000}}}}},
            {"channels", {{"local", {{"maxMessageChars", 0}}}}}};
  }
  ~StuckAgent() {
    const pid_t pid = static_cast<pid_t>(std::atol(read_text(pid_file).c_str()));
    const std::string cmd = read_text("/proc/" + std::to_string(pid) + "/cmdline");
    if (pid > 1 && cmd.find("sleep") != std::string::npos) ::kill(pid, SIGKILL);
  }
};

// 1. A failed start is retried on the port that failed, not on the old one.
TEST(LifecycleDefects, FailedStartOnANewPortIsRetriedOnThatPort) {
  TempDir dir;
  json config = restartable(echo_config());
  config["gateway"]["reload"]["mode"] = "off";  // only the SIGUSR1s restart
  Gateway gw(dir, config);
  gw.set_port_in_config(true);
  gw.start();
  const int p = gw.port();
  auto holder = std::make_unique<PortHolder>();
  const int q = holder->port();

  json edited = json::parse(read_text(dir.path() / "config.json"));
  edited["gateway"]["port"] = q;
  dir.write("config.json", edited.dump(2));
  gw.signal(SIGUSR1);
  ASSERT_TRUE(gw.wait_for_log("failed to start", 8s)) << gw.log();
  json status = status_of(gw);
  EXPECT_EQ(status.value("state", ""), "failed") << status.dump(2);
  // The running config is still the one on P: the file is pending, not applied.
  json cfg = admin(gw, "config.get", json::object());
  EXPECT_TRUE(cfg.value("pending", false)) << cfg.dump(2);
  EXPECT_NE(cfg.value("hash", ""), cfg.value("appliedHash", "")) << cfg.dump(2);
  EXPECT_EQ(cfg["config"]["gateway"].value("port", 0), p) << cfg.dump(2);

  holder.reset();  // Q is free now
  gw.signal(SIGUSR1);
  ASSERT_TRUE(wait_serving(q)) << "nothing serves the new port " << q << "\n" << gw.log();
  EXPECT_TRUE(wait_not_listening(p)) << "the old port " << p << " still serves\n" << gw.log();
  cfg = admin(gw, "config.get", json::object(), q);
  EXPECT_FALSE(cfg.value("pending", true)) << cfg.dump(2);
  EXPECT_EQ(cfg.value("hash", ""), cfg.value("appliedHash", "x")) << cfg.dump(2);
  EXPECT_EQ(cfg["config"]["gateway"].value("port", 0), q) << cfg.dump(2);
}

// 2. SIGTERM during a restart's drain: the stop's budget bounds it, not the restart's 300 s.
TEST(LifecycleDefects, SigtermDuringARestartDrainIsBoundedByTheStopBudget) {
  TempDir dir;
  StuckAgent stuck{dir.path() / "agent.pid"};
  Gateway gw(dir, restartable(stuck.config()));
  // 8 s stop timeout: the watchdog gets 4 s, the turns 3.2 s of it.
  gw.set_env("DRAWBRIDGE_STOP_TIMEOUT_MS", "8000");
  gw.start();
  auto c = gw.client();
  json ack = c->request("chat.send", {{"sessionKey", "stuck"}, {"message", "go"},
                                      {"idempotencyKey", "st-1"}});
  ASSERT_EQ(ack.value("status", ""), "started") << ack.dump();
  ASSERT_TRUE(wait_for_file(stuck.pid_file)) << gw.log();
  // This client does not read while the test waits, so it would never answer the close
  // frame (the teardown cuts it after 100 ms). The turn runs on without it.
  c.reset();
  json r = admin(gw, "gateway.restart.request", {{"reason", "test"}, {"delayMs", 0}});
  ASSERT_EQ(r.value("status", ""), "scheduled") << r.dump();
  ASSERT_TRUE(gw.wait_for_log("draining;", 5s)) << gw.log();

  gw.signal(SIGTERM);
  // Bounded by the stop (turns aborted at 3.2 s, then teardown), far below the supervisor's
  // 8 s: without the fix it waits out the restart's 300 s budget.
  auto st = gw.wait_exit(7s);
  EXPECT_TRUE(st.exited && st.code == 0) << st.describe() << "\n" << gw.log();
  const std::string log = gw.log();
  EXPECT_NE(log.find("the stop takes the restart over"), std::string::npos) << log;
  EXPECT_NE(log.find("aborting"), std::string::npos) << log;
  EXPECT_EQ(log.find("generation 2 ready"), std::string::npos) << log;
}

// 3. A more urgent request shortens a running drain; the CLI says what it did.
// A turn that never ends, then a restart whose drain waits on it (300 s budget).
void begin_a_stuck_drain(Gateway& gw, const StuckAgent& stuck, const std::string& key) {
  gw.start();
  auto c = gw.client();
  json ack = c->request("chat.send", {{"sessionKey", "stuck"}, {"message", "go"},
                                      {"idempotencyKey", key}});
  ASSERT_EQ(ack.value("status", ""), "started") << ack.dump();
  ASSERT_TRUE(wait_for_file(stuck.pid_file)) << gw.log();
  json r = admin(gw, "gateway.restart.request", {{"reason", "first"}, {"delayMs", 0}});
  ASSERT_EQ(r.value("status", ""), "scheduled") << r.dump();
  ASSERT_TRUE(gw.wait_for_log("draining;", 5s)) << gw.log();
}

TEST(LifecycleDefects, AForcedRestartCutsARunningDrainShort) {
  TempDir dir;
  StuckAgent stuck{dir.path() / "agent.pid"};
  Gateway gw(dir, restartable(stuck.config()));
  ASSERT_NO_FATAL_FAILURE(begin_a_stuck_drain(gw, stuck, "fo-1"));

  // Less urgent: coalesced into the running drain, as before.
  json r = admin(gw, "gateway.restart.request", {{"reason", "later"}, {"waitMs", 600000}});
  EXPECT_EQ(r.value("status", ""), "ignored") << r.dump();

  auto cli = run_cli(dir, {"restart", "--force", "--url", gw.url(), "--token", gw.token()});
  EXPECT_TRUE(cli.status.exited && cli.status.code == 0) << cli.out << cli.err;
  EXPECT_NE(cli.out.find("shortened"), std::string::npos) << cli.out << cli.err;
  ASSERT_TRUE(wait_generation(gw, 2, 8s)) << gw.log();
  EXPECT_NE(gw.log().find("more urgent than the running drain"), std::string::npos) << gw.log();
}

TEST(LifecycleDefects, AShorterWaitMsCutsARunningDrainShort) {
  TempDir dir;
  StuckAgent stuck{dir.path() / "agent.pid"};
  Gateway gw(dir, restartable(stuck.config()));
  ASSERT_NO_FATAL_FAILURE(begin_a_stuck_drain(gw, stuck, "wm-1"));
  json r = admin(gw, "gateway.restart.request", {{"reason", "sooner"}, {"waitMs", 1000}});
  EXPECT_EQ(r.value("status", ""), "shortened") << r.dump();
  ASSERT_TRUE(wait_generation(gw, 2, 8s)) << gw.log();
  // The aborted turn's chat was told (the interrupted notice or an aborted run).
  EXPECT_NE(gw.log().find("aborting"), std::string::npos) << gw.log();
}

// 4. A re-exec's successor binds the address of its config when it changed.
TEST(LifecycleDefects, ReexecMovesToAChangedPort) {
  TempDir dir;
  json config = restartable(echo_config());
  config["gateway"]["reload"]["mode"] = "off";
  Gateway gw(dir, config);
  gw.set_port_in_config(true);
  gw.start();
  const int p = gw.port();
  const int q = free_port();
  json edited = json::parse(read_text(dir.path() / "config.json"));
  edited["gateway"]["port"] = q;
  dir.write("config.json", edited.dump(2));
  gw.signal(SIGUSR2);
  ASSERT_TRUE(wait_serving(q)) << "the successor does not serve port " << q << "\n" << gw.log();
  EXPECT_TRUE(wait_not_listening(p)) << "the old port " << p << " still serves\n" << gw.log();
  EXPECT_TRUE(gw.wait_for_log("binding the new address", 3s)) << gw.log();
  auto st = gw.wait_exit(10s);  // the predecessor exits once the successor is ready
  EXPECT_TRUE(st.exited && st.code == 0) << st.describe();
  // The successor (another process group, not ours to wait for) serves chats on Q.
  server::GatewayClient cq("127.0.0.1", q);
  cq.connect(gw.token(), {"operator.admin", "operator.write", "operator.read"});
  json ack = cq.request("chat.send", {{"sessionKey", "moved"}, {"message", "hi"},
                                      {"idempotencyKey", "mv-1"}});
  EXPECT_EQ(await_run(cq, ack.value("runId", ""), 5s).text(), "hi");
  json s = cq.request("status", json::object());
  const int successor = s.value("pid", 0);
  cq.request("gateway.stop", json::object());
  ASSERT_GT(successor, 1);
  EXPECT_TRUE(wait_not_listening(q, 10s)) << "the successor (pid " << successor
                                          << ") did not stop";
}

}  // namespace
}  // namespace drawbridge::e2e
