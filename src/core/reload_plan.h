#pragma once

// What a config change needs: nothing, a hot reload of the parts it touches, or one restart.
// Sans-IO: the caller diffs the old and new config into dotted paths (config/diff.h) and asks
// for the plan; applying it is the runtime's job.

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace drawbridge::core {

enum class ReloadKind { none, hot, restart };  // ordered: a plan is the most of its paths
const char* to_string(ReloadKind k);

enum class HotAction {
  restart_channel,  // stop the channel instance completely, then start a new one (target: id)
  swap_agent,       // new turns use a new backend built from the new settings (target: id)
  rebind_agents,    // channels without their own agent follow agents.default
  update_auth,      // new connections must present the new token
};
const char* to_string(HotAction a);

// One row of the rules table. `prefix` is dotted; "*" matches exactly one segment. A rule
// matches a path when its segments are a prefix of the path's segments; of the rules that
// match, the one with the most segments wins, and on equal length the one with fewer "*".
// A path that matches no rule means restart.
struct ReloadRule {
  std::string_view prefix;
  ReloadKind kind;
  std::optional<HotAction> action;  // set for hot rules
  // For hot actions with a target: which segment of the path names it (0-based), e.g. 1 for
  // "channels.*" -> the channel id.
  int target_segment = -1;
  std::string_view note;  // why, for the README table and `config` answers
  // A second segment joined to the target with ':', e.g. 3 for "channels.*.accounts.*" ->
  // "telegram:<account>".
  int target_segment2 = -1;
};

// The one table, in the order the README lists it.
std::span<const ReloadRule> reload_rules();

struct PathDecision {
  std::string path;
  ReloadKind kind = ReloadKind::restart;
  std::string rule;  // prefix of the rule that matched; empty when none did
  std::optional<HotAction> action;
  std::string target;  // channel or agent id for actions that have one
};

struct ReloadActionItem {
  HotAction action;
  std::string target;  // empty for rebind_agents, update_auth
  bool operator==(const ReloadActionItem&) const = default;
};

enum class ReloadMode { hybrid, off };
std::optional<ReloadMode> parse_reload_mode(std::string_view s);

struct ReloadPlan {
  ReloadKind kind = ReloadKind::none;    // the most of every path's kind
  std::vector<PathDecision> paths;       // one per changed path, in the order given
  std::vector<ReloadActionItem> actions;  // hot actions, deduplicated, first-seen order;
                                          // empty when kind is restart (the restart covers all)
  // False in mode off: the caller logs the plan and applies nothing until an explicit restart.
  bool apply = true;
};

// Classifies one path with the table.
PathDecision classify_path(const std::string& path);

// The plan for a set of changed paths (config/diff.h) under `mode`.
ReloadPlan plan_reload(const std::vector<std::string>& changed, ReloadMode mode);

}  // namespace drawbridge::core
