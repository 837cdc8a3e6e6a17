#pragma once

#include <functional>
#include <string>
#include <vector>

#include "config/config.h"
#include "core/clock.h"
#include "pipeline/batch_runner.h"
#include "runtime/drain_runner.h"

namespace drawbridge::store {
class Store;
}
namespace drawbridge::server {
class Server;
}

namespace drawbridge::runtime {

class Generation;
class SdNotifier;

// What a drain acts on in the running gateway: the pipeline (debouncers, turns, deliveries,
// notices), the channels of the running generation, the server (shutdown or restart close)
// and the store (the clean-shutdown marker). The drain's end goes back to the root.
class GatewayDrainTarget final : public DrainTarget {
 public:
  struct Parts {
    core::Clock& clock;
    pipeline::Pipeline& pipeline;
    Generation& generation;
    server::Server& server;
    store::Store& writer;  // the store thread's connection: the marker is written after a flush
    SdNotifier& notifier;
    std::function<const config::Config&()> cfg;  // the running config (notice texts)
    std::function<void()> changed;               // the drain's status changed
    std::function<void(core::AfterDrain)> done;  // the drain is done
    // A replica of a cluster: the marker is written only while it still holds the active
    // lease (StoreThread::set_fence); empty otherwise.
    const pipeline::StoreOp* fence = nullptr;
  };
  explicit GatewayDrainTarget(Parts parts) : p_(std::move(parts)) {}

  std::size_t flush_debouncers() override;
  std::size_t waiting_count() override;
  void set_draining() override;
  std::vector<pipeline::ActiveChat> active_chats() override;
  void when_turns_idle(std::function<void()> fn) override;
  std::vector<core::DrainBlocker> blockers() override;
  std::size_t interrupt_all(const std::string& why) override;
  std::vector<pipeline::ActiveChat> abort_for_drain(const std::string& why) override;
  std::size_t finish_detached() override;
  std::size_t pending_deliveries() override;
  void when_deliveries_idle(std::function<void()> fn) override;
  void stop_channels(bool keep_connections, std::function<void()> done) override;
  void close_server(bool stopping, bool next_process, std::function<void()> done) override;
  void write_clean_marker() override;
  void flush_writes() override;
  void send_notice(const pipeline::ActiveChat& chat, core::DrainNotice kind) override;
  void drain_slow(core::Duration waited, const std::string& blockers_text) override;
  void drain_changed() override { p_.changed(); }
  void drain_done(core::AfterDrain next) override { p_.done(next); }

 private:
  Parts p_;
};

}  // namespace drawbridge::runtime
