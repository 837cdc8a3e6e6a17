#pragma once

#include <spdlog/sinks/base_sink.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>

#include "server/control.h"

namespace drawbridge::runtime {

// The last bytes of the gateway's log, in memory, for logs.tail (OpenClaw's dashboard and
// `openclaw logs`). It sits behind the RedactingSink like the terminal, so it never holds a
// secret. Each line is one JSON object, {"time","level","message"}, the shape OpenClaw's
// clients parse for their level and time columns. Byte offsets count every byte written since
// the process started: a cursor from an earlier read stays valid while its lines are kept.
class LogRing final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  // 1 MiB: any one logs.tail answer (at most 1,000,000 bytes) fits, and it costs little.
  static constexpr std::size_t kDefaultCapacity = 1024 * 1024;
  // A line longer than this is cut (a dumped document, a hostile client's text).
  static constexpr std::size_t kMaxLineBytes = 16 * 1024;

  explicit LogRing(std::size_t capacity = kDefaultCapacity, std::string file = "");

  // The window `request` asks for, as OpenClaw's readLogSlice answers a file: without a cursor
  // the newest lines within max_bytes; with one, what follows it (reset when it points at lines
  // no longer kept, or past the end: another process's cursor).
  server::LogTail tail(const server::LogTailRequest& request);

  // Appends a line as it is (tests, and the sink itself). `line` has no newline.
  void append(std::string line);
  std::uint64_t size();

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override;
  void flush_() override {}

 private:
  void append_locked(std::string line);

  struct Line {
    std::uint64_t offset;  // of its first byte
    std::string text;      // without the newline
  };
  const std::size_t capacity_;
  const std::string file_;
  std::deque<Line> lines_;
  std::size_t kept_bytes_ = 0;  // of lines_, newlines included
  std::uint64_t end_ = 0;       // bytes written ever
};

// One log message as the ring keeps it: {"time":"2026-12-05T13:58:04.123Z","level":"warn",
// "message":"..."}; levels in OpenClaw's names (warning is "warn", critical is "fatal").
std::string log_line_json(const spdlog::details::log_msg& msg);

}  // namespace drawbridge::runtime
