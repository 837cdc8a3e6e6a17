#pragma once

#include <algorithm>
#include <optional>

#include "core/clock.h"
#include "core/saturating.h"

namespace drawbridge::core {

enum class ShutdownKind { stop, restart };

// A stop gets this long in all; a restart gets its drain budget plus this much for teardown.
inline constexpr Duration kShutdownGrace{25'000};
// Left to the supervisor's stop timeout, so the watchdog writes its diagnostic bundle and
// exits 1 before systemd sends SIGKILL.
inline constexpr Duration kSupervisorMargin{5'000};

// When the force-exit watchdog fires, measured from the start of the drain; nullopt: no
// watchdog (a restart with no deferral limit, outside systemd).
//
// `drain_budget` is the restart's turn budget (nullopt: no limit). `systemd_stop_timeout` is
// the unit's TimeoutStopUSec; nullopt or zero when there is no supervisor timeout ("infinity").
// Under a timeout too short for the margin, half of it is used instead. An enormous drain
// budget saturates at Duration::max() (a watchdog that never fires), never wraps negative.
inline std::optional<Duration> shutdown_budget(ShutdownKind kind,
                                               std::optional<Duration> drain_budget,
                                               std::optional<Duration> systemd_stop_timeout) {
  std::optional<Duration> budget = kShutdownGrace;
  if (kind == ShutdownKind::restart) {
    budget = drain_budget ? std::optional(saturating_add(*drain_budget, kShutdownGrace))
                          : std::nullopt;
  }
  if (systemd_stop_timeout && *systemd_stop_timeout > Duration{0}) {
    const Duration cap =
        std::max(*systemd_stop_timeout - kSupervisorMargin, *systemd_stop_timeout / 2);
    budget = budget ? std::min(*budget, cap) : cap;
  }
  return budget;
}

}  // namespace drawbridge::core
