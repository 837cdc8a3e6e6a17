// drawbridge on a real PostgreSQL (tests/fakes/pg_server.h: started by the tests on a Unix
// socket): the message path on store.driver "postgres", the active replica's lease (a second
// replica is refused while the first lives and takes over after it dies), and the Telegram
// poller across a pause past the lease: fenced, never two getUpdates at once.

#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <csignal>
#include <future>
#include <map>
#include <string>

#include "e2e/cut_proxy.h"
#include "e2e/harness.h"
#include "e2e/lifecycle_helpers.h"
#include "fakes/pg_server.h"
#include "fakes/telegram_fake.h"

namespace drawbridge::e2e {
namespace {

using testing::TelegramFake;
constexpr const char* kBot = "777001:cluster-bot-token";
constexpr std::int64_t kAlice = 42;

json pg_config(const std::string& conninfo, const std::string& replica, int lease_ms = 1500) {
  json cfg = lifecycle::restartable(echo_config());
  cfg["store"] = {{"driver", "postgres"}, {"url", conninfo}};
  cfg["cluster"] = {{"replicaId", replica}, {"leaseMs", lease_ms}};
  return cfg;
}

// The conninfo's keywords (libpq parses it), for building another one to the same database.
std::map<std::string, std::string> conninfo_keys(const std::string& conninfo) {
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

json telegram_bot(const TelegramFake& fake) {
  return {{"botTokenEnv", "E2E_BOT_TOKEN"},
          {"apiRoot", fake.base_url()},
          {"allowFrom", json::array({kAlice})},
          {"pollTimeoutSeconds", 30},
          {"sendRate", {{"chatPerSecond", 0}}}};
}

std::vector<std::string> texts_sent(const TelegramFake& fake) {
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

std::size_t count_of(const json& messages, const std::string& role, const std::string& text) {
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

// Starts `gw` on another thread: it stands by until it holds the active lease, then gets
// ready; get() rethrows what start() threw (not ready within the harness's 10 s).
std::future<void> start_later(Gateway& gw) {
  return std::async(std::launch::async, [&gw] { gw.start(); });
}

// Waits (bounded) until the session's history holds `text` answered once.
bool answered(const Gateway& gw, const std::string& session, const std::string& text) {
  return wait_until_idle(gw, 10s).is_object() &&
         count_of(gw.history(session), "assistant", text) == 1;
}

TEST_F(ClusterTest, MessagesSurviveAKillNineOnPostgres) {
  TempDir dir;
  Gateway gw(dir, pg_config(conninfo, "solo"));
  gw.start();
  for (int i = 0; i < 5; ++i) {
    auto post = gw.post_message({{"sessionKey", "pg"},
                                 {"message", "m" + std::to_string(i)},
                                 {"idempotencyKey", "pg-" + std::to_string(i)}});
    ASSERT_EQ(post.status, 202) << post.body;
  }
  ASSERT_TRUE(answered(gw, "pg", "m4")) << gw.log();
  gw.kill9();
  gw.start();  // same replica id: it renews its own lease at once
  // A duplicate is recognised across the restart; nothing is answered twice.
  auto again =
      gw.post_message({{"sessionKey", "pg"}, {"message", "m0"}, {"idempotencyKey", "pg-0"}});
  EXPECT_EQ(again.json_body().value("duplicate", false), true) << again.body;
  auto messages = gw.history("pg");
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(count_of(messages, "user", "m" + std::to_string(i)), 1u) << messages.dump(1);
    EXPECT_EQ(count_of(messages, "assistant", "m" + std::to_string(i)), 1u) << messages.dump(1);
  }
  auto status = gw.client({"operator.read"})->request("status", json::object());
  EXPECT_EQ(status["cluster"].value("replicaId", ""), "solo") << status.dump();
  EXPECT_EQ(status["cluster"]["replicas"].size(), 1u) << status.dump();
}

TEST_F(ClusterTest, ASecondReplicaStandsByWhileTheFirstLivesAndTakesOverAfterItDies) {
  TempDir dir_a, dir_b;
  Gateway a(dir_a, pg_config(conninfo, "a"));
  Gateway b(dir_b, pg_config(conninfo, "b"));
  a.start();
  auto b_ready = start_later(b);
  // While a serves, b stands by: a's messages are a's alone.
  auto post =
      a.post_message({{"sessionKey", "x"}, {"message", "before"}, {"idempotencyKey", "x1"}});
  ASSERT_EQ(post.status, 202);
  ASSERT_TRUE(answered(a, "x", "before")) << a.log();
  EXPECT_EQ(b_ready.wait_for(0s), std::future_status::timeout);
  a.kill9();
  ASSERT_NO_THROW(b_ready.get()) << b.log();  // within a's lease (1.5 s) of its death
  EXPECT_NE(b.log().find("standby: replica a is active on this database"), std::string::npos)
      << b.log();
  EXPECT_EQ(count_of(b.history("x"), "assistant", "before"), 1u);
  auto after =
      b.post_message({{"sessionKey", "x"}, {"message", "after"}, {"idempotencyKey", "x2"}});
  ASSERT_EQ(after.status, 202);
  ASSERT_TRUE(answered(b, "x", "after")) << b.log();
  // A plain stop hands over at once: a starts again without waiting out the lease.
  b.signal(SIGTERM);
  EXPECT_EQ(b.wait_exit(15s).code, 0) << b.log();
  a.start();
  EXPECT_EQ(a.log().find("standby:"), std::string::npos) << a.log();
}

TEST_F(ClusterTest, APausedPollerIsFencedAndTwoPollsNeverOverlap) {
  TelegramFake fake;
  fake.add_bot(kBot, 777001, "cluster_bot");
  auto with_bot = [&](json cfg) {
    cfg["channels"]["telegram"] = telegram_bot(fake);
    return cfg;
  };
  TempDir dir_a, dir_b;
  Gateway a(dir_a, with_bot(pg_config(conninfo, "a", 2000)));
  Gateway b(dir_b, with_bot(pg_config(conninfo, "b", 2000)));
  a.set_env("E2E_BOT_TOKEN", kBot);
  b.set_env("E2E_BOT_TOKEN", kBot);
  a.start();
  fake.push_message(kBot, kAlice, kAlice, "one");
  ASSERT_TRUE(fake.wait_for([&] { return fake.sent(kBot).size() >= 1; }, 10s)) << a.log();
  // Recorded as sent first: a freeze between a send and its record is the one window where a
  // part can go twice (README "Answered once"), which this test is not about.
  wait_until_idle(a, 10s);
  auto b_ready = start_later(b);
  // a stops dead (SIGSTOP) past its lease; b takes over the store and the bot.
  a.signal(SIGSTOP);
  ASSERT_NO_THROW(b_ready.get()) << b.log();
  fake.push_message(kBot, kAlice, kAlice, "two");
  ASSERT_TRUE(fake.wait_for([&] { return fake.sent(kBot).size() >= 2; }, 10s)) << b.log();
  // a wakes: its leases are gone; it exits (75: a supervisor brings it back as a standby)
  // instead of polling or committing as holder.
  a.signal(SIGCONT);
  EXPECT_EQ(a.wait_exit(20s).code, 75) << a.log();
  EXPECT_NE(a.log().find("another replica took the active lease"), std::string::npos) << a.log();
  fake.push_message(kBot, kAlice, kAlice, "three");
  ASSERT_TRUE(fake.wait_for([&] { return fake.sent(kBot).size() >= 3; }, 10s)) << b.log();
  EXPECT_EQ(texts_sent(fake), (std::vector<std::string>{"one", "two", "three"}));
  EXPECT_LE(fake.max_concurrent_polls(kBot), 1) << "two getUpdates overlapped";
}

// The lease row as "<holder>:<epoch>" ("" holder: released).
std::string active_lease(const std::string& conninfo) {
  return testing::pg_query(
      conninfo, "SELECT holder || ':' || epoch FROM leases WHERE name = 'cluster:active'");
}

TEST_F(ClusterTest, AReexecKeepsTheActiveLeaseAndAPlainStopReleasesIt) {
  lifecycle::Subreaper subreaper;  // the successor becomes our child: ended by its pid below
  TempDir dir;
  json cfg = pg_config(conninfo, "a");
  cfg["gateway"]["restart"]["delayMs"] = 0;
  Gateway gw(dir, cfg);
  gw.set_env("DRAWBRIDGE_SUPERVISOR", "none");
  gw.start();
  const pid_t old_pid = gw.pid();
  gw.signal(SIGUSR2);
  EXPECT_EQ(gw.wait_exit(15s).code, 0) << gw.log();  // after its successor reported ready
  // The successor renewed the lease the old process held; the old one gave nothing back.
  EXPECT_EQ(active_lease(conninfo), "a:1");
  server::GatewayClient c("127.0.0.1", gw.port());
  c.connect(Gateway::kToken, {"operator.read"});
  const pid_t new_pid = c.request("status", json::object()).value("pid", 0);
  c.close();
  ASSERT_NE(new_pid, old_pid) << gw.log();
  lifecycle::stop_successor(new_pid);  // SIGTERM: a plain stop hands the lease over at once
  EXPECT_EQ(active_lease(conninfo), ":1");
}

TEST_F(ClusterTest, AReplicaCutOffFromTheDatabaseHandsOverAndStaysOut) {
  // a reaches PostgreSQL through a link this test cuts; b directly.
  auto keys = conninfo_keys(conninfo);
  CutProxy link(keys["host"] + "/.s.PGSQL." + keys["port"]);
  const std::string through_link = "host=127.0.0.1 port=" + std::to_string(link.port()) +
                                   " dbname=postgres user=postgres options='" + keys["options"] +
                                   "'";
  TelegramFake fake;
  fake.add_bot(kBot, 777001, "cluster_bot");
  TempDir dir_a, dir_b;
  json cfg_a = pg_config(through_link, "a", 2000);
  json cfg_b = pg_config(conninfo, "b", 2000);
  cfg_a["channels"]["telegram"] = telegram_bot(fake);
  cfg_b["channels"]["telegram"] = telegram_bot(fake);
  Gateway a(dir_a, cfg_a);
  Gateway b(dir_b, cfg_b);
  a.set_env("E2E_BOT_TOKEN", kBot);
  b.set_env("E2E_BOT_TOKEN", kBot);
  a.start();
  fake.push_message(kBot, kAlice, kAlice, "one");
  ASSERT_TRUE(fake.wait_for([&] { return fake.sent(kBot).size() >= 1; }, 10s)) << a.log();
  wait_until_idle(a, 10s);
  auto b_ready = start_later(b);
  link.cut();  // a still runs, but neither renews nor writes: b takes over after the lease
  ASSERT_NO_THROW(b_ready.get()) << b.log();
  fake.push_message(kBot, kAlice, kAlice, "two");
  ASSERT_TRUE(fake.wait_for([&] { return fake.sent(kBot).size() >= 2; }, 10s)) << b.log();
  // The link comes back: a's next heartbeat finds the lease taken and a exits for its
  // supervisor, without polling the bot or committing anything as the active replica.
  link.heal();
  EXPECT_EQ(a.wait_exit(30s).code, 75) << a.log();
  fake.push_message(kBot, kAlice, kAlice, "three");
  ASSERT_TRUE(fake.wait_for([&] { return fake.sent(kBot).size() >= 3; }, 10s)) << b.log();
  EXPECT_EQ(texts_sent(fake), (std::vector<std::string>{"one", "two", "three"}));
  EXPECT_LE(fake.max_concurrent_polls(kBot), 1) << "two getUpdates overlapped";
}

}  // namespace
}  // namespace drawbridge::e2e
