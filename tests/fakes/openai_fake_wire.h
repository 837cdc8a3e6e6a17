#pragma once

// The bytes OpenAiFake answers with, as the real OpenAI API writes them: chat.completion.chunk
// events and their [DONE], chat.completion bodies, error bodies, the response head, and the
// body's framing into HTTP chunks (openai_fake.cpp writes them). Pure functions, no I/O.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "fakes/openai_fake.h"

namespace drawbridge::testing::openai_wire {

inline constexpr std::size_t npos = static_cast<std::size_t>(-1);

// What an answer needs from its chat completion request.
struct Chat {
  std::string id;  // chatcmpl-...
  std::string model;
  std::int64_t created = 0;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  std::size_t prompt_bytes = 0;
};

// An answer ready to write: the head (status line and headers) then each framed chunk, one
// write each.
struct Out {
  int status = 200;
  std::vector<std::string> writes;
  std::chrono::milliseconds gap{0};  // before each write after the head and the first chunk
  OpenAiFake::Pace pace = OpenAiFake::Pace::after_write;
  OpenAiFake::End end = OpenAiFake::End::done;
  bool stream = false;               // an SSE answer: counted in active_streams
  std::size_t first_content = npos;  // the write that completes the first content delta
  // Per non-empty content delta, in order: the write that completes it (non-decreasing).
  std::vector<std::size_t> content_writes;
};

// The answer `s` scripts to the request `c` (a default Chat{} for answers that are not chat
// completions).
Out build(const OpenAiFake::Script& s, const Chat& c, bool keep_alive,
          const std::string& request_id);

// {"error":{"message":...,"type":...,"param":...,"code":...}}; code null when empty.
std::string error_body(const std::string& message, const std::string& type, const std::string& code,
                       const char* param = nullptr);

// Compact, in the order of `j`'s keys; invalid UTF-8 replaced rather than thrown on.
std::string dump(const nlohmann::ordered_json& j);

// The text of a message's content: a string, or the "text" parts of an array of parts.
std::string content_text(const nlohmann::json& content);

std::string lower(std::string_view s);
std::int64_t unix_now();
// Whether a JSON text nests at most max_depth deep, so that a deeply nested body is refused
// before it is parsed (copying, dumping and destroying a tree recurse).
bool nesting_within(std::string_view text, int max_depth);

}  // namespace drawbridge::testing::openai_wire
