#include "runtime/successor.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>

#include <boost/asio/io_context.hpp>
#include <gtest/gtest.h>

#include "agents/child_process.h"
#include "core/manual_executor.h"
#include "runtime/asio_executor.h"

namespace drawbridge::runtime {
namespace {

using namespace std::chrono_literals;

int listening_socket() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(fd, 16) != 0) {
    ADD_FAILURE() << "cannot make a listening socket";
  }
  return fd;
}

bool is_open(int fd) {
  return ::fcntl(fd, F_GETFD) >= 0;
}

std::size_t open_fd_count() {
  std::size_t n = 0;
  for ([[maybe_unused]] auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

// Every child a test starts is killed (with its process group) and reaped at the end.
struct Reaper {
  pid_t pid = -1;
  ~Reaper() {
    if (pid > 0) agents::kill_and_reap(pid);
  }
  // The exit code of a child that has exited by now, for failure messages.
  std::string exit_status() {
    int status = 0;
    if (pid <= 0 || ::waitpid(pid, &status, WNOHANG) != pid) return "still running";
    pid = -1;
    return WIFEXITED(status) ? "exited " + std::to_string(WEXITSTATUS(status)) : "killed";
  }
};

struct Outcome {
  int calls = 0;
  bool ok = false;
  std::string why;
  std::chrono::milliseconds took{};
};

// Waits for the successor's answer in real time (for it to happen: READY, a line, EOF), the
// timeout being a real timer that fails the wait.
Outcome await(int ready_fd, std::chrono::milliseconds timeout) {
  boost::asio::io_context io;
  AsioExecutor executor(io);
  Outcome outcome;
  const auto start = std::chrono::steady_clock::now();
  await_successor(io, executor, ready_fd, timeout, [&](bool ok, std::string why) {
    ++outcome.calls;
    outcome.ok = ok;
    outcome.why = std::move(why);
    outcome.took = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - start);
  });
  io.run();  // returns once the waiter has nothing left to wait for
  return outcome;
}

SuccessorOptions shell(const std::string& script, int listen_fd = -1) {
  SuccessorOptions options;
  options.binary = "/bin/sh";
  options.argv = {"sh", "-c", script};
  options.listen_fd = listen_fd;
  return options;
}

class SuccessorHandOff : public ::testing::Test {
 protected:
  void TearDown() override {
    ::unsetenv("DRAWBRIDGE_READY_FD");
    ::unsetenv("LISTEN_FDS");
  }
};

TEST_F(SuccessorHandOff, GetsTheSocketAsFd3AndItsOwnPidAndReportsReady) {
  const int socket = listening_socket();
  struct stat st {};
  ASSERT_EQ(::fstat(socket, &st), 0);
  // An fd of ours without FD_CLOEXEC, which the successor must not get.
  // Above 3 and 4, where the successor does get fds.
  const int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  const int leak = ::fcntl(null, F_DUPFD, 20);
  ::close(null);
  ASSERT_GE(leak, 20);

  auto options = shell(R"sh(
    [ "$(readlink /proc/$$/fd/3)" = "$SOCKET" ] || exit 11
    [ -S /proc/$$/fd/3 ] || exit 12
    [ "$LISTEN_PID" = "$$" ] || exit 13
    [ "$LISTEN_FDS" = 1 ] || exit 14
    [ "$LISTEN_FDNAMES" = gateway ] || exit 15
    [ "$DRAWBRIDGE_READY_FD" = 4 ] || exit 16
    [ "$EXTRA" = "from the test" ] || exit 17
    [ ! -e /proc/$$/fd/$LEAK ] || exit 18
    [ ! -e /proc/$$/fd/5 ] || exit 19
    echo "READY $$" >&4
    exec sleep 5
  )sh",
                       socket);
  options.extra_env = {{"SOCKET", "socket:[" + std::to_string(st.st_ino) + "]"},
                       {"LEAK", std::to_string(leak)},
                       {"EXTRA", "from the test"}};
  auto s = spawn_successor(options);
  Reaper reaper{s.pid};
  ASSERT_EQ(s.error, "");
  ASSERT_GT(s.pid, 0);
  EXPECT_EQ(::getsid(s.pid), s.pid) << "the successor leads a session of its own";
  EXPECT_NE(::fcntl(s.ready_fd, F_GETFD) & FD_CLOEXEC, 0);

  auto outcome = await(s.ready_fd, 10s);
  EXPECT_EQ(outcome.calls, 1);
  EXPECT_TRUE(outcome.ok) << outcome.why << "; the script " << reaper.exit_status();
  EXPECT_EQ(outcome.why, "READY " + std::to_string(s.pid));
  EXPECT_FALSE(is_open(s.ready_fd)) << "await_successor closes the pipe";
  EXPECT_TRUE(is_open(socket)) << "the socket stays ours too";
  ::close(leak);
  ::close(socket);
}

