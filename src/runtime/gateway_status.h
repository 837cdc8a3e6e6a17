#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "config/config.h"
#include "core/clock.h"
#include "core/lifecycle.h"
#include "core/restart_scheduler.h"
#include "pipeline/pipeline.h"
#include "server/control.h"
#include "store/store.h"

namespace drawbridge::server {
class Server;
}

namespace drawbridge::runtime {

class ConfigReloader;
class DrainRunner;
class Generation;
class HandOff;

// What `status`, `health` and /metrics show, assembled from the units; stateless. The root
// passes what only it knows (Facts) and the units to read (Parts).
struct GatewayFacts {
  core::LifecycleState state = core::LifecycleState::starting;
  std::uint64_t generation = 0;
  std::int64_t uptime_ms = 0;
  bool clean_start = false;
  bool ready = false;
  std::string config_path;
  std::string data_dir;
  std::uint64_t restarts_total = 0;
  nlohmann::json last_restart = nullptr;
  std::string last_start_error;
  bool inherited_socket = false;
  std::string supervisor;
};

struct GatewayParts {
  const config::Config& cfg;
  core::Clock& clock;
  Generation& generation;
  pipeline::Pipeline& pipeline;
  store::Store& store;
  server::Server* server;
  const DrainRunner& drain;
  const HandOff& hand_off;
  const ConfigReloader& reloader;
  const core::RestartScheduler& scheduler;
};

// /readyz: ready when running with every channel ready. `reason` is one word (the state, or
// "channels"), fit for anyone who can reach the port; the prose and the config's errors go in
// `details`, which the server shows only to a caller with the token.
server::Readiness readiness(const GatewayFacts& facts, const GatewayParts& parts);
server::AgentCatalog agent_catalog(const GatewayParts& parts);
// systemd's STATUS= line.
std::string status_line(const GatewayFacts& facts, const GatewayParts& parts);
server::StatusReport status_report(const GatewayFacts& facts, const GatewayParts& parts);
// Throws when the store cannot be read (health is then an error).
server::HealthReport health_report(const GatewayParts& parts);
std::string metrics_text(const GatewayFacts& facts, const GatewayParts& parts);

}  // namespace drawbridge::runtime
