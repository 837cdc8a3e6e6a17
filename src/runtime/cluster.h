#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/clock.h"
#include "core/executor.h"
#include "core/lease_keeper.h"
#include "pipeline/account_leases.h"
#include "pipeline/session_leases.h"
#include "runtime/store_thread.h"
#include "store/store.h"

namespace drawbridge::runtime {

// This replica's leases in a cluster on one PostgreSQL (docs/DECISIONS.md "Replicas"): the
// channel accounts' (pipeline::AccountLeases, for the channels) and its presence
// ("replica:<id>", which `status` lists). Claims and heartbeats run on a store connection and
// thread of their own, so a long group commit never delays a heartbeat into a lost lease. What
// the replica may still do with a lease is core::LeaseKeeper's call, on the steady clock.
class Cluster final : public pipeline::AccountLeases, public pipeline::SessionLeases {
 public:
  // `store`: a connection for the leases alone (not owned; outlives this).
  Cluster(boost::asio::io_context& io, core::Clock& clock, core::Executor& executor,
          store::Store& store, std::string replica_id, std::chrono::milliseconds ttl);
  ~Cluster() override;
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  // Claims the presence lease (unless adopted already) and starts the heartbeat.
  void start();
  // A lease claimed elsewhere (at `sent`, at `epoch`) that the heartbeat keeps; `on_lost` runs
  // when a heartbeat finds it taken.
  void adopt(const std::string& name, std::int64_t epoch, core::TimePoint sent,
             std::function<void()> on_lost);

  // pipeline::AccountLeases
  void claim(const std::string& name, std::function<void(Grant)> done) override;
  std::chrono::milliseconds remaining(const std::string& name) const override;
  void release(const std::string& name) override;
  std::chrono::milliseconds ttl() const override { return keeper_.ttl(); }
  const std::string& replica_id() const override { return replica_id_; }

  // pipeline::SessionLeases: the sessions whose turns run here ("session:<key>" leases).
  bool holds(const std::string& session) const override { return sessions_.count(session) != 0; }
  std::vector<std::string> held_sessions() const override {
    return {sessions_.begin(), sessions_.end()};
  }
  void claim_sessions(std::vector<std::string> sessions,
                      std::function<void(std::vector<Taken>)> done, std::int64_t up_to_row = 0,
                      std::vector<std::string> not_channels = {}) override;
  void claim_session(const std::string& session,
                     std::function<void(bool held, std::string holder)> done) override;
  // Session leases the store says this replica holds (its own, from before a restart): held
  // here from now on. `sent`: when the read was sent.
  void adopt_sessions(const std::vector<store::Lease>& leases, core::TimePoint sent);
  void release_sessions(const std::vector<std::string>& sessions, bool announce = false) override;
  // The notice channel a "free" notice goes on (release_sessions with `announce`).
  void set_work_channel(std::string channel) { work_channel_ = std::move(channel); }
  // Session leases the store says this replica holds and it did not know of (a claim whose
  // answer was lost, a release that failed): held from now on, and handed to `found` to run.
  void on_sessions_found(std::function<void(std::vector<std::string>)> found) {
    on_found_ = std::move(found);
  }
  // How many sessions a claim of "any session with work" takes at most.
  static constexpr std::size_t kClaimBatch = 64;

  // The leases named `prefix...`, read on the leases' thread; `done` on the loop (not called
  // when the store fails: the caller keeps what it knew).
  void list(const std::string& prefix, std::function<void(std::vector<store::Lease>)> done);

  // Heartbeats that failed in a row (the store unreachable), for status and logs.
  int failed_heartbeats() const { return failed_heartbeats_; }
  std::uint64_t heartbeats() const { return heartbeats_; }  // answered, since the start

 private:
  void heartbeat();
  void found_sessions(const std::vector<store::Lease>& renewed, core::TimePoint sent);
  void schedule_heartbeat();

  boost::asio::io_context& io_;
  core::Clock& clock_;
  core::Executor& executor_;
  std::string replica_id_;
  core::LeaseKeeper keeper_;
  StoreThread thread_;
  std::optional<core::TimerId> timer_;
  bool beating_ = false;  // a heartbeat is in flight
  int failed_heartbeats_ = 0;
  std::uint64_t heartbeats_ = 0;
  std::map<std::string, std::function<void()>> on_lost_;
  std::set<std::string> sessions_;  // held: their turns run here
  std::map<std::string, core::TimePoint> released_;  // sessions given back, and when
  std::function<void(std::vector<std::string>)> on_found_;
  std::string work_channel_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// At a plain stop: gives up this replica's sessions, the channel accounts it still holds and
// "replica:<id>" at once, and tells the others (a notice on `work_channel`, when given) to
// claim the sessions.
void release_on_exit(store::Store& store, const std::string& replica_id, std::int64_t now_ms,
                     const std::string& work_channel = {});
// The notice a plain stop sends on the work channel: "claim what has work now".
inline constexpr const char* kSessionsFreed = "free";

// The replica id when cluster.replicaId is empty: <host name>:<gateway port>.
std::string default_replica_id(int port);

// What `status` shows of the cluster: live replicas, and who holds which channel account and
// how many sessions. Read from `store` (a read on the calling thread).
struct ClusterView {
  struct Replica {
    std::string id;
    std::int64_t expires_at_ms = 0;
    std::size_t sessions = 0;  // sessions whose lease it holds: their turns run there
  };
  struct Account {
    std::string name;  // "channel:telegram:<bot id>", "channel:irc:<nick>@<host>:<port>"
    std::string holder;
    std::int64_t epoch = 0;
    std::int64_t expires_at_ms = 0;
  };
  std::vector<Replica> replicas;
  std::vector<Account> accounts;
};
ClusterView cluster_view(store::Store& store);
// `status`'s "cluster": this replica, its lease time and heartbeat, and cluster_view(store)
// (or the store's error).
nlohmann::json cluster_json(const Cluster& cluster, store::Store& store);

}  // namespace drawbridge::runtime
