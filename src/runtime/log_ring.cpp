#include "runtime/log_ring.h"

#include <unistd.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "config/edit.h"

namespace drawbridge::runtime {

namespace {

// At most `max` bytes of `s`, not splitting a UTF-8 sequence.
std::string cut_utf8(std::string s, std::size_t max) {
  if (s.size() <= max) return s;
  std::size_t end = max;
  while (end > 0 && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80) --end;
  s.resize(end);
  return s;
}

const char* level_name(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::trace:
      return "trace";
    case spdlog::level::debug:
      return "debug";
    case spdlog::level::info:
      return "info";
    case spdlog::level::warn:
      return "warn";
    case spdlog::level::err:
      return "error";
    case spdlog::level::critical:
      return "fatal";
    default:
      return "info";
  }
}

}  // namespace

std::string log_line_json(const spdlog::details::log_msg& msg) {
  const std::string time = config::iso_timestamp(msg.time);
  std::string text(msg.payload.data(), msg.payload.size());
  if (text.size() > LogRing::kMaxLineBytes - 256) {
    text = cut_utf8(std::move(text), LogRing::kMaxLineBytes - 256);
    text += " [cut]";
  }
  const nlohmann::json line = {{"time", time}, {"level", level_name(msg.level)}, {"message", text}};
  // Invalid UTF-8 in a message (a hostile peer's text) becomes U+FFFD, never an exception.
  return line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

LogRing::LogRing(std::size_t capacity, std::string file)
    : capacity_(std::max<std::size_t>(capacity, 2)),
      file_(file.empty() ? "memory:drawbridge/" + std::to_string(::getpid()) : std::move(file)) {}

void LogRing::append(std::string line) {
  std::lock_guard lock(mutex_);
  append_locked(std::move(line));
}

std::uint64_t LogRing::size() {
  std::lock_guard lock(mutex_);
  return end_;
}

void LogRing::sink_it_(const spdlog::details::log_msg& msg) {
  append_locked(log_line_json(msg));
}

void LogRing::append_locked(std::string line) {
  line = cut_utf8(std::move(line), std::min(kMaxLineBytes, capacity_ - 1));
  std::replace(line.begin(), line.end(), '\n', ' ');  // one entry, one line
  const std::size_t bytes = line.size() + 1;
  lines_.push_back({end_, std::move(line)});
  end_ += bytes;
  kept_bytes_ += bytes;
  while (kept_bytes_ > capacity_ && !lines_.empty()) {
    kept_bytes_ -= lines_.front().text.size() + 1;
    lines_.pop_front();
  }
}

server::LogTail LogRing::tail(const server::LogTailRequest& request) {
  std::lock_guard lock(mutex_);
  server::LogTail out;
  out.file = file_;
  out.size = end_;
  out.cursor = end_;
  const std::uint64_t max_bytes = std::max<std::size_t>(request.max_bytes, 1);
  const std::uint64_t first = lines_.empty() ? end_ : lines_.front().offset;
  // The oldest byte this read may return: within max_bytes of the end, and still kept.
  const std::uint64_t oldest = std::max(first, end_ > max_bytes ? end_ - max_bytes : 0);
  std::uint64_t start = oldest;
  if (request.cursor && *request.cursor > end_) {
    out.reset = true;  // past the end: a cursor of another process
  } else if (request.cursor && *request.cursor < oldest) {
    out.reset = true;  // its lines are gone, or more than max_bytes follow it
    out.skipped_bytes = oldest - *request.cursor;
  } else if (request.cursor) {
    start = *request.cursor;
  }
  out.truncated = start > 0 && (!request.cursor || out.reset);
  // Whole lines only: a start inside a line skips to the next one.
  auto it = std::lower_bound(lines_.begin(), lines_.end(), start,
                             [](const Line& l, std::uint64_t at) { return l.offset < at; });
  std::size_t count = static_cast<std::size_t>(lines_.end() - it);
  const std::size_t limit = std::max<std::size_t>(request.limit, 1);
  if (count > limit) {
    it += static_cast<std::ptrdiff_t>(count - limit);
    out.truncated = true;
  }
  for (; it != lines_.end(); ++it) out.lines.push_back(it->text);
  return out;
}

}  // namespace drawbridge::runtime
