// The Store contract, run against every driver (store_drivers.h): the session catalog of the
// control plane (list, summary, create, label, reset), input receipts, and transcript pages.

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "unit/store/store_drivers.h"

namespace drawbridge::store {
namespace {

using namespace test_support;

class StoreCatalog : public StoreTest {};

std::vector<std::string> keys(const std::vector<SessionSummary>& sessions) {
  std::vector<std::string> out;
  for (const auto& s : sessions) out.push_back(s.session_key);
  return out;
}

TEST_P(StoreCatalog, SessionsAreListedByLastActivityThenByKeyInByteOrder) {
  store->insert_inbound(message("m1", "first", "s-old"), 1000);
  store->insert_inbound(message("m2", "second", "s-new"), 3000);
  // Same activity time: byte order, upper case before lower case (not a locale's order).
  store->create_session("b-tie", "", 2000);
  store->create_session("B-tie", "", 2000);
  store->create_session("a-tie", "", 2000);
  EXPECT_EQ(keys(store->list_sessions(10, 0, 100)),
            (std::vector<std::string>{"s-new", "B-tie", "a-tie", "b-tie", "s-old"}));
  EXPECT_EQ(keys(store->list_sessions(2, 1, 100)), (std::vector<std::string>{"B-tie", "a-tie"}));
  EXPECT_TRUE(store->list_sessions(10, 5, 100).empty());
  EXPECT_TRUE(store->list_sessions(0, 0, 100).empty());
  // Activity moves a session up.
  store->insert_inbound(message("m3", "again", "s-old"), 4000);
  EXPECT_EQ(keys(store->list_sessions(1, 0, 100)), std::vector<std::string>{"s-old"});
}

TEST_P(StoreCatalog, ASummaryHasTheLabelAndTheNewestEntryCutToThePreview) {
  const auto in = store->insert_inbound(message("m1", "what is the time", "s1"), 1000).record;
  store->stage_reply(in.id, {"half ", "past ten"}, 2000);
  store->set_session_label("s1", "Clock", 2500);

  const auto s = store->session_summary("s1", 8);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->session_key, "s1");
  EXPECT_EQ(s->created_at_ms, 1000);
  EXPECT_EQ(s->updated_at_ms, 2500);
  EXPECT_EQ(s->state, "idle");
  EXPECT_EQ(s->label, "Clock");
  EXPECT_EQ(s->last_role, "assistant");
  EXPECT_EQ(s->last_text, "half pas");
  EXPECT_EQ(store->session_summary("s1", 0)->last_text, "");
  EXPECT_EQ(store->session_summary("s1", 1000)->last_text, "half past ten");
  const auto listed = store->list_sessions(10, 0, 4);
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].label, "Clock");
  EXPECT_EQ(listed[0].last_text, "half");
  EXPECT_FALSE(store->session_summary("nobody", 10));
}

TEST_P(StoreCatalog, CreatingASessionTwiceKeepsItAndOnlyANonEmptyLabelChangesIt) {
  EXPECT_TRUE(store->create_session("s1", "One", 1000));
  auto s = store->session_summary("s1", 10);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->label, "One");
  EXPECT_EQ(s->created_at_ms, 1000);
  EXPECT_EQ(s->last_role, "") << "no entry yet";
  EXPECT_EQ(store->counts().sessions, 1);

  EXPECT_FALSE(store->create_session("s1", "", 2000));
  EXPECT_EQ(store->session_summary("s1", 10)->label, "One");
  EXPECT_FALSE(store->create_session("s1", "Two", 3000));
  s = store->session_summary("s1", 10);
  EXPECT_EQ(s->label, "Two");
  EXPECT_EQ(s->updated_at_ms, 1000) << "creating again is no activity";
  EXPECT_EQ(store->counts().sessions, 1);
}

TEST_P(StoreCatalog, ALabelNeedsAnExistingSession) {
  EXPECT_FALSE(store->set_session_label("nobody", "x", 1000));
  EXPECT_FALSE(store->session_summary("nobody", 10));
  EXPECT_EQ(store->counts().sessions, 0);
  store->create_session("s1", "", 1000);
  EXPECT_TRUE(store->set_session_label("s1", "Named", 2000));
  EXPECT_TRUE(store->set_session_label("s1", "", 3000));
  const auto s = store->session_summary("s1", 10);
  EXPECT_EQ(s->label, "");
  EXPECT_EQ(s->updated_at_ms, 3000);
}

