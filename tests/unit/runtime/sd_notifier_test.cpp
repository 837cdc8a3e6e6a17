#include "runtime/sd_notifier.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "core/manual_executor.h"

namespace drawbridge::runtime {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// Sets (or unsets) one variable for the life of the object, then puts back what was there.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, std::optional<std::string> value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value) {
      ::setenv(name, value->c_str(), 1);
    } else {
      ::unsetenv(name);
    }
  }
  ~ScopedEnv() {
    if (old_) {
      ::setenv(name_.c_str(), old_->c_str(), 1);
    } else {
      ::unsetenv(name_.c_str());
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_;
  std::optional<std::string> old_;
};

std::uint64_t monotonic_usec_now() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000u +
         static_cast<std::uint64_t>(ts.tv_nsec) / 1'000u;
}

std::vector<std::string> lines(const std::string& s) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (true) {
    const auto nl = s.find('\n', start);
    out.push_back(s.substr(start, nl - start));
    if (nl == std::string::npos) return out;
    start = nl + 1;
  }
}

// Plays systemd: a datagram socket the notifier sends to, bound to a file in a fresh folder
// or to an abstract address ("@..."). NOTIFY_SOCKET points at it for the test; the watchdog
// variables start unset, whatever the environment running the tests has. The watchdog's
// timers run on a ManualExecutor: a datagram is queued on the socket before sd_notify returns,
// so drain() after advance() sees exactly the pings of that simulated time.
class SdNotifierTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "drawbridge-notify-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    if (fd_ >= 0) ::close(fd_);
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // Binds the receiving socket; `address` is a path or "@name". Returns the NOTIFY_SOCKET value.
  std::string listen(const std::string& address) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    EXPECT_GE(fd_, 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    socklen_t len = 0;
    if (address[0] == '@') {
      sa.sun_path[0] = '\0';
      address.copy(sa.sun_path + 1, address.size() - 1, 1);
      len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address.size());
    } else {
      address.copy(sa.sun_path, sizeof(sa.sun_path) - 1);
      len = static_cast<socklen_t>(sizeof(sa));
    }
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&sa), len), 0) << std::strerror(errno);
    return address;
  }

  std::string listen_in_folder() { return listen((dir_ / "notify").string()); }

  // The next datagram, waiting for it up to `timeout`; a datagram carrying a file descriptor
  // (a barrier) has it closed, which is how systemd acknowledges a barrier.
  std::optional<std::string> receive(std::chrono::milliseconds timeout = 2s) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) return std::nullopt;
    char buf[4096];
    iovec iov{buf, sizeof(buf)};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    const ssize_t n = ::recvmsg(fd_, &msg, MSG_CMSG_CLOEXEC);
    if (n < 0) return std::nullopt;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
        const auto count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (std::size_t i = 0; i < count; ++i) {
          int passed = -1;
          std::memcpy(&passed, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
          ::close(passed);
        }
      }
    }
    return std::string(buf, static_cast<std::size_t>(n));
  }

  // Every datagram already queued, without waiting.
  std::vector<std::string> drain() {
    std::vector<std::string> out;
    while (auto m = receive(0ms)) out.push_back(*m);
    return out;
  }

  static std::string abstract_name() {
    std::random_device rd;
    return "@drawbridge-test-" + std::to_string(::getpid()) + "-" + std::to_string(rd());
  }

  core::ManualClock clock_;
  core::ManualExecutor executor_{clock_};
  fs::path dir_;
  int fd_ = -1;
  ScopedEnv watchdog_usec_{"WATCHDOG_USEC", std::nullopt};
  ScopedEnv watchdog_pid_{"WATCHDOG_PID", std::nullopt};
};

TEST_F(SdNotifierTest, ReadySendsStatusAndOurPid) {
  ScopedEnv env("NOTIFY_SOCKET", listen_in_folder());
  SdNotifier n(clock_, executor_);
  ASSERT_TRUE(n.enabled());
  n.ready("serving on 127.0.0.1:18789");
  EXPECT_EQ(receive(),
            "READY=1\nSTATUS=serving on 127.0.0.1:18789\nMAINPID=" + std::to_string(::getpid()));
  EXPECT_EQ(n.messages_sent(), 1u);
}

