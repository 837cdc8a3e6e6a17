#include "agents/openai/sse_parser.h"

namespace drawbridge::agents::openai {

bool SseParser::feed(std::string_view bytes,
                     const std::function<void(std::string_view)>& on_event) {
  if (broken_) return false;
  std::size_t i = 0;
  if (after_cr_ && !bytes.empty() && bytes.front() == '\n') i = 1;  // the LF of a CRLF
  after_cr_ = false;
  while (i < bytes.size()) {
    const auto end = bytes.find_first_of("\r\n", i);
    if (end == std::string_view::npos) {
      line_.append(bytes.substr(i));
      break;
    }
    line_.append(bytes.substr(i, end - i));
    if (line_.size() > max_) break;
    line(line_, on_event);
    line_.clear();
    if (broken_) return false;
    i = end + 1;
    if (bytes[end] == '\r') {
      if (i == bytes.size()) {
        after_cr_ = true;
      } else if (bytes[i] == '\n') {
        ++i;
      }
    }
  }
  if (line_.size() > max_) {
    broken_ = true;
    line_.clear();
    data_.clear();
  }
  return !broken_;
}

void SseParser::line(std::string_view l, const std::function<void(std::string_view)>& on_event) {
  if (l.empty()) {
    if (has_data_) {
      std::string data = std::move(data_);
      data_.clear();
      has_data_ = false;
      data.pop_back();  // the "\n" after the last data line
      on_event(data);
    }
    return;
  }
  if (l.front() == ':') return;  // a comment: some servers keep the connection warm with them
  const auto colon = l.find(':');
  const std::string_view field = l.substr(0, colon);
  std::string_view value =
      colon == std::string_view::npos ? std::string_view() : l.substr(colon + 1);
  if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  if (field != "data") return;
  if (data_.size() + value.size() + 1 > max_) {
    broken_ = true;
    data_.clear();
    has_data_ = false;
    return;
  }
  data_.append(value);
  data_.push_back('\n');
  has_data_ = true;
}

}  // namespace drawbridge::agents::openai
