#include "runtime/log_ring.h"

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include "runtime/log_redaction.h"

namespace drawbridge::runtime {
namespace {

using server::LogTailRequest;

LogTailRequest from(std::optional<std::uint64_t> cursor, std::size_t limit = 500,
                    std::size_t max_bytes = 250'000) {
  return {cursor, limit, max_bytes};
}

TEST(LogRing, WithoutACursorItAnswersTheNewestLinesAndWhereToGoOn) {
  LogRing ring(1024, "memory:test");
  ring.append("one");
  ring.append("two");
  const auto t = ring.tail(from(std::nullopt));
  EXPECT_EQ(t.file, "memory:test");
  EXPECT_EQ(t.lines, (std::vector<std::string>{"one", "two"}));
  EXPECT_EQ(t.size, 8u);  // "one\ntwo\n"
  EXPECT_EQ(t.cursor, 8u);
  EXPECT_FALSE(t.reset);
  EXPECT_FALSE(t.truncated);
}

TEST(LogRing, ACursorReadsOnlyWhatFollowsIt) {
  LogRing ring(1024, "memory:test");
  ring.append("one");
  const auto first = ring.tail(from(std::nullopt));
  ring.append("two");
  ring.append("three");
  const auto next = ring.tail(from(first.cursor));
  EXPECT_EQ(next.lines, (std::vector<std::string>{"two", "three"}));
  EXPECT_FALSE(next.reset);
  EXPECT_TRUE(ring.tail(from(next.cursor)).lines.empty());
}

TEST(LogRing, OldLinesGoAndACursorPointingAtThemResets) {
  LogRing ring(20, "memory:test");  // room for four "lineN\n" of 6 bytes: three
  for (int i = 0; i < 6; ++i) ring.append("line" + std::to_string(i));
  EXPECT_EQ(ring.size(), 36u);
  const auto t = ring.tail(from(0));
  EXPECT_TRUE(t.reset);
  EXPECT_TRUE(t.truncated);
  EXPECT_EQ(t.skipped_bytes, 18u);
  EXPECT_EQ(t.lines, (std::vector<std::string>{"line3", "line4", "line5"}));
}

TEST(LogRing, ACursorPastTheEndIsAnotherProcessesAndResets) {
  LogRing ring(1024, "memory:test");
  ring.append("fresh");
  const auto t = ring.tail(from(5000));
  EXPECT_TRUE(t.reset);
  EXPECT_EQ(t.lines, std::vector<std::string>{"fresh"});
  EXPECT_EQ(t.cursor, 6u);
}

TEST(LogRing, LimitAndMaxBytesKeepTheNewestWholeLines) {
  LogRing ring(1024, "memory:test");
  for (int i = 0; i < 5; ++i) ring.append("line" + std::to_string(i));
  const auto limited = ring.tail(from(std::nullopt, 2));
  EXPECT_EQ(limited.lines, (std::vector<std::string>{"line3", "line4"}));
  EXPECT_TRUE(limited.truncated);
  // 8 bytes from the end start inside "line3\n": only the whole line after it comes.
  const auto bytes = ring.tail(from(std::nullopt, 500, 8));
  EXPECT_EQ(bytes.lines, std::vector<std::string>{"line4"});
  EXPECT_TRUE(bytes.truncated);
  // A cursor with more than maxBytes after it: the newest part, and a reset.
  const auto behind = ring.tail(from(0, 500, 12));
  EXPECT_TRUE(behind.reset);
  EXPECT_EQ(behind.lines, (std::vector<std::string>{"line3", "line4"}));
}

TEST(LogRing, ALongLineIsCutOnACharacterBoundaryAndNewlinesDoNotSplitIt) {
  LogRing ring(64, "memory:test");
  ring.append(std::string(60, 'x') + "\xC3\xA9\xC3\xA9");  // cut inside the é's
  ring.append("a\nb");
  const auto t = ring.tail(from(std::nullopt));
  ASSERT_EQ(t.lines.size(), 1u) << "the long line and the next do not both fit";
  EXPECT_EQ(t.lines[0], "a b");
  LogRing wide(128, "memory:test");
  wide.append(std::string(126, 'x') + "\xC3\xA9");
  EXPECT_EQ(wide.tail(from(std::nullopt)).lines[0], std::string(126, 'x'));
}

TEST(LogRing, BehindTheRedactingSinkItHoldsNoSecretAndOneJsonObjectPerLine) {
  auto ring = std::make_shared<LogRing>(4096, "memory:test");
  auto redactor = std::make_shared<RedactingSink>(std::vector<spdlog::sink_ptr>{ring});
  redactor->set_secrets({"s3cr3t-token-value"});
  spdlog::logger log("log-ring-test", redactor);
  log.set_level(spdlog::level::trace);
  log.warn("token is s3cr3t-token-value");
  log.critical("bad \xFF byte");
  const auto t = ring->tail(from(std::nullopt));
  ASSERT_EQ(t.lines.size(), 2u);
  for (const auto& line : t.lines) EXPECT_EQ(line.find("s3cr3t"), std::string::npos) << line;
  const auto first = nlohmann::json::parse(t.lines[0]);
  EXPECT_EQ(first["level"], "warn");
  EXPECT_EQ(first["message"], "token is ***");
  EXPECT_EQ(first["time"].get<std::string>().size(), 24u);
  EXPECT_EQ(nlohmann::json::parse(t.lines[1])["level"], "fatal");
}

}  // namespace
}  // namespace drawbridge::runtime
