#include "core/reload_plan.h"

#include <algorithm>
#include <array>

namespace drawbridge::core {

namespace {

std::vector<std::string_view> split(std::string_view dotted) {
  std::vector<std::string_view> segments;
  while (true) {
    const auto dot = dotted.find('.');
    segments.push_back(dotted.substr(0, dot));
    if (dot == std::string_view::npos) break;
    dotted.remove_prefix(dot + 1);
  }
  return segments;
}

bool matches(const std::vector<std::string_view>& rule, const std::vector<std::string_view>& path) {
  if (rule.size() > path.size()) return false;
  for (std::size_t i = 0; i < rule.size(); ++i) {
    if (rule[i] != "*" && rule[i] != path[i]) return false;
  }
  return true;
}

}  // namespace

const char* to_string(ReloadKind k) {
  switch (k) {
    case ReloadKind::none: return "none";
    case ReloadKind::hot: return "hot";
    case ReloadKind::restart: return "restart";
  }
  return "?";
}

const char* to_string(HotAction a) {
  switch (a) {
    case HotAction::restart_channel: return "restart-channel";
    case HotAction::swap_agent: return "swap-agent";
    case HotAction::rebind_agents: return "rebind-agents";
    case HotAction::update_auth: return "update-auth";
  }
  return "?";
}

std::optional<ReloadMode> parse_reload_mode(std::string_view s) {
  if (s == "hybrid") return ReloadMode::hybrid;
  if (s == "off") return ReloadMode::off;
  return std::nullopt;
}

std::span<const ReloadRule> reload_rules() {
  using enum ReloadKind;
  static constexpr std::array<ReloadRule, 18> rules = {{
      {"$schema", none, std::nullopt, -1, "editor hint, not config"},
      {"meta", none, std::nullopt, -1, "bookkeeping the gateway writes"},
      {"logging", none, std::nullopt, -1, "log level applied at once"},
      {"messages", none, std::nullopt, -1, "read per message (debounce, queue)"},
      {"commands", none, std::nullopt, -1, "read per command/signal"},
      {"gateway.reload", none, std::nullopt, -1, "read at the next file change"},
      {"gateway.restart", none, std::nullopt, -1, "read at the next restart request"},
      {"gateway.controlUi.root", none, std::nullopt, -1, "read per request of the Control UI"},
      {"gateway.controlUi.assistantName", none, std::nullopt, -1,
       "read per request of the Control UI"},
      {"gateway.auth", hot, HotAction::update_auth, -1,
       "new connections need the new token; open ones stay"},
      {"gateway", restart, std::nullopt, -1, "port, bind: the listening socket"},
      {"store", restart, std::nullopt, -1, "the database is opened at start"},
      {"cluster", restart, std::nullopt, -1, "the replica id and lease time are read at start"},
      {"channels.*", hot, HotAction::restart_channel, 1,
       "that channel stops completely, then starts again"},
      {"channels.*.notices", none, std::nullopt, -1, "read when a notice is sent"},
      {"channels.*.accounts.*", hot, HotAction::restart_channel, 1,
       "that account alone stops completely, then starts again", 3},
      {"agents.default", hot, HotAction::rebind_agents, -1,
       "channels without an agent of their own follow it"},
      {"agents.*", hot, HotAction::swap_agent, 1,
       "new turns use the new backend; running turns finish on the old"},
  }};
  return rules;
}

PathDecision classify_path(const std::string& path) {
  PathDecision decision;
  decision.path = path;
  const auto segments = split(path);
  const ReloadRule* best = nullptr;
  std::size_t best_length = 0;
  std::ptrdiff_t best_stars = 0;
  for (const auto& rule : reload_rules()) {
    const auto rule_segments = split(rule.prefix);
    if (!matches(rule_segments, segments)) continue;
    const auto stars = std::count(rule_segments.begin(), rule_segments.end(), "*");
    if (best == nullptr || rule_segments.size() > best_length ||
        (rule_segments.size() == best_length && stars < best_stars)) {
      best = &rule;
      best_length = rule_segments.size();
      best_stars = stars;
    }
  }
  if (best == nullptr) return decision;  // restart, no rule
  decision.kind = best->kind;
  decision.rule = std::string(best->prefix);
  decision.action = best->action;
  // A rule's target segment lies within its own prefix, so the matched path has it.
  if (best->target_segment >= 0) {
    decision.target = std::string(segments[static_cast<std::size_t>(best->target_segment)]);
    if (best->target_segment2 >= 0) {
      decision.target += ":" + std::string(segments[static_cast<std::size_t>(best->target_segment2)]);
    }
  }
  return decision;
}

ReloadPlan plan_reload(const std::vector<std::string>& changed, ReloadMode mode) {
  ReloadPlan plan;
  plan.apply = mode != ReloadMode::off;
  for (const auto& path : changed) {
    auto decision = classify_path(path);
    plan.kind = std::max(plan.kind, decision.kind);
    if (decision.kind == ReloadKind::hot && decision.action) {
      ReloadActionItem item{*decision.action, decision.target};
      if (std::find(plan.actions.begin(), plan.actions.end(), item) == plan.actions.end()) {
        plan.actions.push_back(std::move(item));
      }
    }
    plan.paths.push_back(std::move(decision));
  }
  // One restart replaces every hot action: the new generation starts from the new config.
  if (plan.kind == ReloadKind::restart) plan.actions.clear();
  return plan;
}

}  // namespace drawbridge::core
