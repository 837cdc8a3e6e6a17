#include "runtime/listen_fds.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string_view>

#include <spdlog/spdlog.h>

namespace drawbridge::runtime {

namespace {

constexpr int kFirstFd = 3;  // SD_LISTEN_FDS_START
// More would be a malformed variable: drawbridge listens on one port.
constexpr int kMaxFds = 64;

std::optional<long> parse_number(const char* text) {
  if (text == nullptr) return std::nullopt;
  std::string_view s(text);
  long value = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || end != s.data() + s.size() || s.empty()) return std::nullopt;
  return value;
}

std::vector<std::string> split_names(const char* text) {
  std::vector<std::string> names;
  if (text == nullptr) return names;
  std::string_view s(text);
  while (true) {
    auto colon = s.find(':');
    names.emplace_back(s.substr(0, colon));
    if (colon == std::string_view::npos) break;
    s.remove_prefix(colon + 1);
  }
  return names;
}

// Why `fd` is not a listening stream socket, or "" when it is.
std::string unusable(int fd) {
  int type = 0;
  socklen_t len = sizeof type;
  if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) {
    return errno == ENOTSOCK ? "not a socket" : std::strerror(errno);
  }
  if (type != SOCK_STREAM) return "not a stream socket";
  int listening = 0;
  len = sizeof listening;
  if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0) {
    return std::strerror(errno);
  }
  return listening ? "" : "not listening";
}

std::vector<InheritedSocket> take(const char* pid_text, const char* fds_text,
                                  const char* names_text) {
  if (pid_text == nullptr || fds_text == nullptr) return {};
  auto pid = parse_number(pid_text);
  if (!pid || *pid <= 0) {
    spdlog::warn("LISTEN_PID={}: not a process id; inherited sockets ignored", pid_text);
    return {};
  }
  if (*pid != ::getpid()) return {};  // meant for another process (our parent, say)
  auto count = parse_number(fds_text);
  if (!count || *count < 0 || *count > kMaxFds) {
    spdlog::warn("LISTEN_FDS={}: expected a count from 0 to {}; inherited sockets ignored",
                 fds_text, kMaxFds);
    return {};
  }
  std::vector<std::string> names = split_names(names_text);
  if (names_text != nullptr && names.size() != static_cast<std::size_t>(*count)) {
    spdlog::warn("LISTEN_FDNAMES={} names {} sockets, LISTEN_FDS={}; the names are ignored",
                 names_text, names.size(), *count);
    names.clear();
  }

  std::vector<InheritedSocket> sockets;
  for (int i = 0; i < *count; ++i) {
    const int fd = kFirstFd + i;
    std::string name = i < static_cast<int>(names.size()) ? names[i] : "";
    const std::string label =
        name.empty() ? std::to_string(fd) : std::to_string(fd) + " (" + name + ")";
    int flags = ::fcntl(fd, F_GETFD);
    if (flags < 0) {
      spdlog::warn("inherited fd {} is not open; skipped", label);
      continue;
    }
    // Set before anything else can start a child: the socket must not leak into it.
    ::fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
    if (auto why = unusable(fd); !why.empty()) {
      spdlog::warn("inherited fd {} is {}: closed", label, why);
      ::close(fd);
      continue;
    }
    sockets.push_back({fd, std::move(name)});
  }
  return sockets;
}

}  // namespace

std::optional<std::pair<std::string, int>> local_address(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return std::nullopt;
  char text[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&ss);
    if (!::inet_ntop(AF_INET, &in->sin_addr, text, sizeof text)) return std::nullopt;
    return std::pair<std::string, int>{text, ntohs(in->sin_port)};
  }
  if (ss.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    if (!::inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text)) return std::nullopt;
    return std::pair<std::string, int>{text, ntohs(in6->sin6_port)};
  }
  return std::nullopt;
}

bool same_listen_address(const std::string& have_ip, int have_port, const std::string& want_ip,
                         int want_port) {
  if (want_port != 0 && want_port != have_port) return false;
  auto parse = [](const std::string& ip) -> std::optional<std::pair<int, std::string>> {
    unsigned char buf[sizeof(in6_addr)] = {};
    if (::inet_pton(AF_INET, ip.c_str(), buf) == 1) return std::pair{AF_INET, std::string(reinterpret_cast<char*>(buf), 4)};
    if (::inet_pton(AF_INET6, ip.c_str(), buf) == 1) {
      return std::pair{AF_INET6, std::string(reinterpret_cast<char*>(buf), sizeof(in6_addr))};
    }
    return std::nullopt;
  };
  const auto have = parse(have_ip);
  const auto want = parse(want_ip);
  return have && want && *have == *want;
}

std::vector<InheritedSocket> take_listen_fds() {
  // Copies: unsetenv() may free what getenv() returned.
  auto copy = [](const char* name) -> std::optional<std::string> {
    const char* v = std::getenv(name);
    return v ? std::optional<std::string>(v) : std::nullopt;
  };
  auto pid = copy("LISTEN_PID");
  auto fds = copy("LISTEN_FDS");
  auto names = copy("LISTEN_FDNAMES");
  ::unsetenv("LISTEN_PID");
  ::unsetenv("LISTEN_FDS");
  ::unsetenv("LISTEN_FDNAMES");
  auto c_str = [](const std::optional<std::string>& s) { return s ? s->c_str() : nullptr; };
  return take(c_str(pid), c_str(fds), c_str(names));
}

}  // namespace drawbridge::runtime
