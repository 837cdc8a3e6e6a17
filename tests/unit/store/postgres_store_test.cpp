// What only the PostgreSQL driver has: migrations that replicas starting together run once,
// the password given apart from the conninfo, errors that never show it, several connections
// writing the same rows at once, and a connection that is lost. Everything a Store promises is
// checked against every driver in the *_contract_test files.

#include "store/postgres_store.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <latch>
#include <string>
#include <thread>
#include <vector>

#include "fakes/pg_server.h"
#include "unit/store/store_drivers.h"

namespace drawbridge::store {
namespace {

using drawbridge::testing::fresh_pg_schema;
using drawbridge::testing::pg_password_role;
using drawbridge::testing::pg_query;
using test_support::contains;
using test_support::message;

// A fresh schema's conninfo, or the test skips (PostgreSQL not installed).
#define FRESH_SCHEMA_OR_SKIP(var)         \
  std::string var;                        \
  {                                       \
    std::string why_;                     \
    auto fresh_ = fresh_pg_schema(&why_); \
    if (!fresh_) GTEST_SKIP() << why_;    \
    var = *fresh_;                        \
  }

std::string open_error(const PostgresOptions& options) {
  try {
    PostgresStore::open(options);
  } catch (const StoreError& e) {
    return e.what();
  }
  return "";
}

TEST(PostgresStore, ReplicasOpeningTheSameSchemaAtOnceMigrateItOnce) {
  for (int round = 0; round < 3; ++round) {
    FRESH_SCHEMA_OR_SKIP(conninfo);
    constexpr int kReplicas = 4;
    std::latch start(kReplicas);
    std::vector<std::string> errors(kReplicas);
    std::vector<std::unique_ptr<PostgresStore>> stores(kReplicas);
    std::vector<std::thread> threads;
    for (int i = 0; i < kReplicas; ++i) {
      threads.emplace_back([&, i] {
        start.arrive_and_wait();
        try {
          stores[i] = PostgresStore::open({conninfo, ""});
        } catch (const StoreError& e) {
          errors[i] = e.what();
        }
      });
    }
    for (auto& t : threads) t.join();
    for (int i = 0; i < kReplicas; ++i) {
      EXPECT_EQ(errors[i], "") << "replica " << i;
      ASSERT_TRUE(stores[i]) << "replica " << i;
    }
    EXPECT_EQ(pg_query(conninfo, "SELECT count(*) || ':' || max(version) FROM schema_version"),
              "1:1");
    EXPECT_EQ(
        pg_query(conninfo, "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()"),
        "8")
        << "inbox, outbox, sessions, transcript, kv, session_meta, leases, schema_version";
    stores[0]->insert_inbound(message("m1"), 1000);
    EXPECT_TRUE(stores[kReplicas - 1]->insert_inbound(message("m1"), 2000).duplicate);
  }
}

TEST(PostgresStore, ASchemaNewerThanThisBinaryIsRefused) {
  FRESH_SCHEMA_OR_SKIP(conninfo);
  PostgresStore::open({conninfo, ""})->insert_inbound(message("m1"), 1000);
  pg_query(conninfo, "UPDATE schema_version SET version = 99");

  const auto error = open_error({conninfo, ""});
  EXPECT_TRUE(contains(error, "schema version 99 is newer")) << error;
  EXPECT_EQ(pg_query(conninfo, "SELECT count(*) FROM inbox"), "1") << "left as it was";
  EXPECT_EQ(pg_query(conninfo, "SELECT version FROM schema_version"), "99");
}

TEST(PostgresStore, ASchemaThatDoesNotExistIsAClearError) {
  FRESH_SCHEMA_OR_SKIP(conninfo);
  const auto error = open_error({conninfo + " options='-c search_path=no_such_schema'", ""});
  EXPECT_TRUE(contains(error, "cannot open the PostgreSQL store")) << error;
  EXPECT_TRUE(contains(error, "no schema has been selected")) << error;
}

TEST(PostgresStore, ThePasswordGivenApartIsUsedAndNeverShown) {
  FRESH_SCHEMA_OR_SKIP(unused);
  std::string why;
  const auto role = pg_password_role(&why);
  ASSERT_TRUE(role) << why;

  auto store = PostgresStore::open({role->conninfo, role->password});
  EXPECT_FALSE(store->insert_inbound(message("m1"), 1000).duplicate);
  // The one given apart wins over one in the conninfo.
  auto again = PostgresStore::open({role->conninfo + " password=not-it", role->password});
  EXPECT_TRUE(again->insert_inbound(message("m1"), 2000).duplicate);

  const std::string wrong = "wrong-" + role->password;
  const auto error = open_error({role->conninfo, wrong});
  EXPECT_TRUE(contains(error, "password authentication failed")) << error;
  EXPECT_FALSE(contains(error, wrong)) << error;
  EXPECT_FALSE(contains(error, role->password)) << error;

  const auto in_conninfo = open_error({role->conninfo + " password=" + wrong, ""});
  EXPECT_TRUE(contains(in_conninfo, "password authentication failed")) << in_conninfo;
  EXPECT_FALSE(contains(in_conninfo, wrong)) << "the conninfo is never echoed: " << in_conninfo;
}

TEST(PostgresStore, AnUnreachableServerIsAClearErrorWithoutTheConninfo) {
  const auto error = open_error({"host=/nonexistent-drawbridge port=1 password=s3cret-x", ""});
  EXPECT_TRUE(contains(error, "cannot connect to PostgreSQL")) << error;
  EXPECT_FALSE(contains(error, "s3cret-x")) << error;
}

TEST(PostgresStore, TwoConnectionsStagingTheSameReplyAtOnceWriteItOnce) {
  FRESH_SCHEMA_OR_SKIP(conninfo);
  auto a = PostgresStore::open({conninfo, ""});
  auto b = PostgresStore::open({conninfo, ""});
  constexpr int kRows = 60;
  std::vector<std::int64_t> ids;
  for (int i = 0; i < kRows; ++i) {
    ids.push_back(a->insert_inbound(message("m" + std::to_string(i)), 1000).record.id);
  }
  std::vector<std::string> errors[2];
  std::vector<std::vector<OutboxRecord>> got[2];
  std::latch start(2);
  auto replay = [&](Store& s, int side) {
    start.arrive_and_wait();
    for (auto id : ids) {
      try {
        got[side].push_back(s.stage_reply(id, {"part one ", "part two"}, 2000));
      } catch (const StoreError& e) {
        errors[side].push_back(e.what());
      }
    }
  };
  std::thread ta([&] { replay(*a, 0); });
  std::thread tb([&] { replay(*b, 1); });
  ta.join();
  tb.join();
  EXPECT_TRUE(errors[0].empty()) << errors[0].front();
  EXPECT_TRUE(errors[1].empty()) << errors[1].front();
  ASSERT_EQ(got[0].size(), static_cast<std::size_t>(kRows));
  ASSERT_EQ(got[1].size(), static_cast<std::size_t>(kRows));
  for (int i = 0; i < kRows; ++i) {
    ASSERT_EQ(got[0][i].size(), 2u);
    ASSERT_EQ(got[1][i].size(), 2u);
    EXPECT_EQ(got[0][i][0].id, got[1][i][0].id) << "both answer with the one reply";
  }
  EXPECT_EQ(a->counts().outbox_pending, 2 * kRows);
  EXPECT_EQ(pg_query(conninfo, "SELECT count(*) FROM transcript WHERE role = 'assistant'"),
            std::to_string(kRows));
}

TEST(PostgresStore, AMessageDeliveredTwiceAtOnceIsTakenOnce) {
  FRESH_SCHEMA_OR_SKIP(conninfo);
  auto a = PostgresStore::open({conninfo, ""});
  auto b = PostgresStore::open({conninfo, ""});
  constexpr int kMessages = 30;
  std::atomic<int> fresh{0};
  std::latch start(2);
  auto deliver = [&](Store& s) {
    start.arrive_and_wait();
    for (int i = 0; i < kMessages; ++i) {
      if (!s.insert_inbound(message("m" + std::to_string(i)), 1000).duplicate) ++fresh;
    }
  };
  std::thread ta([&] { deliver(*a); });
  std::thread tb([&] { deliver(*b); });
  ta.join();
  tb.join();
  EXPECT_EQ(fresh.load(), kMessages);
  EXPECT_EQ(a->counts().inbox_total, kMessages);
  EXPECT_EQ(a->transcript("local:alice", 100).size(), static_cast<std::size_t>(kMessages));
}

// PostgreSQL's text holds neither NUL nor invalid UTF-8, which SQLite stores: refusing them
// would make a channel ask for the message again forever, so they are stored as U+FFFD.
TEST(PostgresStore, TextPostgresCannotHoldIsStoredWithReplacementCharacters) {
  FRESH_SCHEMA_OR_SKIP(conninfo);
  auto store = PostgresStore::open({conninfo, ""});
  const std::string nul("a\0b", 3);
  const std::string latin1 = "caf\xe9";
  const std::string surrogate = "\xed\xa0\x80!";
  const std::string fine = "h\xc3\xa9llo \xf0\x9f\x91\x8b";  // héllo 👋
  const std::string cut = "\xf0\x9f\x91";                    // a sequence cut short
  const auto in = store->insert_inbound(message("m1", nul + latin1 + surrogate), 1000);
  EXPECT_FALSE(in.duplicate);
  store->stage_reply(in.record.id, {fine, cut}, 2000);
  const auto t = store->transcript("local:alice", 10);
  ASSERT_EQ(t.size(), 2u);
  const std::string fffd = "\xef\xbf\xbd";
  EXPECT_EQ(t[0].text, "a" + fffd + "b" + "caf" + fffd + fffd + fffd + fffd + "!");
  EXPECT_EQ(t[1].text, fine + fffd + fffd + fffd);
  EXPECT_EQ(store->pending_outbox().at(0).text, fine) << "valid UTF-8 is kept as it is";
  // The same key, the same replacement: the dedupe still holds.
  EXPECT_FALSE(store->insert_inbound(message(std::string("k\xff"), "x"), 3000).duplicate);
  EXPECT_TRUE(store->insert_inbound(message(std::string("k\xff"), "x"), 3000).duplicate);
}

TEST(PostgresStore, ADatabaseThatIsNotUtf8IsRefused) {
  FRESH_SCHEMA_OR_SKIP(admin);
  const std::string db =
      "latin1_" + std::to_string(::getpid()) + "_" +
      std::to_string(std::chrono::steady_clock::now().time_since_epoch().count());
  pg_query(admin, "CREATE DATABASE " + db +
                      " ENCODING 'LATIN1' TEMPLATE template0 LC_COLLATE 'C' "
                      "LC_CTYPE 'C'");
  const auto error = open_error({admin + " dbname=" + db, ""});
  pg_query(admin, "DROP DATABASE " + db);
  EXPECT_TRUE(contains(error, "encoding is LATIN1")) << error;
  EXPECT_TRUE(contains(error, "needs UTF8")) << error;
}

TEST(PostgresStore, ALostConnectionFailsOneCallAndTheNextOneReconnects) {
  FRESH_SCHEMA_OR_SKIP(admin);
  std::string why;
  const auto role = pg_password_role(&why);  // a user of its own, to find its connection
  ASSERT_TRUE(role) << why;
  auto store = PostgresStore::open({role->conninfo, role->password});
  store->insert_inbound(message("m1"), 1000);
  const std::string user =
      pg_query(role->conninfo + " password=" + role->password, "SELECT current_user");
  const std::string of_user = "FROM pg_stat_activity WHERE usename = '" + user + "'";
  ASSERT_EQ(pg_query(admin, "SELECT count(*) " + of_user), "1");
  pg_query(admin, "SELECT pg_terminate_backend(pid) " + of_user);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (pg_query(admin, "SELECT count(*) " + of_user) != "0") {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the backend did not exit";
    std::this_thread::yield();
  }

  EXPECT_THROW(store->counts(), StoreError) << "the server closed the connection";
  EXPECT_EQ(store->counts().inbox_total, 1) << "reconnected";
  EXPECT_TRUE(store->insert_inbound(message("m1"), 2000).duplicate);
  EXPECT_FALSE(store->insert_inbound(message("m2"), 2000).duplicate);
}

TEST(PostgresStore, ABatchIsOneTransactionAndAFailureInItRollsItAllBack) {
  FRESH_SCHEMA_OR_SKIP(conninfo);
  auto store = PostgresStore::open({conninfo, ""});
  store->begin_batch();
  store->insert_inbound(message("m1"), 1000);
  EXPECT_EQ(pg_query(conninfo, "SELECT count(*) FROM inbox"), "0") << "not committed yet";
  // In pipeline mode the update's answer is read later: it fails the batch at the latest at
  // the commit, and nothing more is written in it meanwhile.
  store->mark_sent(12345, 1000);
  EXPECT_THROW(store->insert_inbound(message("m3"), 1000), StoreError) << "the next one waits";
  EXPECT_THROW(store->insert_inbound(message("m4"), 1000), StoreError) << "not on its own either";
  EXPECT_THROW(store->commit_batch(), StoreError);
  store->rollback_batch();
  EXPECT_EQ(pg_query(conninfo, "SELECT count(*) FROM inbox"), "0");
  store->begin_batch();
  store->insert_inbound(message("m1"), 1000);
  store->commit_batch();
  EXPECT_EQ(pg_query(conninfo, "SELECT count(*) FROM inbox"), "1");
}

// A batch runs in pipeline mode: statements whose answer nobody waits for (the fence, a
// state update) are checked later, but always before the commit is sent, and a failure there
// is not lost to an operation that catches errors (the turn's history read does).
TEST(PostgresStore, APipelinedCheckThatFailsCommitsNothingWhoeverCatchesIt) {
  FRESH_SCHEMA_OR_SKIP(conninfo);
  auto store = PostgresStore::open({conninfo, ""});
  store->begin_batch();
  store->fence("k", "v", "replica:nobody", 1, 0, "fenced: nobody");  // no such lease: refused
  try {
    store->counts();  // the first answer waited for: the refusal comes with it
  } catch (const StoreError& e) {
    EXPECT_NE(std::string(e.what()).find("fenced: nobody"), std::string::npos) << e.what();
  }
  try {
    store->insert_inbound(message("m1"), 1000);
  } catch (const StoreError&) {
  }
  EXPECT_THROW(store->commit_batch(), StoreError);
  store->rollback_batch();
  EXPECT_EQ(pg_query(conninfo, "SELECT count(*) FROM inbox"), "0");
  EXPECT_EQ(pg_query(conninfo, "SELECT count(*) FROM kv WHERE key = 'k'"), "0");
  // A check whose answer is still unread at the commit is read before the commit goes.
  store->begin_batch();
  store->insert_inbound(message("m2"), 1000);
  store->mark_sent(12345, 1000);  // no such row: the server does it (0 rows), the check fails
  EXPECT_THROW(store->commit_batch(), StoreError);
  store->rollback_batch();
  EXPECT_EQ(pg_query(conninfo, "SELECT count(*) FROM inbox"), "0");
  // More statements than are ever left unanswered at once, in one batch: all committed.
  store->begin_batch();
  for (int i = 0; i < 150; ++i) {
    const auto r = store->insert_inbound(message("n" + std::to_string(i)), 1000);
    store->set_inbound_state(r.record.id, InboxState::running);
  }
  store->commit_batch();
  EXPECT_EQ(pg_query(conninfo, "SELECT count(*) FROM inbox WHERE state = 'running'"), "150");
  EXPECT_EQ(pg_query(conninfo, "SELECT count(*) FROM transcript"), "150");
}

TEST(PostgresStore, AReplicaFrozenInsideABatchDoesNotKeepTheLeaseFromTheOthers) {
  FRESH_SCHEMA_OR_SKIP(conninfo);
  // As the cluster opens its stores: the server ends a connection idle inside a transaction.
  auto frozen = PostgresStore::open({conninfo, "", 300});
  auto other = PostgresStore::open({conninfo, ""});
  const std::int64_t now = 1000;
  // A lease shorter than the server's timeout: expired by the time the lock goes.
  auto lease = frozen->claim_lease("cluster:active", "a", 100, now);
  ASSERT_TRUE(lease.held);
  // A batch begins with its fenced write (the lease row locked FOR SHARE), then the process
  // stops dead: no commit, no rollback.
  frozen->begin_batch();
  ASSERT_TRUE(frozen->set_value_fenced("cluster.fence.a", "1", "cluster:active", lease.epoch, now));
  // Another replica's claim waits on that lock until the server ends the frozen transaction
  // (its locks with it): no sleep here, the claim returns then (judging expiry as of its own
  // start, when the lease was still live). Without the timeout it would wait for ever (ctest's
  // timeout fails the test). The next claim, after the 300 ms the first waited, takes it.
  other->claim_lease("cluster:active", "b", 500, now);
  const Lease taken = other->claim_lease("cluster:active", "b", 500, now);
  ASSERT_TRUE(taken.held) << "the frozen batch keeps the lease row locked";
  EXPECT_EQ(taken.epoch, lease.epoch + 1);
  // Woken, the frozen replica's batch cannot commit.
  EXPECT_THROW(frozen->commit_batch(), StoreError);
}

}  // namespace
}  // namespace drawbridge::store
