#include "runtime/openai_config.h"

#include <cctype>

#include "agents/openai/beast_transport.h"

namespace drawbridge::runtime {

namespace {

bool env_name(const std::string& s) {
  if (s.empty() || s.size() > 128 || std::isdigit(static_cast<unsigned char>(s[0]))) return false;
  return s.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") ==
         std::string::npos;
}

}  // namespace

std::optional<agents::openai::OpenAiSettings> openai_settings(
    const config::AgentSettings& a, std::string& error, std::vector<std::string>& warnings,
    const std::function<std::optional<std::string>(const std::string&)>& env) {
  const std::string at = "agents." + a.id + ".";
  agents::openai::OpenAiSettings s;
  s.agent_id = a.id;
  if (auto bad = agents::openai::BeastTransport::check_url(a.base_url)) {
    error = at + "baseUrl: " + *bad;
    return std::nullopt;
  }
  s.base_url = a.base_url;
  if (a.model.empty()) {
    error = at +
            "model: required for type \"openai\" (e.g. \"gpt-4o-mini\", or the name the "
            "local server gives its model)";
    return std::nullopt;
  }
  s.model = a.model;
  if (!a.api_key_env.empty() && !a.api_key.empty()) {
    error = at + "apiKeyEnv: set apiKey or apiKeyEnv, not both";
    return std::nullopt;
  }
  std::string var = a.api_key_env;
  s.api_key_key = "apiKeyEnv";
  if (!a.api_key.empty()) {
    s.api_key_key = "apiKey";
    if (a.api_key.size() > 3 && a.api_key.rfind("${", 0) == 0 && a.api_key.back() == '}') {
      var = a.api_key.substr(2, a.api_key.size() - 3);
    } else {
      s.api_key = a.api_key;
      warnings.push_back(at +
                         "apiKey: a literal key in the config file; prefer apiKeyEnv or "
                         "\"${OPENAI_API_KEY}\" (the key is not logged)");
    }
  }
  if (!var.empty()) {
    if (!env_name(var)) {
      error = at + s.api_key_key + ": \"" + var.substr(0, 64) +
              "\" is not an environment variable name";
      return std::nullopt;
    }
    auto value = env(var);
    if (!value || value->empty()) {
      error = at + s.api_key_key + ": the environment variable " + var + " is not set";
      return std::nullopt;
    }
    if (value->find_first_of("\r\n") != std::string::npos) {
      error = at + s.api_key_key + ": the environment variable " + var +
              " holds a line break; it cannot be sent in a header";
      return std::nullopt;
    }
    s.api_key = *value;
  }
  s.system_prompt = a.system_prompt;
  s.temperature = a.temperature;
  if (a.max_tokens > 0) s.max_tokens = a.max_tokens;
  s.params = a.params;
  for (const char* own : {"model", "messages", "stream"}) {
    if (s.params.contains(own)) {
      warnings.push_back(at + "params." + own + ": set by drawbridge itself; ignored");
    }
  }
  s.max_history_turns = a.max_history_turns;
  s.max_history_tokens = a.max_history_tokens;
  s.stream = a.stream;
  s.connect_timeout = std::chrono::milliseconds(a.connect_timeout_ms);
  s.first_token_timeout = std::chrono::milliseconds(a.first_token_timeout_ms);
  s.idle_timeout = std::chrono::milliseconds(a.idle_timeout_ms);
  s.total_timeout = std::chrono::milliseconds(a.timeout_ms);
  s.max_retries = a.max_retries;
  return s;
}

}  // namespace drawbridge::runtime
