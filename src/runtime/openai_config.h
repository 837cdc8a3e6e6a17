#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "agents/openai/openai_settings.h"
#include "config/config.h"

namespace drawbridge::runtime {

// agents.<id> of type openai as the agent takes it: the API key read from the environment
// (`apiKeyEnv`, or `apiKey: "${VAR}"`), the URL checked. nullopt and `error` (naming the key,
// never the key's value) when it cannot run; `warnings` for what runs but should not be so
// (a literal key in the file).
std::optional<agents::openai::OpenAiSettings> openai_settings(
    const config::AgentSettings& a, std::string& error, std::vector<std::string>& warnings,
    const std::function<std::optional<std::string>(const std::string&)>& env);

}  // namespace drawbridge::runtime
