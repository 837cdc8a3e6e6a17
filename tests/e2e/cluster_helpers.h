#pragma once

// What the cluster tests (tests/e2e/cluster_test.cpp, cluster_chaos_test.cpp) share: configs of
// replicas on the test PostgreSQL (tests/fakes/pg_server.h), a Telegram bot on the fake Bot API,
// and reads of what the replicas answered.

#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <map>
#include <string>
#include <vector>

#include "e2e/cut_proxy.h"
#include "e2e/harness.h"
#include "e2e/lifecycle_helpers.h"
#include "fakes/pg_server.h"
#include "fakes/telegram_fake.h"

namespace drawbridge::e2e::cluster {

using testing::TelegramFake;
constexpr const char* kBot = "777001:cluster-bot-token";
constexpr std::int64_t kAlice = 42;

inline json pg_config(const std::string& conninfo, const std::string& replica,
                      int lease_ms = 1500) {
  json cfg = lifecycle::restartable(echo_config());
  cfg["store"] = {{"driver", "postgres"}, {"url", conninfo}};
  cfg["cluster"] = {{"replicaId", replica}, {"leaseMs", lease_ms}};
  return cfg;
}

// The conninfo's keywords (libpq parses it), for building another one to the same database.
inline std::map<std::string, std::string> conninfo_keys(const std::string& conninfo) {
  std::map<std::string, std::string> out;
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(conninfo.c_str(), &err);
  if (err != nullptr) PQfreemem(err);
  for (auto* o = opts; o != nullptr && o->keyword != nullptr; ++o) {
    if (o->val != nullptr) out[o->keyword] = o->val;
  }
  if (opts != nullptr) PQconninfoFree(opts);
  return out;
}

// The Unix socket of the test server `conninfo` names, for a CutProxy in front of it.
inline std::string pg_socket(const std::string& conninfo) {
  auto keys = conninfo_keys(conninfo);
  return keys["host"] + "/.s.PGSQL." + keys["port"];
}
// `conninfo` reached through `link` instead (a replica's network, which the test cuts).
inline std::string through(const CutProxy& link, const std::string& conninfo) {
  auto keys = conninfo_keys(conninfo);
  return "host=127.0.0.1 port=" + std::to_string(link.port()) +
         " dbname=postgres user=postgres options='" + keys["options"] + "'";
}

inline json telegram_bot(const TelegramFake& fake) {
  return {{"botTokenEnv", "E2E_BOT_TOKEN"},
          {"apiRoot", fake.base_url()},
          {"allowFrom", json::array({kAlice})},
          {"pollTimeoutSeconds", 30},
          {"sendRate", {{"chatPerSecond", 0}}}};
}

// `cfg` with the bot on `fake` (its token from E2E_BOT_TOKEN: start the gateway with
// bot_env()).
inline json with_bot(json cfg, const TelegramFake& fake) {
  cfg["channels"]["telegram"] = telegram_bot(fake);
  return cfg;
}
inline void bot_env(Gateway& gw) { gw.set_env("E2E_BOT_TOKEN", kBot); }

// The bot's first message, answered by `gw` and recorded as sent (bounded waits).
inline ::testing::AssertionResult first_message_answered(TelegramFake& fake, const Gateway& gw) {
  fake.push_message(kBot, kAlice, kAlice, "one");
  if (!fake.wait_for([&] { return fake.sent(kBot).size() >= 1; }, 10s)) {
    return ::testing::AssertionFailure() << gw.log();
  }
  wait_until_idle(gw, 10s);
  return ::testing::AssertionSuccess();
}

inline std::vector<std::string> texts_sent(const TelegramFake& fake) {
  std::vector<std::string> out;
  for (const auto& m : fake.sent(kBot)) out.push_back(m.text);
  return out;
}

struct ClusterTest : ::testing::Test {
  std::string conninfo;
  void SetUp() override {
    std::string why;
    auto c = testing::fresh_pg_schema(&why);
    if (!c) GTEST_SKIP() << "PostgreSQL is not installed: " << why;
    conninfo = *c;
  }
};

inline std::size_t count_of(const json& messages, const std::string& role,
                            const std::string& text) {
  std::size_t n = 0;
  for (const auto& m : messages) {
    if (m.value("role", "") != role) continue;
    const auto& c = m.value("content", json());
    std::string t = c.is_string() ? c.get<std::string>() : "";
    if (c.is_array() && !c.empty()) t = c[0].value("text", "");
    if (t == text) ++n;
  }
  return n;
}

// Waits (bounded) until the session's history holds `text` answered once.
inline bool answered(const Gateway& gw, const std::string& session, const std::string& text) {
  return wait_until_idle(gw, 10s).is_object() &&
         count_of(gw.history(session), "assistant", text) == 1;
}

inline json cluster_status(const Gateway& gw) {
  return gw.client({"operator.read"})->request("status", json::object()).value("cluster", json());
}

// The lease `name` (no quote in it) as "<holder>:<epoch>" ("" holder: released).
inline std::string lease_row(const std::string& conninfo, const std::string& name) {
  return testing::pg_query(
      conninfo, "SELECT holder || ':' || epoch FROM leases WHERE name = '" + name + "'");
}

}  // namespace drawbridge::e2e::cluster
