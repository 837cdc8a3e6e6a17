// Secrets and private files: the generated token is shown once on a terminal and never logged,
// every log line and diagnostic bundle hides the token and the config's secrets, weak tokens
// are warned about, every file and folder is private under a loose umask, and a fatal signal
// leaves one last line.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <thread>

#include "e2e/harness.h"
#include "e2e/lifecycle_helpers.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer) && !defined(__SANITIZE_ADDRESS__)
#define __SANITIZE_ADDRESS__ 1
#endif
#endif

namespace drawbridge::e2e {
namespace {

using Clock = std::chrono::steady_clock;
using namespace lifecycle;

constexpr const char* kStrongToken = "cfg-token-SECRET-4f1c9a7e2b6d";

std::size_t count_of(const std::string& text, const std::string& needle) {
  std::size_t n = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

// The umask of a usual login shell, for this test (the gateway inherits it).
class Umask022 {
 public:
  Umask022() : saved_(::umask(022)) {}
  ~Umask022() { ::umask(saved_); }

 private:
  mode_t saved_;
};

mode_t mode_of(const fs::path& p) {
  struct stat st {};
  if (::lstat(p.c_str(), &st) != 0) return 0;
  return st.st_mode & 07777;
}

// Every file and folder under `root` (root included) whose mode lets group or others in.
std::vector<std::string> not_private(const fs::path& root) {
  std::vector<std::string> out;
  auto check = [&](const fs::path& p) {
    const mode_t m = mode_of(p);
    if ((m & 077) != 0) {
      char buf[16];
      std::snprintf(buf, sizeof buf, " %04o", static_cast<unsigned>(m));
      out.push_back(p.string() + buf);
    }
  };
  check(root);
  std::error_code ec;
  for (fs::recursive_directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
    check(it->path());
  }
  return out;
}

bool wait_for_file(const fs::path& file, Millis timeout = 5s) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (!read_text(file).empty()) return true;
    if (Clock::now() >= deadline) return false;
    // A file of another process: polled, bounded by the deadline.
    std::this_thread::sleep_for(10ms);
  }
}

std::vector<fs::path> bundles_in(const fs::path& data_dir) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(data_dir / "diagnostics", ec)) {
    if (e.path().filename().string().rfind("watchdog-", 0) == 0) out.push_back(e.path());
  }
  return out;
}

// Writes `text` over the config file in place (the watcher sees a modification).
void write_in_place(const fs::path& file, const std::string& text) {
  const int fd = ::open(file.c_str(), O_WRONLY | O_TRUNC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  ::close(fd);
}

// A pseudo-terminal for the gateway's stderr, read on a thread of its own so the gateway never
// blocks on a full terminal.
class Terminal {
 public:
  Terminal() {
    master_ = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master_ < 0 || ::grantpt(master_) != 0 || ::unlockpt(master_) != 0) return;
    slave_ = ::ptsname(master_);
    // Held open by us too: with no process on the other side, reads would fail at once (EIO).
    hold_ = ::open(slave_.c_str(), O_RDWR | O_NOCTTY | O_CLOEXEC);
    reader_ = std::thread([this] {
      char buf[4096];
      while (!stop_) {
        pollfd p{master_, POLLIN, 0};
        if (::poll(&p, 1, 50) <= 0) continue;
        const ssize_t n = ::read(master_, buf, sizeof buf);
        if (n <= 0) continue;
        std::lock_guard lock(mutex_);
        text_.append(buf, static_cast<std::size_t>(n));
      }
    });
  }
  ~Terminal() {
    stop_ = true;
    if (reader_.joinable()) reader_.join();
    if (hold_ >= 0) ::close(hold_);
    if (master_ >= 0) ::close(master_);
  }
  bool ok() const { return !slave_.empty(); }
  const std::string& path() const { return slave_; }
  std::string text() const {
    std::lock_guard lock(mutex_);
    return text_;
  }
  bool wait_for(const std::string& needle, Millis timeout = 5s) const {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      if (text().find(needle) != std::string::npos) return true;
      if (Clock::now() >= deadline) return false;
      std::this_thread::sleep_for(10ms);
    }
  }

 private:
  int master_ = -1;
  int hold_ = -1;
  std::string slave_;
  std::thread reader_;
  std::atomic<bool> stop_{false};
  mutable std::mutex mutex_;
  std::string text_;
};

