// Restarts into a fresh process with the real binary: the systemd notify sequence (a fake
// NOTIFY_SOCKET the test reads), the supervised exit 75, the re-exec hand-off of the listening
// socket under a steady connection load, and `drawbridge update` to a healthy and a broken binary.

#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <thread>

#include "e2e/harness.h"
#include "e2e/lifecycle_helpers.h"

namespace drawbridge::e2e {
namespace {

using Clock = std::chrono::steady_clock;

using lifecycle::stop_successor;
using lifecycle::Subreaper;

json status_at(int port, Millis timeout = 5s) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    try {
      server::GatewayClient c("127.0.0.1", port);
      c.connect(Gateway::kToken, {"operator.read"});
      return c.request("status", json::object());
    } catch (const server::ClientError&) {
      if (Clock::now() > deadline) throw;
      std::this_thread::sleep_for(20ms);
    }
  }
}

// Polls `status` on `port` until `pred` holds (bounded).
template <typename Pred>
json wait_status_at(int port, Pred pred, Millis timeout = 10s) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    json s;
    try {
      s = status_at(port, 1s);
    } catch (const server::ClientError&) {
    }
    if ((s.is_object() && pred(s)) || Clock::now() > deadline) return s;
    std::this_thread::sleep_for(20ms);
  }
}

// A datagram socket standing in for systemd's notify socket.
class FakeNotifySocket {
 public:
  explicit FakeNotifySocket(const fs::path& path) : path_(path.string()) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path_.c_str());
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      throw std::runtime_error("bind " + path_ + ": " + std::strerror(errno));
    }
  }
  ~FakeNotifySocket() {
    ::close(fd_);
    ::unlink(path_.c_str());
  }
  const std::string& path() const { return path_; }

  // Datagrams until one contains `needle` (returned with everything before it), bounded.
  std::vector<std::string> until(const std::string& needle, Millis timeout = 10s) {
    std::vector<std::string> seen;
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      timeval tv{0, 50'000};
      ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      char buf[4096];
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) continue;
      seen.emplace_back(buf, static_cast<std::size_t>(n));
      if (seen.back().find(needle) != std::string::npos) return seen;
    }
    ADD_FAILURE() << "no datagram with " << needle << " within " << timeout.count() << " ms";
    return seen;
  }

 private:
  std::string path_;
  int fd_ = -1;
};

bool has_line(const std::string& datagram, const std::string& prefix) {
  for (std::size_t pos = 0; pos < datagram.size();) {
    auto end = datagram.find('\n', pos);
    if (datagram.compare(pos, prefix.size(), prefix) == 0) return true;
    if (end == std::string::npos) break;
    pos = end + 1;
  }
  return false;
}

TEST(ProcessRestart, NotifySequenceForStartReloadRestartWatchdogAndStop) {
  TempDir dir;
  FakeNotifySocket notify(dir.path() / "notify.sock");
  json cfg = echo_config();
  cfg["gateway"]["restart"]["delayMs"] = 0;
  cfg["gateway"]["restart"]["cooldownMs"] = 0;
  Gateway gw(dir, cfg);
  gw.set_env("NOTIFY_SOCKET", notify.path());
  gw.set_env("WATCHDOG_USEC", "200000");  // pings every 100 ms
  gw.start();

  auto start = notify.until("READY=1");
  ASSERT_FALSE(start.empty());
  EXPECT_TRUE(has_line(start.back(), "STATUS=running")) << start.back();
  EXPECT_TRUE(has_line(start.back(), "MAINPID=" + std::to_string(gw.pid()))) << start.back();
  // The watchdog: several pings within a few intervals.
  int pings = 0;
  const auto until = Clock::now() + 1s;
  while (pings < 3 && Clock::now() < until) {
    auto got = notify.until("WATCHDOG=1", 1s);
    if (!got.empty() && got.back() == "WATCHDOG=1") ++pings;
  }
  EXPECT_GE(pings, 3);

  // SIGHUP (systemctl reload): RELOADING=1 with the monotonic time, then READY=1.
  gw.signal(SIGHUP);
  auto reload = notify.until("RELOADING=1");
  ASSERT_FALSE(reload.empty());
  EXPECT_TRUE(has_line(reload.back(), "MONOTONIC_USEC=")) << reload.back();
  EXPECT_FALSE(notify.until("READY=1").empty());

  // An in-process restart is a reload too.
  gw.signal(SIGUSR1);
  auto restart = notify.until("RELOADING=1");
  ASSERT_FALSE(restart.empty());
  EXPECT_TRUE(has_line(restart.back(), "STATUS=restarting (SIGUSR1)")) << restart.back();
  auto ready = notify.until("READY=1");
  ASSERT_FALSE(ready.empty());
  EXPECT_TRUE(has_line(ready.back(), "STATUS=running, generation 2")) << ready.back();

  gw.signal(SIGTERM);
  auto stop = notify.until("STOPPING=1");
  ASSERT_FALSE(stop.empty());
  EXPECT_EQ(gw.wait_exit().code, 0);
}

