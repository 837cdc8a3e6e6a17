#pragma once

// Config text from outside the process: the file (and its last-known-good copy), a patch, a
// value given on the command line. Read only from regular files, never more than a limit;
// parsed while enforcing that limit, a depth limit and unique keys. A config is small: what is
// larger or deeper is a mistake or an attack, refused with a clear error before it costs
// memory or stack.

#include <cstddef>
#include <optional>
#include <string>

#include "config/bounded_json.h"

namespace drawbridge::config {

inline constexpr std::size_t kMaxConfigBytes = 1024 * 1024;
// The deepest key drawbridge reads is agents.<id>.env.<name> (4); free-form parts (meta,
// channel options) get room to spare.
inline constexpr std::size_t kMaxConfigDepth = 64;

// Config files and patches: JSON with comments, at most kMaxConfigBytes and kMaxConfigDepth,
// a repeated key is an error.
JsonLimits config_json_limits();

// parse_bounded_json with config_json_limits().
JsonParseResult parse_config_json(std::string_view text);

struct TextFile {
  bool exists = false;  // the path names something, even when it cannot be read
  std::optional<std::string> text;
  // When text is empty: "cannot read PATH: No such file or directory",
  // "cannot read PATH: not a regular file (a FIFO)",
  // "cannot read PATH: larger than the limit of 1 MiB (1048576 bytes) for a config file".
  std::string error;
};

// The whole file, if it is a regular file of at most `max_bytes`. Never blocks on a FIFO or a
// device, never reads more than max_bytes + 1 bytes.
TextFile read_config_text_file(const std::string& path, std::size_t max_bytes = kMaxConfigBytes);

// Why `text` is not a config document *yet*, for a watcher that may read a file half written:
// "parse error at line 1, column 7: syntax error ..." for a syntax error or a NUL byte; nullopt
// when it parses, or fails only a limit that the full parse reports with its path (depth,
// a repeated key, size).
std::optional<std::string> unfinished_json(std::string_view text);

}  // namespace drawbridge::config