// `drawbridge run` without a config or a token in the environment: the token is generated.
struct BareGateway {
  BareGateway(const TempDir& dir, const fs::path& err_file, int port)
      : out(dir.path() / "bare.out"),
        p({DRAWBRIDGE_BINARY, "run", "--port", std::to_string(port), "--data-dir",
           (dir.path() / "data").string()},
          dir.path(), out, err_file) {}
  fs::path out;
  Process p;
};

bool wait_ready(int port, Process& p, Millis timeout = 10s) {
  HttpClient probe(port, 1s);
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (p.wait(0ms)) return false;
    auto res = probe.request("GET", "/readyz");
    if (res && res->status == 200) return true;
    std::this_thread::sleep_for(15ms);
  }
  return false;
}

TEST(Secrets, TheGeneratedTokenIsShownOnceOnTheTerminalAndNeverLogged) {
  TempDir dir;
  Terminal tty;
  ASSERT_TRUE(tty.ok());
  const int port = free_port();
  std::string token;
  {
    BareGateway gw(dir, tty.path(), port);
    ASSERT_TRUE(wait_ready(port, gw.p)) << tty.text();
    token = read_text(dir.path() / "data" / "gateway.token");
    while (!token.empty() && token.back() == '\n') token.pop_back();
    ASSERT_EQ(token.size(), 48u);
    ASSERT_TRUE(tty.wait_for("auth token: " + token)) << tty.text();
    EXPECT_EQ(count_of(tty.text(), token), 1u) << "once, and in no log line\n" << tty.text();
    EXPECT_NE(tty.text().find("saved in " + (dir.path() / "data" / "gateway.token").string()),
              std::string::npos)
        << tty.text();
    gw.p.signal(SIGTERM);
    ASSERT_TRUE(gw.p.wait(10s));
  }
  // The next start reads the kept token: nothing is shown.
  const std::size_t before = tty.text().size();
  {
    BareGateway gw(dir, tty.path(), port);
    ASSERT_TRUE(wait_ready(port, gw.p)) << tty.text();
    gw.p.signal(SIGTERM);
    ASSERT_TRUE(gw.p.wait(10s));
    ASSERT_TRUE(tty.wait_for("stopped")) << tty.text();
  }
  EXPECT_EQ(tty.text().substr(before).find(token), std::string::npos) << tty.text();
}

TEST(Secrets, WithoutATerminalTheGeneratedTokenIsOnlyInItsFile) {
  TempDir dir;
  const int port = free_port();
  const fs::path err = dir.path() / "bare.err";
  BareGateway gw(dir, err, port);
  ASSERT_TRUE(wait_ready(port, gw.p)) << read_text(err);
  std::string token = read_text(dir.path() / "data" / "gateway.token");
  while (!token.empty() && token.back() == '\n') token.pop_back();
  ASSERT_FALSE(token.empty());
  gw.p.signal(SIGTERM);
  ASSERT_TRUE(gw.p.wait(10s));
  const std::string log = read_text(gw.out) + read_text(err);
  EXPECT_NE(log.find("generated an auth token, saved in"), std::string::npos) << log;
  EXPECT_EQ(log.find(token), std::string::npos) << log;
}

