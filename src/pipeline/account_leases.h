#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

namespace drawbridge::pipeline {

// Cluster-wide ownership of a channel account (shared/DESIGN.md "Beyond one machine"): with
// replicas on one PostgreSQL, only the holder of an account's lease polls it or keeps its
// connection, and its cursor writes carry the lease's epoch (Pipeline::save_cursor's fence).
// The runtime implements it (runtime/cluster.h); a gateway on SQLite has none
// (Pipeline::account_leases() is null) and its channels go on as one process always did.
// Calls and callbacks run on the event loop.
class AccountLeases {
 public:
  struct Grant {
    bool held = false;
    std::int64_t epoch = 0;
    std::string holder;  // who holds it, when not held
    std::string error;   // the store failed: not held, try again later
  };
  virtual ~AccountLeases() = default;
  // Claims `name` ("channel:<id>:<account>") for this replica, or renews it when held.
  virtual void claim(const std::string& name, std::function<void(Grant)> done) = 0;
  // How long the lease is certainly still this replica's (zero: not held, or it may have
  // passed to another replica): a poll or a send must end within it.
  virtual std::chrono::milliseconds remaining(const std::string& name) const = 0;
  // Gives it up at once (stop, hand-over before a drain): another replica may take it.
  virtual void release(const std::string& name) = 0;
  // The lease time (cluster.leaseMs): how long a standby waits before asking again.
  virtual std::chrono::milliseconds ttl() const = 0;
  // This replica's id, for logs and status.
  virtual const std::string& replica_id() const = 0;
};

}  // namespace drawbridge::pipeline
