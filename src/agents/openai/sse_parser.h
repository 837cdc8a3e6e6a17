#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

namespace drawbridge::agents::openai {

// Server-sent events (the WHATWG "event stream" format), read incrementally from whatever
// pieces the body arrives in: a line or a UTF-8 character may be cut anywhere. Lines end in
// CRLF, LF or CR; `data:` lines are joined with "\n" and an event is dispatched at the blank
// line that ends it; comments (":...") and the other fields (event, id, retry) are read and
// dropped, as the chat completions stream carries everything in `data`. An event that has not
// ended when the stream does is discarded (the format says so).
class SseParser {
 public:
  // An event's data or a line longer than `max_event_bytes` breaks the stream: the body is
  // outside input and is held in memory until its event ends.
  explicit SseParser(std::size_t max_event_bytes = 1u << 20) : max_(max_event_bytes) {}

  // Reads `bytes`; `on_event` gets each complete event's data. False, and nothing more is read,
  // once the stream broke the bound.
  bool feed(std::string_view bytes, const std::function<void(std::string_view data)>& on_event);

  bool broken() const { return broken_; }

 private:
  void line(std::string_view l, const std::function<void(std::string_view)>& on_event);

  std::size_t max_;
  std::string line_;  // the current line so far
  std::string data_;  // the current event's data so far, each line followed by "\n"
  bool has_data_ = false;
  bool after_cr_ = false;  // the last byte was a CR: a LF right after it ends nothing
  bool broken_ = false;
};

}  // namespace drawbridge::agents::openai
