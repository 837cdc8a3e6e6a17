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

struct JsonParseError {
  // Position and reason, never the text around it:
  // "line 3, column 12: syntax error while parsing object - unexpected ','".
  std::string message;
  std::size_t byte = 0;  // 1-based offset of the failure, 0 when not known
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

}  // namespace drawbridge::config
