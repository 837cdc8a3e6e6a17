#pragma once

#include <functional>
#include <string>
#include <vector>

namespace drawbridge::pipeline {

// Which sessions this replica runs (store.driver postgres: a lease "session:<key>" each,
// docs/DECISIONS.md "Replicas on PostgreSQL"). A session's turns run on the replica that
// holds its lease, one replica at a time; any replica accepts its messages. The runtime
// implements it (runtime/cluster.h); without it (SQLite) the pipeline runs every session.
// Calls and callbacks run on the event loop.
class SessionLeases {
 public:
  struct Taken {
    std::string session;
    // From a replica that died or froze holding it (its turn may have been cut short: the
    // takeover repairs and counts an interrupted restart), not a hand-over.
    bool from_dead = false;
  };
  virtual ~SessionLeases() = default;
  virtual bool holds(const std::string& session) const = 0;
  // Every session held now (a start runs their unfinished work).
  virtual std::vector<std::string> held_sessions() const = 0;
  // Claims those of `sessions` with work that are free or whose holder died (empty: any such
  // session, a bounded number; `up_to_row` > 0: only those whose oldest unfinished row is at
  // most that id; `not_channels`: none with a row of these channels, whose connection another
  // replica holds). `done` gets the ones taken; not called once this replica is going away.
  virtual void claim_sessions(std::vector<std::string> sessions,
                              std::function<void(std::vector<Taken>)> done,
                              std::int64_t up_to_row = 0,
                              std::vector<std::string> not_channels = {}) = 0;
  // Claims one session whatever its work (a `send` to it): `done(true, "")` once held here,
  // `done(false, holder)` when another replica holds it (or the store failed: holder "").
  virtual void claim_session(const std::string& session,
                             std::function<void(bool held, std::string holder)> done) = 0;
  // Gives sessions back (idle ones): another replica may claim them at once. `announce`:
  // then tells the other replicas to claim what has work (a "free" notice).
  virtual void release_sessions(const std::vector<std::string>& sessions,
                                bool announce = false) = 0;
  virtual const std::string& replica_id() const = 0;
};

}  // namespace drawbridge::pipeline
