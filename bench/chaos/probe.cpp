// See probe.h.

#include "chaos/probe.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

namespace chaos {

namespace {

double now_ms() {
  return std::chrono::duration<double, std::milli>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

constexpr int kTimeoutMs = 2000;

}  // namespace

const char* to_string(ProbeOutcome o) {
  switch (o) {
    case ProbeOutcome::ok:
      return "ok";
    case ProbeOutcome::refused:
      return "refused";
    case ProbeOutcome::reset:
      return "reset";
    case ProbeOutcome::timeout:
      return "timeout";
    case ProbeOutcome::bad_status:
      return "bad-status";
  }
  return "?";
}

Prober::Prober(int port, int every_ms) : port_(port), every_ms_(every_ms) {}

Prober::~Prober() {
  stop();
}

void Prober::start() {
  thread_ = std::thread([this] { run(); });
}

void Prober::stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

ProbeResult Prober::result() const {
  std::lock_guard lock(mu_);
  return result_;
}

void Prober::run() {
  auto next = std::chrono::steady_clock::now();
  while (!stop_) {
    const double at = now_ms();
    const ProbeOutcome o = once();
    {
      std::lock_guard lock(mu_);
      ++result_.attempts;
      if (o == ProbeOutcome::ok) {
        ++result_.ok;
        if (outage_start_ms_ >= 0) {
          const double len = at - outage_start_ms_;
          if (len > result_.longest_outage_ms) {
            result_.longest_outage_ms = len;
            result_.longest_outage_at_ms = outage_start_ms_;
          }
          outage_start_ms_ = -1;
        }
      } else {
        result_.failures.push_back({at, o});
        if (outage_start_ms_ < 0) outage_start_ms_ = at;
      }
    }
    next += std::chrono::milliseconds(every_ms_);
    const auto now = std::chrono::steady_clock::now();
    if (next < now) next = now;
    std::this_thread::sleep_until(next);
  }
}

ProbeOutcome Prober::once() const {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return ProbeOutcome::reset;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<std::uint16_t>(port_));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kTimeoutMs);
  auto left = [&] {
    return static_cast<int>(std::max<long>(0, std::chrono::duration_cast<std::chrono::milliseconds>(
                                                  deadline - std::chrono::steady_clock::now())
                                                  .count()));
  };
  auto finish = [fd](ProbeOutcome o) {
    ::close(fd);
    return o;
  };
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    if (errno == ECONNREFUSED) return finish(ProbeOutcome::refused);
    if (errno != EINPROGRESS) return finish(ProbeOutcome::reset);
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, left()) <= 0) return finish(ProbeOutcome::timeout);
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err == ECONNREFUSED) return finish(ProbeOutcome::refused);
    if (err != 0) return finish(ProbeOutcome::reset);
  }
  static const char kRequest[] =
      "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  if (::send(fd, kRequest, sizeof kRequest - 1, MSG_NOSIGNAL) != sizeof kRequest - 1) {
    return finish(ProbeOutcome::reset);
  }
  char buf[256];
  std::size_t got = 0;
  while (got < 12) {  // "HTTP/1.1 200"
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, left()) <= 0) return finish(ProbeOutcome::timeout);
    const auto n = ::recv(fd, buf + got, sizeof buf - got, 0);
    if (n <= 0) return finish(ProbeOutcome::reset);
    got += static_cast<std::size_t>(n);
  }
  return finish(std::memcmp(buf + 9, "200", 3) == 0 ? ProbeOutcome::ok : ProbeOutcome::bad_status);
}

}  // namespace chaos
