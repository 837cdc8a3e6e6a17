#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "server/control.h"

namespace drawbridge::runtime {

// system.info: uname, hostname, /proc/meminfo, /proc/loadavg, /proc/cpuinfo, /etc/os-release
// and statvfs of the data folder. Each file is read at most kMaxHostFileBytes; what cannot be
// read is left at zero or empty, never an error.
inline constexpr std::size_t kMaxHostFileBytes = 64 * 1024;
server::SystemInfo host_info(const std::string& data_dir, std::int64_t uptime_ms, int port);

// The parsers, on text from files that may say anything.
struct MemInfo {
  std::int64_t total_bytes = 0;
  std::int64_t available_bytes = 0;  // MemAvailable, else MemFree
};
MemInfo parse_meminfo(std::string_view text);
std::optional<std::array<double, 3>> parse_loadavg(std::string_view text);
// The first "model name" of /proc/cpuinfo; "" when none.
std::string parse_cpu_model(std::string_view text);
// PRETTY_NAME of /etc/os-release, unquoted; "" when none.
std::string parse_os_release(std::string_view text);

}  // namespace drawbridge::runtime
