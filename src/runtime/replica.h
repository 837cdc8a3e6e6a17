#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/io_context.hpp>
#include <nlohmann/json.hpp>

#include "core/clock.h"
#include "core/executor.h"
#include "pipeline/pipeline.h"
#include "runtime/cluster.h"
#include "runtime/event_relay.h"
#include "store/pg_listener.h"
#include "store/store.h"

namespace drawbridge::runtime {

// A gateway's part in a cluster on one PostgreSQL (docs/DECISIONS.md "Replicas on
// PostgreSQL"): its leases (Cluster), its role, the notices between replicas and the chat
// events they carry (EventRelay).
//
// Every replica serves WebSocket/HTTP and accepts messages. The holder of `cluster:active`
// runs the turns and the chat-app channels; the others are standbys: their pipeline is in
// ingress mode (Pipeline::set_ingress: journal, acknowledge, announce on kWorkChannel), and
// they claim the active lease every leaseMs / 4. The active one runs what is announced
// (Pipeline::adopt_unfinished), and looks again every leaseMs / 2 and after its listener
// reconnects, for the notice that was lost. Runs on the event loop.
// `base` with a suffix naming the store's notice scope (Store::notice_scope): the notice
// channel of one cluster.
std::string notice_channel(const std::string& base, const std::string& scope);

class Replica {
 public:
  struct Hooks {
    // The active lease was won (`at_start`: by join(), before anything started): install
    // fence(epoch) on every write from now on, then (not at start) take the work over.
    std::function<void(std::int64_t epoch, bool at_start)> promoted;
    // Another replica took the active lease (this one was paused or cut off past it).
    std::function<void()> lost;
    // Whether a standby may become active now (false while it drains or stops).
    std::function<bool()> may_promote;
  };
  struct Settings {
    std::string id;
    std::chrono::milliseconds ttl{5000};
    std::string conninfo;  // store.url, for the notice listener's own connection
    std::string password;
  };
  Replica(boost::asio::io_context& io, core::Clock& clock, core::Executor& executor,
          store::Store& leases, pipeline::Pipeline& pipeline, Settings settings, Hooks hooks);
  ~Replica();
  Replica(const Replica&) = delete;
  Replica& operator=(const Replica&) = delete;

  // Claims the active lease once (a read and a write on `leases`, on this thread): active or
  // standby from the start. Then starts the heartbeat, the listener and, on a standby, the
  // claims. The error when the store cannot be reached.
  std::optional<std::string> join();
  bool active() const { return active_; }
  Cluster& cluster() { return *cluster_; }
  const std::string& id() const { return settings_.id; }
  // status's "cluster": cluster_json plus this replica's role.
  nlohmann::json status(store::Store& reader) const;
  // The fenced write every batch of an active replica starts with (StoreThread::set_fence).
  pipeline::StoreOp fence(std::int64_t epoch) const;

 private:
  void become_active(std::int64_t epoch, core::TimePoint sent, bool at_start);
  void campaign();
  void schedule_campaign();
  void on_notices(std::vector<store::PgListener::Notice> notices);
  void adopt_soon();
  void adopt_now();
  void schedule_scan();
  // Every leaseMs / 3: whether another replica is live (the relay sends only then).
  void watch_peers();
  void say_hello();

  boost::asio::io_context& io_;
  core::Clock& clock_;
  core::Executor& executor_;
  store::Store& leases_;
  pipeline::Pipeline& pipeline_;
  Settings settings_;
  Hooks hooks_;
  std::string work_channel_;    // Pipeline::kWorkChannel + this database and schema's suffix
  std::string events_channel_;  // EventRelay::kEventsChannel + the same
  std::unique_ptr<Cluster> cluster_;
  std::unique_ptr<EventRelay> relay_;
  std::unique_ptr<store::PgListener> listener_;
  bool active_ = false;
  bool adopt_queued_ = false;
  bool claiming_ = false;
  std::string waiting_for_;
  std::optional<core::TimerId> campaign_timer_;
  std::optional<core::TimerId> scan_timer_;
  std::optional<core::TimerId> peers_timer_;
  std::optional<core::TimePoint> last_hello_;  // another replica started listening
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace drawbridge::runtime
