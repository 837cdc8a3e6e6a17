// runtime::Cluster on the SQLite driver's leases (its clock is the injected one, so expiry is
// simulated time); the store calls run on the Cluster's own thread and report on the loop.

#include "runtime/cluster.h"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>

#include "core/manual_executor.h"
#include "store/sqlite_store.h"
#include "unit/store/temp_dir.h"

namespace drawbridge::runtime {
namespace {

constexpr const char* kIrc = "channel:irc:bot@irc.example:6667";

using std::chrono::milliseconds;

// Runs the loop until `done` holds (the store thread answers within microseconds; the
// deadline only bounds a broken test).
template <class Pred>
bool run_until(boost::asio::io_context& io, Pred done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!done() && std::chrono::steady_clock::now() < deadline) {
    io.restart();
    io.run_one_for(milliseconds(50));
  }
  return done();
}

struct Replica {
  Replica(boost::asio::io_context& io, core::ManualClock& clock, core::ManualExecutor& ex,
          const std::string& path, const std::string& id)
      : store(store::SqliteStore::open(path)),
        cluster(io, clock, ex, *store, id, milliseconds(3000)) {}
  std::unique_ptr<store::SqliteStore> store;
  Cluster cluster;
};

pipeline::AccountLeases::Grant claim(boost::asio::io_context& io, Cluster& c,
                                     const std::string& name) {
  std::optional<pipeline::AccountLeases::Grant> got;
  c.claim(name, [&](pipeline::AccountLeases::Grant g) { got = g; });
  EXPECT_TRUE(run_until(io, [&] { return got.has_value(); }));
  return got.value_or(pipeline::AccountLeases::Grant{});
}

class ClusterTest : public ::testing::Test {
 protected:
  store::test_support::TempDir dir;
  std::string path = (dir.path / "cluster.db").string();
  boost::asio::io_context io;
  core::ManualClock clock;
  core::ManualExecutor ex{clock};
};

TEST_F(ClusterTest, OneReplicaHoldsAnAccountAndTheOtherWaitsUntilItIsReleased) {
  Replica a(io, clock, ex, path, "a"), b(io, clock, ex, path, "b");
  auto ga = claim(io, a.cluster, "channel:telegram:1");
  EXPECT_TRUE(ga.held);
  EXPECT_EQ(ga.epoch, 1);
  EXPECT_EQ(a.cluster.remaining("channel:telegram:1"), milliseconds(2400));
  auto gb = claim(io, b.cluster, "channel:telegram:1");
  EXPECT_FALSE(gb.held);
  EXPECT_EQ(gb.holder, "a");
  EXPECT_EQ(b.cluster.remaining("channel:telegram:1"), milliseconds(0));
  a.cluster.release("channel:telegram:1");
  EXPECT_EQ(a.cluster.remaining("channel:telegram:1"), milliseconds(0));
  bool taken = false;
  ASSERT_TRUE(run_until(io, [&] {
    taken = taken || claim(io, b.cluster, "channel:telegram:1").held;
    return taken;
  }));
  EXPECT_EQ(b.store->list_leases("channel:")[0].epoch, 2);
}

TEST_F(ClusterTest, HeartbeatsKeepTheLeasesAndADeadReplicasPassAfterTheLeaseTime) {
  Replica b(io, clock, ex, path, "b");
  {
    Replica a(io, clock, ex, path, "a");
    a.cluster.start();
    ASSERT_TRUE(claim(io, a.cluster, "channel:irc:bot").held);
    // Ten heartbeats (a third of the lease each): still a's, and usable all along.
    for (int i = 0; i < 10; ++i) {
      ex.advance(milliseconds(1000));
      ASSERT_TRUE(run_until(io, [&] { return a.cluster.heartbeats() == std::uint64_t(i + 1); }));
      EXPECT_GT(a.cluster.remaining("channel:irc:bot"), milliseconds(0)) << i;
    }
    EXPECT_FALSE(claim(io, b.cluster, "channel:irc:bot").held);
    auto view = cluster_view(*b.store);
    ASSERT_EQ(view.replicas.size(), 1u);
    EXPECT_EQ(view.replicas[0].id, "a");
    ASSERT_EQ(view.accounts.size(), 1u);
    EXPECT_EQ(view.accounts[0].holder, "a");
  }  // a dies: no release, no heartbeat
  clock.advance(milliseconds(3000));
  auto g = claim(io, b.cluster, "channel:irc:bot");
  EXPECT_TRUE(g.held);
  EXPECT_EQ(g.epoch, 2);
}

TEST_F(ClusterTest, ALostLeaseIsReportedByTheNextHeartbeat) {
  Replica a(io, clock, ex, path, "a"), b(io, clock, ex, path, "b");
  bool lost = false;
  const auto sent = clock.now();
  auto l = a.store->claim_lease(kIrc, "a", 3000, clock.wall_ms());
  a.cluster.adopt(kIrc, l.epoch, sent, [&] { lost = true; });
  a.cluster.start();
  // a is paused past its lease (no heartbeat ran), b takes over.
  clock.advance(milliseconds(5000));
  EXPECT_TRUE(b.store->claim_lease(kIrc, "b", 3000, clock.wall_ms()).held);
  ex.advance(milliseconds(1000));  // a wakes: its heartbeat runs
  ASSERT_TRUE(run_until(io, [&] {
    ex.run_ready();
    return lost;
  }));
  release_on_exit(*b.store, "b", clock.wall_ms());
  EXPECT_TRUE(b.store->list_leases(kIrc)[0].holder.empty()) << "a plain stop releases accounts";
}

TEST_F(ClusterTest, TheViewNamesTheSessionsEachReplicaHolds) {
  Replica a(io, clock, ex, path, "a"), b(io, clock, ex, path, "b");
  a.cluster.start();
  b.cluster.start();
  ASSERT_TRUE(run_until(io, [&] { return cluster_view(*a.store).replicas.size() == 2; }));
  ASSERT_TRUE(a.store->claim_lease(kIrc, "a", 3000, clock.wall_ms()).held);
  int n = 0;
  for (const char* s : {"s1", "s1", "s2", "s3"}) {
    const std::string key = "k" + std::to_string(++n);
    b.store->insert_inbound({"local", key, s, s, "u", "text", "run-" + key}, clock.wall_ms());
  }
  // b claims two sessions with work, a the one left.
  std::optional<std::vector<pipeline::SessionLeases::Taken>> by_b, by_a;
  b.cluster.claim_sessions({"s1", "s2"}, [&](auto t) { by_b = std::move(t); });
  ASSERT_TRUE(run_until(io, [&] { return by_b.has_value(); }));
  ASSERT_EQ(by_b->size(), 2u);
  EXPECT_FALSE((*by_b)[0].from_dead);
  a.cluster.claim_sessions({}, [&](auto t) { by_a = std::move(t); });
  ASSERT_TRUE(run_until(io, [&] { return by_a.has_value(); }));
  ASSERT_EQ(by_a->size(), 1u);
  EXPECT_EQ((*by_a)[0].session, "s3");
  EXPECT_TRUE(a.cluster.holds("s3"));
  EXPECT_FALSE(a.cluster.holds("s1"));
  EXPECT_TRUE(b.cluster.holds("s1"));
  auto view = cluster_view(*b.store);
  ASSERT_EQ(view.replicas.size(), 2u);
  for (const auto& r : view.replicas) {
    EXPECT_EQ(r.sessions, r.id == "a" ? 1u : 2u) << r.id;
  }
  ASSERT_EQ(view.accounts.size(), 1u);
  EXPECT_EQ(view.accounts[0].holder, "a");
  auto j = cluster_json(b.cluster, *b.store);
  ASSERT_EQ(j["accounts"].size(), 1u) << j.dump();
  EXPECT_EQ(j["accounts"][0].value("name", ""), kIrc) << j.dump();
  EXPECT_EQ(j["accounts"][0].value("holder", ""), "a") << j.dump();
}

// A replica that died (no heartbeat past its lease) leaves its sessions to the others, who
// are told they take them from a dead holder (their takeover repairs and counts).
TEST_F(ClusterTest, TheSessionsOfADeadReplicaAreTakenAfterItsLease) {
  Replica b(io, clock, ex, path, "b");
  b.cluster.start();
  {
    Replica a(io, clock, ex, path, "a");
    a.cluster.start();
    a.store->insert_inbound({"local", "k1", "s1", "s1", "u", "text", "run-1"}, clock.wall_ms());
    std::optional<std::vector<pipeline::SessionLeases::Taken>> got;
    a.cluster.claim_sessions({"s1"}, [&](auto t) { got = std::move(t); });
    ASSERT_TRUE(run_until(io, [&] { return got.has_value(); }));
    ASSERT_EQ(got->size(), 1u);
    ASSERT_TRUE(run_until(io, [&] { return a.store->list_leases("replica:a").size() == 1; }));
  }  // a dies
  std::optional<std::vector<pipeline::SessionLeases::Taken>> early;
  b.cluster.claim_sessions({}, [&](auto t) { early = std::move(t); });
  ASSERT_TRUE(run_until(io, [&] { return early.has_value(); }));
  EXPECT_TRUE(early->empty()) << "a's lease still runs";
  clock.advance(milliseconds(3001));
  std::optional<std::vector<pipeline::SessionLeases::Taken>> late;
  b.cluster.claim_sessions({}, [&](auto t) { late = std::move(t); });
  ASSERT_TRUE(run_until(io, [&] { return late.has_value(); }));
  ASSERT_EQ(late->size(), 1u);
  EXPECT_EQ((*late)[0].session, "s1");
  EXPECT_TRUE((*late)[0].from_dead);
  EXPECT_TRUE(b.cluster.holds("s1"));
}

// The store says this replica holds a session it does not know of (a claim whose answer was
// lost): the next heartbeat finds it, and it runs here; one given back is not taken again.
TEST_F(ClusterTest, ASessionHeldInTheStoreButNotKnownIsFoundByTheHeartbeat) {
  Replica a(io, clock, ex, path, "a");
  std::vector<std::string> found;
  a.cluster.on_sessions_found([&](std::vector<std::string> f) {
    found.insert(found.end(), f.begin(), f.end());
  });
  a.cluster.start();
  ASSERT_TRUE(a.store->claim_lease("session:lost", "a", 3000, clock.wall_ms()).held);
  ASSERT_TRUE(a.store->claim_lease("session:given", "a", 3000, clock.wall_ms()).held);
  a.cluster.adopt_sessions(a.store->list_leases("session:given"), clock.now());
  a.cluster.release_sessions({"given"});
  ex.advance(milliseconds(1000));
  ASSERT_TRUE(run_until(io, [&] {
    ex.run_ready();
    return a.cluster.heartbeats() >= 1;
  }));
  EXPECT_EQ(found, std::vector<std::string>{"lost"});
  EXPECT_TRUE(a.cluster.holds("lost"));
  EXPECT_FALSE(a.cluster.holds("given"));
}

}  // namespace
}  // namespace drawbridge::runtime
