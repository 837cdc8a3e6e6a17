// The notices between replicas on a real PostgreSQL (store/pg_listener.h, Store::notify): they
// arrive when the batch that sent them commits, in order, never when it rolls back, and the
// listener comes back after the server ends its connection.

#include "store/pg_listener.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "fakes/pg_server.h"
#include "pipeline/batch_runner.h"
#include "store/postgres_store.h"

namespace drawbridge::store {
namespace {

using namespace std::chrono_literals;

// What a listener heard, for a test thread to wait on.
struct Heard {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> payloads;
  int connected = 0;

  PgListener::Hooks hooks() {
    return {[this](std::vector<PgListener::Notice> notices) {
              std::lock_guard lock(mu);
              for (auto& n : notices) payloads.push_back(n.channel + ":" + n.payload);
              cv.notify_all();
            },
            [this] {
              std::lock_guard lock(mu);
              ++connected;
              cv.notify_all();
            }};
  }
  bool wait_connected(int n) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, 15s, [&] { return connected >= n; });
  }
  bool wait_payloads(std::size_t n) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, 10s, [&] { return payloads.size() >= n; });
  }
  std::vector<std::string> got() {
    std::lock_guard lock(mu);
    return payloads;
  }
};

#define FRESH_SCHEMA_OR_SKIP(var)                                    \
  std::string var;                                                   \
  {                                                                  \
    std::string why_;                                                \
    auto fresh_ = drawbridge::testing::fresh_pg_schema(&why_);       \
    if (!fresh_) GTEST_SKIP() << why_;                               \
    var = *fresh_;                                                   \
  }

TEST(PgListener, NoticesArriveAtTheCommitInOrderAndNeverFromARollback) {
  FRESH_SCHEMA_OR_SKIP(conninfo);
  auto store = PostgresStore::open({conninfo, ""});
  Heard heard;
  PgListener listener(conninfo, "", {"drawbridge_test"}, heard.hooks());
  ASSERT_TRUE(heard.wait_connected(1));
  auto err = pipeline::run_batch(*store, {[](Store& s) {
                                   s.notify("drawbridge_test", "one");
                                   s.notify("drawbridge_test", "two");
                                   s.notify("not_listened", "x");
                                 }});
  ASSERT_EQ(err, "");
  ASSERT_TRUE(heard.wait_payloads(2));
  // Rolled back: its notice is never sent.
  err = pipeline::run_batch(*store, {[](Store& s) {
                              s.notify("drawbridge_test", "rolled back");
                              throw StoreError("the batch fails");
                            }});
  EXPECT_NE(err, "");
  ASSERT_EQ(pipeline::run_batch(*store, {[](Store& s) { s.notify("drawbridge_test", "three"); }}),
            "");
  ASSERT_TRUE(heard.wait_payloads(3));
  EXPECT_EQ(heard.got(), (std::vector<std::string>{"drawbridge_test:one", "drawbridge_test:two",
                                                   "drawbridge_test:three"}));
}

TEST(PgListener, SeveralNoticesInOneStatementKeepTheirOrderAndTheirBytes) {
  FRESH_SCHEMA_OR_SKIP(conninfo);
  auto store = PostgresStore::open({conninfo, ""});
  Heard heard;
  PgListener listener(conninfo, "", {"drawbridge_many"}, heard.hooks());
  ASSERT_TRUE(heard.wait_connected(1));
  std::vector<std::string> payloads = {"plain", R"(quo"te)", R"(back\slash)", "{a,b}",
                                       "NULL", "", "é € 日本", "x y"};
  for (int i = 0; i < 40; ++i) payloads.push_back("n" + std::to_string(i));
  auto op = [&](Store& s) { s.notify_all("drawbridge_many", payloads); };
  ASSERT_EQ(pipeline::run_batch(*store, {op}), "");
  ASSERT_TRUE(heard.wait_payloads(payloads.size()));
  std::vector<std::string> want;
  for (const auto& p : payloads) want.push_back("drawbridge_many:" + p);
  EXPECT_EQ(heard.got(), want);
}

TEST(PgListener, APayloadOverTheLimitIsRefusedBeforeItIsSent) {
  FRESH_SCHEMA_OR_SKIP(conninfo);
  auto store = PostgresStore::open({conninfo, ""});
  EXPECT_THROW(store->notify("drawbridge_test", std::string(Store::kNoticeBytes + 1, 'x')),
               StoreError);
  EXPECT_NO_THROW(store->notify("drawbridge_test", std::string(Store::kNoticeBytes, 'x')));
}

TEST(PgListener, OnlyPlainChannelNamesAreListenedOn) {
  EXPECT_THROW(PgListener("host=/nonexistent", "", {"work; DROP TABLE inbox"}, {}),
               std::invalid_argument);
  EXPECT_THROW(PgListener("host=/nonexistent", "", {"Upper"}, {}), std::invalid_argument);
  EXPECT_THROW(PgListener("host=/nonexistent", "", {""}, {}), std::invalid_argument);
}

TEST(PgListener, ListensAgainAfterTheServerEndsItsConnection) {
  FRESH_SCHEMA_OR_SKIP(conninfo);
  auto store = PostgresStore::open({conninfo, ""});
  Heard heard;
  PgListener listener(conninfo, "", {"drawbridge_again"}, heard.hooks());
  ASSERT_TRUE(heard.wait_connected(1));
  drawbridge::testing::pg_query(conninfo,
                                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                "WHERE query = 'LISTEN drawbridge_again'");
  // It connects again (after a second) and says so: the caller looks at the store then.
  ASSERT_TRUE(heard.wait_connected(2));
  EXPECT_EQ(listener.connections(), 2);
  store->notify("drawbridge_again", "after");
  ASSERT_TRUE(heard.wait_payloads(1));
  EXPECT_EQ(heard.got().back(), "drawbridge_again:after");
}

TEST(PgListener, ScopesDifferByDatabaseAndSchema) {
  FRESH_SCHEMA_OR_SKIP(first);
  FRESH_SCHEMA_OR_SKIP(second);
  auto a = PostgresStore::open({first, ""});
  auto b = PostgresStore::open({second, ""});
  EXPECT_FALSE(a->notice_scope().empty());
  EXPECT_NE(a->notice_scope(), b->notice_scope());
  EXPECT_EQ(a->notice_scope(), PostgresStore::open({first, ""})->notice_scope());
}

}  // namespace
}  // namespace drawbridge::store
