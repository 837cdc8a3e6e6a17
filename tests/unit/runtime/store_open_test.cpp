// runtime::open_stores and store_password: the password comes from the variable
// store.passwordEnv names, and no error ever carries it.

#include "runtime/store_open.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include "unit/store/temp_dir.h"

namespace drawbridge::runtime {
namespace {

struct EnvVar {
  std::string name;
  EnvVar(std::string n, const char* value) : name(std::move(n)) {
    if (value) {
      setenv(name.c_str(), value, 1);
    } else {
      unsetenv(name.c_str());
    }
  }
  ~EnvVar() { unsetenv(name.c_str()); }
};

TEST(StoreOpen, ThePasswordComesFromTheNamedVariable) {
  config::StoreSettings s;
  EXPECT_EQ(store_password(s), "");
  s.password_env = "DRAWBRIDGE_TEST_DB_PASSWORD";
  {
    EnvVar unset(s.password_env, nullptr);
    try {
      store_password(s);
      ADD_FAILURE() << "no error for an unset variable";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("DRAWBRIDGE_TEST_DB_PASSWORD"), std::string::npos);
    }
  }
  EnvVar set(s.password_env, "s3cret-value");
  EXPECT_EQ(store_password(s), "s3cret-value");
}

TEST(StoreOpen, AnUnreachableDatabaseFailsWithoutThePassword) {
  config::Config cfg;
  cfg.store.driver = "postgres";
  cfg.store.url = "host=/nonexistent-drawbridge-socket-dir dbname=drawbridge connect_timeout=2";
  cfg.store.password_env = "DRAWBRIDGE_TEST_DB_PASSWORD";
  EnvVar set(cfg.store.password_env, "hunter2-do-not-show");
  try {
    open_stores(cfg, "/nonexistent");
    ADD_FAILURE() << "opened an unreachable database";
  } catch (const std::exception& e) {
    const std::string what = e.what();
    EXPECT_EQ(what.find("hunter2"), std::string::npos) << what;
    EXPECT_NE(what.find("PostgreSQL"), std::string::npos) << what;
  }
}

TEST(StoreOpen, SqliteOpensAWriterAReaderAndACheckpointerAndNoLeaseConnection) {
  store::test_support::TempDir dir;
  config::Config cfg;
  auto stores = open_stores(cfg, dir.path.string());
  EXPECT_TRUE(stores.writer && stores.reader && stores.checkpointer);
  EXPECT_EQ(stores.leases, nullptr);
  EXPECT_NE(stores.where.find("drawbridge.db"), std::string::npos);
}

}  // namespace
}  // namespace drawbridge::runtime
