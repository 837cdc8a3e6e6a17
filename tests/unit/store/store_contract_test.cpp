// The Store contract, run against every driver (store_drivers.h): the inbox, the outbox, the
// transcript, counts and small values. Batches and the lifecycle: store_lifecycle_contract_test;
// the catalog: store_catalog_contract_test; leases: lease_contract_test. What only one driver
// has (files, pragmas, schema upgrades, connections): sqlite_store_test, postgres_store_test.

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "unit/store/store_drivers.h"

namespace drawbridge::store {
namespace {

using namespace test_support;

class StoreContract : public StoreTest {};

TEST_P(StoreContract, NewInboundIsPendingAndStartsTheSessionHistory) {
  const auto result = store->insert_inbound(message("m1", "hi there"), 1000);

  EXPECT_FALSE(result.duplicate);
  EXPECT_GT(result.record.id, 0);
  EXPECT_EQ(result.record.state, InboxState::pending);
  EXPECT_EQ(result.record.received_at_ms, 1000);
  EXPECT_EQ(result.record.run_id, "run-m1");

  const auto stored = store->inbound(result.record.id);
  ASSERT_TRUE(stored.has_value());
  EXPECT_EQ(stored->text, "hi there");
  EXPECT_EQ(stored->chat_id, "chat-local:alice");
  EXPECT_EQ(stored->sender, "alice");

  const auto history = store->transcript("local:alice", 10);
  ASSERT_EQ(history.size(), 1u);
  EXPECT_EQ(history[0].role, "user");
  EXPECT_EQ(history[0].text, "hi there");
  EXPECT_EQ(history[0].inbound_id, result.record.id);
  EXPECT_EQ(history[0].run_id, "run-m1");
  EXPECT_EQ(store->counts().sessions, 1);
}

TEST_P(StoreContract, DuplicateInboundIsNotWrittenTwice) {
  const auto first = store->insert_inbound(message("m1", "original"), 1000);
  auto again = message("m1", "redelivered");
  again.run_id = "run-other";
  const auto second = store->insert_inbound(again, 2000);

  EXPECT_TRUE(second.duplicate);
  EXPECT_EQ(second.record.id, first.record.id);
  EXPECT_EQ(second.record.text, "original");
  EXPECT_EQ(second.record.run_id, "run-m1");
  EXPECT_EQ(second.record.received_at_ms, 1000);
  EXPECT_EQ(store->counts().inbox_total, 1);
  EXPECT_EQ(store->transcript("local:alice", 10).size(), 1u);
}

TEST_P(StoreContract, DuplicateOfAClosedInboundIsStillADuplicate) {
  const auto first = store->insert_inbound(message("m1"), 1000);
  store->stage_reply(first.record.id, {"answer"}, 1100);

  const auto second = store->insert_inbound(message("m1"), 5000);
  EXPECT_TRUE(second.duplicate);
  EXPECT_EQ(second.record.state, InboxState::done);
  EXPECT_TRUE(store->unfinished_inbound().empty());
}

TEST_P(StoreContract, SameExternalIdOnAnotherChannelIsANewMessage) {
  store->insert_inbound(message("42"), 1000);
  auto other = message("42");
  other.channel = "telegram";
  EXPECT_FALSE(store->insert_inbound(other, 1000).duplicate);
  EXPECT_EQ(store->counts().inbox_total, 2);
}

TEST_P(StoreContract, InboundWithoutDedupeKeyIsRejected) {
  EXPECT_THROW(store->insert_inbound(message(""), 1000), StoreError);
  EXPECT_EQ(store->counts().inbox_total, 0);
}

TEST_P(StoreContract, StageReplyWritesEveryPartWithItsKeyAndClosesTheRow) {
  const auto in = store->insert_inbound(message("m1"), 1000).record;

  const auto rows = store->stage_reply(in.id, {"one ", "two ", "three"}, 2000);

  ASSERT_EQ(rows.size(), 3u);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    EXPECT_GT(rows[i].id, 0);
    EXPECT_EQ(rows[i].idem_key, std::to_string(in.id) + ":" + std::to_string(i));
    EXPECT_EQ(rows[i].part, static_cast<int>(i));
    EXPECT_EQ(rows[i].final_part, i == 2);
    EXPECT_EQ(rows[i].inbound_id, in.id);
    EXPECT_EQ(rows[i].channel, "local");
    EXPECT_EQ(rows[i].chat_id, in.chat_id);
    EXPECT_EQ(rows[i].session_key, in.session_key);
    EXPECT_EQ(rows[i].run_id, in.run_id);
    EXPECT_EQ(rows[i].state, OutboxState::pending);
    EXPECT_EQ(rows[i].created_at_ms, 2000);
  }
  EXPECT_EQ(rows[1].text, "two ");
  EXPECT_EQ(store->inbound(in.id)->state, InboxState::done);

