#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "agents/openai/openai_settings.h"
#include "agents/openai/transport.h"
#include "pipeline/agent.h"

namespace drawbridge::agents::openai {

// The chat completions request for a turn: the system prompt, the session's history trimmed to
// `max_history_turns` earlier user messages and `max_history_tokens` (estimated at 4 bytes a
// token; the message being answered is always sent), the model and the parameters. `params`
// passes through, except the keys drawbridge sets itself (model, messages, stream).
nlohmann::json request_body(const OpenAiSettings& settings, const pipeline::TurnRequest& turn);

// POST /chat/completions with that body and the key as a bearer token.
HttpRequest completion_request(const OpenAiSettings& settings, const nlohmann::json& body);

}  // namespace drawbridge::agents::openai
