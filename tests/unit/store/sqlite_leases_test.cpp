// The SQLite driver's leases in its own clock (`now_ms`): the rules of store.h that the
// replicas rely on, checked on the embedded driver (lease_contract_test runs both drivers).

#include <gtest/gtest.h>

#include "store/sqlite_store.h"

namespace drawbridge::store {
namespace {

NewInbound message(const std::string& external_id, const std::string& session_key) {
  NewInbound m;
  m.channel = "local";
  m.external_id = external_id;
  m.session_key = session_key;
  m.chat_id = "chat";
  m.sender = "alice";
  m.text = "hi";
  m.run_id = "run-" + external_id;
  return m;
}

TEST(SqliteLeases, AFreeLeaseIsClaimedAtEpochOneAndRenewedByItsHolder) {
  auto s = SqliteStore::open(":memory:");
  Lease a = s->claim_lease("channel:telegram:1", "r1", 1000, 5000);
  EXPECT_TRUE(a.held);
  EXPECT_EQ(a.epoch, 1);
  EXPECT_EQ(a.expires_at_ms, 6000);
  Lease again = s->claim_lease("channel:telegram:1", "r1", 1000, 5500);
  EXPECT_TRUE(again.held);
  EXPECT_EQ(again.epoch, 1);
  EXPECT_EQ(again.expires_at_ms, 6500);
}

TEST(SqliteLeases, ALiveLeaseOfAnotherHolderIsLeftAloneUntilItExpires) {
  auto s = SqliteStore::open(":memory:");
  s->claim_lease("channel:irc:bot", "r1", 1000, 0);
  Lease refused = s->claim_lease("channel:irc:bot", "r2", 1000, 999);
  EXPECT_FALSE(refused.held);
  EXPECT_EQ(refused.holder, "r1");
  EXPECT_EQ(refused.epoch, 1);
  Lease taken = s->claim_lease("channel:irc:bot", "r2", 1000, 1000);
  EXPECT_TRUE(taken.held);
  EXPECT_EQ(taken.epoch, 2);
  // The old holder's heartbeat no longer finds it.
  EXPECT_TRUE(s->renew_leases("r1", 1000, 1001).empty());
  auto r2 = s->renew_leases("r2", 1000, 1001);
  ASSERT_EQ(r2.size(), 1u);
  EXPECT_EQ(r2[0].epoch, 2);
  EXPECT_EQ(r2[0].expires_at_ms, 2001);
}

TEST(SqliteLeases, TheSameHolderAfterItsExpiryTakesANewEpoch) {
  auto s = SqliteStore::open(":memory:");
  s->claim_lease("x", "r1", 100, 0);
  EXPECT_EQ(s->claim_lease("x", "r1", 100, 100).epoch, 2);
}

TEST(SqliteLeases, AReleasedLeaseIsFreeAtOnceAndTheOldHeartbeatCannotReviveIt) {
  auto s = SqliteStore::open(":memory:");
  Lease a = s->claim_lease("x", "r1", 10'000, 0);
  EXPECT_FALSE(s->release_lease("x", "r1", a.epoch + 1, 10));  // not its epoch
  EXPECT_FALSE(s->release_lease("x", "r2", a.epoch, 10));      // not its holder
  EXPECT_TRUE(s->release_lease("x", "r1", a.epoch, 10));
  EXPECT_TRUE(s->renew_leases("r1", 10'000, 11).empty());
  Lease b = s->claim_lease("x", "r2", 10'000, 11);
  EXPECT_TRUE(b.held);
  EXPECT_EQ(b.epoch, 2);
}

TEST(SqliteLeases, AFencedWriteNeedsTheCurrentEpochOfALiveLease) {
  auto s = SqliteStore::open(":memory:");
  Lease a = s->claim_lease("channel:telegram:1", "r1", 1000, 0);
  EXPECT_TRUE(s->set_value_fenced("cursor.telegram.1", "10", a.name, a.epoch, 500));
  EXPECT_EQ(s->get_value("cursor.telegram.1"), "10");
  // Expired: the paused holder's write is refused, nothing written.
  EXPECT_FALSE(s->set_value_fenced("cursor.telegram.1", "11", a.name, a.epoch, 1000));
  Lease b = s->claim_lease("channel:telegram:1", "r2", 1000, 1000);
  EXPECT_FALSE(s->set_value_fenced("cursor.telegram.1", "12", a.name, a.epoch, 1001));
  EXPECT_TRUE(s->set_value_fenced("cursor.telegram.1", "13", b.name, b.epoch, 1001));
  EXPECT_EQ(s->get_value("cursor.telegram.1"), "13");
  EXPECT_FALSE(s->set_value_fenced("k", "v", "no-such-lease", 1, 0));
  EXPECT_EQ(s->get_value("k"), std::nullopt);
}

TEST(SqliteLeases, ARefusedFencedWriteInsideABatchSpoilsNothing) {
  auto s = SqliteStore::open(":memory:");
  s->begin_batch();
  s->set_value("a", "1");
  EXPECT_FALSE(s->set_value_fenced("b", "2", "none", 1, 0));
  s->commit_batch();
  EXPECT_EQ(s->get_value("a"), "1");
}

TEST(SqliteLeases, SessionsWithWorkAreClaimedOnlyWhenTheirLeaseIsFree) {
  auto s = SqliteStore::open(":memory:");
  s->insert_inbound(message("1", "s-a"), 0);
  s->insert_inbound(message("2", "s-b"), 0);
  auto done = s->insert_inbound(message("3", "s-c"), 0);
  s->stage_reply(done.record.id, {"ok"}, 0);  // s-c has no unfinished row
  s->claim_lease("session:s-a", "r1", 1000, 0);
  auto taken = s->claim_sessions_with_work("r2", 1000, 10, 10);
  ASSERT_EQ(taken.size(), 1u);
  EXPECT_EQ(taken[0].name, "session:s-b");
  EXPECT_EQ(taken[0].holder, "r2");
  EXPECT_TRUE(s->claim_sessions_with_work("r2", 1000, 10, 20).empty());
  // r1 stops renewing: its session is taken over after the expiry.
  auto later = s->claim_sessions_with_work("r2", 1000, 10, 1000);
  ASSERT_EQ(later.size(), 1u);
  EXPECT_EQ(later[0].name, "session:s-a");
  EXPECT_EQ(later[0].epoch, 2);
}

TEST(SqliteLeases, ListingFiltersByPrefixInNameOrder) {
  auto s = SqliteStore::open(":memory:");
  s->claim_lease("session:b", "r1", 10, 0);
  s->claim_lease("channel:x", "r1", 10, 0);
  s->claim_lease("session:a", "r2", 10, 0);
  auto sessions = s->list_leases("session:");
  ASSERT_EQ(sessions.size(), 2u);
  EXPECT_EQ(sessions[0].name, "session:a");
  EXPECT_EQ(sessions[1].holder, "r1");
  EXPECT_EQ(s->list_leases("").size(), 3u);
  EXPECT_THROW(s->claim_lease("", "r1", 10, 0), StoreError);
  EXPECT_THROW(s->claim_lease("x", "r1", 0, 0), StoreError);
}

}  // namespace
}  // namespace drawbridge::store