// Under systemd, a restart that needs a fresh process exits 75 for systemd to start one.
TEST(ProcessRestart, SupervisedRestartExits75AfterStopping) {
  TempDir dir;
  FakeNotifySocket notify(dir.path() / "notify.sock");
  json cfg = echo_config();
  cfg["gateway"]["restart"]["delayMs"] = 0;
  Gateway gw(dir, cfg);
  gw.set_env("NOTIFY_SOCKET", notify.path());
  gw.start();
  ASSERT_FALSE(notify.until("READY=1").empty());
  auto c = gw.client();
  json ack = c->request("chat.send", {{"sessionKey", "sup"}, {"message", "before"},
                                      {"idempotencyKey", "sup-1"}});
  EXPECT_EQ(await_run(*c, ack.value("runId", ""), 5s).text(), "before");
  c.reset();
  gw.signal(SIGUSR2);
  auto stop = notify.until("STOPPING=1");
  ASSERT_FALSE(stop.empty());
  EXPECT_TRUE(has_line(stop.back(), "STATUS=restarting (SIGUSR2): exiting for the supervisor"))
      << stop.back();
  auto st = gw.wait_exit(10s);
  EXPECT_TRUE(st.exited) << st.describe();
  EXPECT_EQ(st.code, 75) << gw.log();
  // The supervisor's part: start it again; the drain left a clean marker.
  gw.start();
  json s = status_at(gw.port());
  EXPECT_TRUE(s.value("cleanStart", false)) << s.dump();
}

// SIGUSR2 with no supervisor: a new process takes the listening socket over; connections made
// during the hand-off are all served, none refused.
TEST(ProcessRestart, ReexecHandsTheSocketOverWithoutRefusingAConnection) {
  Subreaper subreaper;
  TempDir dir;
  json cfg = echo_config();
  cfg["gateway"]["restart"]["delayMs"] = 0;
  Gateway gw(dir, cfg);
  gw.set_env("DRAWBRIDGE_SUPERVISOR", "none");
  gw.start();
  const int port = gw.port();
  const pid_t old_pid = gw.pid();

  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, failed{0};
  std::string first_error;
  std::mutex mu;
  std::thread load([&] {
    while (!stop) {
      HttpClient http(port, 5s);  // a new connection per request
      auto res = http.request("GET", "/healthz");
      if (res && res->status == 200) {
        ++ok;
      } else {
        ++failed;
        std::lock_guard lock(mu);
        if (first_error.empty()) first_error = res ? std::to_string(res->status) : http.last_error();
      }
    }
  });
  // The load runs across the hand-off: requests served before it and after it, each waited
  // FOR (bounded) rather than given a fixed time.
  auto served = [&](int n) {
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (ok.load() + failed.load() < n && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(1ms);
    }
    return ok.load() + failed.load() >= n;
  };
  EXPECT_TRUE(served(10)) << "the load did not get going";
  gw.signal(SIGUSR2);
  auto old_exit = gw.wait_exit(15s);
  json s = wait_status_at(port, [&](const json& s) { return s.value("pid", 0) != old_pid; });
  EXPECT_TRUE(served(ok.load() + failed.load() + 11)) << "no load after the hand-off";
  stop = true;
  load.join();
  const pid_t new_pid = s.value("pid", 0);
  EXPECT_EQ(old_exit.code, 0) << gw.log();
  ASSERT_NE(new_pid, old_pid) << gw.log();
  EXPECT_EQ(failed.load(), 0) << "first failure: " << first_error << "\n" << gw.log();
  EXPECT_GT(ok.load(), 20);
  EXPECT_TRUE(s.value("inheritedSocket", false)) << s.dump();
  EXPECT_TRUE(s.value("cleanStart", false)) << s.dump();
  EXPECT_NE(gw.log().find("handed over to pid " + std::to_string(new_pid)), std::string::npos)
      << gw.log();
  // The new process is in a session of its own: it would outlive the old one's terminal.
  EXPECT_EQ(::getsid(new_pid), new_pid);
  // It serves chats.
  server::GatewayClient c("127.0.0.1", port);
  c.connect(Gateway::kToken, {"operator.read", "operator.write"});
  json ack = c.request("chat.send", {{"sessionKey", "rx"}, {"message", "after"},
                                     {"idempotencyKey", "rx-1"}});
  EXPECT_EQ(await_run(c, ack.value("runId", ""), 5s).text(), "after");
  c.close();
  stop_successor(new_pid);
}

