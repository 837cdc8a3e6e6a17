#pragma once

#include <string>

#include <boost/asio/io_context.hpp>

#include "pipeline/agent.h"

namespace drawbridge::agents {

// What an echo agent takes from its `agents.<id>` entry (the runtime fills it in).
struct EchoSettings {
  int delay_ms = 0;
  int chunk_chars = 0;
  std::string prefix;
};

// Replies with the message text (after `prefix`). `delay_ms` makes a turn slow and
// `chunk_chars` makes it stream as deltas of that many bytes (0: the reply comes whole, no
// delta), so tests can simulate long, streaming turns.
class EchoAgent final : public pipeline::Agent {
 public:
  EchoAgent(boost::asio::io_context& io, EchoSettings settings);
  std::string_view type() const override { return "echo"; }
  bool wants_history() const override { return false; }
  std::unique_ptr<pipeline::Turn> start(pipeline::TurnRequest request,
                                        pipeline::TurnCallbacks callbacks) override;

 private:
  boost::asio::io_context& io_;
  EchoSettings settings_;
};

}  // namespace drawbridge::agents
