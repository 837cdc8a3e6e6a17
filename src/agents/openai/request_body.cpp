#include "agents/openai/request_body.h"

#include <algorithm>
#include <vector>

namespace drawbridge::agents::openai {

using nlohmann::json;

namespace {

std::int64_t estimate_tokens(const std::string& text) {
  return static_cast<std::int64_t>(text.size() / 4) + 4;  // + the message's own overhead
}

}  // namespace

json request_body(const OpenAiSettings& s, const pipeline::TurnRequest& turn) {
  // The history ends with the message being answered; without one, that message alone.
  std::vector<pipeline::HistoryEntry> history = turn.history;
  if (history.empty() || history.back().role != "user" || history.back().text != turn.text) {
    history.push_back({"user", turn.text});
  }
  // From the newest back: the message answered always, then earlier ones while both budgets
  // allow. A reply is kept with the message it answers.
  std::size_t first = history.size() - 1;
  int users = 0;
  std::int64_t tokens = estimate_tokens(history.back().text) +
                        (s.system_prompt.empty() ? 0 : estimate_tokens(s.system_prompt));
  while (first > 0) {
    const auto& e = history[first - 1];
    if (e.role == "user" && users + 1 > s.max_history_turns) break;
    const auto t = estimate_tokens(e.text);
    if (s.max_history_tokens > 0 && tokens + t > s.max_history_tokens) break;
    tokens += t;
    if (e.role == "user") ++users;
    --first;
  }
  // A history cut after a user message would start with its reply: that reply goes too.
  while (first + 1 < history.size() && history[first].role == "assistant") ++first;

  json messages = json::array();
  if (!s.system_prompt.empty()) {
    messages.push_back({{"role", "system"}, {"content", s.system_prompt}});
  }
  for (std::size_t i = first; i < history.size(); ++i) {
    const auto& e = history[i];
    json m(json::value_t::object);
    m.emplace("role", e.role == "assistant" ? "assistant" : "user");
    m.emplace("content", e.text);
    messages.push_back(std::move(m));
  }
  json body = s.params.is_object() ? s.params : json::object();
  body.erase("messages");
  body.erase("stream");
  body["model"] = s.model;
  body["messages"] = std::move(messages);
  if (s.temperature) body["temperature"] = *s.temperature;
  if (s.max_tokens) body["max_tokens"] = *s.max_tokens;
  body["stream"] = s.stream;
  return body;
}

HttpRequest completion_request(const OpenAiSettings& s, const json& body) {
  HttpRequest r;
  r.method = "POST";
  r.target = "/chat/completions";
  r.headers.push_back({"Content-Type", "application/json"});
  r.headers.push_back({"Accept", s.stream ? "text/event-stream" : "application/json"});
  if (!s.api_key.empty()) r.headers.push_back({"Authorization", "Bearer " + s.api_key});
  r.body = body.dump(-1, ' ', false, json::error_handler_t::replace);
  return r;
}

}  // namespace drawbridge::agents::openai
