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
// Every replica serves WebSocket/HTTP, accepts messages and runs the turns of the sessions it
// holds (Cluster: a lease "session:<key>" each, claimed by the replica that accepts a
// message of a free session, or that finds the session's holder dead). A message of a
// session held elsewhere is journaled and announced on the work channel; its holder runs it
// (Pipeline::adopt), and every replica looks again every leaseMs / 2 and after its listener
// reconnects (Pipeline::adopt_unfinished, Pipeline::claim_free_sessions), for the notice that
// was lost. Every write is fenced by the presence lease "replica:<id>". Channel accounts have
// leases of their own (pipeline::AccountLeases: a Telegram bot polled, an IRC connection kept,
// by one replica at a time). Runs on the event loop.
// `base` with a suffix naming the store's notice scope (Store::notice_scope): the notice
// channel of one cluster.
std::string notice_channel(const std::string& base, const std::string& scope);

class Replica {
 public:
  // A session that did nothing here this long is given back (Pipeline::release_idle_sessions),
  // up to kIdleReleaseBatch at each look at the inbox.
  static constexpr std::chrono::milliseconds kIdleSession{60'000};
  static constexpr std::size_t kIdleReleaseBatch = 256;
  struct Hooks {
    // This replica's presence lease ran out (it was paused or cut off past it): nothing it
    // writes can land any more.
    std::function<void(const std::string& why)> lost;
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

  // Claims the presence lease and lists the sessions this replica holds (reads and writes on
  // `leases`, on this thread). Then starts the heartbeat, the listener and the looks at the
  // inbox. The error when the store cannot be reached or the id is a live replica's.
  std::optional<std::string> join();
  Cluster& cluster() { return *cluster_; }
  const std::string& id() const { return settings_.id; }
  // status's "cluster": cluster_json plus what this replica holds and relays.
  nlohmann::json status(store::Store& reader) const;
  // The fenced write every batch starts with (StoreThread::set_fence): commits only while
  // this replica's presence lease is at the epoch join() got, and live.
  pipeline::StoreOp fence() const;
  const std::string& work_channel() const { return work_channel_; }

 private:
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
  std::int64_t presence_epoch_ = 0;
  bool adopt_queued_ = false;
  std::optional<core::TimerId> scan_timer_;
  std::optional<core::TimerId> peers_timer_;
  std::optional<core::TimePoint> last_hello_;  // another replica started listening
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace drawbridge::runtime
