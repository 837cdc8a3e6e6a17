#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <future>
#include <string>
#include <thread>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <gtest/gtest.h>

#include "core/manual_executor.h"
#include "unit/server/fake_control.h"
#include "server/server.h"
#include "store/sqlite_store.h"
#include "unit/pipeline/fakes.h"

namespace drawbridge::server {
namespace {

namespace asio = boost::asio;
using nlohmann::json;
using namespace std::chrono_literals;

using fakes::FakeControl;

// A socket made the way a .socket unit or a predecessor would hand it over.
int listening_socket(int family = AF_INET) {
  int fd = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_storage addr{};
  socklen_t len = 0;
  if (family == AF_INET6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&addr);
    a->sin6_family = AF_INET6;
    a->sin6_addr = in6addr_loopback;
    len = sizeof *a;
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&addr);
    a->sin_family = AF_INET;
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    len = sizeof *a;
  }
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0 || ::listen(fd, 64) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

int local_port(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  return addr.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port)
                                    : ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
}

bool is_open(int fd) {
  return ::fcntl(fd, F_GETFD) >= 0;
}

// A raw client: the tests look at "connected but not answered", which a client with its own
// timeouts would turn into a closed connection.
class RawClient {
 public:
  RawClient(int port, int family = AF_INET) {
    fd_ = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_storage addr{};
    socklen_t len = 0;
    if (family == AF_INET6) {
      auto* a = reinterpret_cast<sockaddr_in6*>(&addr);
      a->sin6_family = AF_INET6;
      a->sin6_addr = in6addr_loopback;
      a->sin6_port = htons(static_cast<std::uint16_t>(port));
      len = sizeof *a;
    } else {
      auto* a = reinterpret_cast<sockaddr_in*>(&addr);
      a->sin_family = AF_INET;
      a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      a->sin_port = htons(static_cast<std::uint16_t>(port));
      len = sizeof *a;
    }
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), len) == 0;
  }
  ~RawClient() { ::close(fd_); }

  bool connected() const { return connected_; }

  void send_healthz() {
    const std::string req = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    ASSERT_EQ(::send(fd_, req.data(), req.size(), MSG_NOSIGNAL), static_cast<ssize_t>(req.size()));
  }

  // True when an answer starts arriving within `timeout`.
  bool answered_within(std::chrono::milliseconds timeout) {
    pollfd p{fd_, POLLIN, 0};
    return ::poll(&p, 1, static_cast<int>(timeout.count())) == 1;
  }

  // The status line of the answer (the whole answer is read: the server closes after it).
  std::string status_line(std::chrono::milliseconds timeout = 5s) {
    std::string all;
    char buf[4096];
    while (answered_within(timeout)) {
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) break;
      all.append(buf, static_cast<std::size_t>(n));
    }
    return all.substr(0, all.find("\r\n"));
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
};

// One event-loop thread runs the servers, as in the gateway; a second Server in the same
// process stands for the successor.
class ServerAdopt : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = store::SqliteStore::open(":memory:");
    writer_ = std::make_unique<pipeline::InlineBatchRunner>(*store_);
    pipeline_ = std::make_unique<pipeline::Pipeline>(clock_, executor_, *store_, *writer_);
    pipeline_->add_channel(&channel_, &agent_, 0);
    server_ = make_server();
    thread_ = std::thread([this] { io_.run(); });
  }

  void TearDown() override {
    on_io([this] {
      for (auto* s : {server_.get(), successor_.get()}) {
        if (s) s->close("test over", std::nullopt, 1000, "", [] {});
      }
    });
    work_.reset();
    io_.stop();
    thread_.join();
    successor_.reset();
    server_.reset();
  }

  std::unique_ptr<Server> make_server() {
    ServerOptions options;
    options.port = 0;
    options.token = "tok";
    return std::make_unique<Server>(io_, clock_, executor_, control_, *pipeline_, options);
  }

  template <typename F>
  auto on_io(F f) -> decltype(f()) {
    // Shared with the handler (see ServerFixture::on_io).
    auto task = std::make_shared<std::packaged_task<decltype(f())()>>(std::move(f));
    auto result = task->get_future();
    asio::post(io_, [task] { (*task)(); });
    return result.get();
  }

  // Adopts a fresh IPv4 listening socket and starts; returns its port.
  int adopt_and_start(Server& server) {
    const int fd = listening_socket();
    EXPECT_GE(fd, 0);
    auto err = on_io([&] { return server.adopt(fd); });
    EXPECT_FALSE(err) << *err;
    on_io([&] { server.start(); });
    return local_port(fd);
  }

  asio::io_context io_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_{
      asio::make_work_guard(io_)};
  core::ManualClock clock_;
  core::ManualExecutor executor_{clock_};
  std::unique_ptr<store::SqliteStore> store_;
  std::unique_ptr<pipeline::InlineBatchRunner> writer_;
  testing::FakeAgent agent_;
  testing::FakeChannel channel_;
  FakeControl control_;
  std::unique_ptr<pipeline::Pipeline> pipeline_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<Server> successor_;
  std::thread thread_;
};

TEST_F(ServerAdopt, ServesHttpOnTheAdoptedSocket) {
  const int fd = listening_socket();
  ASSERT_GE(fd, 0);
  auto err = on_io([&] { return server_->adopt(fd); });
  ASSERT_FALSE(err) << *err;
  on_io([&] { server_->start(); });

  EXPECT_EQ(on_io([&] { return server_->port(); }), local_port(fd));
  EXPECT_EQ(on_io([&] { return server_->listen_fd(); }), fd);
  EXPECT_NE(::fcntl(fd, F_GETFD) & FD_CLOEXEC, 0);
  RawClient client(local_port(fd));
  ASSERT_TRUE(client.connected());
  client.send_healthz();
  EXPECT_EQ(client.status_line(), "HTTP/1.1 200 OK");
}