// Connections handed over (an IRC connection at a re-exec): carried_fds[i] becomes fd 5 + i,
// nothing else does, and they stay ours too.
TEST_F(SuccessorHandOff, CarriedConnectionsArriveAsFd5OnwardInOrder) {
  const int a = listening_socket(), b = listening_socket();
  struct stat sa {}, sb {};
  ASSERT_EQ(::fstat(a, &sa), 0);
  ASSERT_EQ(::fstat(b, &sb), 0);
  const int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  const int leak = ::fcntl(null, F_DUPFD, 7);  // where a third carried fd would go
  ::close(null);
  auto options = shell(R"sh(
    [ "$(readlink /proc/$$/fd/5)" = "$A" ] || exit 11
    [ "$(readlink /proc/$$/fd/6)" = "$B" ] || exit 12
    [ ! -e /proc/$$/fd/7 ] || exit 13
    [ ! -e /proc/$$/fd/3 ] || exit 14
    echo "READY $$" >&4
  )sh");
  // Given in the order that puts b's number where a goes: the moves must not clobber.
  options.carried_fds = {a, b};
  options.extra_env = {{"A", "socket:[" + std::to_string(sa.st_ino) + "]"},
                       {"B", "socket:[" + std::to_string(sb.st_ino) + "]"}};
  auto s = spawn_successor(options);
  Reaper reaper{s.pid};
  ASSERT_EQ(s.error, "");
  auto outcome = await(s.ready_fd, 10s);
  EXPECT_TRUE(outcome.ok) << outcome.why << "; the script " << reaper.exit_status();
  EXPECT_TRUE(is_open(a));
  EXPECT_TRUE(is_open(b));
  ::close(a);
  ::close(b);
  ::close(leak);
}

TEST_F(SuccessorHandOff, AClosedCarriedFdIsRefusedBeforeFork) {
  const int a = listening_socket();
  ::close(a);
  auto options = shell("exit 0");
  options.carried_fds = {a};
  auto s = spawn_successor(options);
  EXPECT_EQ(s.pid, -1);
  EXPECT_NE(s.error.find("is not open"), std::string::npos) << s.error;
}

TEST_F(SuccessorHandOff, OneThatExitsWithoutReadyFailsAtOnce) {
  const int socket = listening_socket();
  auto s = spawn_successor(shell("exit 3", socket));
  ::close(socket);
  Reaper reaper{s.pid};
  ASSERT_EQ(s.error, "");
  auto outcome = await(s.ready_fd, 10s);
  EXPECT_EQ(outcome.calls, 1);
  EXPECT_FALSE(outcome.ok);
  EXPECT_EQ(outcome.why, "the successor exited or closed its ready pipe before it was ready");
  EXPECT_LT(outcome.took, 5s) << "EOF, not the timeout";
}

TEST_F(SuccessorHandOff, OneThatNeverAnswersFailsAtTheTimeoutInSimulatedTime) {
  const int socket = listening_socket();
  auto s = spawn_successor(shell("exec sleep 30", socket));
  ::close(socket);
  Reaper reaper{s.pid};
  ASSERT_EQ(s.error, "");
  boost::asio::io_context io;
  core::ManualClock clock;
  core::ManualExecutor executor(clock);
  Outcome outcome;
  await_successor(io, executor, s.ready_fd, 200ms, [&](bool ok, std::string why) {
    ++outcome.calls;
    outcome.ok = ok;
    outcome.why = std::move(why);
  });
  io.poll();  // the pipe: nothing to read (the child sleeps), no EOF
  executor.advance(199ms);
  io.poll();
  EXPECT_EQ(outcome.calls, 0);
  executor.advance(1ms);
  EXPECT_EQ(outcome.calls, 1);
  EXPECT_FALSE(outcome.ok);
  EXPECT_EQ(outcome.why, "no READY from the successor within 200 ms");
  io.restart();
  io.run();  // the read, aborted by the close, ends; nothing more is called
  EXPECT_EQ(outcome.calls, 1);
}

