#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace drawbridge::agents::openai {

// What one `data:` event of a chat completions stream says (a `chat.completion.chunk`, the
// `[DONE]` sentinel, or an error object some servers send mid-stream).
struct StreamEvent {
  enum class Kind { chunk, done, error, unreadable };
  Kind kind = Kind::unreadable;
  std::string content;        // choices[0].delta.content (may be empty)
  std::string finish_reason;  // choices[0].finish_reason when set: "stop", "length", ...
  std::string error;          // error.message (error), or why the event is unreadable
};
StreamEvent read_stream_event(std::string_view data);

// The reply of a non-streaming answer (`chat.completion`): choices[0].message.content and its
// finish_reason, or nullopt and `error`.
struct Completion {
  std::string content;
  std::string finish_reason;
};
std::optional<Completion> read_completion(std::string_view body, std::string& error);

// An OpenAI error body, {"error":{"message","type","code"}}, as one short line for people:
// "Incorrect API key provided (invalid_api_key)"; the first 200 bytes of the body when it is not
// one, "" for an empty body. Control characters are dropped, `secret` (the API key) is masked.
std::string error_summary(std::string_view body, const std::string& secret);

// Whether a failed answer with this HTTP status may succeed when tried again.
bool retryable_status(int status);

// Retry-After (seconds, or an HTTP date) and OpenAI's retry-after-ms, in milliseconds;
// nullopt when absent or unreadable. `now_unix_s` reads the date form.
std::optional<long long> retry_after_ms(std::string_view retry_after,
                                        std::string_view retry_after_ms_header,
                                        long long now_unix_s);

}  // namespace drawbridge::agents::openai
