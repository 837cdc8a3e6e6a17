// The lease and fencing contract of store.h, run against every driver (store_drivers.h).
// Time: SQLite compares with the caller's now_ms, so these tests move it by hand; postgres
// compares with its server's clock and ignores now_ms, so a lease that must expire gets a 1 ms
// ttl and the test polls list_leases (with a deadline) until the server says it expired.

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <latch>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "unit/store/store_drivers.h"

namespace drawbridge::store {
namespace {

using namespace test_support;

constexpr std::int64_t kLong = 60'000;  // a ttl no test outlives

class LeaseContract : public StoreTest {
 protected:
  void SetUp() override {
    StoreTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    // The SQLite driver's leases are written on main; on a branch that has only their
    // placeholders (sqlite_store_leases.cpp throws "not implemented") there is nothing to test.
    try {
      store->list_leases("");
    } catch (const StoreError& e) {
      if (contains(e.what(), "not implemented")) GTEST_SKIP() << e.what();
      throw;
    }
  }

  // The store's clock now: the caller's (SQLite, `t`) or the server's (postgres).
  std::int64_t clock() { return postgres() ? db->store_now_ms() : t; }

  // A ttl that expires soon: SQLite's is passed by moving `t`, postgres' by waiting.
  std::int64_t short_ttl() const { return postgres() ? 1 : 1000; }

