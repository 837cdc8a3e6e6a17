#pragma once

#include <string>

#include "core/executor.h"
#include "pipeline/agent.h"

namespace drawbridge::agents {

// What an echo agent takes from its `agents.<id>` entry (the runtime fills it in).
struct EchoSettings {
  int delay_ms = 0;
  int chunk_chars = 0;
  std::string prefix{};  // `{}`: a designated initializer may leave it out
};

// Replies with the message text (after `prefix`). `delay_ms` makes a turn slow and
// `chunk_chars` makes it stream as deltas of that many bytes (0: the reply comes whole, no
// delta), so tests can simulate long, streaming turns. The delay is a timer on the injected
// executor, so a test runs it in simulated time.
class EchoAgent final : public pipeline::Agent {
 public:
  EchoAgent(core::Executor& executor, EchoSettings settings);
  std::string_view type() const override { return "echo"; }
  bool wants_history() const override { return false; }
  std::unique_ptr<pipeline::Turn> start(pipeline::TurnRequest request,
                                        pipeline::TurnCallbacks callbacks) override;

 private:
  core::Executor& executor_;
  EchoSettings settings_;
};

}  // namespace drawbridge::agents
