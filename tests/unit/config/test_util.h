#pragma once

#include <string>
#include <vector>

#include "config/config.h"

namespace drawbridge::config::testing {

// "path: message" for each error, so a test asserts exact wording and place in one line.
inline std::vector<std::string> error_lines(const ParseResult& result) {
  std::vector<std::string> lines;
  for (const auto& e : result.errors) lines.push_back(e.to_string());
  return lines;
}

inline std::vector<std::string> errors_of(const std::string& text) {
  return error_lines(parse_config(text));
}

}  // namespace drawbridge::config::testing
