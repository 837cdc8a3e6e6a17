#include "runtime/host_info.h"

#include <gtest/gtest.h>

namespace drawbridge::runtime {
namespace {

TEST(HostInfo, MemInfoPrefersMemAvailableAndCountsKiB) {
  const auto m = parse_meminfo(
      "MemTotal:       16303412 kB\nMemFree:  100 kB\n"
      "MemAvailable:    8000000 kB\n");
  EXPECT_EQ(m.total_bytes, 16303412LL * 1024);
  EXPECT_EQ(m.available_bytes, 8000000LL * 1024);
  EXPECT_EQ(parse_meminfo("MemFree: 100 kB").available_bytes, 102400);
}

TEST(HostInfo, HostileTextGivesZerosNotGarbage) {
  const auto m =
      parse_meminfo("MemTotal: -5 kB\nMemTotalX: 7 kB\nMemAvailable: 99999999999999999999 kB");
  EXPECT_EQ(m.total_bytes, 0);
  EXPECT_EQ(m.available_bytes, 0);
  EXPECT_FALSE(parse_loadavg("0.5 nan 1").has_value());
  EXPECT_FALSE(parse_loadavg("0.5 1").has_value());
  EXPECT_FALSE(parse_loadavg("").has_value());
  EXPECT_EQ(parse_cpu_model(std::string(100000, 'x')), "");
  EXPECT_EQ(parse_os_release("PRETTY_NAME=" + std::string(1000, 'y')).size(), 256u);
}

TEST(HostInfo, LoadAverageCpuModelAndOsName) {
  const auto load = parse_loadavg("0.52 0.58 0.59 1/389 12345\n");
  ASSERT_TRUE(load.has_value());
  EXPECT_DOUBLE_EQ((*load)[2], 0.59);
  EXPECT_EQ(parse_cpu_model("processor\t: 0\nmodel name\t: AMD EPYC 7B13\nmodel name : other\n"),
            "AMD EPYC 7B13");
  EXPECT_EQ(parse_os_release("NAME=\"Debian\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n"),
            "Debian GNU/Linux 12 (bookworm)");
}

TEST(HostInfo, ThisHostHasAtLeastTheBasics) {
  const auto s = host_info("/", 5, 18789);
  EXPECT_FALSE(s.hostname.empty());
  EXPECT_FALSE(s.release.empty());
  EXPECT_GT(s.cpu_count, 0);
  EXPECT_GT(s.memory_total_bytes, 0);
  EXPECT_EQ(s.disk_path, "/");
  EXPECT_EQ(s.uptime_ms, 5);
}

}  // namespace
}  // namespace drawbridge::runtime