  const auto pending = store->pending_outbox();
  ASSERT_EQ(pending.size(), 3u);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(pending[i].id, rows[i].id);
    EXPECT_EQ(pending[i].idem_key, rows[i].idem_key);
    EXPECT_EQ(pending[i].final_part, rows[i].final_part);
    EXPECT_EQ(pending[i].text, rows[i].text);
  }

  const auto history = store->transcript(in.session_key, 10);
  ASSERT_EQ(history.size(), 2u);
  EXPECT_EQ(history[1].role, "assistant");
  EXPECT_EQ(history[1].text, "one two three");
  EXPECT_EQ(history[1].inbound_id, in.id);
  EXPECT_EQ(history[1].run_id, in.run_id);
}

TEST_P(StoreContract, StageReplyTwiceReturnsTheFirstPartsAndWritesNothing) {
  const auto in = store->insert_inbound(message("m1"), 1000).record;
  const auto first = store->stage_reply(in.id, {"a", "b"}, 2000);

  const auto second = store->stage_reply(in.id, {"something", "else", "entirely"}, 3000);

  ASSERT_EQ(second.size(), 2u);
  EXPECT_EQ(second[0].id, first[0].id);
  EXPECT_EQ(second[1].id, first[1].id);
  EXPECT_EQ(second[0].text, "a");
  EXPECT_TRUE(second[1].final_part);
  EXPECT_EQ(store->pending_outbox().size(), 2u);
  EXPECT_EQ(store->transcript(in.session_key, 10).size(), 2u);
}

TEST_P(StoreContract, StageReplyAfterAPartWasSentReturnsItsState) {
  const auto in = store->insert_inbound(message("m1"), 1000).record;
  const auto first = store->stage_reply(in.id, {"a", "b"}, 2000);
  store->mark_sent(first[0].id, 2100);

  const auto again = store->stage_reply(in.id, {"a", "b"}, 3000);
  ASSERT_EQ(again.size(), 2u);
  EXPECT_EQ(again[0].state, OutboxState::sent);
  EXPECT_EQ(again[0].sent_at_ms, 2100);
  EXPECT_EQ(again[1].state, OutboxState::pending);
}

// stage_reply_as_sent writes new parts sent at once; it must return and store exactly what
// stage_reply followed by mark_sent of the pending parts (the Store default) does.
TEST_P(StoreContract, StageReplyAsSentEqualsStageReplyThenMarkSent) {
  std::string why;
  auto other = fresh_database(GetParam(), &why);
  ASSERT_TRUE(other) << why;
  auto& fused = store;
  auto composed = other->open();
  std::vector<std::vector<OutboxRecord>> got[2];
  for (int i = 0; i < 2; ++i) {
    Store& s = i == 0 ? *fused : *composed;
    auto call = [&](std::int64_t id, const std::vector<std::string>& parts, std::int64_t now) {
      got[i].push_back(i == 0 ? s.stage_reply_as_sent(id, parts, now)
                              : s.Store::stage_reply_as_sent(id, parts, now));
    };
    const auto fresh = s.insert_inbound(message("m1"), 1000).record;
    call(fresh.id, {"one ", "two"}, 2000);  // new parts: returned pending, stored sent
    call(fresh.id, {"again"}, 3000);        // closed row, parts sent: returned sent, untouched
    // A closed row whose part was staged pending (before this call existed): marked now.
    const auto old = s.insert_inbound(message("m2"), 4000).record;
    s.stage_reply(old.id, {"legacy"}, 5000);
    call(old.id, {"legacy"}, 6000);
  }
  ASSERT_EQ(got[0].size(), got[1].size());
  for (std::size_t c = 0; c < got[0].size(); ++c) {
    ASSERT_EQ(got[0][c].size(), got[1][c].size()) << "call " << c;
    for (std::size_t r = 0; r < got[0][c].size(); ++r) {
      const auto& a = got[0][c][r];
      const auto& b = got[1][c][r];
      EXPECT_EQ(a.id, b.id);
      EXPECT_EQ(a.idem_key, b.idem_key);
      EXPECT_EQ(a.state, b.state) << "call " << c << " part " << r;
      EXPECT_EQ(a.sent_at_ms, b.sent_at_ms);
      EXPECT_EQ(a.text, b.text);
    }
  }
  EXPECT_EQ(got[0][0].at(0).state, OutboxState::pending);
  EXPECT_EQ(got[0][1].at(0).state, OutboxState::sent);
  EXPECT_EQ(got[0][1].at(0).sent_at_ms, 2000);
  EXPECT_EQ(got[0][2].at(0).state, OutboxState::pending);
  EXPECT_TRUE(fused->pending_outbox().empty());
  EXPECT_TRUE(composed->pending_outbox().empty());
  const auto counts = fused->counts();
  EXPECT_EQ(counts.outbox_sent, 3);
  EXPECT_EQ(counts.outbox_sent, composed->counts().outbox_sent);
  EXPECT_EQ(fused->transcript("local:alice", 10).size(),
            composed->transcript("local:alice", 10).size());
}

