#include "config/bounded_json.h"

#include <string>
#include <unordered_set>
#include <vector>

namespace drawbridge::config {

namespace {

using nlohmann::json;

// Builds the DOM with nlohmann's own builder and stops the parse (returns false) the moment a
// limit is crossed; the parser is iterative, so depth costs no stack until the limit.
class BoundedSax {
 public:
  BoundedSax(json& root, const JsonLimits& limits) : dom_(root, false), limits_(limits) {}

  bool null() { return dom_.null(); }
  bool boolean(bool v) { return dom_.boolean(v); }
  bool number_integer(json::number_integer_t v) { return dom_.number_integer(v); }
  bool number_unsigned(json::number_unsigned_t v) { return dom_.number_unsigned(v); }
  bool number_float(json::number_float_t v, const json::string_t& s) {
    return dom_.number_float(v, s);
  }
  bool string(json::string_t& v) { return dom_.string(v); }
  bool binary(json::binary_t& v) { return dom_.binary(v); }

  bool start_object(std::size_t n) {
    if (!enter()) return false;
    if (limits_.reject_duplicate_keys) keys_.emplace_back();
    return dom_.start_object(n);
  }
  bool key(json::string_t& k) {
    if (limits_.reject_duplicate_keys && !keys_.empty() && !keys_.back().insert(k).second) {
      fail("duplicate key \"" + printable(k) + "\" in one object");
      return false;
    }
    return dom_.key(k);
  }
  bool end_object() {
    --depth_;
    if (limits_.reject_duplicate_keys && !keys_.empty()) keys_.pop_back();
    return dom_.end_object();
  }
  bool start_array(std::size_t n) {
    if (!enter()) return false;
    return dom_.start_array(n);
  }
  bool end_array() {
    --depth_;
    return dom_.end_array();
  }

  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception& e) {
    if (!error_) error_ = JsonParseError{scrub_json_error(e.what()), position};
    return false;
  }

  std::optional<JsonParseError> take_error() { return std::move(error_); }

 private:
  bool enter() {
    if (++depth_ > limits_.max_depth) {
      fail("nested deeper than " + std::to_string(limits_.max_depth) + " levels");
      return false;
    }
    return true;
  }
  void fail(std::string why) {
    if (!error_) error_ = JsonParseError{std::move(why), 0};
  }
  // Key names are the caller's structure, not values; still cut and made printable.
  static std::string printable(const std::string& k) {
    std::string out;
    for (char c : k.substr(0, 64)) out.push_back(static_cast<unsigned char>(c) < 0x20 ? '?' : c);
    if (k.size() > 64) out += "...";
    return out;
  }

  nlohmann::detail::json_sax_dom_parser<json> dom_;
  const JsonLimits& limits_;
  std::size_t depth_ = 0;
  std::vector<std::unordered_set<std::string>> keys_;
  std::optional<JsonParseError> error_;
};

}  // namespace

std::string scrub_json_error(std::string_view what) {
  std::string s(what);
  // "[json.exception.parse_error.101] parse error at line 1, column 5: syntax error ..."
  if (auto at = s.find("at line "); at != std::string::npos) {
    s = s.substr(at + 3);
  } else if (auto colon = s.find("] "); colon != std::string::npos) {
    s = s.substr(colon + 2);
  }
  // "...; last read: '<input>'; expected ..." quotes the input: everything from there goes
  // (the expected-token list after it cannot be told apart from a quote that contains it).
  if (auto last = s.find("; last read:"); last != std::string::npos) s.resize(last);
  // "number overflow parsing '1e999'" quotes the number (a numeric token, say).
  if (auto quoted = s.find(" parsing '"); quoted != std::string::npos) s.resize(quoted);
  return s;
}

JsonParseResult parse_bounded_json(std::string_view text, const JsonLimits& limits) {
  JsonParseResult out;
  if (text.size() > limits.max_bytes) {
    out.error = JsonParseError{"larger than " + std::to_string(limits.max_bytes) + " bytes", 0};
    return out;
  }
  // nlohmann's lexer takes a NUL byte for the end of input and would accept "{}\0anything";
  // a raw NUL is never valid JSON.
  if (auto nul = text.find('\0'); nul != std::string_view::npos) {
    out.error = JsonParseError{"a NUL byte at offset " + std::to_string(nul), nul + 1};
    return out;
  }
  BoundedSax sax(out.value, limits);
  bool ok = false;
  try {
    ok = json::sax_parse(text.begin(), text.end(), &sax, json::input_format_t::json,
                         /*strict=*/true, limits.allow_comments);
  } catch (const nlohmann::json::exception& e) {
    out.error = JsonParseError{scrub_json_error(e.what()), 0};
    out.value = nullptr;
    return out;
  }
  if (!ok) {
    out.error = sax.take_error();
    if (!out.error) out.error = JsonParseError{"invalid JSON", 0};
    out.value = nullptr;
  }
  return out;
}

}  // namespace drawbridge::config
