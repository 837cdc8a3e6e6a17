#include "config/bounded_json.h"

#include <algorithm>
#include <cstddef>
#include <iterator>
#include <string>
#include <unordered_set>
#include <vector>

namespace drawbridge::config {

namespace {

using nlohmann::json;

// A pointer into the text that counts the bytes the parser has pulled, so that a limit hit in a
// SAX callback (which gets no position) can still say where: when nlohmann calls start_array or
// key, the '[' or the key's closing quote is the last byte read.
class CountingIterator {
 public:
  using iterator_category = std::input_iterator_tag;
  using value_type = char;
  using difference_type = std::ptrdiff_t;
  using pointer = const char*;
  using reference = const char&;

  CountingIterator(const char* p, std::size_t* consumed) : p_(p), consumed_(consumed) {}
  reference operator*() const { return *p_; }
  CountingIterator& operator++() {
    ++p_;
    ++*consumed_;
    return *this;
  }
  CountingIterator operator++(int) {
    CountingIterator old = *this;
    ++*this;
    return old;
  }
  bool operator==(const CountingIterator& o) const { return p_ == o.p_; }
  bool operator!=(const CountingIterator& o) const { return p_ != o.p_; }

 private:
  const char* p_;
  std::size_t* consumed_;
};

// "line 3, column 12" of the byte at 0-based `index`, counted like nlohmann counts.
std::string position(std::string_view text, std::size_t index) {
  index = std::min(index, text.size());
  const std::string_view before = text.substr(0, index);
  const auto line = 1 + std::count(before.begin(), before.end(), '\n');
  const auto newline = before.rfind('\n');
  const std::size_t column = index - (newline == std::string_view::npos ? 0 : newline + 1) + 1;
  return "line " + std::to_string(line) + ", column " + std::to_string(column);
}

// Key names are the caller's structure, not values; still cut and made printable.
std::string printable(const std::string& k) {
  std::string out;
  for (char c : k.substr(0, 64)) out.push_back(static_cast<unsigned char>(c) < 0x20 ? '?' : c);
  if (k.size() > 64) out += "...";
  return out;
}

std::string pointer_token(const std::string& k) {
  std::string out;
  for (char c : k) {
    if (c == '~') {
      out += "~0";
    } else if (c == '/') {
      out += "~1";
    } else {
      out += c;
    }
  }
  return out;
}

JsonParseError make_error(std::string message, std::size_t byte,
                          JsonErrorKind kind = JsonErrorKind::syntax) {
  JsonParseError e;
  e.message = std::move(message);
  e.byte = byte;
  e.kind = kind;
  return e;
}

// A depth error names the first levels of the value that nests too deep, not all 64.
constexpr std::size_t kDepthPathLevels = 4;

// Builds the DOM with nlohmann's own builder and stops the parse (returns false) the moment a
// limit is crossed; the parser is iterative, so depth costs no stack until the limit.
class BoundedSax {
 public:
  BoundedSax(json& root, const JsonLimits& limits, std::string_view text,
             const std::size_t& consumed)
      : dom_(root, false), limits_(limits), text_(text), consumed_(consumed) {}

  bool null() {
    element();
    return dom_.null();
  }
  bool boolean(bool v) {
    element();
    return dom_.boolean(v);
  }
  bool number_integer(json::number_integer_t v) {
    element();
    return dom_.number_integer(v);
  }
  bool number_unsigned(json::number_unsigned_t v) {
    element();
    return dom_.number_unsigned(v);
  }
  bool number_float(json::number_float_t v, const json::string_t& s) {
    element();
    return dom_.number_float(v, s);
  }
  bool string(json::string_t& v) {
    element();
    return dom_.string(v);
  }
  bool binary(json::binary_t& v) {
    element();
    return dom_.binary(v);
  }

  bool start_object(std::size_t n) {
    element();
    if (!enter()) return false;
    levels_.emplace_back(false);
    return dom_.start_object(n);
  }
  bool key(json::string_t& k) {
    Level& level = levels_.back();
    level.key = k;
    if (limits_.reject_duplicate_keys && !level.keys.insert(k).second) {
      fail(JsonErrorKind::duplicate_key, "duplicate key \"" + printable(k) + "\"", levels_.size());
      return false;
    }
    return dom_.key(k);
  }
  bool end_object() {
    levels_.pop_back();
    return dom_.end_object();
  }
  bool start_array(std::size_t n) {
    element();
    if (!enter()) return false;
    levels_.emplace_back(true);
    return dom_.start_array(n);
  }
  bool end_array() {
    levels_.pop_back();
    return dom_.end_array();
  }

