#include "agents/echo_agent.h"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

namespace drawbridge::agents {

namespace {

class EchoTurn final : public pipeline::Turn {
 public:
  EchoTurn(boost::asio::io_context& io, std::string reply, int delay_ms, int chunk_chars,
           pipeline::TurnCallbacks cb)
      : io_(io),
        timer_(io),
        reply_(std::move(reply)),
        chunk_chars_(chunk_chars),
        cb_(std::move(cb)),
        alive_(std::make_shared<bool>(true)) {
    auto alive = alive_;
    if (delay_ms > 0) {
      timer_.expires_after(std::chrono::milliseconds(delay_ms));
      timer_.async_wait([this, alive](boost::system::error_code ec) {
        if (!*alive || ec) return;
        emit();
      });
    } else {
      boost::asio::post(io_, [this, alive] {
        if (*alive) emit();
      });
    }
  }
  ~EchoTurn() override { *alive_ = false; }

  void cancel() override {
    if (done_) return;
    done_ = true;
    timer_.cancel();
    auto alive = alive_;
    boost::asio::post(io_, [this, alive] {
      if (*alive) cb_.on_done({pipeline::TurnOutcome::Kind::aborted, {}, "aborted"});
    });
  }

 private:
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

  boost::asio::io_context& io_;
  boost::asio::steady_timer timer_;
  std::string reply_;
  int chunk_chars_;
  pipeline::TurnCallbacks cb_;
  std::shared_ptr<bool> alive_;
  bool done_ = false;
};

}  // namespace

EchoAgent::EchoAgent(boost::asio::io_context& io, EchoSettings settings)
    : io_(io), settings_(std::move(settings)) {}

std::unique_ptr<pipeline::Turn> EchoAgent::start(pipeline::TurnRequest request,
                                                 pipeline::TurnCallbacks callbacks) {
  return std::make_unique<EchoTurn>(io_, settings_.prefix + request.text, settings_.delay_ms,
                                    settings_.chunk_chars, std::move(callbacks));
}

}  // namespace drawbridge::agents
