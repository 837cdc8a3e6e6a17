#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace drawbridge::runtime {

// Tokens shorter than this are guessable; generated ones are 48 hex characters.
inline constexpr std::size_t kMinTokenLength = 16;

// Why a gateway token (configured, or written into <dataDir>/gateway.token by hand) is weak:
// "is a well-known example value", "is shorter than 16 characters"; nullopt when it is not.
// The answer never contains the token.
std::optional<std::string> weak_token_problem(std::string_view token);

// The warning line for a weak token (names the problem, never the token), or nullopt.
std::optional<std::string> weak_token_warning(std::string_view token);

}  // namespace drawbridge::runtime
