#pragma once

// Text for people from the gateway's JSON answers, shared by the `drawbridge` commands.

#include <string>

#include <nlohmann/json.hpp>

namespace drawbridge::cli {

// The field `key` of `o` as text (a string as it is, anything else as JSON); `otherwise` when
// it is absent or null (an older gateway, or nothing to say).
std::string text_of(const nlohmann::json& o, const char* key, const std::string& otherwise = "?");

// One line about what the gateway did with a restart request (the answer of
// gateway.restart.request, or the `restart` of a config.patch answer).
std::string describe_restart(const nlohmann::json& r);

}  // namespace drawbridge::cli
