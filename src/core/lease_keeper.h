#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/clock.h"

namespace drawbridge::core {

// What one replica knows of the leases it holds, on its own steady clock (sans-IO: it takes
// `now` and answers; the runtime sends the claims and heartbeats).
//
// The store's expiry is on the store's clock, which this replica cannot read; but a lease the
// store granted or renewed in answer to a request *sent* at `sent` expires no earlier than
// `sent + ttl` on any clock that runs at the same rate. So a lease is usable here until
// `sent + ttl - margin` (margin: a fifth of ttl, for clock rates and scheduling), and a poll
// that must end before another replica may take over is bounded by remaining(). A replica
// that was paused (SIGSTOP, a long GC, a cut network) finds its leases unusable when it wakes,
// before it sends anything: the steady clock ran on while it was stopped.
class LeaseKeeper {
 public:
  struct Held {
    std::string name;
    std::int64_t epoch = 0;
  };

  explicit LeaseKeeper(Duration ttl);

  Duration ttl() const { return ttl_; }
  // How often to renew: a third of ttl, so two heartbeats can fail before the lease ends.
  Duration heartbeat_interval() const { return ttl_ / 3; }

  // A claim sent at `sent` was granted at `epoch`.
  void granted(const std::string& name, std::int64_t epoch, TimePoint sent);
  // A heartbeat sent at `sent` renewed `held` (every lease the store still gives this
  // replica). Returns the names this replica thought it held and no longer does (taken over
  // at a new epoch, or gone), which are forgotten; a lease claimed after the heartbeat was
  // sent is not judged by it.
  std::vector<std::string> renewed(const std::vector<Held>& held, TimePoint sent);
  // Given up (a hand-over) or refused by a fenced write: forgotten at once.
  void forget(const std::string& name);

  // Held and not past its local deadline.
  bool usable(const std::string& name, TimePoint now) const;
  // The epoch of a lease held (usable or not yet renewed), if any.
  std::optional<std::int64_t> epoch(const std::string& name) const;
  // Time left before the lease may pass to another replica; zero when not usable.
  Duration remaining(const std::string& name, TimePoint now) const;
  std::vector<Held> held() const;

 private:
  struct Entry {
    std::int64_t epoch = 0;
    TimePoint deadline;
    TimePoint claimed;  // when the claim was sent
  };
  Duration ttl_;
  Duration margin_;
  std::map<std::string, Entry> leases_;
};

}  // namespace drawbridge::core
