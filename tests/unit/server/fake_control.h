#pragma once

// A Control for server tests: everything succeeds; lifecycle() returns what the test set
// (read from the server's thread, written by the test between requests).

#include <functional>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>

#include "server/control.h"

namespace drawbridge::server::fakes {

class FakeControl final : public Control {
 public:
  Readiness readiness() override {
    std::lock_guard lock(mu);
    return ready;
  }
  nlohmann::json health() override { return {{"ok", true}}; }
  nlohmann::json status() override { return {{"state", "running"}}; }
  std::string metrics_text() override { return {}; }
  std::int64_t uptime_ms() override { return 1; }
  nlohmann::json request_restart(const RestartIntent&) override {
    std::lock_guard lock(mu);
    ++restart_requests;
    return {{"ok", true}};
  }
  nlohmann::json request_stop(const std::string&) override { return {{"ok", true}}; }
  nlohmann::json config_get() override { return {{"hash", ""}}; }
  void config_write(const ConfigWrite&, std::function<void(ConfigWriteResult)> done) override {
    done(nlohmann::json{{"ok", true}});
  }
  nlohmann::json request_update(const std::string& binary, const std::string&) override {
    return {{"ok", !binary.empty()}, {"status", "scheduled"}};
  }
  LifecycleView lifecycle() override {
    std::lock_guard lock(mu);
    return view;
  }
  void set(LifecycleView v) {
    std::lock_guard lock(mu);
    view = std::move(v);
  }

  std::mutex mu;
  LifecycleView view;
  Readiness ready{true, {}};
  int restart_requests = 0;
};

}  // namespace drawbridge::server::fakes
