#pragma once

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

class Agent {
 public:
  virtual ~Agent() = default;
  virtual std::string_view type() const = 0;
  // False when the agent ignores TurnRequest::history: the pipeline then skips reading it.
  virtual bool wants_history() const { return true; }
  virtual std::unique_ptr<Turn> start(TurnRequest request, TurnCallbacks callbacks) = 0;
};

}  // namespace drawbridge::pipeline
