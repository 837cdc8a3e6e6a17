#pragma once

#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace drawbridge::agents::openai {

// What an openai agent takes from its `agents.<id>` entry; the runtime fills it in (the key
// already read from the environment).
struct OpenAiSettings {
  std::string agent_id;  // named in messages: "check agents.<id>.apiKeyEnv"
  std::string base_url = "https://api.openai.com/v1";
  std::string model;
  std::string api_key;                    // "" sends no Authorization (local servers)
  std::string api_key_key = "apiKeyEnv";  // the config key the key came from, for messages
  std::string system_prompt;
  std::optional<double> temperature;
  std::optional<std::int64_t> max_tokens;
  nlohmann::json params = nlohmann::json::object();  // more request fields, passed through
  int max_history_turns = 20;           // earlier user messages (and their replies) sent along
  std::int64_t max_history_tokens = 0;  // estimated at 4 bytes a token; 0: no budget
  bool stream = true;
  std::chrono::milliseconds connect_timeout{10000};
  std::chrono::milliseconds first_token_timeout{60000};  // from the request to the first token
  std::chrono::milliseconds idle_timeout{30000};         // between two pieces of a stream
  std::chrono::milliseconds total_timeout{120000};       // the whole turn, retries included
  int max_retries = 3;  // 429, 5xx and transport errors, before the first token only
  std::chrono::milliseconds retry_base{500};  // doubled per attempt, with up to 25% jitter
  std::chrono::milliseconds retry_max{30000};
  std::size_t max_reply_bytes = 1u << 20;  // a longer reply ends the turn as failed
};

}  // namespace drawbridge::agents::openai
