#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace drawbridge::server {

struct Readiness {
  bool ready = false;
  std::string reason;  // why not ready: "starting", "draining", "channel local not ready", ...
};

// The lifecycle as the control plane sees it.
struct LifecycleView {
  // "starting" | "running" | "draining" | "restarting" | "stopping" | "failed"
  std::string state = "running";
  // False between the server closing its connections for a restart and the next generation
  // being ready, and while stopping: new WebSocket connects are refused (retryable).
  bool accepting_connections = true;
  std::int64_t restart_expected_ms = 0;  // for retryAfterMs and shutdown events
};

struct RestartIntent {
  std::string reason;  // empty: "requested"
  bool force = false;
  // Overrides gateway.reload.deferralTimeoutMs; 0 = do not wait.
  std::optional<std::int64_t> wait_ms;
  std::optional<std::int64_t> delay_ms;  // default 2000, clamped 0..60000 by the scheduler
  std::string requested_by_run;          // run id of the turn asking: it is not waited for
  std::string source = "rpc";            // "rpc" | "signal" | "chat"
};

// What the control plane asks of the gateway. The runtime implements it; the server knows
// nothing else above the pipeline.
class Control {
 public:
  virtual ~Control() = default;
  virtual Readiness readiness() = 0;
  virtual nlohmann::json health() = 0;  // payload of the `health` method and event
  virtual nlohmann::json status() = 0;  // payload of the `status` method
  virtual std::string metrics_text() = 0;  // Prometheus text exposition
  virtual std::int64_t uptime_ms() = 0;
  // {"ok":true,"status":"scheduled"|"coalesced"|"deferred"|"ignored","cycle":N,"dueInMs":N,
  //  "note":"..."}
  virtual nlohmann::json request_restart(const RestartIntent& intent) = 0;
  // {"ok":true,"status":"stopping"|"already-stopping"}
  virtual nlohmann::json request_stop(const std::string& reason) = 0;
  virtual LifecycleView lifecycle() = 0;
};

}  // namespace drawbridge::server
