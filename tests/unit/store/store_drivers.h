#pragma once

// The Store contract suites run against every driver: a test derives from StoreTest (or uses
// fresh_database) and the suite is instantiated with INSTANTIATE_STORE_DRIVERS. A driver that
// cannot run here (PostgreSQL not installed) skips with the reason.

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <string>

#include "store/store.h"

namespace drawbridge::store::test_support {

enum class Driver { sqlite, postgres };

std::string driver_name(const ::testing::TestParamInfo<Driver>& info);

// One fresh, empty database of a driver, for one test: SQLite, a file in a folder of its own;
// postgres, a schema of its own on the test server (tests/fakes/pg_server.h).
class TestDatabase {
 public:
  virtual ~TestDatabase() = default;
  Driver driver() const { return driver_; }
  // A new store on this database: a connection of its own, seeing what the others committed.
  virtual std::unique_ptr<Store> open() = 0;
  // Runs SQL no Store method would (set-up of a broken state) on a connection of the test's
  // own; returns the first column of the first row, "" when none. Throws std::runtime_error.
  virtual std::string sql(const std::string& statement) = 0;
  // The store's clock for leases, ms since the epoch: the server's (postgres) or the caller's
  // now_ms (SQLite), where this returns 0.
  virtual std::int64_t store_now_ms() = 0;

 protected:
  explicit TestDatabase(Driver d) : driver_(d) {}

 private:
  Driver driver_;
};

// Nothing and `why` when the driver cannot run here; throws when it should and does not.
std::unique_ptr<TestDatabase> fresh_database(Driver driver, std::string* why);

class StoreTest : public ::testing::TestWithParam<Driver> {
 protected:
  void SetUp() override {
    std::string why;
    db = fresh_database(GetParam(), &why);
    if (!db) GTEST_SKIP() << why;
    store = db->open();
  }
  bool postgres() const { return GetParam() == Driver::postgres; }

  std::unique_ptr<TestDatabase> db;
  std::unique_ptr<Store> store;
};

NewInbound message(const std::string& external_id, const std::string& text = "hello",
                   const std::string& session_key = "local:alice");
NewOutbound send_request(const std::string& key, const std::string& text = "ping");
bool contains(const std::string& haystack, const std::string& needle);

}  // namespace drawbridge::store::test_support

#define INSTANTIATE_STORE_DRIVERS(suite)                                                           \
  INSTANTIATE_TEST_SUITE_P(Drivers, suite,                                                         \
                           ::testing::Values(::drawbridge::store::test_support::Driver::sqlite,    \
                                             ::drawbridge::store::test_support::Driver::postgres), \
                           ::drawbridge::store::test_support::driver_name)
