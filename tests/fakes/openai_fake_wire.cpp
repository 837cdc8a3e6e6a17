#include "fakes/openai_fake_wire.h"

#include <boost/beast/http/status.hpp>
#include <cctype>
#include <cstdio>

namespace drawbridge::testing {

namespace http = boost::beast::http;
using nlohmann::json;
using ordered = nlohmann::ordered_json;  // the real API's key order on the wire
using Script = OpenAiFake::Script;
using End = OpenAiFake::End;

namespace openai_wire {

namespace {

std::size_t rough_tokens(std::size_t bytes) {  // usage figures only; no tokenizer
  return (bytes + 3) / 4;
}

std::string chunk(std::string_view data) {
  char size[24];
  std::snprintf(size, sizeof size, "%zx\r\n", data.size());
  return std::string(size) + std::string(data) + "\r\n";
}

}  // namespace

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool nesting_within(std::string_view text, int max_depth) {
  int depth = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) return false;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return true;
}

std::string dump(const ordered& j) {
  return j.dump(-1, ' ', false, ordered::error_handler_t::replace);
}

std::string error_body(const std::string& message, const std::string& type, const std::string& code,
                       const char* param) {
  ordered error{{"message", message},
                {"type", type},
                {"param", param ? ordered(param) : ordered(nullptr)},
                {"code", code.empty() ? ordered(nullptr) : ordered(code)}};
  return dump(ordered{{"error", std::move(error)}});
}

std::string content_text(const json& content) {
  if (content.is_string()) return content.get<std::string>();
  std::string text;
  if (content.is_array()) {
    for (const auto& part : content) {
      if (part.is_object() && part.contains("type") && part["type"] == "text" &&
          part.contains("text") && part["text"].is_string()) {
        text += part["text"].get<std::string>();
      }
    }
  }
  return text;
}

Out build(const Script& s, const Chat& c, bool keep_alive, const std::string& request_id) {
  const bool sse = s.status == 200 && c.stream;
  std::vector<std::string> events;
  std::size_t first_event = npos;           // the first event with content
  std::vector<std::size_t> content_events;  // the event of each non-empty delta
  std::string content;
  for (const auto& d : s.deltas) content += d;
  auto usage = [&] {
    std::size_t p = rough_tokens(c.prompt_bytes), r = rough_tokens(content.size());
    return ordered{{"prompt_tokens", p}, {"completion_tokens", r}, {"total_tokens", p + r}};
  };
  if (s.body) {
    if (!s.body->empty()) events.push_back(*s.body);
  } else if (s.status != 200) {
    events.push_back(error_body("The server had an error while processing your request.",
                                "server_error", "server_error"));
  } else if (sse) {
    auto event = [&](ordered choices, std::optional<ordered> usage_field = {}) {
      ordered chunk{{"id", c.id},
                    {"object", "chat.completion.chunk"},
                    {"created", c.created},
                    {"model", c.model},
                    {"choices", std::move(choices)}};
      if (usage_field) chunk["usage"] = std::move(*usage_field);
      return "data: " + dump(chunk) + "\n\n";
    };
    auto choice = [](ordered delta, ordered finish) {
      return ordered::array(
          {ordered{{"index", 0}, {"delta", std::move(delta)}, {"finish_reason", finish}}});
    };
    events.push_back(event(choice({{"role", "assistant"}, {"content", ""}}, nullptr)));
    for (const auto& d : s.deltas) {
      if (first_event == npos && !d.empty()) first_event = events.size();
      if (!d.empty()) content_events.push_back(events.size());
      events.push_back(event(choice({{"content", d}}, nullptr)));
    }
    if (s.end == End::done) {
      events.push_back(event(choice(ordered::object(), s.finish_reason)));
      if (c.include_usage) events.push_back(event(ordered::array(), usage()));
      events.push_back("data: [DONE]\n\n");
    }
  } else {
    ordered message{{"role", "assistant"}, {"content", content}};
    ordered completion{
        {"id", c.id},
        {"object", "chat.completion"},
        {"created", c.created},
        {"model", c.model},
        {"choices", ordered::array({ordered{
                        {"index", 0}, {"message", message}, {"finish_reason", s.finish_reason}}})},
        {"usage", usage()}};
    events.push_back(dump(completion));
    if (!content.empty()) first_event = 0;
    for (const auto& d : s.deltas) {
      if (!d.empty()) content_events.push_back(0);
    }
  }

  std::string body;
  std::size_t first_end = npos;           // the byte just past the first content event
  std::vector<std::size_t> content_ends;  // the byte just past each content delta's event
  for (std::size_t i = 0; i < events.size(); ++i) {
    body += events[i];
    if (i == first_event) first_end = body.size();
    while (content_ends.size() < content_events.size() &&
           content_events[content_ends.size()] == i) {
      content_ends.push_back(body.size());
    }
  }
  const bool chunked = sse || s.piece_bytes > 0 || s.end != End::done;

  std::vector<std::pair<std::string, std::string>> fields{
      {"Content-Type", sse ? "text/event-stream; charset=utf-8" : "application/json"}};
  if (sse) fields.emplace_back("Cache-Control", "no-cache");
  if (chunked) {
    fields.emplace_back("Transfer-Encoding", "chunked");
  } else {
    fields.emplace_back("Content-Length", std::to_string(body.size()));
  }
  fields.emplace_back("Connection", keep_alive ? "keep-alive" : "close");
  fields.emplace_back("x-request-id", request_id);
  for (const auto& field : s.headers) {
    const std::string name = lower(field.first);
    std::erase_if(fields, [&](const auto& f) { return lower(f.first) == name; });
    fields.push_back(field);
  }
  std::string head = "HTTP/1.1 " + std::to_string(s.status) + " " +
                     std::string(http::obsolete_reason(static_cast<http::status>(s.status))) +
                     "\r\nServer: openai-fake\r\n";
  for (const auto& [name, value] : fields) head += name + ": " + value + "\r\n";
  head += "\r\n";

  Out out;
  out.status = s.status;
  out.gap = s.gap;
  out.pace = s.pace;
  out.end = s.end;
  out.stream = sse;
  out.writes.push_back(std::move(head));
  if (!chunked) {
    out.writes.back() += body;
    if (first_end != npos) out.first_content = 0;
    out.content_writes.assign(content_ends.size(), 0);
    return out;
  }
  std::vector<std::string_view> pieces;
  if (s.piece_bytes > 0) {
    for (std::size_t i = 0; i < body.size(); i += s.piece_bytes) {
      pieces.push_back(std::string_view(body).substr(i, s.piece_bytes));
    }
  } else {
    std::size_t at = 0;
    for (const auto& e : events) {
      pieces.push_back(std::string_view(body).substr(at, e.size()));
      at += e.size();
    }
  }
  std::size_t written = 0;
  for (auto piece : pieces) {
    written += piece.size();
    out.writes.push_back(chunk(piece));
    if (out.first_content == npos && first_end != npos && written >= first_end) {
      out.first_content = out.writes.size() - 1;
    }
    while (out.content_writes.size() < content_ends.size() &&
           written >= content_ends[out.content_writes.size()]) {
      out.content_writes.push_back(out.writes.size() - 1);
    }
  }
  // The last chunk goes with the last piece: a client that closes as soon as it has read
  // [DONE] never finds the stream unfinished.
  if (s.end == End::done) out.writes.back() += "0\r\n\r\n";
  return out;
}

}  // namespace openai_wire

