#pragma once

// A Control for server tests: everything succeeds and is recorded; lifecycle() and readiness()
// return what the test set (read from the server's thread, written by the test between
// requests).

#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "server/control.h"

namespace drawbridge::server::fakes {

class FakeControl final : public Control {
 public:
  Readiness readiness() override {
    std::lock_guard lock(mu);
    return ready;
  }
  HealthReport health() override {
    HealthReport h;
    h.ts_ms = 1;
    h.channels.push_back(HealthReport::Channel{"local", true, "main", {"connected", "", 0, 0, 0, ""}});
    h.default_agent = "main";
    return h;
  }
  StatusReport status() override {
    std::lock_guard lock(mu);
    return report;
  }
  AgentCatalog agent_catalog() override { return catalog; }
  std::string metrics_text() override { return {}; }
  std::int64_t uptime_ms() override { return 1; }
  RestartAnswer request_restart(const RestartIntent& intent) override {
    std::lock_guard lock(mu);
    ++restart_requests;
    intents.push_back(intent);
    return {true, "scheduled", 3, 2000, {}};
  }
  StopAnswer request_stop(const std::string& reason) override {
    std::lock_guard lock(mu);
    stops.push_back(reason);
    return {"stopping", {}};
  }
  ConfigSnapshot config_get() override {
    ConfigSnapshot c;
    c.hash = "h1";
    c.path = "/x/drawbridge.json";
    return c;
  }
  void config_write(const ConfigWrite& w, std::function<void(ConfigWriteResult)> done) override {
    {
      std::lock_guard lock(mu);
      writes.push_back(w);
    }
    done(write_result);
  }
  RestartAnswer request_update(const std::string& binary, const std::string&) override {
    if (binary.empty()) return {false, "refused", std::nullopt, std::nullopt, "no binary"};
    return {true, "scheduled", 4, 0, {}};
  }
  LogTail logs_tail(const LogTailRequest& r) override {
    std::lock_guard lock(mu);
    tail_requests.push_back(r);
    return tail;
  }
  SystemInfo system_info() override { return info; }
  LifecycleView lifecycle() override {
    std::lock_guard lock(mu);
    return view;
  }
  void set(LifecycleView v) {
    std::lock_guard lock(mu);
    view = std::move(v);
  }

  std::mutex mu;
  AgentCatalog catalog{"echo", {{"echo", "echo", "", ""}}, {"local"}};
  LifecycleView view;
  Readiness ready{true, {}};
  int restart_requests = 0;
  std::vector<RestartIntent> intents;
  std::vector<std::string> stops;
  std::vector<ConfigWrite> writes;
  std::vector<LogTailRequest> tail_requests;
  StatusReport report = [] {
    StatusReport s;
    s.state = "running";
    return s;
  }();
  LogTail tail{"memory:test", 10, 10, {"a", "b"}, false, false, 0};
  SystemInfo info = [] {
    SystemInfo s;
    s.hostname = "host";
    s.release = "6.1.0";
    s.arch = "x86_64";
    s.os_label = "Test OS";
    s.version = "9.9.9";
    s.pid = 42;
    s.cpu_count = 2;
    return s;
  }();
  ConfigWriteResult write_result = [] {
    ConfigWriteDone d{"/x/drawbridge.json", "h2", true, {}, {}, {}};
    d.plan.kind = "none";
    return d;
  }();
};

}  // namespace drawbridge::server::fakes
