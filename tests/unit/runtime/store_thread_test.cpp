#include "runtime/store_thread.h"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>

#include "store/sqlite_store.h"

namespace drawbridge::runtime {
namespace {

store::NewInbound msg(const std::string& key) {
  return store::NewInbound{"local", key, "s", "s", "u", "text", "run-" + key};
}

TEST(StoreThread, CommitsBatchesInOrderAndReportsOnTheEventLoop) {
  boost::asio::io_context io;
  auto store = store::SqliteStore::open(":memory:");
  StoreThread thread(io, *store);
  std::vector<std::string> order;
  for (int i = 0; i < 5; ++i) {
    const std::string key = "k" + std::to_string(i);
    thread.run({[key](store::Store& s) { s.insert_inbound(msg(key), 1); }},
               [&order, key](std::string error) {
                 EXPECT_EQ(error, "");
                 order.push_back(key);
               });
  }
  thread.wait_idle();
  // Nothing is reported until the event loop runs the posted callbacks.
  EXPECT_TRUE(order.empty());
  io.run();
  EXPECT_EQ(order, (std::vector<std::string>{"k0", "k1", "k2", "k3", "k4"}));
  EXPECT_EQ(store->counts().inbox_total, 5);
}

TEST(StoreThread, AFailingWriteFailsItsBatchAndNothingOfItIsCommitted) {
  boost::asio::io_context io;
  auto store = store::SqliteStore::open(":memory:");
  StoreThread thread(io, *store);
  std::string reported = "not called";
  thread.run({[](store::Store& s) { s.insert_inbound(msg("a"), 1); },
              [](store::Store& s) { s.set_inbound_state(4242, store::InboxState::done); }},
             [&](std::string error) { reported = error; });
  thread.wait_idle();
  io.run();
  EXPECT_NE(reported, "");
  EXPECT_NE(reported, "not called");
  EXPECT_EQ(store->counts().inbox_total, 0);
}

TEST(StoreThread, DestructionCommitsWhatWasHandedOver) {
  boost::asio::io_context io;
  auto store = store::SqliteStore::open(":memory:");
  {
    StoreThread thread(io, *store);
    thread.run({[](store::Store& s) { s.insert_inbound(msg("last"), 1); }}, [](std::string) {});
  }
  EXPECT_EQ(store->counts().inbox_total, 1);
}

}  // namespace
}  // namespace drawbridge::runtime

namespace drawbridge::runtime {
namespace {

TEST(StoreThread, AFenceRunsFirstInEveryBatchAndARefusalCommitsNothing) {
  boost::asio::io_context io;
  auto store = store::SqliteStore::open(":memory:");
  StoreThread thread(io, *store);
  bool allowed = true;
  int checks = 0;
  thread.set_fence([&](store::Store&) {
    ++checks;
    if (!allowed) throw store::StoreError("fenced: test");
  });
  std::string first = "not called", second = "not called";
  thread.run({[](store::Store& s) { s.insert_inbound(msg("a"), 1); }},
             [&](std::string error) { first = error; });
  thread.wait_idle();
  allowed = false;
  thread.run({[](store::Store& s) { s.insert_inbound(msg("b"), 1); }},
             [&](std::string error) { second = error; });
  thread.wait_idle();
  io.run();
  EXPECT_EQ(first, "");
  EXPECT_NE(second.find("fenced"), std::string::npos) << second;
  EXPECT_EQ(checks, 2);
  EXPECT_EQ(store->counts().inbox_total, 1);
}

}  // namespace
}  // namespace drawbridge::runtime
