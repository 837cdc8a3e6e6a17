#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <string>
#include <vector>

namespace drawbridge::core {

enum class WorkKind { turn = 0, delivery = 1, task = 2 };
inline constexpr std::size_t kWorkKinds = 3;
const char* to_string(WorkKind k);

// What `drawbridge status` and the drain log show for one blocker. The `{}` initializers let a
// designated initializer name only some fields without -Wmissing-field-initializers.
struct WorkInfo {
  std::string task_id{};  // empty: the tracker's own id is used ("w<id>")
  std::string run_id{};
  std::string session{};
  std::string status{};  // "running", "delivering", ...
  std::string label{};   // human text, e.g. "echo turn", "reply 3 parts"
};

using WorkId = std::uint64_t;  // 0 is never issued

struct WorkEntry {
  WorkId id;
  WorkKind kind;
  WorkInfo info;
  bool exempt;  // listed, but not waited for: see exempt_run()
};

// Counts in-flight work and wakes waiters when the count reaches zero (Seastar's gate): the
// last finisher wakes the drain, nothing polls. Work is either anonymous (begin/end: counted
// only) or listed (start/finish: counted and shown as a drain blocker); both count the same.
class WorkTracker {
 public:
  void begin(WorkKind kind);
  // Ends anonymous work only: a listed entry ends by its id, so an unmatched end() can never
  // silently take the place of one.
  void end(WorkKind kind);

  // Counted like begin(kind), and listed until finish(id).
  WorkId start(WorkKind kind, WorkInfo info = {});
  // False (and nothing changes) for an unknown or already finished id.
  bool finish(WorkId id);
  bool set_status(WorkId id, std::string status);
  // The turn that asked for a restart is not waited for, or the restart would wait on itself:
  // entries of this run stop counting toward count()/total() and stay listed as exempt. Work
  // the run starts later (its reply's delivery) is counted as usual. Returns how many entries
  // this call exempted; an empty run_id matches nothing. May make the tracker idle: waiters
  // run before it returns.
  std::size_t exempt_run(const std::string& run_id);

  // Work not exempt, anonymous and listed together.
  std::size_t count(WorkKind kind) const { return counts_[static_cast<std::size_t>(kind)]; }
  std::size_t total() const;

  // Runs `fn` once, when total() next reaches zero; at once when it is zero already.
  void when_idle(std::function<void()> fn);
  // Runs `fn` once, when the count of `kinds` reaches zero (at once when it is zero already):
  // a drain can wait for turns while deliveries still run.
  void when_idle(std::initializer_list<WorkKind> kinds, std::function<void()> fn);

  // Listed entries in start order (oldest first), exempt ones included.
  std::vector<WorkEntry> list() const;
  std::vector<WorkEntry> list(std::initializer_list<WorkKind> kinds) const;

 private:
  using KindMask = unsigned;
  struct Waiter {
    KindMask kinds;
    std::function<void()> fn;
  };

  static KindMask mask_of(std::initializer_list<WorkKind> kinds);
  static KindMask mask_of(WorkKind kind) { return 1u << static_cast<unsigned>(kind); }
  std::size_t count(KindMask kinds) const;
  void add_waiter(KindMask kinds, std::function<void()> fn);
  void wake_idle_waiters();

  std::array<std::size_t, kWorkKinds> counts_{};     // anonymous + listed, not exempt
  std::array<std::size_t, kWorkKinds> anonymous_{};  // begin() minus end()
  std::map<WorkId, WorkEntry> entries_;              // ids grow: map order is start order
  WorkId next_id_ = 1;
  std::vector<Waiter> waiters_;
};

}  // namespace drawbridge::core
