#pragma once

#include <boost/asio/io_context.hpp>
#include <functional>
#include <memory>
#include <random>
#include <string>

#include "agents/openai/openai_settings.h"
#include "agents/openai/openai_turn.h"
#include "agents/openai/transport.h"
#include "core/clock.h"
#include "core/executor.h"
#include "pipeline/agent.h"

namespace drawbridge::agents::openai {

// Any OpenAI-compatible chat completions endpoint (OpenAI, Ollama, llama.cpp's server, vLLM,
// LM Studio): one request per turn, streamed by default, with the session's history from the
// store. Connections are kept alive and shared by the agent's turns.
class OpenAiAgent final : public pipeline::Agent {
 public:
  // Over real HTTP(S) to settings.base_url.
  OpenAiAgent(boost::asio::io_context& io, core::Executor& executor, const core::Clock& clock,
              const OpenAiSettings& settings);
  // Over `transport` (tests: a scripted one, in simulated time).
  OpenAiAgent(std::shared_ptr<HttpTransport> transport, core::Executor& executor,
              const core::Clock& clock, OpenAiSettings settings,
              std::function<double()> random = {});

  std::string_view type() const override { return "openai"; }
  std::string describe() const override { return "openai " + settings_->model; }
  std::unique_ptr<pipeline::Turn> start(pipeline::TurnRequest request,
                                        pipeline::TurnCallbacks callbacks) override;

  pipeline::AgentHealth health() const override;
  const OpenAiSettings& settings() const { return *settings_; }
  const EndpointStats& stats() const { return *stats_; }
  std::string endpoint() const { return transport_->endpoint(); }

 private:
  std::shared_ptr<const OpenAiSettings> settings_;
  std::shared_ptr<HttpTransport> transport_;
  core::Executor& executor_;
  const core::Clock& clock_;
  std::function<double()> random_;
  std::shared_ptr<EndpointStats> stats_ = std::make_shared<EndpointStats>();
};

}  // namespace drawbridge::agents::openai