TEST(ProcessRestart, UpdateToAHealthyBinaryHandsOverAndRecordsIt) {
  Subreaper subreaper;
  TempDir dir;
  Gateway gw(dir, echo_config());
  gw.set_env("DRAWBRIDGE_SUPERVISOR", "none");
  gw.start();
  const int port = gw.port();
  const pid_t old_pid = gw.pid();
  const fs::path next = dir.path() / "drawbridge-next";
  fs::copy_file(DRAWBRIDGE_BINARY, next);
  fs::permissions(next, fs::perms::owner_all);
  auto r = run_cli(dir, {"update", "--url", gw.url(), "--token", Gateway::kToken, "--binary",
                         next.string(), "--wait", "--timeout", "20"},
                   30s);
  EXPECT_EQ(r.status.code, 0) << r.out << r.err << gw.log();
  EXPECT_EQ(gw.wait_exit(10s).code, 0);
  json s = wait_status_at(port, [&](const json& s) { return s.value("pid", 0) != old_pid; });
  const pid_t new_pid = s.value("pid", 0);
  EXPECT_EQ(s["binary"], next.string()) << s.dump();
  EXPECT_EQ(s["lastUpdate"]["outcome"], "ok") << s.dump();
  EXPECT_EQ(s["lastUpdate"]["toPid"], new_pid) << s.dump();
  stop_successor(new_pid);
}

TEST(ProcessRestart, UpdateToABrokenBinaryFallsBackInProcessAndRecordsTheFailure) {
  Subreaper subreaper;
  TempDir dir;
  Gateway gw(dir, echo_config());
  gw.set_env("DRAWBRIDGE_SUPERVISOR", "none");
  gw.start();
  const fs::path broken = dir.path() / "drawbridge-broken";
  {
    std::ofstream out(broken);
    out << "#!/bin/sh\necho 'cannot start' >&2\nexit 3\n";
  }
  fs::permissions(broken, fs::perms::owner_all);
  auto r = run_cli(dir, {"update", "--url", gw.url(), "--token", Gateway::kToken, "--binary",
                         broken.string(), "--wait", "--timeout", "20"},
                   30s);
  EXPECT_EQ(r.status.code, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("update failed"), std::string::npos) << r.err;
  ASSERT_TRUE(gw.running()) << gw.log();
  json s = wait_status_at(gw.port(), [](const json& s) { return s.value("generation", 0) >= 2; });
  EXPECT_EQ(s["pid"], gw.pid());
  EXPECT_EQ(s["state"], "running");
  EXPECT_EQ(s["lastUpdate"]["outcome"], "failed") << s.dump();
  EXPECT_NE(s["lastUpdate"].value("error", "").find("exited"), std::string::npos) << s.dump();
  EXPECT_TRUE(fs::exists(gw.data_dir() / "update.json"));
  auto c = gw.client();
  json ack = c->request("chat.send", {{"sessionKey", "up"}, {"message", "still here"},
                                      {"idempotencyKey", "up-1"}});
  EXPECT_EQ(await_run(*c, ack.value("runId", ""), 5s).text(), "still here");
}

}  // namespace
}  // namespace drawbridge::e2e
