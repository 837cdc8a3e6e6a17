#pragma once

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "pipeline/agent.h"
#include "pipeline/channel.h"
#include "pipeline/pipeline.h"

namespace drawbridge::testing {

// An agent whose turns finish when the test says so.
class FakeAgent final : public pipeline::Agent {
 public:
  struct Call {
    pipeline::TurnRequest request;
    pipeline::TurnCallbacks callbacks;
    bool cancelled = false;
    bool finished = false;
  };

  std::string_view type() const override { return "fake"; }
  std::unique_ptr<pipeline::Turn> start(pipeline::TurnRequest request,
                                        pipeline::TurnCallbacks callbacks) override {
    calls.push_back(std::make_shared<Call>(Call{std::move(request), std::move(callbacks)}));
    return std::make_unique<FakeTurn>(calls.back());
  }

  void stream(std::size_t i, const std::string& delta) { calls.at(i)->callbacks.on_delta(delta); }
  void finish(std::size_t i, pipeline::TurnOutcome::Kind kind, const std::string& text,
              const std::string& error = {}) {
    auto call = calls.at(i);
    call->finished = true;
    call->callbacks.on_done({kind, text, error});
  }
  void complete(std::size_t i, const std::string& text) {
    finish(i, pipeline::TurnOutcome::Kind::completed, text);
  }
  // Echo every turn started so far that is still open.
  void complete_all_open() {
    for (std::size_t i = 0; i < calls.size(); ++i) {
      if (!calls[i]->finished && !calls[i]->cancelled) complete(i, "re: " + calls[i]->request.text);
    }
  }

  std::vector<std::shared_ptr<Call>> calls;

 private:
  class FakeTurn final : public pipeline::Turn {
   public:
    explicit FakeTurn(std::shared_ptr<Call> call) : call_(std::move(call)) {}
    void cancel() override {
      if (call_->finished || call_->cancelled) return;
      call_->cancelled = true;
      call_->finished = true;
      call_->callbacks.on_done({pipeline::TurnOutcome::Kind::aborted, {}, "aborted"});
    }

   private:
    std::shared_ptr<Call> call_;
  };
};

// A channel that records what it is asked to send and answers with a scripted status.
class FakeChannel final : public pipeline::Channel {
 public:
  explicit FakeChannel(std::string id = "local") : id_(std::move(id)) {}
  const std::string& id() const override { return id_; }
  void start() override { ready_ = true; }
  void stop(std::function<void()> done) override {
    ready_ = false;
    done();
  }
  bool ready() const override { return ready_; }
  void send(const pipeline::OutboundPart& part,
            std::function<void(pipeline::SendStatus, std::string)> done) override {
    attempts.push_back(part);
    pipeline::SendStatus st = pipeline::SendStatus::sent;
    if (!script.empty()) {
      st = script.front();
      script.pop_front();
    }
    if (st == pipeline::SendStatus::sent) sent.push_back(part);
    done(st, st == pipeline::SendStatus::sent ? "" : "scripted");
  }

  bool served_elsewhere() const override { return elsewhere; }

  std::deque<pipeline::SendStatus> script;  // statuses for the next sends; empty: sent
  bool elsewhere = false;  // another replica keeps this account's connection
  std::vector<pipeline::OutboundPart> attempts;
  std::vector<pipeline::OutboundPart> sent;

 private:
  std::string id_;
  bool ready_ = false;
};

class RecordingListener final : public pipeline::ChatEventListener {
 public:
  void on_chat_event(const pipeline::ChatEvent& e) override { events.push_back(e); }
  std::vector<pipeline::ChatEvent> events;
};

}  // namespace drawbridge::testing
