#pragma once

// Parsing JSON that came from outside (a socket, a request body, a config file, a patch):
// limits on size and nesting enforced while parsing, so no input can exhaust the stack or the
// heap, and error messages that never quote the input (it may hold a secret).

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace drawbridge::config {

struct JsonLimits {
  std::size_t max_bytes = 256 * 1024;
  // Arrays and objects open at once. The deepest thing drawbridge reads is a config
  // (agents.<id>.env.<name>: 4); clients send params a few levels deep.
  std::size_t max_depth = 64;
  bool allow_comments = false;       // config files: JSON with comments
  bool reject_duplicate_keys = false;  // config files: a repeated key is a mistake
};

enum class JsonErrorKind {
  syntax,         // not JSON (or not finished: a writer may still be at it)
  too_large,      // more than max_bytes
  too_deep,       // more than max_depth arrays and objects open at once
  nul_byte,       // a raw NUL byte
  duplicate_key,  // a key twice in one object (with reject_duplicate_keys)
};

struct JsonParseError {
  // Position and reason, never the text around it:
  // "line 3, column 12: syntax error while parsing object - unexpected ','".
  std::string message;
  std::size_t byte = 0;  // 1-based offset of the failure, 0 when not known
  JsonErrorKind kind = JsonErrorKind::syntax;
  // Where in the document, when known: the repeated key ("/gateway/port", "gateway.port"), or
  // the value that nests too deep (its first levels only). Keys are structure, not values.
  std::string pointer;
  std::string path;

  // The message with the path: "line 4, column 3: duplicate key \"port\" (at gateway.port)".
  std::string to_string() const { return path.empty() ? message : message + " (at " + path + ")"; }
};

// The parsed value, or the reason it was refused. Never throws for any input (only
// std::bad_alloc may leave, and the limits keep the allocation bounded by max_bytes).
struct JsonParseResult {
  nlohmann::json value;
  std::optional<JsonParseError> error;
  bool ok() const { return !error.has_value(); }
};

JsonParseResult parse_bounded_json(std::string_view text, const JsonLimits& limits = {});

// nlohmann's exception text without the "last read: '...'" excerpt of the input.
std::string scrub_json_error(std::string_view what);

// "1 MiB (1048576 bytes)", "256 KiB (262144 bytes)", "1000 bytes": a limit for people.
std::string describe_bytes(std::size_t bytes);

}  // namespace drawbridge::config