TEST_F(SdNotifierTest, ReloadingCarriesTheMonotonicClockNow) {
  ScopedEnv env("NOTIFY_SOCKET", listen_in_folder());
  SdNotifier n(clock_, executor_);
  const auto before = monotonic_usec_now();
  n.reloading("restarting: config change");
  const auto after = monotonic_usec_now();
  const auto m = receive();
  ASSERT_TRUE(m);
  const auto l = lines(*m);
  ASSERT_EQ(l.size(), 3u) << *m;
  EXPECT_EQ(l[0], "RELOADING=1");
  ASSERT_EQ(l[1].rfind("MONOTONIC_USEC=", 0), 0u) << l[1];
  const auto usec = std::stoull(l[1].substr(std::string("MONOTONIC_USEC=").size()));
  EXPECT_GE(usec, before);
  EXPECT_LE(usec, after);
  EXPECT_EQ(l[2], "STATUS=restarting: config change");
}

TEST_F(SdNotifierTest, StoppingStatusExtendTimeoutAndMainPid) {
  ScopedEnv env("NOTIFY_SOCKET", listen_in_folder());
  SdNotifier n(clock_, executor_);
  n.stopping("draining: 2 turns");
  n.status("running, generation 3");
  n.extend_timeout(45s);
  n.main_pid(4242);
  EXPECT_EQ(receive(), "STOPPING=1\nSTATUS=draining: 2 turns");
  EXPECT_EQ(receive(), "STATUS=running, generation 3");
  EXPECT_EQ(receive(), "EXTEND_TIMEOUT_USEC=45000000");
  EXPECT_EQ(receive(), "MAINPID=4242");
  EXPECT_EQ(n.messages_sent(), 4u);
}

TEST_F(SdNotifierTest, StatusWithANewlineStaysOneField) {
  ScopedEnv env("NOTIFY_SOCKET", listen_in_folder());
  SdNotifier n(clock_, executor_);
  n.status("first\nREADY=1");
  EXPECT_EQ(receive(), "STATUS=first READY=1");
}

TEST_F(SdNotifierTest, AbstractNamespaceAddress) {
  ScopedEnv env("NOTIFY_SOCKET", listen(abstract_name()));
  SdNotifier n(clock_, executor_);
  ASSERT_TRUE(n.enabled());
  n.ready("up");
  n.status("still up");
  EXPECT_EQ(receive(), "READY=1\nSTATUS=up\nMAINPID=" + std::to_string(::getpid()));
  EXPECT_EQ(receive(), "STATUS=still up");
}

