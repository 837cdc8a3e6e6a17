#include "bench_host.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace bench_host {
namespace {

sockaddr_in loopback(int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

}  // namespace

std::string load_avg() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

std::pair<double, double> machine_jiffies() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  unsigned long long v[10] = {};
  in >> cpu;
  for (auto& x : v) in >> x;
  double total = 0;
  for (int i = 0; i < 8; ++i) total += static_cast<double>(v[i]);
  return {total - static_cast<double>(v[3] + v[4]), total};
}

double stat_cpu_s(const std::string& line) {
  auto p = line.rfind(')');
  if (p == std::string::npos) return -1;
  std::istringstream rest(line.substr(p + 2));
  std::string f;
  unsigned long long ut = 0, st = 0;
  for (int i = 3; i <= 15 && rest >> f; ++i) {
    if (i == 14) ut = std::stoull(f);
    if (i == 15) st = std::stoull(f);
  }
  return static_cast<double>(ut + st) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

double proc_cpu_s(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string s;
  if (!std::getline(in, s)) return -1;
  return stat_cpu_s(s);
}

void wait_quiet(int max_s, int pct) {
  using namespace std::chrono_literals;
  if (max_s <= 0) return;
  for (int waited = 1;; ++waited) {
    auto a = machine_jiffies();
    std::this_thread::sleep_for(1s);
    auto b = machine_jiffies();
    const double total = b.second - a.second;
    const int idle = total > 0 ? static_cast<int>(100 * (1 - (b.first - a.first) / total)) : 0;
    if (idle >= pct || waited >= max_s) {
      std::printf("%smachine %d%% idle (waited %d s); load %s\n",
                  idle >= pct ? "" : "WARNING: running anyway, ", idle, waited, load_avg().c_str());
      return;
    }
  }
}

int free_port() {
  int lo = 32768;
  if (std::ifstream in("/proc/sys/net/ipv4/ip_local_port_range"); in) in >> lo;
  if (lo <= 20000) lo = 30000;
  std::mt19937 rng(std::random_device{}());
  std::uniform_int_distribution<int> pick(10000, lo - 1);
  for (int i = 0; i < 200; ++i) {
    const int p = pick(rng);
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a = loopback(p);
    const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(fd);
    if (ok) return p;
  }
  throw std::runtime_error("no free port found");
}

int http_status(int port, const std::string& path) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  timeval tv{2, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in a = loopback(port);
  int status = 0;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    const std::string req =
        "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size())) {
      char buf[64];
      std::size_t have = 0;
      while (have < 12) {
        ssize_t n = ::recv(fd, buf + have, sizeof buf - have, 0);
        if (n <= 0) break;
        have += static_cast<std::size_t>(n);
      }
      if (have >= 12 && std::strncmp(buf, "HTTP/1.", 7) == 0) status = std::atoi(buf + 9);
    }
  }
  ::close(fd);
  return status;
}

}  // namespace bench_host