TEST_F(SuccessorHandOff, OneThatWritesSomethingElseFails) {
  auto s = spawn_successor(shell("echo 'config invalid' >&4; exec sleep 5"));
  Reaper reaper{s.pid};
  ASSERT_EQ(s.error, "");
  auto outcome = await(s.ready_fd, 10s);
  EXPECT_FALSE(outcome.ok);
  EXPECT_EQ(outcome.why, "the successor wrote \"config invalid\" instead of READY");
}

TEST_F(SuccessorHandOff, WithoutASocketItGetsNoListenVariables) {
  ::setenv("LISTEN_FDS", "7", 1);  // stale, from whoever started us
  auto s = spawn_successor(shell(R"sh(
    [ -z "${LISTEN_FDS+set}" ] || exit 11
    [ -z "${LISTEN_PID+set}" ] || exit 12
    [ ! -e /proc/$$/fd/3 ] || exit 13
    echo READY >&4
  )sh"));
  Reaper reaper{s.pid};
  ASSERT_EQ(s.error, "");
  auto outcome = await(s.ready_fd, 10s);
  EXPECT_TRUE(outcome.ok) << outcome.why << "; the script " << reaper.exit_status();
}

TEST_F(SuccessorHandOff, AnExecThatFailsIsReportedAtSpawnAndLeavesNothingOpen) {
  const int socket = listening_socket();
  const std::size_t before = open_fd_count();
  SuccessorOptions options;
  options.binary = "/nonexistent/drawbridge";
  options.listen_fd = socket;
  auto s = spawn_successor(options);
  EXPECT_EQ(s.error,
            "cannot start the successor /nonexistent/drawbridge: exec: No such file or directory");
  EXPECT_EQ(s.pid, -1);
  EXPECT_EQ(s.ready_fd, -1);
  EXPECT_EQ(open_fd_count(), before);
  ::close(socket);
}

TEST_F(SuccessorHandOff, AClosedSocketIsRefusedBeforeFork) {
  const int socket = listening_socket();
  ::close(socket);
  auto s = spawn_successor(shell("exit 0", socket));
  EXPECT_EQ(s.error, "cannot start the successor /bin/sh: the listening socket (fd " +
                         std::to_string(socket) + ") is not open");
  EXPECT_EQ(s.pid, -1);
}

TEST_F(SuccessorHandOff, AwaitWithoutAPipeFailsAsynchronously) {
  auto outcome = await(-1, 10s);
  EXPECT_EQ(outcome.calls, 1);
  EXPECT_FALSE(outcome.ok);
}

TEST_F(SuccessorHandOff, ReportReadyWritesReadyWithOurPidThenClosesAndUnsets) {
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  ::setenv("DRAWBRIDGE_READY_FD", std::to_string(fds[1]).c_str(), 1);

  report_ready_to_predecessor();

  char buf[64] = {};
  ssize_t n = ::read(fds[0], buf, sizeof buf - 1);
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string(buf, static_cast<std::size_t>(n)),
            "READY " + std::to_string(::getpid()) + "\n");
  EXPECT_EQ(std::getenv("DRAWBRIDGE_READY_FD"), nullptr);
  EXPECT_FALSE(is_open(fds[1]));
  EXPECT_EQ(::read(fds[0], buf, sizeof buf), 0) << "the write end is closed: EOF";
  ::close(fds[0]);
}

TEST_F(SuccessorHandOff, ReportReadyToAPredecessorThatGaveUpIsNotASigpipe) {
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  ::close(fds[0]);
  ::setenv("DRAWBRIDGE_READY_FD", std::to_string(fds[1]).c_str(), 1);
  report_ready_to_predecessor();  // the test process has SIGPIPE's default action: it would die
  EXPECT_FALSE(is_open(fds[1]));
  EXPECT_EQ(std::getenv("DRAWBRIDGE_READY_FD"), nullptr);
}

TEST_F(SuccessorHandOff, ReportReadyLeavesAnFdThatIsNotAPipeAlone) {
  const int file = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
  ::setenv("DRAWBRIDGE_READY_FD", std::to_string(file).c_str(), 1);
  report_ready_to_predecessor();
  EXPECT_TRUE(is_open(file));
  EXPECT_EQ(std::getenv("DRAWBRIDGE_READY_FD"), nullptr);
  ::close(file);
}

TEST_F(SuccessorHandOff, ReportReadyWithoutTheVariableDoesNothing) {
  ::unsetenv("DRAWBRIDGE_READY_FD");
  const std::size_t before = open_fd_count();
  report_ready_to_predecessor();
  EXPECT_EQ(open_fd_count(), before);
}

}  // namespace
}  // namespace drawbridge::runtime
