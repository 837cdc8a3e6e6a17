#include "agents/openai/openai_agent.h"

#include "agents/openai/beast_transport.h"
#include "agents/openai/request_body.h"

namespace drawbridge::agents::openai {

OpenAiAgent::OpenAiAgent(boost::asio::io_context& io, core::Executor& executor,
                         const core::Clock& clock, const OpenAiSettings& settings)
    : OpenAiAgent(std::make_shared<BeastTransport>(io, settings.base_url, settings.connect_timeout),
                  executor, clock, OpenAiSettings(settings)) {}

OpenAiAgent::OpenAiAgent(std::shared_ptr<HttpTransport> transport, core::Executor& executor,
                         const core::Clock& clock, OpenAiSettings settings,
                         std::function<double()> random)
    : settings_(std::make_shared<const OpenAiSettings>(std::move(settings))),
      transport_(std::move(transport)),
      executor_(executor),
      clock_(clock),
      random_(std::move(random)) {
  if (!random_) {
    // Jitter only: spreads the retries of many turns; nothing depends on its quality.
    auto engine = std::make_shared<std::minstd_rand>(std::random_device{}());
    random_ = [engine] { return std::uniform_real_distribution<double>(0.0, 1.0)(*engine); };
  }
}

pipeline::AgentHealth OpenAiAgent::health() const {
  pipeline::AgentHealth h;
  h.endpoint = transport_->endpoint();
  h.model = settings_->model;
  h.last_error = stats_->last_error;
  h.last_error_at_ms = stats_->last_error_at_ms;
  h.last_latency_ms = stats_->last_latency_ms;
  return h;
}

std::unique_ptr<pipeline::Turn> OpenAiAgent::start(pipeline::TurnRequest request,
                                                   pipeline::TurnCallbacks callbacks) {
  auto http = completion_request(*settings_, request_body(*settings_, request));
  auto turn = std::make_unique<OpenAiTurn>(settings_, transport_, executor_, clock_, random_,
                                           stats_, std::move(http), std::move(callbacks));
  turn->begin();
  return turn;
}

}  // namespace drawbridge::agents::openai