// A token quoted by a log line (here a notice text that holds it, and a hand-broken config
// whose error would quote a numeric token) is hidden in the log and in the watchdog's bundle.
TEST(Secrets, NeitherTheLogNorAWatchdogBundleHoldsASecret) {
  Umask022 loose;
  TempDir dir;
  const fs::path pid_file = dir.path() / "stuck.pid";
  const std::string script =
      "trap '' TERM; echo $$ > '" + pid_file.string() + "'; echo started; exec sleep 30";
  const std::string api_key = "sk-live-0123456789-agent-env";
  json config = {
      {"gateway", {{"auth", {{"token", kStrongToken}}}}},
      {"agents",
       {{"main",
         {{"type", "exec"},
          {"command", {"sh", "-c", script}},
          {"env", {{"API_KEY", api_key}}},
          {"killGraceMs", 60000},
          {"timeoutMs", 60000}}}}},
      {"channels",
       {{"local",
         {{"maxMessageChars", 0},
          {"notices", {{"stopping", std::string("stopping; token ") + kStrongToken}}}}}}}};
  struct KillStuck {
    fs::path file;
    ~KillStuck() {
      const pid_t pid = static_cast<pid_t>(std::atol(read_text(file).c_str()));
      std::string cmd = read_text("/proc/" + std::to_string(pid) + "/cmdline");
      if (pid > 1 && cmd.find("sleep") != std::string::npos) ::kill(pid, SIGKILL);
    }
  } kill_stuck{pid_file};
  Gateway gw(dir, config);
  gw.set_env("DRAWBRIDGE_STOP_TIMEOUT_MS", "3000");
  gw.start();

  // A hand-broken config: the token is a number now; the error names the path.
  const fs::path file = dir.path() / "config.json";
  json broken = config;
  broken["gateway"]["auth"]["token"] = 987654321987654321LL;
  write_in_place(file, broken.dump(2));
  ASSERT_TRUE(gw.wait_for_log("is invalid", 5s)) << gw.log();

  auto c = gw.client();
  c->request("chat.send", {{"sessionKey", "stuck"}, {"message", "go"}, {"idempotencyKey", "s-1"}});
  ASSERT_TRUE(wait_for_file(pid_file)) << gw.log();
  gw.signal(SIGTERM);
  auto st = gw.wait_exit(8s);
  EXPECT_TRUE(st.exited && st.code == 1) << st.describe() << "\n" << gw.log();

  const std::string log = gw.log();
  EXPECT_NE(log.find("gateway.auth.token"), std::string::npos) << log;
  EXPECT_NE(log.find("notice to local/"), std::string::npos) << log;
  EXPECT_NE(log.find("stopping; token ***"), std::string::npos) << log;
  for (const std::string secret :
       {std::string(kStrongToken), std::string("987654321987654321"), api_key}) {
    EXPECT_EQ(log.find(secret), std::string::npos) << secret << "\n" << log;
  }

  const auto bundles = bundles_in(gw.data_dir());
  ASSERT_EQ(bundles.size(), 1u) << gw.log();
  const std::string bundle = read_text(bundles[0]);
  EXPECT_NE(bundle.find("stopping; token ***"), std::string::npos) << bundle;
  for (const std::string secret :
       {std::string(kStrongToken), std::string("987654321987654321"), api_key}) {
    EXPECT_EQ(bundle.find(secret), std::string::npos) << secret << "\n" << bundle;
  }
  EXPECT_EQ(mode_of(gw.data_dir() / "diagnostics"), 0700u);
  EXPECT_EQ(mode_of(bundles[0]), 0600u);
}

TEST(Secrets, WeakTokensAreWarnedAboutAtStartAndWhenAReloadSetsOne) {
  TempDir dir;
  Gateway gw(dir, echo_config());  // the harness's token, "e2e-token", is short
  gw.start();
  ASSERT_TRUE(gw.wait_for_log("weak gateway token: it is shorter than 16 characters")) << gw.log();
  EXPECT_EQ(gw.log().find(gw.token()), std::string::npos) << gw.log();

  json next = echo_config();
  next["gateway"]["auth"]["token"] = "change-me";  // README.md's example
  write_in_place(dir.path() / "config.json", next.dump(2));
  ASSERT_TRUE(gw.wait_for_log("weak gateway token: it is a well-known example value")) << gw.log();
  EXPECT_TRUE(gw.wait_for_log("gateway.auth changed")) << gw.log();
  EXPECT_EQ(log_count(gw, "weak gateway token"), 2u) << gw.log();
  EXPECT_EQ(gw.log().find("change-me"), std::string::npos) << gw.log();

  next["gateway"]["auth"]["token"] = kStrongToken;
  write_in_place(dir.path() / "config.json", next.dump(2));
  ASSERT_TRUE(wait_for_log_count(gw, "gateway.auth changed", 2, 5s)) << gw.log();
  EXPECT_EQ(log_count(gw, "weak gateway token"), 2u) << "a strong token is not warned about";
}

