#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace drawbridge::pipeline {

struct HistoryEntry {
  std::string role;  // "user" | "assistant"
  std::string text;
};

struct TurnRequest {
  std::string run_id;
  std::string session_key;
  std::string channel;
  std::string chat_id;
  std::string sender;
  std::string text;                   // the message this turn answers
  std::vector<HistoryEntry> history;  // the session so far, oldest first, ending with `text`
};

struct TurnOutcome {
  enum class Kind { completed, failed, aborted };
  Kind kind = Kind::completed;
  std::string text;   // the whole reply (completed); what was produced so far otherwise
  std::string error;  // why it failed or was aborted
};

struct TurnCallbacks {
  std::function<void(std::string_view delta)> on_delta;
  std::function<void(TurnOutcome outcome)> on_done;
};

// A running turn. Callbacks run on the event loop thread, never from inside Agent::start().
// on_done runs exactly once, also after cancel() (with Kind::aborted). Destroying a Turn
// before on_done stops it without calling anything back.
class Turn {
 public:
  virtual ~Turn() = default;
  virtual void cancel() = 0;
};

// What `status` shows of an agent's backend: where it sends turns and how that went lately.
// Empty for backends with no endpoint (echo, exec).
struct AgentHealth {
  std::string endpoint;  // "https://api.openai.com:443"
  std::string model;
  std::string last_error;
  std::int64_t last_error_at_ms = 0;
  std::int64_t last_latency_ms = -1;  // request to first token, the last turn that had one
};

class Agent {
 public:
  virtual ~Agent() = default;
  virtual std::string_view type() const = 0;
  // What the drain and `status` show of a turn's backend: the type, and what runs it
  // ("openai gpt-4o-mini").
  virtual std::string describe() const { return std::string(type()); }
  // False when the agent ignores TurnRequest::history: the pipeline then skips reading it.
  virtual bool wants_history() const { return true; }
  virtual AgentHealth health() const { return {}; }
  virtual std::unique_ptr<Turn> start(TurnRequest request, TurnCallbacks callbacks) = 0;
};

}  // namespace drawbridge::pipeline
