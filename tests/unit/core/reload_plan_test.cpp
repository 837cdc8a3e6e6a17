#include "core/reload_plan.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace drawbridge::core {
namespace {

struct Expected {
  std::string path;
  ReloadKind kind;
  std::string rule;
  std::optional<HotAction> action;
  std::string target;
};

void expect_decision(const Expected& e) {
  SCOPED_TRACE("path \"" + e.path + "\"");
  const PathDecision d = classify_path(e.path);
  EXPECT_EQ(d.path, e.path);
  EXPECT_EQ(d.kind, e.kind) << to_string(d.kind);
  EXPECT_EQ(d.rule, e.rule);
  EXPECT_EQ(d.action, e.action);
  EXPECT_EQ(d.target, e.target);
}

TEST(ReloadPlan, NamesOfKindsActionsAndModes) {
  EXPECT_STREQ(to_string(ReloadKind::none), "none");
  EXPECT_STREQ(to_string(ReloadKind::hot), "hot");
  EXPECT_STREQ(to_string(ReloadKind::restart), "restart");
  EXPECT_STREQ(to_string(HotAction::restart_channel), "restart-channel");
  EXPECT_STREQ(to_string(HotAction::swap_agent), "swap-agent");
  EXPECT_STREQ(to_string(HotAction::rebind_agents), "rebind-agents");
  EXPECT_STREQ(to_string(HotAction::update_auth), "update-auth");
  EXPECT_EQ(parse_reload_mode("hybrid"), ReloadMode::hybrid);
  EXPECT_EQ(parse_reload_mode("off"), ReloadMode::off);
  EXPECT_EQ(parse_reload_mode("hot"), std::nullopt);
  EXPECT_EQ(parse_reload_mode(""), std::nullopt);
  EXPECT_EQ(parse_reload_mode("Off"), std::nullopt);
}

TEST(ReloadPlan, TableListsTheRulesInReadmeOrder) {
  std::vector<std::string> prefixes;
  for (const auto& rule : reload_rules()) {
    prefixes.emplace_back(rule.prefix);
    EXPECT_FALSE(rule.note.empty()) << rule.prefix;
    // Hot rules say what to do; the others do nothing or restart everything.
    EXPECT_EQ(rule.action.has_value(), rule.kind == ReloadKind::hot) << rule.prefix;
  }
  EXPECT_EQ(prefixes, (std::vector<std::string>{
                          "$schema", "meta", "logging", "messages", "commands", "gateway.reload",
                          "gateway.restart", "gateway.controlUi.root",
                          "gateway.controlUi.assistantName", "gateway.auth", "gateway", "store",
                          "cluster", "channels.*",
                          "channels.*.notices", "channels.*.accounts.*", "agents.default",
                          "agents.*"}));
}

TEST(ReloadPlan, EveryRuleClassifiesAPathUnderIt) {
  using enum ReloadKind;
  const std::vector<Expected> cases = {
      {"$schema", none, "$schema", std::nullopt, ""},
      {"meta.lastWrittenAt", none, "meta", std::nullopt, ""},
      {"logging.level", none, "logging", std::nullopt, ""},
      {"messages.queue.mode", none, "messages", std::nullopt, ""},
      {"commands.restart", none, "commands", std::nullopt, ""},
      {"gateway.reload.mode", none, "gateway.reload", std::nullopt, ""},
      {"gateway.restart.cooldownMs", none, "gateway.restart", std::nullopt, ""},
      {"gateway.controlUi.root", none, "gateway.controlUi.root", std::nullopt, ""},
      {"gateway.controlUi.assistantName", none, "gateway.controlUi.assistantName", std::nullopt,
       ""},
      {"gateway.auth.token", hot, "gateway.auth", HotAction::update_auth, ""},
      {"gateway.bind", restart, "gateway", std::nullopt, ""},
      {"store.dataDir", restart, "store", std::nullopt, ""},
      {"cluster.leaseMs", restart, "cluster", std::nullopt, ""},
      {"channels.telegram.botToken", hot, "channels.*", HotAction::restart_channel, "telegram"},
      {"channels.irc.notices.enabled", none, "channels.*.notices", std::nullopt, ""},
      {"channels.telegram.accounts.alerts.botTokenEnv", hot, "channels.*.accounts.*",
       HotAction::restart_channel, "telegram:alerts"},
      {"agents.default", hot, "agents.default", HotAction::rebind_agents, ""},
      {"agents.shell.command", hot, "agents.*", HotAction::swap_agent, "shell"},
  };
  ASSERT_EQ(cases.size(), reload_rules().size());
  for (const auto& c : cases) expect_decision(c);
}

TEST(ReloadPlan, LongestMatchingRuleWins) {
  using enum ReloadKind;
  expect_decision(
      {"channels.local.notices.restarting", none, "channels.*.notices", std::nullopt, ""});
  expect_decision({"channels.local.notices", none, "channels.*.notices", std::nullopt, ""});
  expect_decision(
      {"channels.local.enabled", hot, "channels.*", HotAction::restart_channel, "local"});
  // A whole channel added or removed is that channel's restart.
  expect_decision({"channels.irc", hot, "channels.*", HotAction::restart_channel, "irc"});
  // One account is that account's restart; the accounts object as a whole, every account's.
  expect_decision({"channels.telegram.accounts.b", hot, "channels.*.accounts.*",
                   HotAction::restart_channel, "telegram:b"});
  expect_decision({"channels.telegram.accounts", hot, "channels.*", HotAction::restart_channel,
                   "telegram"});
  // Same length as "agents.*"; the rule without a wildcard wins.
  expect_decision({"agents.default", hot, "agents.default", HotAction::rebind_agents, ""});
  expect_decision({"agents.main.delayMs", hot, "agents.*", HotAction::swap_agent, "main"});
  expect_decision({"agents.main", hot, "agents.*", HotAction::swap_agent, "main"});
  expect_decision({"gateway.auth.token", hot, "gateway.auth", HotAction::update_auth, ""});
  expect_decision({"gateway.auth", hot, "gateway.auth", HotAction::update_auth, ""});
  expect_decision({"gateway.port", restart, "gateway", std::nullopt, ""});
  expect_decision({"gateway.reload.debounceMs", none, "gateway.reload", std::nullopt, ""});
  // The UI's folder is read per request; the origins a browser may come from are not.
  expect_decision({"gateway.controlUi.root", none, "gateway.controlUi.root", std::nullopt, ""});
  expect_decision({"gateway.controlUi.allowedOrigins", restart, "gateway", std::nullopt, ""});
}

TEST(ReloadPlan, RulesMatchWholeSegmentsOnly) {
  using enum ReloadKind;
  // "gateway.authx" is not under "gateway.auth", "stores" not under "store".
  expect_decision({"gateway.authx", restart, "gateway", std::nullopt, ""});
  expect_decision({"stores.x", restart, "", std::nullopt, ""});
  expect_decision({"log", restart, "", std::nullopt, ""});
}

TEST(ReloadPlan, UnmatchedPathsMeanRestart) {
  using enum ReloadKind;
  expect_decision({"foo", restart, "", std::nullopt, ""});
  expect_decision({"foo.bar", restart, "", std::nullopt, ""});
  // The section itself, replaced by something that is not an object of ids.
  expect_decision({"channels", restart, "", std::nullopt, ""});
  expect_decision({"agents", restart, "", std::nullopt, ""});
  // The root document differs as a whole.
  expect_decision({"", restart, "", std::nullopt, ""});
}

TEST(ReloadPlan, EmptyChangeNeedsNothing) {
  const ReloadPlan plan = plan_reload({}, ReloadMode::hybrid);
  EXPECT_EQ(plan.kind, ReloadKind::none);
  EXPECT_TRUE(plan.paths.empty());
  EXPECT_TRUE(plan.actions.empty());
  EXPECT_TRUE(plan.apply);
}

TEST(ReloadPlan, NoneOnlyChangesNeedNothing) {
  const ReloadPlan plan =
      plan_reload({"logging.level", "channels.local.notices.stopping"}, ReloadMode::hybrid);
  EXPECT_EQ(plan.kind, ReloadKind::none);
  ASSERT_EQ(plan.paths.size(), 2u);
  EXPECT_TRUE(plan.actions.empty());
}

TEST(ReloadPlan, NoneAndHotMakeAHotPlan) {
  const ReloadPlan plan = plan_reload({"logging.level", "agents.main.prefix"}, ReloadMode::hybrid);
  EXPECT_EQ(plan.kind, ReloadKind::hot);
  ASSERT_EQ(plan.paths.size(), 2u);
  EXPECT_EQ(plan.paths[0].path, "logging.level");
  EXPECT_EQ(plan.paths[0].kind, ReloadKind::none);
  EXPECT_EQ(plan.paths[1].path, "agents.main.prefix");
  EXPECT_EQ(plan.paths[1].kind, ReloadKind::hot);
  EXPECT_EQ(plan.actions, (std::vector<ReloadActionItem>{{HotAction::swap_agent, "main"}}));
  EXPECT_TRUE(plan.apply);
}

TEST(ReloadPlan, HotAndRestartMakeARestartWithoutActions) {
  const ReloadPlan plan = plan_reload(
      {"channels.local.enabled", "gateway.port", "gateway.auth.token"}, ReloadMode::hybrid);
  EXPECT_EQ(plan.kind, ReloadKind::restart);
  EXPECT_TRUE(plan.actions.empty());
  // Every path keeps its own decision for the log.
  ASSERT_EQ(plan.paths.size(), 3u);
  EXPECT_EQ(plan.paths[0].action, HotAction::restart_channel);
  EXPECT_EQ(plan.paths[1].kind, ReloadKind::restart);
  EXPECT_EQ(plan.paths[2].action, HotAction::update_auth);
}

TEST(ReloadPlan, UnknownPathMakesARestart) {
  const ReloadPlan plan = plan_reload({"agents.main.prefix", "channels"}, ReloadMode::hybrid);
  EXPECT_EQ(plan.kind, ReloadKind::restart);
  EXPECT_TRUE(plan.actions.empty());
}

TEST(ReloadPlan, ActionsAreDeduplicatedInFirstSeenOrder) {
  const ReloadPlan plan = plan_reload(
      {"channels.local.enabled", "agents.default", "channels.local.maxMessageChars",
       "channels.telegram.botToken", "gateway.auth.token", "agents.default", "gateway.auth.mode",
       "agents.main.delayMs", "agents.shell.command", "agents.main.prefix"},
      ReloadMode::hybrid);
  EXPECT_EQ(plan.kind, ReloadKind::hot);
  EXPECT_EQ(plan.paths.size(), 10u);
  EXPECT_EQ(plan.actions, (std::vector<ReloadActionItem>{
                              {HotAction::restart_channel, "local"},
                              {HotAction::rebind_agents, ""},
                              {HotAction::restart_channel, "telegram"},
                              {HotAction::update_auth, ""},
                              {HotAction::swap_agent, "main"},
                              {HotAction::swap_agent, "shell"},
                          }));
}

TEST(ReloadPlan, TwoPathsUnderOneChannelGiveOneAction) {
  const ReloadPlan plan =
      plan_reload({"channels.local.enabled", "channels.local.agent"}, ReloadMode::hybrid);
  EXPECT_EQ(plan.kind, ReloadKind::hot);
  EXPECT_EQ(plan.actions, (std::vector<ReloadActionItem>{{HotAction::restart_channel, "local"}}));
}

TEST(ReloadPlan, OffModeComputesThePlanButDoesNotApplyIt) {
  const ReloadPlan hot = plan_reload({"channels.local.enabled"}, ReloadMode::off);
  EXPECT_FALSE(hot.apply);
  EXPECT_EQ(hot.kind, ReloadKind::hot);
  EXPECT_EQ(hot.actions, (std::vector<ReloadActionItem>{{HotAction::restart_channel, "local"}}));

  const ReloadPlan restart = plan_reload({"store.durability"}, ReloadMode::off);
  EXPECT_FALSE(restart.apply);
  EXPECT_EQ(restart.kind, ReloadKind::restart);
  ASSERT_EQ(restart.paths.size(), 1u);
  EXPECT_EQ(restart.paths[0].rule, "store");

  EXPECT_FALSE(plan_reload({}, ReloadMode::off).apply);
}

}  // namespace
}  // namespace drawbridge::core