TEST_F(SdNotifierTest, WatchdogPingsEveryHalfInterval) {
  ScopedEnv env("NOTIFY_SOCKET", listen_in_folder());
  ScopedEnv usec("WATCHDOG_USEC", "100000");
  ScopedEnv pid("WATCHDOG_PID", std::to_string(::getpid()));
  SdNotifier n(clock_, executor_);
  ASSERT_EQ(n.watchdog_interval(), std::chrono::microseconds{50'000});
  n.start_watchdog();
  EXPECT_EQ(drain(), std::vector<std::string>{"WATCHDOG=1"}) << "one at start";
  executor_.advance(49ms);
  EXPECT_TRUE(drain().empty());
  executor_.advance(1ms);
  EXPECT_EQ(drain(), std::vector<std::string>{"WATCHDOG=1"});
  // Then every 50 ms: 100, 150, 200, 250.
  executor_.advance(200ms);
  EXPECT_EQ(drain().size(), 4u);
  EXPECT_EQ(n.messages_sent(), 6u);
}

TEST_F(SdNotifierTest, AfterAStallTheNextPingIsAWholeIntervalAwayNotABurst) {
  ScopedEnv env("NOTIFY_SOCKET", listen_in_folder());
  ScopedEnv usec("WATCHDOG_USEC", "100000");
  SdNotifier n(clock_, executor_);
  n.start_watchdog();
  EXPECT_EQ(drain().size(), 1u);
  // The loop is wedged for 175 ms: the ping due at 50 ms runs late, at 175 ms, once.
  clock_.advance(175ms);
  executor_.advance(0ms);
  EXPECT_EQ(drain().size(), 1u);
  executor_.advance(49ms);
  EXPECT_TRUE(drain().empty());
  executor_.advance(1ms);
  EXPECT_EQ(drain().size(), 1u) << "225 ms: 175 + 50";
}

TEST_F(SdNotifierTest, WatchdogWithoutWatchdogPidIsOurs) {
  ScopedEnv env("NOTIFY_SOCKET", listen_in_folder());
  ScopedEnv usec("WATCHDOG_USEC", "100000");
  SdNotifier n(clock_, executor_);
  EXPECT_EQ(n.watchdog_interval(), std::chrono::microseconds{50'000});
}

TEST_F(SdNotifierTest, StoppedWatchdogSendsNothingMore) {
  ScopedEnv env("NOTIFY_SOCKET", listen_in_folder());
  ScopedEnv usec("WATCHDOG_USEC", "100000");
  SdNotifier n(clock_, executor_);
  n.start_watchdog();
  n.start_watchdog();  // a second start does not start a second chain of pings
  executor_.advance(120ms);
  n.stop_watchdog();
  EXPECT_EQ(drain().size(), 3u) << "0, 50 and 100 ms";
  EXPECT_EQ(executor_.pending_timers(), 0u);
  executor_.advance(10s);
  EXPECT_TRUE(drain().empty());
}

TEST_F(SdNotifierTest, WatchdogOfAnotherProcessIsNotPinged) {
  ScopedEnv env("NOTIFY_SOCKET", listen_in_folder());
  ScopedEnv usec("WATCHDOG_USEC", "100000");
  ScopedEnv pid("WATCHDOG_PID", std::to_string(::getppid()));
  SdNotifier n(clock_, executor_);
  EXPECT_TRUE(n.enabled());
  EXPECT_EQ(n.watchdog_interval(), std::nullopt);
  n.start_watchdog();
  EXPECT_EQ(executor_.pending_timers(), 0u);
  executor_.advance(10s);
  EXPECT_TRUE(drain().empty());
  EXPECT_EQ(n.messages_sent(), 0u);
}

TEST_F(SdNotifierTest, BadWatchdogUsecDisablesTheWatchdog) {
  ScopedEnv env("NOTIFY_SOCKET", listen_in_folder());
  for (const char* bad : {"0", "-5", "12ms", "abc"}) {
    ScopedEnv usec("WATCHDOG_USEC", bad);
    SdNotifier n(clock_, executor_);
    EXPECT_EQ(n.watchdog_interval(), std::nullopt) << bad;
  }
}

TEST_F(SdNotifierTest, DestroyedWhileTheWatchdogRunsIsSafe) {
  ScopedEnv env("NOTIFY_SOCKET", listen_in_folder());
  ScopedEnv usec("WATCHDOG_USEC", "20000");
  {
    SdNotifier n(clock_, executor_);
    n.start_watchdog();
    executor_.advance(25ms);
  }
  EXPECT_EQ(drain().size(), 3u) << "0, 10 and 20 ms";
  // The pending timer is cancelled and must not touch the destroyed notifier.
  EXPECT_EQ(executor_.pending_timers(), 0u);
  executor_.advance(10s);
  EXPECT_TRUE(drain().empty());
}

TEST_F(SdNotifierTest, WithoutNotifySocketNothingIsSent) {
  listen_in_folder();
  ScopedEnv env("NOTIFY_SOCKET", std::nullopt);
  ScopedEnv usec("WATCHDOG_USEC", "100000");
  ScopedEnv pid("WATCHDOG_PID", std::to_string(::getpid()));
  SdNotifier n(clock_, executor_);
  EXPECT_FALSE(n.enabled());
  EXPECT_EQ(n.watchdog_interval(), std::nullopt);
  n.ready("up");
  n.reloading("reloading");
  n.stopping("stopping");
  n.status("status");
  n.extend_timeout(1s);
  n.main_pid(1);
  EXPECT_TRUE(n.barrier(10ms));
  n.start_watchdog();
  EXPECT_EQ(executor_.pending_timers(), 0u);
  executor_.advance(10s);
  n.stop_watchdog();
  EXPECT_EQ(n.messages_sent(), 0u);
  EXPECT_TRUE(drain().empty());
}

TEST_F(SdNotifierTest, FailedSendsAreNotCounted) {
  // Nobody listens there.
  ScopedEnv env("NOTIFY_SOCKET", (dir_ / "nobody").string());
  SdNotifier n(clock_, executor_);
  EXPECT_TRUE(n.enabled());
  n.ready("up");
  n.status("still up");
  EXPECT_EQ(n.messages_sent(), 0u);
}

TEST_F(SdNotifierTest, BarrierReturnsOnceTheReceiverHasReadEverything) {
  ScopedEnv env("NOTIFY_SOCKET", listen_in_folder());
  SdNotifier n(clock_, executor_);
  n.main_pid(4242);
  bool acknowledged = false;
  std::thread waiter([&] { acknowledged = n.barrier(5s); });
  EXPECT_EQ(receive(), "MAINPID=4242");
  EXPECT_EQ(receive(), "BARRIER=1");  // receive() closes the fd it carries: the acknowledgement
  waiter.join();
  EXPECT_TRUE(acknowledged);
}

TEST_F(SdNotifierTest, BarrierNobodyAcknowledgesTimesOut) {
  ScopedEnv env("NOTIFY_SOCKET", listen_in_folder());
  SdNotifier n(clock_, executor_);
  EXPECT_FALSE(n.barrier(20ms));
}

}  // namespace
}  // namespace drawbridge::runtime
