#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/clock.h"
#include "core/gate.h"

namespace drawbridge::core {

// What the tracker counts. Turns are the only work started anywhere (reply delivery is the
// ReplyDispatcher's count); the kind stays as the label of a listed entry.
enum class WorkKind { turn };

// What `drawbridge status` and the drain log show for one blocker. The `{}` initializers let a
// designated initializer name only some fields without -Wmissing-field-initializers.
struct WorkInfo {
  std::string task_id{};  // empty: the tracker's own id is used ("w<id>")
  std::string run_id{};
  std::string session{};
  std::string status{};  // "running", "delivering", ...
  std::string label{};   // human text, e.g. "echo turn", "reply 3 parts"
  TimePoint started{};   // when the work began (the elapsed time shown); {}: not known
};

using WorkId = std::uint64_t;  // 0 is never issued

struct WorkEntry {
  WorkId id;
  WorkKind kind;
  WorkInfo info;
  bool exempt;  // listed, but not waited for: see exempt_run()
};

// Counts in-flight work and wakes waiters when the count reaches zero (a core::Gate): the last
// finisher wakes the drain, nothing polls. Work is either anonymous (begin/end: counted only)
// or listed (start/finish: counted and shown as a drain blocker); both count the same.
class WorkTracker {
 public:
  void begin();
  // Ends anonymous work only: a listed entry ends by its id, so an unmatched end() can never
  // silently take the place of one.
  void end();

  // Counted like begin(), and listed until finish(id).
  WorkId start(WorkKind kind, WorkInfo info = {});
  // False (and nothing changes) for an unknown or already finished id.
  bool finish(WorkId id);
  bool set_status(WorkId id, std::string status);
  // The turn that asked for a restart is not waited for, or the restart would wait on itself:
  // entries of this run stop counting toward total() and stay listed as exempt. Work the run
  // starts later is counted as usual. Returns how many entries this call exempted; an empty
  // run_id matches nothing. May make the tracker idle: waiters run before it returns.
  std::size_t exempt_run(const std::string& run_id);

  // Work not exempt, anonymous and listed together.
  std::size_t total() const { return gate_.count(); }

  // Runs `fn` once, when total() next reaches zero; at once when it is zero already. Waiters
  // run one at a time, in order; one that starts work holds back the ones after it.
  void when_idle(std::function<void()> fn) { gate_.when_idle(std::move(fn)); }

  // Listed entries in start order (oldest first), exempt ones included.
  std::vector<WorkEntry> list() const;

 private:
  Gate gate_;                            // counts anonymous + listed, not exempt
  std::size_t anonymous_ = 0;            // begin() minus end()
  std::map<WorkId, WorkEntry> entries_;  // ids grow: map order is start order
  WorkId next_id_ = 1;
};

}  // namespace drawbridge::core