TEST_P(StoreCatalog, AResetSessionStartsItsHistoryOver) {
  const auto a = store->insert_inbound(message("m1", "old question", "s1"), 1000).record;
  store->stage_reply(a.id, {"old answer"}, 1100);
  EXPECT_FALSE(store->reset_session("nobody", 1200));
  EXPECT_TRUE(store->reset_session("s1", 1200));

  EXPECT_TRUE(store->transcript("s1", 10).empty());
  EXPECT_TRUE(store->transcript_page("s1", 10, 1 << 20, 0).entries.empty());
  auto s = store->session_summary("s1", 100);
  EXPECT_EQ(s->last_role, "");
  EXPECT_EQ(s->updated_at_ms, 1200);

  store->insert_inbound(message("m2", "new question", "s1"), 1300);
  const auto t = store->transcript("s1", 10);
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t[0].text, "new question");
  EXPECT_EQ(store->session_summary("s1", 100)->last_text, "new question");
  EXPECT_TRUE(store->reset_session("s1", 1400));
  EXPECT_TRUE(store->transcript("s1", 10).empty());
  EXPECT_EQ(store->counts().inbox_total, 2) << "nothing is deleted";
}

TEST_P(StoreCatalog, AnInputReceiptSaysWhereAMessageWentAndHowFarItGot) {
  EXPECT_FALSE(store->input_receipt("local", "m1"));
  const auto in = store->insert_inbound(message("m1", "hi", "s1"), 1000).record;
  auto r = store->input_receipt("local", "m1");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->session_key, "s1");
  EXPECT_EQ(r->state, InboxState::pending);
  EXPECT_EQ(r->transcript_id, store->transcript("s1", 10).at(0).id);
  store->stage_reply(in.id, {"hello"}, 2000);
  EXPECT_EQ(store->input_receipt("local", "m1")->state, InboxState::done);
  EXPECT_FALSE(store->input_receipt("telegram", "m1")) << "another channel's key";
}

TEST_P(StoreCatalog, ATranscriptPageIsBoundedByCountAndBytesAndPagesBackwards) {
  std::vector<std::int64_t> ids;
  for (int i = 1; i <= 5; ++i) {
    store->insert_inbound(
        message("m" + std::to_string(i), "entry-" + std::to_string(i) + "...", "s1"),
        i);  // 10 bytes each
  }
  for (const auto& e : store->transcript("s1", 10)) ids.push_back(e.id);
  ASSERT_EQ(ids.size(), 5u);

  auto page = store->transcript_page("s1", 10, 25, 0);
  ASSERT_EQ(page.entries.size(), 2u);
  EXPECT_EQ(page.entries[0].id, ids[3]);
  EXPECT_EQ(page.entries[1].id, ids[4]);
  EXPECT_EQ(page.entries[1].text, "entry-5...");
  EXPECT_TRUE(page.more);
  page = store->transcript_page("s1", 10, 25, ids[3]);
  ASSERT_EQ(page.entries.size(), 2u);
  EXPECT_EQ(page.entries[0].id, ids[1]);
  EXPECT_TRUE(page.more);
  page = store->transcript_page("s1", 10, 25, ids[1]);
  ASSERT_EQ(page.entries.size(), 1u);
  EXPECT_EQ(page.entries[0].id, ids[0]);
  EXPECT_FALSE(page.more);

  page = store->transcript_page("s1", 2, 1 << 20, 0);
  ASSERT_EQ(page.entries.size(), 2u);
  EXPECT_TRUE(page.more);
  page = store->transcript_page("s1", 5, 50, 0);
  EXPECT_EQ(page.entries.size(), 5u) << "exactly at the byte bound";
  EXPECT_FALSE(page.more);
  EXPECT_TRUE(store->transcript_page("s1", 0, 1 << 20, 0).entries.empty());
  EXPECT_TRUE(store->transcript_page("nobody", 10, 1 << 20, 0).entries.empty());

  // The newest entry always comes, whatever its size, so paging makes progress.
  store->insert_inbound(message("big", std::string(1000, 'x'), "s1"), 6);
  page = store->transcript_page("s1", 10, 25, 0);
  ASSERT_EQ(page.entries.size(), 1u);
  EXPECT_EQ(page.entries[0].text.size(), 1000u);
  EXPECT_TRUE(page.more);
  page = store->transcript_page("s1", 10, 25, page.entries[0].id);
  EXPECT_EQ(page.entries.size(), 2u);
}

INSTANTIATE_STORE_DRIVERS(StoreCatalog);

}  // namespace
}  // namespace drawbridge::store
