#include "runtime/listen_fds.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include <gtest/gtest.h>

namespace drawbridge::runtime {
namespace {

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

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "<unset>";
}

// The convention puts the sockets at fd 3 onwards, where the test process may have something
// of its own: it is moved away for the test and put back after.
class ListenFds : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int fd : {3, 4}) saved_[fd - 3] = is_open(fd) ? ::fcntl(fd, F_DUPFD_CLOEXEC, 10) : -1;
    ::close(3);
    ::close(4);
  }

  void TearDown() override {
    ::unsetenv("LISTEN_PID");
    ::unsetenv("LISTEN_FDS");
    ::unsetenv("LISTEN_FDNAMES");
    for (int fd : {3, 4}) {
      ::close(fd);
      if (saved_[fd - 3] >= 0) {
        ::dup3(saved_[fd - 3], fd, 0);
        ::close(saved_[fd - 3]);
      }
    }
  }

  // Puts `fd` at `target` (without FD_CLOEXEC, as an exec would leave it) and closes `fd`.
  static void place(int fd, int target) {
    if (fd == target) {  // fds 3 and 4 are free during the test, so a new one may land there
      ASSERT_EQ(::fcntl(fd, F_SETFD, 0), 0);
      return;
    }
    ASSERT_EQ(::dup2(fd, target), target);
    ::close(fd);
  }

  static void pass(const std::string& pid, const std::string& count, const char* names) {
    ::setenv("LISTEN_PID", pid.c_str(), 1);
    ::setenv("LISTEN_FDS", count.c_str(), 1);
    if (names) ::setenv("LISTEN_FDNAMES", names, 1);
  }

  int saved_[2] = {-1, -1};
};

TEST_F(ListenFds, TakesTheNamedSocketSetsCloexecAndUnsetsTheVariables) {
  place(listening_socket(), 3);
  ASSERT_EQ(::fcntl(3, F_GETFD) & FD_CLOEXEC, 0);
  pass(std::to_string(::getpid()), "1", "gateway");

  auto sockets = take_listen_fds();

  ASSERT_EQ(sockets.size(), 1u);
  EXPECT_EQ(sockets[0].fd, 3);
  EXPECT_EQ(sockets[0].name, "gateway");
  EXPECT_NE(::fcntl(3, F_GETFD) & FD_CLOEXEC, 0);
  EXPECT_EQ(env("LISTEN_PID"), "<unset>");
  EXPECT_EQ(env("LISTEN_FDS"), "<unset>");
  EXPECT_EQ(env("LISTEN_FDNAMES"), "<unset>");
}

TEST_F(ListenFds, WithoutNamesTheNameIsEmpty) {
  place(listening_socket(), 3);
  pass(std::to_string(::getpid()), "1", nullptr);
  auto sockets = take_listen_fds();
  ASSERT_EQ(sockets.size(), 1u);
  EXPECT_EQ(sockets[0].name, "");
}

// Like sd_listen_fds(1): the variables go in any case (a child of ours must not take them for
// its own), but fds meant for another process are not touched.
TEST_F(ListenFds, AnotherProcessesSocketsAreLeftAloneAndTheVariablesUnset) {
  place(listening_socket(), 3);
  pass(std::to_string(::getpid() + 1), "1", "gateway");

  EXPECT_TRUE(take_listen_fds().empty());

  EXPECT_TRUE(is_open(3));
  EXPECT_EQ(::fcntl(3, F_GETFD) & FD_CLOEXEC, 0);
  EXPECT_EQ(env("LISTEN_PID"), "<unset>");
  EXPECT_EQ(env("LISTEN_FDS"), "<unset>");
  EXPECT_EQ(env("LISTEN_FDNAMES"), "<unset>");
}

TEST_F(ListenFds, ANonListeningFdIsDroppedAndClosed) {
  place(listening_socket(), 3);
  place(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), 4);  // not listening
  pass(std::to_string(::getpid()), "2", "gateway:other");

  auto sockets = take_listen_fds();

  ASSERT_EQ(sockets.size(), 1u);
  EXPECT_EQ(sockets[0].fd, 3);
  EXPECT_EQ(sockets[0].name, "gateway");
  EXPECT_FALSE(is_open(4));
}

TEST_F(ListenFds, APipeIsNotASocketAndIsDropped) {
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  ::close(fds[1]);
  place(fds[0], 3);
  pass(std::to_string(::getpid()), "1", nullptr);
  EXPECT_TRUE(take_listen_fds().empty());
  EXPECT_FALSE(is_open(3));
}

TEST_F(ListenFds, MalformedVariablesAreIgnoredAndUnset) {
  place(listening_socket(), 3);
  for (auto [pid, count] : {std::pair<std::string, std::string>{"12x", "1"},
                            {std::to_string(::getpid()), "one"},
                            {std::to_string(::getpid()), "-1"},
                            {std::to_string(::getpid()), ""}}) {
    pass(pid, count, "gateway");
    EXPECT_TRUE(take_listen_fds().empty()) << pid << " " << count;
    EXPECT_EQ(env("LISTEN_FDS"), "<unset>");
    EXPECT_TRUE(is_open(3)) << "an fd we cannot tell is ours was closed";
  }
}

TEST_F(ListenFds, NamesThatDoNotMatchTheCountAreIgnored) {
  place(listening_socket(), 3);
  pass(std::to_string(::getpid()), "1", "gateway:extra");
  auto sockets = take_listen_fds();
  ASSERT_EQ(sockets.size(), 1u);
  EXPECT_EQ(sockets[0].name, "");
}

// Issue 17 (4.): a re-exec's successor compares the inherited socket with its config.
TEST(ListenAddress, SameAddressIsComparedAsParsed) {
  EXPECT_TRUE(same_listen_address("127.0.0.1", 18789, "127.0.0.1", 18789));
  EXPECT_TRUE(same_listen_address("::1", 18789, "0:0:0:0:0:0:0:1", 18789));
  EXPECT_TRUE(same_listen_address("127.0.0.1", 40123, "127.0.0.1", 0));  // any port
  EXPECT_FALSE(same_listen_address("127.0.0.1", 18789, "127.0.0.1", 18790));
  EXPECT_FALSE(same_listen_address("127.0.0.1", 18789, "0.0.0.0", 18789));
  EXPECT_FALSE(same_listen_address("127.0.0.1", 18789, "::1", 18789));
  EXPECT_FALSE(same_listen_address("127.0.0.1", 18789, "localhost", 18789));
}

TEST(ListenAddress, LocalAddressOfABoundSocket) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  auto got = local_address(fd);
  ::close(fd);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->first, "127.0.0.1");
  EXPECT_GT(got->second, 0);
  EXPECT_FALSE(local_address(-1));
}

TEST_F(ListenFds, NothingPassedIsEmpty) {
  EXPECT_TRUE(take_listen_fds().empty());
}

}  // namespace
}  // namespace drawbridge::runtime
