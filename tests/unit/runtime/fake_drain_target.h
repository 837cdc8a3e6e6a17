#pragma once

// A DrainTarget for runtime tests: records what the drain asks of the pipeline, the channels
// and the server; the test finishes turns and completes the channel stop and the server close
// when it wants to.

#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/manual_executor.h"
#include "runtime/drain_runner.h"

namespace drawbridge::runtime::fakes {

class FakeTarget final : public DrainTarget {
 public:
  std::vector<std::string> calls;
  std::vector<core::DrainBlocker> running;  // turns that run
  std::vector<std::function<void()>> turn_waiters, delivery_waiters;
  std::function<void()> channels_done, server_done;
  std::vector<std::pair<std::string, core::DrainNotice>> notices;
  std::optional<core::AfterDrain> done;
  bool closed_as_stop = false;
  std::optional<bool> kept_connections;  // stop_channels(keep_connections)

  void finish_turns() {
    running.clear();
    auto w = std::move(turn_waiters);
    turn_waiters.clear();
    for (auto& fn : w) fn();
  }

  std::size_t flush_debouncers() override { return 0; }
  std::size_t waiting_count() override { return 0; }
  void set_draining() override { calls.push_back("set_draining"); }
  std::vector<pipeline::ActiveChat> active_chats() override {
    std::vector<pipeline::ActiveChat> out;
    for (const auto& b : running) out.push_back({"local", b.session, b.session, b.run_id});
    return out;
  }
  void when_turns_idle(std::function<void()> fn) override {
    if (running.empty()) return fn();
    turn_waiters.push_back(std::move(fn));
  }
  std::vector<core::DrainBlocker> blockers() override { return running; }
  std::size_t interrupt_all(const std::string&) override {
    calls.push_back("interrupt_all");
    const auto n = running.size();
    running.clear();
    return n;
  }
  std::vector<pipeline::ActiveChat> abort_for_drain(const std::string&) override {
    calls.push_back("abort_for_drain");
    auto chats = active_chats();
    running.clear();
    return chats;
  }
  std::size_t finish_detached() override { return 0; }
  std::size_t pending_deliveries() override { return 0; }
  void when_deliveries_idle(std::function<void()> fn) override { fn(); }
  void stop_channels(bool keep, std::function<void()> d) override {
    calls.push_back("stop_channels");
    kept_connections = keep;
    channels_done = std::move(d);
  }
  void close_server(bool stopping, bool, std::function<void()> d) override {
    calls.push_back("close_server");
    closed_as_stop = stopping;
    server_done = std::move(d);
  }
  void write_clean_marker() override { calls.push_back("clean_marker"); }
  void flush_writes() override {}
  void send_notice(const pipeline::ActiveChat& chat, core::DrainNotice kind) override {
    notices.push_back({chat.chat_id, kind});
  }
  void drain_slow(core::Duration, const std::string&) override { calls.push_back("slow"); }
  void drain_changed() override {}
  void drain_done(core::AfterDrain next) override { done = next; }
};

// Runs posted work (the runner posts every idle event) and completes the teardown the drain
// asked for: the channels stopped, then the server closed.
inline void settle(core::ManualExecutor& executor, FakeTarget& target) {
  executor.run_ready();
  if (target.channels_done) std::exchange(target.channels_done, nullptr)();
  executor.run_ready();
  if (target.server_done) std::exchange(target.server_done, nullptr)();
  executor.run_ready();
}

}  // namespace drawbridge::runtime::fakes
