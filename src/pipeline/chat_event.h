#pragma once

#include <cstdint>
#include <string>

namespace drawbridge::pipeline {

// What a chat client sees of a run: the `chat` event of the control protocol.
struct ChatEvent {
  enum class State { delta, final, error, aborted };
  State state = State::delta;
  std::string run_id;
  std::string session_key;
  int seq = 0;               // per run, from 0
  std::string text;          // delta: the new text; final: the whole part
  std::string accumulated;   // delta: everything streamed so far in this run
  std::string message_id;    // final: the outbox idempotency key of the part
  std::string error;         // error / aborted: why
  bool final_part = true;    // final: false for all but the last part of a multi-part reply
  std::int64_t ts_ms = 0;
};

const char* to_string(ChatEvent::State s);

class ChatEventListener {
 public:
  virtual ~ChatEventListener() = default;
  virtual void on_chat_event(const ChatEvent& event) = 0;
};

}  // namespace drawbridge::pipeline