TEST_P(StoreContract, StageReplyWithNoPartsClosesTheRowSilently) {
  const auto in = store->insert_inbound(message("m1"), 1000).record;

  EXPECT_TRUE(store->stage_reply(in.id, {}, 2000).empty());
  EXPECT_EQ(store->inbound(in.id)->state, InboxState::done);
  EXPECT_TRUE(store->pending_outbox().empty());
  EXPECT_EQ(store->transcript(in.session_key, 10).size(), 1u);
  EXPECT_TRUE(store->stage_reply(in.id, {"late"}, 3000).empty());
}

TEST_P(StoreContract, StageReplyForAnAbortedRowWritesNothing) {
  const auto in = store->insert_inbound(message("m1"), 1000).record;
  store->set_inbound_state(in.id, InboxState::aborted);

  EXPECT_TRUE(store->stage_reply(in.id, {"too late"}, 2000).empty());
  EXPECT_EQ(store->inbound(in.id)->state, InboxState::aborted);
  EXPECT_EQ(store->counts().outbox_pending, 0);
  EXPECT_EQ(store->transcript(in.session_key, 10).size(), 1u);
}

TEST_P(StoreContract, StageReplyForAnUnknownInboundThrows) {
  EXPECT_THROW(store->stage_reply(999, {"x"}, 1000), StoreError);
}

TEST_P(StoreContract, FailedStageReplyRollsEverythingBack) {
  const auto in = store->insert_inbound(message("m1"), 1000).record;
  // Something else took the key of part 1, so the reply cannot be staged as a whole.
  auto squatter = send_request("x");
  squatter.idem_key = std::to_string(in.id) + ":1";
  squatter.session_key = in.session_key;
  store->stage_outbound(squatter, 1500);

  EXPECT_THROW(store->stage_reply(in.id, {"a", "b"}, 2000), StoreError);

  EXPECT_EQ(store->inbound(in.id)->state, InboxState::pending);
  const auto pending = store->pending_outbox();
  ASSERT_EQ(pending.size(), 1u);
  EXPECT_EQ(pending[0].idem_key, squatter.idem_key);
  EXPECT_EQ(store->transcript(in.session_key, 10).size(), 2u);  // user + the squatter
  // The connection is usable afterwards.
  EXPECT_FALSE(store->insert_inbound(message("m2"), 3000).duplicate);
}

TEST_P(StoreContract, UnfinishedInboundListsPendingAndRunningOldestFirst) {
  std::vector<std::int64_t> ids;
  for (int i = 0; i < 5; ++i) {
    ids.push_back(store->insert_inbound(message("m" + std::to_string(i)), 1000 + i).record.id);
  }
  store->set_inbound_state(ids[0], InboxState::running);
  store->set_inbound_state(ids[1], InboxState::failed);
  store->stage_reply(ids[2], {"done"}, 2000);
  store->set_inbound_state(ids[4], InboxState::aborted);

  const auto rows = store->unfinished_inbound();
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].id, ids[0]);
  EXPECT_EQ(rows[0].state, InboxState::running);
  EXPECT_EQ(rows[1].id, ids[3]);
  EXPECT_EQ(rows[1].state, InboxState::pending);
}

