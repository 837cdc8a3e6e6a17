#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "agents/openai/openai_settings.h"
#include "agents/openai/sse_parser.h"
#include "agents/openai/transport.h"
#include "core/clock.h"
#include "core/executor.h"
#include "pipeline/agent.h"

namespace drawbridge::agents::openai {

// What an agent's turns saw of its endpoint, for `status`.
struct EndpointStats {
  std::string last_error;
  std::int64_t last_error_at_ms = 0;
  std::int64_t last_latency_ms = -1;  // request to first token of the last turn that had one
  std::uint64_t requests = 0;         // attempts, retries included
  std::uint64_t failures = 0;         // turns that ended failed
};

// One chat completions request and its answer, as a pipeline turn: sends, retries (429, 5xx,
// a lost connection: only before the first token, with backoff and Retry-After, within the
// turn's total time), streams the deltas, and ends completed, failed (with the reply so far and
// a message that says what happened) or aborted. Every timer is the executor's, so the timing
// is tested in simulated time; every callback runs on the loop thread.
class OpenAiTurn final : public pipeline::Turn {
 public:
  // The settings and the transport are shared: a turn may outlive its agent's reload.
  OpenAiTurn(std::shared_ptr<const OpenAiSettings> settings,
             std::shared_ptr<HttpTransport> transport, core::Executor& executor,
             const core::Clock& clock, std::function<double()> random,
             std::shared_ptr<EndpointStats> stats, HttpRequest request,
             pipeline::TurnCallbacks callbacks);
  ~OpenAiTurn() override;
  OpenAiTurn(const OpenAiTurn&) = delete;
  OpenAiTurn& operator=(const OpenAiTurn&) = delete;

  // Sends the first attempt (posted: nothing is called back from inside this).
  void begin();
  void cancel() override;

 private:
  void attempt();
  void on_head(const HttpHead& head);
  void on_body(std::string_view piece);
  void on_end(const std::string& error);
  void on_event(std::string_view data);
  void add_text(std::string_view text);
  // A failure before the first token: tried again when `retryable` and attempts and time
  // are left, else the turn fails with `why`.
  void retry_or_fail(std::string why, bool retryable, std::optional<long long> retry_after_ms);
  void complete();
  void fail(std::string why);
  void finish(pipeline::TurnOutcome outcome);
  // Ends the request and every timer; nothing of this turn runs afterwards.
  void halt();
  void arm_idle();
  void stop_timer(core::TimerId& id);
  std::string http_failure(int status, const std::string& summary) const;

  std::shared_ptr<const OpenAiSettings> settings_;
  std::shared_ptr<HttpTransport> transport_;
  core::Executor& executor_;
  const core::Clock& clock_;
  std::function<double()> random_;
  std::shared_ptr<EndpointStats> stats_;
  HttpRequest request_;
  pipeline::TurnCallbacks callbacks_;

  std::unique_ptr<HttpExchange> exchange_;
  int attempts_ = 0;
  core::TimePoint started_{};
  core::TimePoint attempt_started_{};
  HttpHead head_;
  bool streaming_ = false;  // this answer is an event stream
  std::string body_;        // an error body or a non-streamed answer (bounded)
  SseParser sse_;
  bool first_token_ = false;
  bool done_event_ = false;
  std::string finish_reason_;
  std::string text_;
  bool finished_ = false;
  core::TimerId total_timer_ = 0;
  core::TimerId first_token_timer_ = 0;
  core::TimerId idle_timer_ = 0;
  core::TimerId retry_timer_ = 0;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace drawbridge::agents::openai
