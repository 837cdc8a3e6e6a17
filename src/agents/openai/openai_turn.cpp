#include "agents/openai/openai_turn.h"

#include <algorithm>
#include <utility>

#include "agents/openai/completion.h"

namespace drawbridge::agents::openai {

namespace {

constexpr std::size_t kMaxErrorBody = 64 * 1024;  // what an error answer may cost us
constexpr std::size_t kMaxPlainBody = 8u << 20;   // a non-streamed answer

std::string ms_text(std::chrono::milliseconds d) {
  return std::to_string(d.count()) + " ms";
}

bool is_event_stream(const HttpHead& head) {
  auto it = head.headers.find("content-type");
  return it != head.headers.end() && it->second.find("text/event-stream") != std::string::npos;
}

std::string header(const HttpHead& head, const char* name) {
  auto it = head.headers.find(name);
  return it == head.headers.end() ? std::string() : it->second;
}

}  // namespace

OpenAiTurn::OpenAiTurn(std::shared_ptr<const OpenAiSettings> settings,
                       std::shared_ptr<HttpTransport> transport, core::Executor& executor,
                       const core::Clock& clock, std::function<double()> random,
                       std::shared_ptr<EndpointStats> stats, HttpRequest request,
                       pipeline::TurnCallbacks callbacks)
    : settings_(std::move(settings)),
      transport_(std::move(transport)),
      executor_(executor),
      clock_(clock),
      random_(std::move(random)),
      stats_(std::move(stats)),
      request_(std::move(request)),
      callbacks_(std::move(callbacks)),
      sse_(settings_->max_reply_bytes) {}

OpenAiTurn::~OpenAiTurn() {
  *alive_ = false;
  if (exchange_) exchange_->cancel();
  stop_timer(total_timer_);
  stop_timer(first_token_timer_);
  stop_timer(idle_timer_);
  stop_timer(retry_timer_);
}

void OpenAiTurn::stop_timer(core::TimerId& id) {
  if (id != 0) executor_.cancel(id);
  id = 0;
}

void OpenAiTurn::begin() {
  started_ = clock_.now();
  total_timer_ = executor_.schedule(settings_->total_timeout, [this, alive = alive_] {
    if (!*alive || finished_) return;
    total_timer_ = 0;
    fail("the reply took longer than agents." + settings_->agent_id + ".timeoutMs (" +
         ms_text(settings_->total_timeout) + ")");
  });
  executor_.post([this, alive = alive_] {
    if (*alive && !finished_) attempt();
  });
}

void OpenAiTurn::attempt() {
  retry_timer_ = 0;
  ++attempts_;
  ++stats_->requests;
  attempt_started_ = clock_.now();
  head_ = {};
  streaming_ = false;
  body_.clear();
  sse_ = SseParser(settings_->max_reply_bytes);
  done_event_ = false;
  finish_reason_.clear();
  stop_timer(first_token_timer_);
  first_token_timer_ = executor_.schedule(settings_->first_token_timeout, [this, alive = alive_] {
    if (!*alive || finished_ || first_token_) return;
    first_token_timer_ = 0;
    fail("the model endpoint sent no reply within agents." + settings_->agent_id +
         ".firstTokenTimeoutMs (" + ms_text(settings_->first_token_timeout) + ")");
  });
  ExchangeCallbacks cb;
  cb.on_head = [this, alive = alive_](const HttpHead& head) {
    if (*alive && !finished_) on_head(head);
  };
  cb.on_body = [this, alive = alive_](std::string_view piece) {
    if (*alive && !finished_) on_body(piece);
  };
  cb.on_end = [this, alive = alive_](const std::string& error) {
    if (*alive && !finished_) on_end(error);
  };
  exchange_ = transport_->send(request_, std::move(cb));
}

void OpenAiTurn::on_head(const HttpHead& head) {
  head_ = head;
  streaming_ = head.status == 200 && is_event_stream(head);
  if (head.status == 200) arm_idle();
}

void OpenAiTurn::arm_idle() {
  stop_timer(idle_timer_);
  idle_timer_ = executor_.schedule(settings_->idle_timeout, [this, alive = alive_] {
    if (!*alive || finished_) return;
    idle_timer_ = 0;
    fail(std::string(first_token_ ? "the model endpoint stopped sending mid-reply"
                                  : "the model endpoint answered, then sent nothing") +
         " for agents." + settings_->agent_id + ".idleTimeoutMs (" +
         ms_text(settings_->idle_timeout) + ")");
  });
}

void OpenAiTurn::on_body(std::string_view piece) {
  if (head_.status != 200) {
    if (body_.size() < kMaxErrorBody) body_.append(piece.substr(0, kMaxErrorBody - body_.size()));
    return;
  }
  arm_idle();
  if (!streaming_) {
    if (body_.size() + piece.size() > kMaxPlainBody) {
      return fail("the model endpoint's answer is larger than " +
                  std::to_string(kMaxPlainBody >> 20) + " MiB");
    }
    body_.append(piece);
    return;
  }
  const bool ok = sse_.feed(piece, [this, alive = alive_](std::string_view data) {
    if (*alive && !finished_ && !done_event_) on_event(data);
  });
  if (!ok && !finished_)
    fail("the model endpoint's stream has an event larger than the reply limit");
}

void OpenAiTurn::on_event(std::string_view data) {
  const StreamEvent ev = read_stream_event(data);
  switch (ev.kind) {
    case StreamEvent::Kind::done:
      done_event_ = true;
      return;
    case StreamEvent::Kind::error:
      return fail("the model endpoint reported an error mid-stream: " + ev.error);
    case StreamEvent::Kind::unreadable:
      return fail("the model endpoint's stream is not a chat completions stream (" + ev.error +
                  ")");
    case StreamEvent::Kind::chunk:
      if (!ev.content.empty()) add_text(ev.content);
      if (!ev.finish_reason.empty()) finish_reason_ = ev.finish_reason;
      return;
  }
}

void OpenAiTurn::add_text(std::string_view text) {
  if (finished_) return;
  if (!first_token_) {
    first_token_ = true;
    stop_timer(first_token_timer_);
    stats_->last_latency_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(clock_.now() - attempt_started_)
            .count();
  }
  if (text_.size() + text.size() > settings_->max_reply_bytes) {
    return fail("the reply is longer than " + std::to_string(settings_->max_reply_bytes) +
                " bytes");
  }
  text_.append(text);
  if (callbacks_.on_delta) callbacks_.on_delta(text);
}

void OpenAiTurn::on_end(const std::string& error) {
  exchange_.reset();
  stop_timer(idle_timer_);
  if (!error.empty()) {
    if (first_token_) {
      return fail("the connection to the model endpoint was lost mid-reply (" + error + ")");
    }
    return retry_or_fail(
        "cannot reach the model endpoint at " + transport_->endpoint() + " (" + error + ")",
        /*retryable=*/true, std::nullopt);
  }
  if (head_.status != 200) {
    const auto after = retry_after_ms(header(head_, "retry-after"), header(head_, "retry-after-ms"),
                                      clock_.wall_ms() / 1000);
    return retry_or_fail(http_failure(head_.status, error_summary(body_, settings_->api_key)),
                         retryable_status(head_.status), after);
  }
  if (!streaming_) {
    std::string why;
    auto c = read_completion(body_, why);
    if (!c) return fail("the model endpoint's answer is not a chat completion (" + why + ")");
    finish_reason_ = c->finish_reason;
    if (!c->content.empty()) add_text(c->content);
    if (!finished_) complete();
    return;
  }
  if (done_event_ || !finish_reason_.empty()) return complete();
  if (first_token_) {
    return fail("the model endpoint ended the stream before the reply was complete");
  }
  retry_or_fail("the model endpoint ended the stream without a reply", /*retryable=*/true,
                std::nullopt);
}

std::string OpenAiTurn::http_failure(int status, const std::string& summary) const {
  std::string out = "the model endpoint returned " + std::to_string(status);
  if (!summary.empty()) out += ": " + summary;
  const std::string at = "agents." + settings_->agent_id + ".";
  if (status == 401 || status == 403) out += " - check " + at + settings_->api_key_key;
  if (status == 404) out += " - check " + at + "model and " + at + "baseUrl";
  return out;
}

void OpenAiTurn::retry_or_fail(std::string why, bool retryable,
                               std::optional<long long> retry_after) {
  if (!retryable || attempts_ > settings_->max_retries) {
    if (attempts_ > 1) why += " (after " + std::to_string(attempts_) + " attempts)";
    return fail(std::move(why));
  }
  std::chrono::milliseconds delay;
  if (retry_after) {
    delay = std::chrono::milliseconds(*retry_after);
  } else {
    const std::chrono::milliseconds base =
        settings_->retry_base * (1L << std::min(attempts_ - 1, 20));
    delay = std::min(base, settings_->retry_max);
    delay += std::chrono::milliseconds(static_cast<long long>(
        static_cast<double>(delay.count()) * 0.25 * std::clamp(random_(), 0.0, 1.0)));
  }
  if (clock_.now() + delay >= started_ + settings_->total_timeout) {
    return fail(why + "; a retry in " + ms_text(delay) + " would pass agents." +
                settings_->agent_id + ".timeoutMs");
  }
  stop_timer(first_token_timer_);
  retry_timer_ = executor_.schedule(delay, [this, alive = alive_] {
    if (*alive && !finished_) attempt();
  });
}

void OpenAiTurn::complete() {
  pipeline::TurnOutcome out;
  out.kind = pipeline::TurnOutcome::Kind::completed;
  if (finish_reason_ == "length" || finish_reason_ == "content_filter") {
    // Cut short by the endpoint: said so, never passed off as the whole answer.
    const std::string note = std::string(text_.empty() ? "" : "\n\n") + "[reply cut short: " +
                             (finish_reason_ == "length" ? "the model reached its token limit"
                                                         : "the endpoint's content filter") +
                             "]";
    add_text(note);
  }
  out.text = text_;
  finish(std::move(out));
}

void OpenAiTurn::fail(std::string why) {
  ++stats_->failures;
  stats_->last_error = why;
  stats_->last_error_at_ms = clock_.wall_ms();
  pipeline::TurnOutcome out;
  out.kind = pipeline::TurnOutcome::Kind::failed;
  out.text = text_;
  out.error = std::move(why);
  finish(std::move(out));
}

void OpenAiTurn::halt() {
  finished_ = true;
  if (exchange_) exchange_->cancel();
  exchange_.reset();
  stop_timer(total_timer_);
  stop_timer(first_token_timer_);
  stop_timer(idle_timer_);
  stop_timer(retry_timer_);
}

void OpenAiTurn::finish(pipeline::TurnOutcome outcome) {
  if (finished_) return;
  halt();
  if (auto done = std::move(callbacks_.on_done)) done(std::move(outcome));
}

void OpenAiTurn::cancel() {
  if (finished_) return;
  halt();
  pipeline::TurnOutcome out;
  out.kind = pipeline::TurnOutcome::Kind::aborted;
  out.text = text_;
  out.error = "aborted";
  executor_.post([done = std::move(callbacks_.on_done), out = std::move(out)]() mutable {
    if (done) done(std::move(out));
  });
}

}  // namespace drawbridge::agents::openai