TEST_F(ServerAdopt, AdoptsAfterStartToo) {
  on_io([&] { server_->start(); });
  EXPECT_EQ(on_io([&] { return server_->listen_fd(); }), -1);
  const int fd = listening_socket();
  auto err = on_io([&] { return server_->adopt(fd); });
  ASSERT_FALSE(err) << *err;
  RawClient client(local_port(fd));
  client.send_healthz();
  EXPECT_EQ(client.status_line(), "HTTP/1.1 200 OK");
}

TEST_F(ServerAdopt, ServesAnIpv6Socket) {
  const int fd = listening_socket(AF_INET6);
  if (fd < 0) GTEST_SKIP() << "no IPv6 loopback here";
  auto err = on_io([&] { return server_->adopt(fd); });
  ASSERT_FALSE(err) << *err;
  on_io([&] { server_->start(); });
  RawClient client(local_port(fd), AF_INET6);
  ASSERT_TRUE(client.connected());
  client.send_healthz();
  EXPECT_EQ(client.status_line(), "HTTP/1.1 200 OK");
}

TEST_F(ServerAdopt, RefusesWhatIsNotAListeningTcpSocketAndClosesIt) {
  const int unbound = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  auto err = on_io([&] { return server_->adopt(unbound); });
  ASSERT_TRUE(err);
  EXPECT_EQ(*err, "cannot serve on the inherited socket (fd " + std::to_string(unbound) +
                      "): not listening");
  EXPECT_FALSE(is_open(unbound));

  const int udp = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  err = on_io([&] { return server_->adopt(udp); });
  ASSERT_TRUE(err);
  EXPECT_NE(err->find("not a stream socket"), std::string::npos) << *err;
  EXPECT_FALSE(is_open(udp));

  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  err = on_io([&] { return server_->adopt(fds[0]); });
  ASSERT_TRUE(err);
  EXPECT_NE(err->find("not a socket"), std::string::npos) << *err;
  EXPECT_FALSE(is_open(fds[0]));
  ::close(fds[1]);

  int unix_fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, unix_fds), 0);
  err = on_io([&] { return server_->adopt(unix_fds[0]); });
  ASSERT_TRUE(err);
  EXPECT_NE(err->find("not an IPv4 or IPv6 socket"), std::string::npos) << *err;
  ::close(unix_fds[1]);

  EXPECT_EQ(on_io([&] { return server_->listen_fd(); }), -1);
}

TEST_F(ServerAdopt, PausedConnectionsWaitInTheBacklogAndAreServedOnResume) {
  const int port = adopt_and_start(*server_);
  on_io([&] { server_->pause_accepting(); });

  RawClient waiting(port);
  ASSERT_TRUE(waiting.connected()) << "the kernel completes the handshake from the backlog";
  waiting.send_healthz();
  EXPECT_FALSE(waiting.answered_within(200ms));
  EXPECT_NE(on_io([&] { return server_->listen_fd(); }), -1) << "paused is still listening";

  on_io([&] { server_->resume_accepting(); });
  EXPECT_EQ(waiting.status_line(), "HTTP/1.1 200 OK");

  RawClient next(port);
  next.send_healthz();
  EXPECT_EQ(next.status_line(), "HTTP/1.1 200 OK");
}

TEST_F(ServerAdopt, PauseAndResumeTwiceAreHarmless) {
  const int port = adopt_and_start(*server_);
  on_io([&] {
    server_->pause_accepting();
    server_->pause_accepting();
    server_->resume_accepting();
    server_->resume_accepting();
  });
  RawClient client(port);
  client.send_healthz();
  EXPECT_EQ(client.status_line(), "HTTP/1.1 200 OK");
}

// The re-exec hand-off within one process: the successor adopts a dup of the paused
// predecessor's socket and answers the connection that waited in the backlog.
TEST_F(ServerAdopt, ASuccessorAdoptingTheSocketAnswersWhatWaited) {
  const int port = adopt_and_start(*server_);
  on_io([&] { server_->pause_accepting(); });
  RawClient waiting(port);
  ASSERT_TRUE(waiting.connected());
  waiting.send_healthz();
  EXPECT_FALSE(waiting.answered_within(200ms));

  successor_ = make_server();
  const int handed = ::fcntl(on_io([&] { return server_->listen_fd(); }), F_DUPFD_CLOEXEC, 0);
  ASSERT_GE(handed, 0);
  auto err = on_io([&] { return successor_->adopt(handed); });
  ASSERT_FALSE(err) << *err;
  on_io([&] { successor_->start(); });
  EXPECT_EQ(waiting.status_line(), "HTTP/1.1 200 OK");
  EXPECT_EQ(on_io([&] { return successor_->port(); }), port);

  // The predecessor goes; the port stays served.
  auto closed = std::make_shared<std::promise<void>>();
  on_io([&] {
    server_->close("handed over", std::nullopt, 1012, "", [closed] { closed->set_value(); });
  });
  ASSERT_EQ(closed->get_future().wait_for(5s), std::future_status::ready);
  for (int i = 0; i < 3; ++i) {
    RawClient next(port);
    ASSERT_TRUE(next.connected());
    next.send_healthz();
    EXPECT_EQ(next.status_line(), "HTTP/1.1 200 OK");
  }
}

}  // namespace
}  // namespace drawbridge::server
