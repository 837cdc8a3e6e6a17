#include "runtime/token_check.h"

#include <array>
#include <cctype>

namespace drawbridge::runtime {

namespace {

// Values people copy from examples, README.md's `change-me` among them.
constexpr std::array<std::string_view, 7> kExamples = {
    "change-me", "changeme", "secret", "password", "token", "test", "example"};

bool is_example(std::string_view token) {
  std::string lower;
  for (char c : token) {
    if (!std::isspace(static_cast<unsigned char>(c))) {
      lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
  }
  for (auto e : kExamples) {
    if (lower == e) return true;
  }
  return false;
}

}  // namespace

std::optional<std::string> weak_token_problem(std::string_view token) {
  if (token.empty()) return std::nullopt;  // none configured: one is generated
  if (is_example(token)) return "is a well-known example value";
  if (token.size() < kMinTokenLength) {
    return "is shorter than " + std::to_string(kMinTokenLength) + " characters";
  }
  return std::nullopt;
}

std::optional<std::string> weak_token_warning(std::string_view token) {
  auto problem = weak_token_problem(token);
  if (!problem) return std::nullopt;
  return "weak gateway token: it " + *problem +
         ": anyone who can reach the port may guess it; set gateway.auth.token (or "
         "DRAWBRIDGE_GATEWAY_TOKEN) to a long random value, e.g. `openssl rand -hex 24`, or "
         "remove it to have one generated";
}

}  // namespace drawbridge::runtime
