#pragma once

#include <boost/asio/io_context.hpp>

#include "config/config.h"
#include "pipeline/agent.h"

namespace drawbridge::agents {

// Replies with the message text (after `prefix`). `delay_ms` makes a turn slow and
// `chunk_chars` makes it stream as deltas of that many bytes (0: the reply comes whole, no
// delta), so tests can simulate long, streaming turns.
class EchoAgent final : public pipeline::Agent {
 public:
  EchoAgent(boost::asio::io_context& io, config::AgentSettings settings);
  std::string_view type() const override { return "echo"; }
  bool wants_history() const override { return false; }
  std::unique_ptr<pipeline::Turn> start(pipeline::TurnRequest request,
                                        pipeline::TurnCallbacks callbacks) override;

 private:
  boost::asio::io_context& io_;
  config::AgentSettings settings_;
};

}  // namespace drawbridge::agents