TEST_P(StoreContract, UnknownIdsAreErrors) {
  EXPECT_FALSE(store->inbound(7).has_value());
  EXPECT_THROW(store->set_inbound_state(7, InboxState::done), StoreError);
  EXPECT_THROW(store->mark_sent(7, 1000), StoreError);
  EXPECT_THROW(store->mark_failed(7, 1000), StoreError);
}

TEST_P(StoreContract, MarkSentAndMarkFailedTakeRowsOffThePendingList) {
  const auto in = store->insert_inbound(message("m1"), 1000).record;
  const auto rows = store->stage_reply(in.id, {"a", "b", "c"}, 2000);

  store->mark_sent(rows[0].id, 2100);
  store->mark_failed(rows[1].id, 2200);

  const auto pending = store->pending_outbox();
  ASSERT_EQ(pending.size(), 1u);
  EXPECT_EQ(pending[0].id, rows[2].id);
  EXPECT_EQ(pending[0].sent_at_ms, 0);
  const auto all = store->stage_reply(in.id, {}, 3000);
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].state, OutboxState::sent);
  EXPECT_EQ(all[0].sent_at_ms, 2100);
  EXPECT_EQ(all[1].state, OutboxState::failed);
  EXPECT_EQ(all[1].sent_at_ms, 2200);
}

TEST_P(StoreContract, SendIsDedupedByIdempotencyKey) {
  const auto [first, inserted] = store->stage_outbound(send_request("k1", "ping"), 1000);
  EXPECT_TRUE(inserted);
  EXPECT_GT(first.id, 0);
  EXPECT_EQ(first.inbound_id, 0);
  EXPECT_EQ(first.part, 0);
  EXPECT_TRUE(first.final_part);
  EXPECT_EQ(first.state, OutboxState::pending);

  const auto [second, inserted_again] = store->stage_outbound(send_request("k1", "pong"), 2000);
  EXPECT_FALSE(inserted_again);
  EXPECT_EQ(second.id, first.id);
  EXPECT_EQ(second.text, "ping");
  EXPECT_EQ(second.created_at_ms, 1000);

  const auto pending = store->pending_outbox();
  ASSERT_EQ(pending.size(), 1u);
  EXPECT_EQ(pending[0].inbound_id, 0);
  EXPECT_EQ(pending[0].idem_key, "send:k1");

  const auto history = store->transcript("local:bob", 10);
  ASSERT_EQ(history.size(), 1u);
  EXPECT_EQ(history[0].role, "assistant");
  EXPECT_EQ(history[0].text, "ping");
  EXPECT_EQ(history[0].inbound_id, 0);
}

TEST_P(StoreContract, SendWithoutSessionHasNoHistory) {
  auto m = send_request("k1");
  m.session_key.clear();
  EXPECT_TRUE(store->stage_outbound(m, 1000).second);
  EXPECT_EQ(store->counts().sessions, 0);
  EXPECT_TRUE(store->transcript("", 10).empty());
}

TEST_P(StoreContract, SendWithoutIdempotencyKeyIsRejected) {
  auto m = send_request("k1");
  m.idem_key.clear();
  EXPECT_THROW(store->stage_outbound(m, 1000), StoreError);
  EXPECT_TRUE(store->pending_outbox().empty());
}

TEST_P(StoreContract, TranscriptReturnsTheNewestEntriesOldestFirst) {
  for (int i = 1; i <= 5; ++i) {
    store->insert_inbound(message("a" + std::to_string(i), "text " + std::to_string(i)), i);
  }
  store->insert_inbound(message("b1", "elsewhere", "local:carol"), 10);

  const auto last3 = store->transcript("local:alice", 3);
  ASSERT_EQ(last3.size(), 3u);
  EXPECT_EQ(last3[0].text, "text 3");
  EXPECT_EQ(last3[1].text, "text 4");
  EXPECT_EQ(last3[2].text, "text 5");
  EXPECT_LT(last3[0].id, last3[1].id);

  EXPECT_EQ(store->transcript("local:alice", 100).size(), 5u);
  EXPECT_EQ(store->transcript("local:alice", SIZE_MAX).size(), 5u);
  EXPECT_TRUE(store->transcript("local:alice", 0).empty());
  EXPECT_TRUE(store->transcript("local:nobody", 10).empty());
  ASSERT_EQ(store->transcript("local:carol", 10).size(), 1u);
  EXPECT_EQ(store->transcript("local:carol", 10)[0].created_at_ms, 10);
}

