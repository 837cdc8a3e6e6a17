#include "agents/echo_agent.h"

#include <memory>
#include <optional>
#include <utility>

namespace drawbridge::agents {

namespace {

class EchoTurn final : public pipeline::Turn {
 public:
  EchoTurn(core::Executor& executor, std::string reply, int delay_ms, int chunk_chars,
           pipeline::TurnCallbacks cb)
      : executor_(executor),
        reply_(std::move(reply)),
        chunk_chars_(chunk_chars),
        cb_(std::move(cb)),
        alive_(std::make_shared<bool>(true)) {
    auto alive = alive_;
    if (delay_ms > 0) {
      timer_ = executor_.schedule(core::Duration(delay_ms), [this, alive] {
        if (!*alive) return;
        timer_.reset();
        emit();
      });
    } else {
      executor_.post([this, alive] {
        if (*alive) emit();
      });
    }
  }
  ~EchoTurn() override {
    *alive_ = false;
    cancel_timer();
  }

  void cancel() override {
    if (done_) return;
    done_ = true;
    cancel_timer();
    auto alive = alive_;
    executor_.post([this, alive] {
      if (*alive) cb_.on_done({pipeline::TurnOutcome::Kind::aborted, {}, "aborted"});
    });
  }

 private:
  void cancel_timer() {
    if (timer_) executor_.cancel(*std::exchange(timer_, std::nullopt));
  }

  void emit() {
    if (done_) return;
    done_ = true;
    // Without chunking the reply arrives whole, as the final event alone.
    if (chunk_chars_ > 0) {
      const auto step = static_cast<std::size_t>(chunk_chars_);
      for (std::size_t i = 0; i < reply_.size(); i += step) {
        cb_.on_delta(std::string_view(reply_).substr(i, step));
      }
    }
    cb_.on_done({pipeline::TurnOutcome::Kind::completed, reply_, {}});
  }

  core::Executor& executor_;
  std::optional<core::TimerId> timer_;  // the delay, until it fires or is cancelled
  std::string reply_;
  int chunk_chars_;
  pipeline::TurnCallbacks cb_;
  std::shared_ptr<bool> alive_;
  bool done_ = false;
};

}  // namespace

EchoAgent::EchoAgent(core::Executor& executor, EchoSettings settings)
    : executor_(executor), settings_(std::move(settings)) {}

std::unique_ptr<pipeline::Turn> EchoAgent::start(pipeline::TurnRequest request,
                                                 pipeline::TurnCallbacks callbacks) {
  return std::make_unique<EchoTurn>(executor_, settings_.prefix + request.text, settings_.delay_ms,
                                    settings_.chunk_chars, std::move(callbacks));
}

}  // namespace drawbridge::agents
