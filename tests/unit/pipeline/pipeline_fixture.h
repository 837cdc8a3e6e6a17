#pragma once

// The fixture of the Pipeline unit tests: an in-memory store, a manual clock and executor, one
// fake channel with one fake agent, and a listener of the chat events.

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "core/manual_executor.h"
#include "pipeline/pipeline.h"
#include "store/sqlite_store.h"
#include "unit/pipeline/fakes.h"

namespace drawbridge::pipeline {

using testing::FakeAgent;
using testing::FakeChannel;
using testing::RecordingListener;

class PipelineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = store::SqliteStore::open(":memory:");
    writer_ = std::make_unique<InlineBatchRunner>(*store_);
  }

  std::unique_ptr<Pipeline> make_pipeline(int max_chars = 0, PipelineSettings settings = {}) {
    auto p = std::make_unique<Pipeline>(clock_, executor_, *store_, *writer_);
    p->configure(settings);
    p->add_channel(&channel_, &agent_, max_chars);
    p->add_listener(&listener_);
    return p;
  }

  InboundMessage msg(const std::string& key, const std::string& session, const std::string& text) {
    return InboundMessage{"local", key, session, "", "tester", text, key};
  }

  // Accepts and runs the round, so the commit and its callbacks have happened.
  AcceptResult accept(Pipeline& p, const InboundMessage& m) {
    AcceptResult out;
    bool called = false;
    p.accept(m, [&](AcceptResult r) {
      out = std::move(r);
      called = true;
    });
    EXPECT_FALSE(called) << "acknowledged before the commit";
    executor_.run_ready();
    EXPECT_TRUE(called);
    return out;
  }
  SendResult send(Pipeline& p, SendRequest r) {
    SendResult out;
    p.send(r, [&](SendResult res) { out = std::move(res); });
    executor_.run_ready();
    return out;
  }
  void complete(std::size_t i, const std::string& text) {
    agent_.complete(i, text);
    executor_.run_ready();
  }
  void finish(std::size_t i, TurnOutcome::Kind kind, const std::string& text,
              const std::string& error = {}) {
    agent_.finish(i, kind, text, error);
    executor_.run_ready();
  }

  std::size_t assistant_entries(const std::string& session) {
    std::size_t n = 0;
    for (const auto& e : store_->transcript(session, 1000)) n += e.role == "assistant";
    return n;
  }

  core::ManualClock clock_;
  core::ManualExecutor executor_{clock_};
  std::unique_ptr<store::SqliteStore> store_;
  std::unique_ptr<InlineBatchRunner> writer_;
  FakeAgent agent_;
  FakeChannel channel_;
  RecordingListener listener_;
};

inline PipelineSettings debounced(core::Duration window) {
  PipelineSettings s;
  s.inbound_debounce = window;
  return s;
}

inline bool has_history(const TurnRequest& r, const std::string& role, const std::string& part) {
  for (const auto& h : r.history) {
    if (h.role == role && h.text.find(part) != std::string::npos) return true;
  }
  return false;
}

}  // namespace drawbridge::pipeline