TEST_P(StoreContract, CountsReflectEveryTable) {
  const auto a = store->insert_inbound(message("m1"), 1000).record;
  store->insert_inbound(message("m1"), 1000);
  const auto b = store->insert_inbound(message("m2"), 1000).record;
  store->insert_inbound(message("m3", "hi", "local:carol"), 1000);
  store->set_inbound_state(b.id, InboxState::running);
  const auto rows = store->stage_reply(a.id, {"x", "y"}, 2000);
  store->mark_sent(rows[0].id, 2100);
  store->stage_outbound(send_request("k1"), 2200);

  const auto n = store->counts();
  EXPECT_EQ(n.inbox_total, 3);
  EXPECT_EQ(n.inbox_unfinished, 2);
  EXPECT_EQ(n.outbox_pending, 2);
  EXPECT_EQ(n.outbox_sent, 1);
  EXPECT_EQ(n.sessions, 3);  // alice, carol, and bob from the send
}

TEST_P(StoreContract, KeyValueRoundTrip) {
  EXPECT_FALSE(store->get_value("telegram.offset").has_value());
  store->set_value("telegram.offset", "100");
  store->set_value("telegram.offset", "101");
  store->set_value("empty", "");
  EXPECT_EQ(store->get_value("telegram.offset"), "101");
  EXPECT_EQ(store->get_value("empty"), "");
  store->erase_value("telegram.offset");
  store->erase_value("never-set");
  EXPECT_FALSE(store->get_value("telegram.offset").has_value());
}

TEST_P(StoreContract, PendingOutboxIsReplayedAfterReopen) {
  std::int64_t replied = 0;
  std::int64_t waiting = 0;
  std::vector<OutboxRecord> parts;
  {
    replied = store->insert_inbound(message("m1"), 1000).record.id;
    waiting = store->insert_inbound(message("m2"), 1100).record.id;
    parts = store->stage_reply(replied, {"first", "second"}, 2000);
    store->mark_sent(parts[0].id, 2100);
    store->set_value("clean-shutdown", "no");
  }

  store.reset();
  store = db->open();
  const auto pending = store->pending_outbox();
  ASSERT_EQ(pending.size(), 1u);
  EXPECT_EQ(pending[0].id, parts[1].id);
  EXPECT_EQ(pending[0].idem_key, std::to_string(replied) + ":1");
  EXPECT_TRUE(pending[0].final_part);
  EXPECT_EQ(pending[0].text, "second");

  const auto unfinished = store->unfinished_inbound();
  ASSERT_EQ(unfinished.size(), 1u);
  EXPECT_EQ(unfinished[0].id, waiting);
  EXPECT_TRUE(store->insert_inbound(message("m1"), 9000).duplicate);
  EXPECT_EQ(store->stage_reply(replied, {"again"}, 9000).size(), 2u);
  EXPECT_EQ(store->transcript("local:alice", 10).size(), 3u);
  EXPECT_EQ(store->get_value("clean-shutdown"), "no");
}

TEST_P(StoreContract, CommitsAreVisibleToASecondConnectionOnTheSameFile) {
  auto& first = store;
  const auto in = first->insert_inbound(message("m1"), 1000).record;

  auto second = db->open();
  ASSERT_TRUE(second->inbound(in.id).has_value());
  EXPECT_TRUE(second->insert_inbound(message("m1"), 2000).duplicate);
  second->stage_reply(in.id, {"from the second"}, 2000);

  EXPECT_EQ(first->inbound(in.id)->state, InboxState::done);
  EXPECT_EQ(first->stage_reply(in.id, {"from the first"}, 3000).at(0).text, "from the second");
}

TEST(Store, StateNames) {
  EXPECT_STREQ(to_string(InboxState::pending), "pending");
  EXPECT_STREQ(to_string(InboxState::running), "running");
  EXPECT_STREQ(to_string(InboxState::done), "done");
  EXPECT_STREQ(to_string(InboxState::aborted), "aborted");
  EXPECT_STREQ(to_string(InboxState::failed), "failed");
  EXPECT_STREQ(to_string(OutboxState::pending), "pending");
  EXPECT_STREQ(to_string(OutboxState::sent), "sent");
  EXPECT_STREQ(to_string(OutboxState::failed), "failed");
  EXPECT_STREQ(to_string(OutboxState::stale), "stale");
}

INSTANTIATE_STORE_DRIVERS(StoreContract);

}  // namespace
}  // namespace drawbridge::store
