#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace drawbridge::server {

struct Readiness {
  bool ready = false;
  std::string reason;  // why not ready: "starting", "draining", "channel local not ready", ...
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
};

}  // namespace drawbridge::server
