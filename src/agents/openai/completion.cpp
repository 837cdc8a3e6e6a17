#include "agents/openai/completion.h"

#include <charconv>
#include <ctime>
#include <nlohmann/json.hpp>

namespace drawbridge::agents::openai {

using nlohmann::json;

namespace {

// The endpoint's bytes are outside input: bounded in size by the caller, in nesting here (a
// chunk is 4 levels deep; thousands would cost stack and time for nothing).
bool shallow(std::string_view text, int max_depth) {
  int depth = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > max_depth) return false;
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return true;
}

std::optional<json> parse(std::string_view text) {
  if (!shallow(text, 32)) return std::nullopt;
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return std::nullopt;
  return j;
}

std::string string_at(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// The error object's message, type or code, as text.
std::string field_text(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return {};
  if (it->is_string()) return it->get<std::string>();
  if (it->is_number_integer()) return std::to_string(it->get<long long>());
  return {};
}

std::string clean(std::string s, const std::string& secret, std::size_t max) {
  if (secret.size() >= 8) {
    for (auto at = s.find(secret); at != std::string::npos; at = s.find(secret, at)) {
      s.replace(at, secret.size(), "***");
    }
  }
  std::string out;
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) {
      if (!out.empty() && out.back() != ' ') out.push_back(' ');
      continue;
    }
    out.push_back(static_cast<char>(c));
  }
  if (out.size() > max) {
    out.resize(max);
    // Not inside a UTF-8 character.
    while (!out.empty() && (static_cast<unsigned char>(out.back()) & 0xC0) == 0x80) out.pop_back();
    if (!out.empty() && static_cast<unsigned char>(out.back()) >= 0xC0) out.pop_back();
    out += "...";
  }
  return out;
}

}  // namespace

StreamEvent read_stream_event(std::string_view data) {
  StreamEvent ev;
  if (data == "[DONE]") {
    ev.kind = StreamEvent::Kind::done;
    return ev;
  }
  auto j = parse(data);
  if (!j || !j->is_object()) {
    ev.error = "an event of the stream is not JSON";
    return ev;
  }
  if (auto e = j->find("error"); e != j->end()) {
    ev.kind = StreamEvent::Kind::error;
    ev.error = e->is_object() ? field_text(*e, "message") : field_text(*j, "error");
    if (ev.error.empty()) ev.error = "the endpoint reported an error mid-stream";
    ev.error = clean(ev.error, "", 200);
    return ev;
  }
  ev.kind = StreamEvent::Kind::chunk;
  auto choices = j->find("choices");
  if (choices == j->end() || !choices->is_array() || choices->empty()) return ev;  // usage chunk
  const json& c = (*choices)[0];
  if (!c.is_object()) return ev;
  if (auto d = c.find("delta"); d != c.end() && d->is_object())
    ev.content = string_at(*d, "content");
  ev.finish_reason = string_at(c, "finish_reason");
  return ev;
}

std::optional<Completion> read_completion(std::string_view body, std::string& error) {
  auto j = parse(body);
  if (!j || !j->is_object()) {
    error = "the answer is not JSON";
    return std::nullopt;
  }
  auto choices = j->find("choices");
  if (choices == j->end() || !choices->is_array() || choices->empty() ||
      !(*choices)[0].is_object()) {
    error = "the answer has no choices";
    return std::nullopt;
  }
  const json& c = (*choices)[0];
  Completion out;
  if (auto m = c.find("message"); m != c.end() && m->is_object()) {
    out.content = string_at(*m, "content");
  }
  out.finish_reason = string_at(c, "finish_reason");
  return out;
}

std::string error_summary(std::string_view body, const std::string& secret) {
  if (body.empty()) return {};
  auto j = parse(body);
  if (j && j->is_object()) {
    auto e = j->find("error");
    if (e != j->end() && e->is_object()) {
      std::string message = field_text(*e, "message");
      std::string code = field_text(*e, "code");
      if (code.empty()) code = field_text(*e, "type");
      std::string out = message.empty() ? code : message;
      if (!message.empty() && !code.empty()) out += " (" + code + ")";
      return clean(out, secret, 240);
    }
    if (e != j->end() && e->is_string()) return clean(e->get<std::string>(), secret, 240);
  }
  return clean(std::string(body), secret, 200);
}

bool retryable_status(int status) {
  return status == 408 || status == 409 || status == 429 || status >= 500;
}

std::optional<long long> retry_after_ms(std::string_view retry_after,
                                        std::string_view retry_after_ms_header,
                                        long long now_unix_s) {
  auto number = [](std::string_view s) -> std::optional<double> {
    while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
    while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
    if (s.empty() || s.size() > 20) return std::nullopt;
    double v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size() || !(v >= 0)) return std::nullopt;
    return v;
  };
  if (auto ms = number(retry_after_ms_header)) return static_cast<long long>(*ms);
  if (auto s = number(retry_after)) return static_cast<long long>(*s * 1000);
  if (retry_after.empty() || retry_after.size() > 64) return std::nullopt;
  // "Wed, 21 Oct 2015 07:28:00 GMT"
  std::tm tm{};
  const std::string text(retry_after);
  const char* end = ::strptime(text.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  if (end == nullptr) return std::nullopt;
  const long long at = static_cast<long long>(::timegm(&tm));
  return at <= now_unix_s ? 0 : (at - now_unix_s) * 1000;
}

}  // namespace drawbridge::agents::openai