TEST(FileModes, EveryFileAndFolderIsPrivateUnderUmask022AndCommandsGetTheUsualUmask) {
  Umask022 loose;
  TempDir dir;
  json config = {{"gateway", {{"auth", {{"token", kStrongToken}}}}},
                 {"agents",
                  {{"main",
                    {{"type", "exec"},
                     {"command", {"sh", "-c", "umask; touch made-by-agent"}},
                     {"cwd", dir.path().string()}}}}},
                 {"channels", {{"local", {{"maxMessageChars", 0}}}}}};
  Gateway gw(dir, config);
  gw.start();
  auto c = gw.client();
  json ack = c->request("chat.send",
                        {{"sessionKey", "modes"}, {"message", "hi"}, {"idempotencyKey", "m-1"}});
  EXPECT_EQ(await_run(*c, ack.value("runId", ""), 5s).text(), "0022") << gw.log();
  EXPECT_EQ(mode_of(dir.path() / "made-by-agent"), 0644u) << "commands get the usual umask";

  // A config change keeps a last-known-good copy of the previous config.
  json next = config;
  next["logging"]["level"] = "debug";
  write_in_place(dir.path() / "config.json", next.dump(2));
  ASSERT_TRUE(gw.wait_for_log("config applied", 5s)) << gw.log();

  EXPECT_EQ(not_private(gw.data_dir()), std::vector<std::string>{}) << gw.log();
  for (const char* name :
       {"drawbridge.db", "drawbridge.db-wal", "drawbridge.db-shm", "gateway.lock"}) {
    EXPECT_TRUE(fs::exists(gw.data_dir() / name)) << name;
  }
  EXPECT_EQ(mode_of(dir.path() / "config.json.last-good"), 0600u);
  // Temp files of the atomic writes are gone, and the config keeps the mode it had.
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir.path(), ec)) {
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
  }
  EXPECT_EQ(mode_of(dir.path() / "config.json"), 0644u);
  gw.signal(SIGTERM);
  EXPECT_TRUE(gw.wait_exit(10s).exited);
}

TEST(FileModes, AnExistingLooseDataFolderIsMadePrivateAtStart) {
  Umask022 loose;
  TempDir dir;
  {
    Gateway first(dir, echo_config());
    first.start();
    first.signal(SIGTERM);
    first.wait_exit(10s);
  }
  const fs::path data = dir.path() / "data";
  ::chmod(data.c_str(), 0755);
  ::chmod((data / "drawbridge.db").c_str(), 0644);
  Gateway gw(dir, echo_config());
  gw.start();
  EXPECT_EQ(log_count(gw, "made the gateway's files private"), 1u) << gw.log();
  EXPECT_NE(gw.log().find("drawbridge.db 0644 -> 0600"), std::string::npos) << gw.log();
  EXPECT_EQ(not_private(data), std::vector<std::string>{}) << gw.log();
}

TEST(FatalSignal, SigsegvWritesOneLastLineAndEndsBySignal) {
#if defined(__SANITIZE_ADDRESS__)
  // Under ASan the sanitizer's own SEGV handler reports and exits 1 after our line: the normal
  // build checks the signal.
  GTEST_SKIP() << "ASan handles SIGSEGV itself";
#endif
  // No core file for the test's own SIGSEGV.
  rlimit saved{};
  ::getrlimit(RLIMIT_CORE, &saved);
  rlimit none{0, saved.rlim_max};
  ::setrlimit(RLIMIT_CORE, &none);
  TempDir dir;
  Gateway gw(dir, echo_config());
  gw.start();
  const pid_t pid = gw.pid();
  ASSERT_EQ(::kill(pid, SIGSEGV), 0);
  auto st = gw.wait_exit(10s);
  ::setrlimit(RLIMIT_CORE, &saved);
  EXPECT_FALSE(st.exited) << st.describe();
  EXPECT_EQ(st.signal, SIGSEGV) << st.describe();
  const std::string line = "drawbridge: fatal signal SIGSEGV (pid " + std::to_string(pid) +
                           "); the process ends now; messages already acknowledged are "
                           "replayed at the next start\n";
  EXPECT_EQ(count_of(gw.err(), line), 1u) << gw.err();
}

}  // namespace
}  // namespace drawbridge::e2e
