#include "runtime/host_info.h"

#include <fcntl.h>
#include <sys/statvfs.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cmath>
#include <limits>

namespace drawbridge::runtime {

namespace {

// At most kMaxHostFileBytes of a file; "" when it cannot be read.
std::string read_bounded(const char* path) {
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return {};
  std::string out(kMaxHostFileBytes, '\0');
  std::size_t got = 0;
  while (got < out.size()) {
    const ssize_t n = ::read(fd, out.data() + got, out.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<std::size_t>(n);
  }
  ::close(fd);
  out.resize(got);
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

// Calls `fn(line)` for each line of `text`.
template <class Fn>
void each_line(std::string_view text, Fn fn) {
  while (!text.empty()) {
    const auto nl = text.find('\n');
    fn(text.substr(0, nl));
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
}

// "MemTotal:  16303412 kB" -> bytes; nullopt when the line is not that key.
std::optional<std::int64_t> meminfo_value(std::string_view line, std::string_view key) {
  if (line.substr(0, key.size()) != key || line.size() <= key.size() || line[key.size()] != ':') {
    return std::nullopt;
  }
  const auto rest = trim(line.substr(key.size() + 1));
  std::int64_t kb = 0;
  const auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), kb);
  if (ec != std::errc() || kb < 0) return std::nullopt;
  if (kb > std::numeric_limits<std::int64_t>::max() / 1024) return std::nullopt;
  return kb * 1024;  // the kernel's "kB" is KiB
}

}  // namespace

MemInfo parse_meminfo(std::string_view text) {
  MemInfo m;
  std::optional<std::int64_t> available, free;
  each_line(text, [&](std::string_view line) {
    if (auto v = meminfo_value(line, "MemTotal")) m.total_bytes = *v;
    if (auto v = meminfo_value(line, "MemAvailable")) available = v;
    if (auto v = meminfo_value(line, "MemFree")) free = v;
  });
  m.available_bytes = available.value_or(free.value_or(0));
  return m;
}

std::optional<std::array<double, 3>> parse_loadavg(std::string_view text) {
  std::array<double, 3> out{};
  for (auto& v : out) {
    text = trim(text);
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec != std::errc() || !std::isfinite(v) || v < 0) return std::nullopt;
    text.remove_prefix(static_cast<std::size_t>(end - text.data()));
  }
  return out;
}

std::string parse_cpu_model(std::string_view text) {
  std::string out;
  each_line(text, [&](std::string_view line) {
    if (!out.empty() || line.substr(0, 10) != "model name") return;
    const auto colon = line.find(':');
    if (colon != std::string_view::npos) out = std::string(trim(line.substr(colon + 1)));
  });
  return out.substr(0, 256);
}

std::string parse_os_release(std::string_view text) {
  std::string out;
  each_line(text, [&](std::string_view line) {
    if (!out.empty() || line.substr(0, 12) != "PRETTY_NAME=") return;
    auto v = trim(line.substr(12));
    if (v.size() >= 2 && (v.front() == '"' || v.front() == '\'') && v.back() == v.front()) {
      v = v.substr(1, v.size() - 2);
    }
    out = std::string(v);
  });
  return out.substr(0, 256);
}

server::SystemInfo host_info(const std::string& data_dir, std::int64_t uptime_ms, int port) {
  server::SystemInfo s;
  s.version = DRAWBRIDGE_VERSION;
  s.pid = ::getpid();
  s.uptime_ms = uptime_ms;
  s.port = port;
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) == 0) s.hostname = host;
  struct utsname u {};
  if (::uname(&u) == 0) {
    s.release = u.release;
    s.arch = u.machine;
    if (s.hostname.empty()) s.hostname = u.nodename;
  }
  s.os_label = parse_os_release(read_bounded("/etc/os-release"));
  if (s.os_label.empty()) s.os_label = "Linux " + s.release;
  s.cpu_model = parse_cpu_model(read_bounded("/proc/cpuinfo"));
  s.cpu_count = std::max<long>(::sysconf(_SC_NPROCESSORS_ONLN), 0);
  const auto mem = parse_meminfo(read_bounded("/proc/meminfo"));
  s.memory_total_bytes = mem.total_bytes;
  s.memory_free_bytes = mem.available_bytes;
  s.load_average = parse_loadavg(read_bounded("/proc/loadavg"));
  struct statvfs fs {};
  if (!data_dir.empty() && ::statvfs(data_dir.c_str(), &fs) == 0) {
    s.disk_path = data_dir;
    s.disk_total_bytes = static_cast<std::int64_t>(fs.f_blocks * fs.f_frsize);
    s.disk_available_bytes = static_cast<std::int64_t>(fs.f_bavail * fs.f_frsize);
  }
  return s;
}

}  // namespace drawbridge::runtime