  bool parse_error(std::size_t at, const std::string&, const nlohmann::detail::exception& e) {
    if (error_) return false;
    std::string message = scrub_json_error(e.what());
    // "number overflow" comes without a position; the lexer's is past the token.
    if (!message.starts_with("line ")) {
      message = position(text_, at == 0 ? 0 : at - 1) + ": " + message;
    }
    error_ = make_error(std::move(message), at);
    return false;
  }

  std::optional<JsonParseError> take_error() { return std::move(error_); }

 private:
  struct Level {
    explicit Level(bool is_array) : array(is_array) {}
    bool array = false;
    std::size_t count = 0;                 // elements seen so far (arrays)
    std::string key;                       // the last key (objects)
    std::unordered_set<std::string> keys;  // every key (objects, with reject_duplicate_keys)
  };

  // Every value is an element of the array it is in, if any: its index is count - 1.
  void element() {
    if (!levels_.empty() && levels_.back().array) ++levels_.back().count;
  }
  bool enter() {
    if (levels_.size() >= limits_.max_depth) {
      fail(JsonErrorKind::too_deep,
           "nested deeper than " + std::to_string(limits_.max_depth) + " levels",
           std::min(levels_.size(), kDepthPathLevels));
      return false;
    }
    return true;
  }
  // `levels` of the path (from the root) name where.
  void fail(JsonErrorKind kind, const std::string& why, std::size_t levels) {
    if (error_) return;
    JsonParseError e;
    e.kind = kind;
    e.byte = consumed_;
    e.message = position(text_, consumed_ == 0 ? 0 : consumed_ - 1) + ": " + why;
    for (std::size_t i = 0; i < levels && i < levels_.size(); ++i) {
      const Level& level = levels_[i];
      if (level.array) {
        const std::size_t index = level.count == 0 ? 0 : level.count - 1;
        e.pointer += "/" + std::to_string(index);
        e.path += "[" + std::to_string(index) + "]";
      } else {
        e.pointer += "/" + pointer_token(level.key);
        e.path += (e.path.empty() ? "" : ".") + printable(level.key);
      }
    }
    error_ = std::move(e);
  }

  nlohmann::detail::json_sax_dom_parser<json> dom_;
  const JsonLimits& limits_;
  std::string_view text_;
  const std::size_t& consumed_;
  std::vector<Level> levels_;
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

std::string describe_bytes(std::size_t bytes) {
  constexpr std::size_t kKiB = 1024;
  constexpr std::size_t kMiB = 1024 * kKiB;
  const std::string exact = std::to_string(bytes) + " bytes";
  if (bytes >= kMiB && bytes % kMiB == 0) {
    return std::to_string(bytes / kMiB) + " MiB (" + exact + ")";
  }
  if (bytes >= kKiB && bytes % kKiB == 0) {
    return std::to_string(bytes / kKiB) + " KiB (" + exact + ")";
  }
  return exact;
}

JsonParseResult parse_bounded_json(std::string_view text, const JsonLimits& limits) {
  JsonParseResult out;
  if (text.size() > limits.max_bytes) {
    out.error = make_error("larger than the limit of " + describe_bytes(limits.max_bytes), 0,
                           JsonErrorKind::too_large);
    return out;
  }
  // nlohmann's lexer takes a NUL byte for the end of input and would accept "{}\0anything";
  // a raw NUL is never valid JSON.
  if (auto nul = text.find('\0'); nul != std::string_view::npos) {
    out.error = make_error(position(text, nul) + ": a NUL byte, which JSON does not allow", nul + 1,
                           JsonErrorKind::nul_byte);
    return out;
  }
  std::size_t consumed = 0;
  BoundedSax sax(out.value, limits, text, consumed);
  bool ok = false;
  try {
    ok = json::sax_parse(CountingIterator(text.data(), &consumed),
                         CountingIterator(text.data() + text.size(), &consumed), &sax,
                         json::input_format_t::json, /*strict=*/true, limits.allow_comments);
  } catch (const nlohmann::json::exception& e) {
    out.error = make_error(scrub_json_error(e.what()), 0);
    out.value = nullptr;
    return out;
  }
  if (!ok) {
    out.error = sax.take_error();
    if (!out.error) out.error = make_error("invalid JSON", 0);
    out.value = nullptr;
  }
  return out;
}

}  // namespace drawbridge::config