Script Script::stream_reply(std::vector<std::string> deltas) {
  Script s;
  s.deltas = std::move(deltas);
  return s;
}

Script Script::stream_in_pieces(std::vector<std::string> deltas, std::size_t piece_bytes,
                                std::chrono::milliseconds gap) {
  Script s = stream_reply(std::move(deltas));
  s.piece_bytes = piece_bytes;
  s.gap = gap;
  return s;
}

Script Script::error_reply(int status, std::string message, std::string type, std::string code,
                           std::optional<int> retry_after_s) {
  Script s;
  s.status = status;
  s.body = openai_wire::error_body(message, type, code);
  if (retry_after_s) s.headers.emplace_back("Retry-After", std::to_string(*retry_after_s));
  return s;
}

Script Script::stall_after_headers() {
  Script s;
  s.end = End::stall;
  return s;
}

Script Script::stall_after_deltas(std::vector<std::string> deltas) {
  Script s = stream_reply(std::move(deltas));
  s.end = End::stall;
  return s;
}

Script Script::drop_after_deltas(std::vector<std::string> deltas) {
  Script s = stream_reply(std::move(deltas));
  s.end = End::drop;
  return s;
}

Script Script::slow_stream(std::vector<std::string> deltas, std::chrono::milliseconds gap) {
  Script s = stream_reply(std::move(deltas));
  s.gap = gap;
  return s;
}

std::vector<std::string> OpenAiFake::split(std::string_view text, std::size_t parts) {
  std::vector<std::size_t> starts;  // of each code point
  for (std::size_t i = 0; i < text.size(); ++i) {
    if ((static_cast<unsigned char>(text[i]) & 0xc0) != 0x80) starts.push_back(i);
  }
  auto at = [&](std::size_t k) { return k == 0 ? 0 : k < starts.size() ? starts[k] : text.size(); };
  std::vector<std::string> out;
  for (std::size_t p = 0; p < parts; ++p) {
    std::size_t from = at(p * starts.size() / parts), to = at((p + 1) * starts.size() / parts);
    out.emplace_back(text.substr(from, to - from));
  }
  return out;
}

}  // namespace drawbridge::testing