  // Returns once the lease `name` is expired on the store's clock.
  void pass_expiry(const std::string& name) {
    const auto leases = store->list_leases(name);
    ASSERT_EQ(leases.size(), 1u) << name;
    if (!postgres()) {
      t = std::max(t, leases[0].expires_at_ms + 1);
      return;
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (store->list_leases(name).at(0).held) {
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << name << " never expired";
      std::this_thread::yield();
    }
  }

  std::int64_t t = 1'000'000'000;
};

TEST_P(LeaseContract, AFreeLeaseIsClaimedAtEpochOne) {
  const auto before = clock();
  const auto l = store->claim_lease("channel:telegram:bot", "r1", kLong, t);
  const auto after = clock();
  EXPECT_TRUE(l.held);
  EXPECT_EQ(l.name, "channel:telegram:bot");
  EXPECT_EQ(l.holder, "r1");
  EXPECT_EQ(l.epoch, 1);
  EXPECT_GE(l.expires_at_ms, before + kLong);
  EXPECT_LE(l.expires_at_ms, after + kLong);
  const auto listed = store->list_leases("channel:");
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].holder, "r1");
  EXPECT_EQ(listed[0].epoch, 1);
  EXPECT_EQ(listed[0].expires_at_ms, l.expires_at_ms);
}

TEST_P(LeaseContract, TheSameHolderRenewsWithTheSameEpoch) {
  const auto first = store->claim_lease("session:s1", "r1", kLong, t);
  t += 5000;
  const auto again = store->claim_lease("session:s1", "r1", kLong, t);
  EXPECT_TRUE(again.held);
  EXPECT_EQ(again.epoch, first.epoch);
  EXPECT_GE(again.expires_at_ms, first.expires_at_ms);
}

TEST_P(LeaseContract, AnotherHolderWhileItIsLiveIsRefusedAndToldWhoHoldsIt) {
  const auto first = store->claim_lease("session:s1", "r1", kLong, t);
  auto other = db->open();
  const auto refused = other->claim_lease("session:s1", "r2", kLong, t + 1);
  EXPECT_FALSE(refused.held);
  EXPECT_EQ(refused.name, "session:s1");
  EXPECT_EQ(refused.holder, "r1");
  EXPECT_EQ(refused.epoch, 1);
  EXPECT_EQ(refused.expires_at_ms, first.expires_at_ms);
  EXPECT_EQ(store->list_leases("session:").at(0).holder, "r1") << "nothing was written";
}

TEST_P(LeaseContract, AfterExpiryAnotherHolderTakesItWithTheNextEpoch) {
  store->claim_lease("session:s1", "r1", short_ttl(), t);
  pass_expiry("session:s1");
  const auto taken = store->claim_lease("session:s1", "r2", kLong, t);
  EXPECT_TRUE(taken.held);
  EXPECT_EQ(taken.holder, "r2");
  EXPECT_EQ(taken.epoch, 2);
  const auto back = store->claim_lease("session:s1", "r1", kLong, t);
  EXPECT_FALSE(back.held) << "r2 holds it now";
  EXPECT_EQ(back.holder, "r2");
}

TEST_P(LeaseContract, RenewExtendsOnlyTheLeasesTheHolderStillHolds) {
  store->claim_lease("a", "r1", kLong, t);
  store->claim_lease("b", "r1", short_ttl(), t);  // expires, nobody takes it: still r1's
  store->claim_lease("c", "r1", short_ttl(), t);  // expires and r2 takes it
  store->claim_lease("d", "r2", kLong, t);
  pass_expiry("b");
  pass_expiry("c");
  ASSERT_TRUE(store->claim_lease("c", "r2", kLong, t).held);

  const auto before = clock();
  const auto renewed = store->renew_leases("r1", kLong, t);
  ASSERT_EQ(renewed.size(), 2u);
  EXPECT_EQ(renewed[0].name, "a");
  EXPECT_EQ(renewed[1].name, "b");
  for (const auto& l : renewed) {
    EXPECT_EQ(l.holder, "r1");
    EXPECT_EQ(l.epoch, 1) << l.name << ": renewing never changes the epoch";
    EXPECT_GE(l.expires_at_ms, before + kLong) << l.name;
  }
  const auto b = store->claim_lease("b", "r2", kLong, t);
  EXPECT_FALSE(b.held) << "renewed, so live again";
  const auto theirs = store->renew_leases("r2", kLong, t);
  ASSERT_EQ(theirs.size(), 2u);
  EXPECT_EQ(theirs[0].name, "c");
  EXPECT_EQ(theirs[0].epoch, 2);
  EXPECT_EQ(theirs[1].name, "d");
  EXPECT_TRUE(store->renew_leases("nobody", kLong, t).empty());
}

TEST_P(LeaseContract, AReleasedLeaseIsClaimedAtOnceWithTheNextEpoch) {
  const auto l = store->claim_lease("channel:irc:main", "r1", kLong, t);
  EXPECT_FALSE(store->release_lease(l.name, "r2", l.epoch, t)) << "not r2's";
  EXPECT_FALSE(store->release_lease(l.name, "r1", l.epoch + 1, t)) << "not that epoch";
  EXPECT_TRUE(store->release_lease(l.name, "r1", l.epoch, t));
  EXPECT_FALSE(store->release_lease(l.name, "r1", l.epoch, t)) << "given up already";

  auto other = db->open();
  const auto taken = other->claim_lease(l.name, "r2", kLong, t);
  EXPECT_TRUE(taken.held);
  EXPECT_EQ(taken.epoch, 2);
  EXPECT_FALSE(store->release_lease(l.name, "r1", 1, t)) << "r2's now";
}

// A hand-over races with the old holder's heartbeat: the heartbeat must not take back what was
// given up, or the new holder waits a whole ttl.
TEST_P(LeaseContract, RenewDoesNotReviveAReleasedLease) {
  const auto l = store->claim_lease("session:s1", "r1", kLong, t);
  ASSERT_TRUE(store->release_lease(l.name, "r1", l.epoch, t));
  EXPECT_TRUE(store->renew_leases("r1", kLong, t).empty());
  const auto mine_again = store->claim_lease(l.name, "r1", kLong, t);
  EXPECT_TRUE(mine_again.held);
  EXPECT_EQ(mine_again.epoch, 2) << "a new claim after a release";
}

TEST_P(LeaseContract, AFencedWriteNeedsTheCurrentEpochOfALiveLease) {
  const auto l = store->claim_lease("channel:telegram:bot", "r1", kLong, t);
  EXPECT_TRUE(store->set_value_fenced("telegram.offset", "101", l.name, l.epoch, t));
  EXPECT_EQ(store->get_value("telegram.offset"), "101");
  EXPECT_FALSE(store->set_value_fenced("telegram.offset", "102", l.name, l.epoch + 1, t));
  EXPECT_FALSE(store->set_value_fenced("telegram.offset", "102", l.name, l.epoch - 1, t));
  EXPECT_FALSE(store->set_value_fenced("telegram.offset", "102", "no such lease", l.epoch, t));
  EXPECT_EQ(store->get_value("telegram.offset"), "101");

  // Paused past its lease: refused, even before anyone else took it.
  ASSERT_TRUE(store->claim_lease(l.name, "r1", short_ttl(), t).held);  // same epoch, ends soon
  pass_expiry(l.name);
  EXPECT_FALSE(store->set_value_fenced("telegram.offset", "103", l.name, l.epoch, t));
  const auto taken = store->claim_lease(l.name, "r2", kLong, t);
  ASSERT_TRUE(taken.held);
  EXPECT_EQ(taken.epoch, l.epoch + 1);
  EXPECT_FALSE(store->set_value_fenced("telegram.offset", "104", l.name, l.epoch, t));
  EXPECT_TRUE(store->set_value_fenced("telegram.offset", "105", l.name, taken.epoch, t));
  EXPECT_EQ(store->get_value("telegram.offset"), "105");
}

TEST_P(LeaseContract, AFencedRefusalInsideABatchSpoilsNothing) {
  const auto l = store->claim_lease("channel:telegram:bot", "r1", kLong, t);
  store->begin_batch();
  store->insert_inbound(message("m1"), t);
  EXPECT_FALSE(store->set_value_fenced("cursor", "1", l.name, l.epoch + 7, t));
  EXPECT_TRUE(store->set_value_fenced("cursor", "2", l.name, l.epoch, t));
  EXPECT_NO_THROW(store->commit_batch());
  EXPECT_EQ(store->counts().inbox_total, 1);
  EXPECT_EQ(store->get_value("cursor"), "2");
}

TEST_P(LeaseContract, SessionsWithWorkAreClaimedWhenFreeOldestRowFirst) {
  const auto running = store->insert_inbound(message("a", "x", "s5"), t).record.id;
  store->set_inbound_state(running, InboxState::running);
  store->insert_inbound(message("b", "x", "s1"), t);
  store->insert_inbound(message("c", "x", "s4"), t);  // its lease expired: taken over
  store->insert_inbound(message("d", "x", "s3"), t);  // held live by r2: left alone
  const auto done = store->insert_inbound(message("e", "x", "s2"), t).record.id;
  store->stage_reply(done, {"answered"}, t);  // no work left
  store->claim_lease("session:s4", "r2", short_ttl(), t);
  store->claim_lease("session:s3", "r2", kLong, t);
  pass_expiry("session:s4");

  const auto before = clock();
  const auto taken = store->claim_sessions_with_work("r1", kLong, 10, t);
  ASSERT_EQ(taken.size(), 3u);
  EXPECT_EQ(taken[0].name, "session:s5");
  EXPECT_EQ(taken[1].name, "session:s1");
  EXPECT_EQ(taken[2].name, "session:s4");
  EXPECT_EQ(taken[0].epoch, 1);
  EXPECT_EQ(taken[2].epoch, 2) << "taken over from r2";
  for (const auto& l : taken) {
    EXPECT_TRUE(l.held);
    EXPECT_EQ(l.holder, "r1");
    EXPECT_GE(l.expires_at_ms, before + kLong);
  }
  EXPECT_FALSE(store->claim_lease("session:s3", "r1", kLong, t).held) << "still r2's";
  EXPECT_TRUE(store->claim_sessions_with_work("r1", kLong, 10, t).empty()) << "held already";
  EXPECT_TRUE(store->claim_sessions_with_work("r2", kLong, 10, t).empty());
}

// A replica's sessions are its own while it lives: a presence that ran out is not renewed
// (its sessions may be another's by now), and a session is taken from a holder whose
// presence is expired or missing, never from a live one.
TEST_P(LeaseContract, AnExpiredPresenceIsNotRenewed) {
  store->claim_lease("replica:r1", "r1", short_ttl(), t);
  store->claim_lease("channel:x", "r1", short_ttl(), t);
  pass_expiry("replica:r1");
  pass_expiry("channel:x");
  const auto renewed = store->renew_leases("r1", kLong, t);
  ASSERT_EQ(renewed.size(), 1u);
  EXPECT_EQ(renewed[0].name, "channel:x") << "other leases come back while nobody took them";
  const auto again = store->claim_lease("replica:r1", "r1", kLong, t);
  EXPECT_TRUE(again.held);
  EXPECT_EQ(again.epoch, 2) << "claimed afresh";
}

TEST_P(LeaseContract, ASessionIsTakenFromItsHolderOnlyOnceThatReplicaIsGone) {
  store->insert_inbound(message("a", "x", "s1"), t);
  store->insert_inbound(message("b", "x", "s2"), t);
  store->claim_lease("replica:r2", "r2", kLong, t);  // r2 lives
  store->claim_lease("session:s1", "r2", short_ttl(), t);
  pass_expiry("session:s1");
  const auto free = store->claim_sessions_with_work("r1", kLong, 10, t);
  ASSERT_EQ(free.size(), 1u);
  EXPECT_EQ(free[0].name, "session:s2");
  EXPECT_EQ(free[0].taken_from, "");
  EXPECT_EQ(store->list_leases("session:s1").at(0).holder, "r2") << "r2 still lives";

  ASSERT_TRUE(store->claim_lease("replica:r2", "r2", short_ttl(), t).held);  // ends soon
  pass_expiry("replica:r2");
  const auto taken = store->claim_sessions_with_work("r1", kLong, 10, t);
  ASSERT_EQ(taken.size(), 1u);
  EXPECT_EQ(taken[0].name, "session:s1");
  EXPECT_EQ(taken[0].holder, "r1");
  EXPECT_EQ(taken[0].epoch, 2);
  EXPECT_EQ(taken[0].taken_from, "r2");
}

TEST_P(LeaseContract, AClaimOfNamedSessionsTakesThoseAlone) {
  for (const char* s : {"s1", "s2", "s3"}) store->insert_inbound(message(s, "x", s), t);
  const auto taken = store->claim_sessions_with_work("r1", kLong, 10, t, {"s3", "s1", "gone"});
  ASSERT_EQ(taken.size(), 2u);
  EXPECT_EQ(taken[0].name, "session:s1");
  EXPECT_EQ(taken[1].name, "session:s3");
  const auto rest = store->claim_sessions_with_work("r2", kLong, 10, t);
  ASSERT_EQ(rest.size(), 1u);
  EXPECT_EQ(rest[0].name, "session:s2");
}

TEST_P(LeaseContract, AClaimUpToARowLeavesNewerSessionsAlone) {
  const auto old_row = store->insert_inbound(message("a", "x", "old"), t).record.id;
  store->insert_inbound(message("b", "x", "new"), t);
  store->insert_inbound(message("c", "y", "old"), t);  // newer row of an older session
  const auto taken = store->claim_sessions_with_work("r1", kLong, 10, t, {}, old_row);
  ASSERT_EQ(taken.size(), 1u);
  EXPECT_EQ(taken[0].name, "session:old");
  const auto rest = store->claim_sessions_with_work("r1", kLong, 10, t, {}, 0);
  ASSERT_EQ(rest.size(), 1u);
  EXPECT_EQ(rest[0].name, "session:new");
}

// A session with a row of a channel whose connection another replica keeps (IRC) is left to
// that replica, whatever its other rows.
TEST_P(LeaseContract, AClaimLeavesSessionsWithRowsOfChannelsKeptElsewhere) {
  store->insert_inbound(message("a", "x", "plain"), t);
  auto irc = message("b", "x", "mixed");
  irc.channel = "irc";
  store->insert_inbound(message("c", "x", "mixed"), t);
  store->insert_inbound(irc, t);
  const auto taken = store->claim_sessions_with_work("r1", kLong, 10, t, {}, 0, {"irc"});
  ASSERT_EQ(taken.size(), 1u);
  EXPECT_EQ(taken[0].name, "session:plain");
  const auto named = store->claim_sessions_with_work("r1", kLong, 10, t, {"mixed"}, 0, {"irc"});
  EXPECT_TRUE(named.empty());
  const auto by_holder = store->claim_sessions_with_work("r2", kLong, 10, t, {}, 0, {"telegram"});
  ASSERT_EQ(by_holder.size(), 1u);
  EXPECT_EQ(by_holder[0].name, "session:mixed");
}

TEST_P(LeaseContract, SessionsWithWorkAreClaimedUpToTheLimit) {
  for (int i = 0; i < 3; ++i) {
    store->insert_inbound(message("m" + std::to_string(i), "x", "s" + std::to_string(i)), t);
  }
  EXPECT_TRUE(store->claim_sessions_with_work("r1", kLong, 0, t).empty());
  const auto first = store->claim_sessions_with_work("r1", kLong, 2, t);
  ASSERT_EQ(first.size(), 2u);
  EXPECT_EQ(first[0].name, "session:s0");
  EXPECT_EQ(first[1].name, "session:s1");
  const auto rest = store->claim_sessions_with_work("r2", kLong, 2, t);
  ASSERT_EQ(rest.size(), 1u);
  EXPECT_EQ(rest[0].name, "session:s2");
}

TEST_P(LeaseContract, TwoReplicasClaimingAtOnceNeverTakeTheSameSession) {
  constexpr int kSessions = 40;
  for (int i = 0; i < kSessions; ++i) {
    store->insert_inbound(message("m" + std::to_string(i), "x", "s" + std::to_string(i)), t);
  }
  auto a = db->open();
  auto b = db->open();
  std::vector<std::string> taken[2];
  std::latch start(2);
  auto replica = [&](Store& s, const std::string& holder, std::vector<std::string>& out) {
    start.arrive_and_wait();
    for (;;) {
      const auto leases = s.claim_sessions_with_work(holder, kLong, 3, t);
      if (leases.empty()) return;
      for (const auto& l : leases) out.push_back(l.name);
    }
  };
  std::thread ta([&] { replica(*a, "ra", taken[0]); });
  std::thread tb([&] { replica(*b, "rb", taken[1]); });
  ta.join();
  tb.join();
  std::set<std::string> all;
  for (const auto& side : taken) {
    for (const auto& name : side) {
      EXPECT_TRUE(all.insert(name).second) << name << " was claimed twice";
    }
  }
  EXPECT_EQ(all.size(), static_cast<std::size_t>(kSessions));
  for (const auto& l : store->list_leases("session:")) {
    const bool by_a = std::find(taken[0].begin(), taken[0].end(), l.name) != taken[0].end();
    EXPECT_EQ(l.holder, by_a ? "ra" : "rb") << l.name;
    EXPECT_EQ(l.epoch, 1) << l.name;
  }
}

INSTANTIATE_STORE_DRIVERS(LeaseContract);

}  // namespace
}  // namespace drawbridge::store
