#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "config/config.h"
#include "core/clock.h"
#include "core/lifecycle.h"

namespace drawbridge::store {
class Store;
}
namespace drawbridge::pipeline {
class Pipeline;
}
namespace drawbridge::server {
class Server;
}

namespace drawbridge::runtime {

class ConfigReloader;
class Generation;
class GatewayLock;
class RestartCoordinator;
class SdNotifier;

// Starts generations: the first one, the next one after an in-process restart's drain, and
// the retry of a failed start. The next generation reads the config file again, takes the
// gateway lock back when a failed start or a hand-off gave it up, rebuilds agents and
// channels, binds a new address when the config asks for one, and checks the clean-shutdown
// marker. A failed start leaves the previous config running (its hash and address too),
// releases the lock and waits for a retry.
class GenerationStarter {
 public:
  struct Parts {
    core::Clock& clock;
    core::Lifecycle& lifecycle;
    ConfigReloader& reloader;
    pipeline::Pipeline& pipeline;
    Generation& generation;
    store::Store& writer;
    server::Server& server;
    SdNotifier& notifier;
    RestartCoordinator& restarts;
    std::unique_ptr<GatewayLock>& lock;
    std::string data_dir;
    // The token `next` asks for differs from the running one's.
    std::function<void(const config::Config& next)> token_changed;
    // systemd's status line.
    std::function<std::string()> status_line;
    // A stop came after the drain: end the process instead.
    std::function<void()> finish_process;
  };
  explicit GenerationStarter(Parts parts) : p_(std::move(parts)) {}

  // Builds the agents and channels of the running config; the first error, if any.
  std::optional<std::string> wire();
  // Marker, repair, replay, channels, readiness: the part of a start that touches the world.
  void start_io();
  // The next generation of an in-process restart (or the retry of a failed start).
  void start_next();

  std::uint64_t generation() const { return generation_; }
  bool clean_start() const { return clean_start_; }
  const std::string& last_error() const { return last_error_; }

 private:
  // Reads and erases the clean-shutdown marker; without one, repairs what the crash left.
  void repair_if_unclean();
  void fail(std::optional<config::Config>& previous, const std::string& why);

  Parts p_;
  std::uint64_t generation_ = 0;
  bool clean_start_ = false;
  std::string last_error_;
};

// The address a config asks for, as the lifecycle compares it with what listens.
core::ListenAddress configured_address(const config::Config& cfg);

}  // namespace drawbridge::runtime
