// store.driver "postgres", store.url, store.passwordEnv and cluster.*: what goes together.

#include <gtest/gtest.h>

#include <string>

#include "config/config.h"

namespace drawbridge::config {
namespace {

// "pointer: message" of each error, or "ok".
std::string outcome(const std::string& text) {
  const auto result = parse_config(text);
  if (result.errors.empty()) return "ok";
  std::string out;
  for (const auto& e : result.errors)
    out += (out.empty() ? "" : " | ") + e.pointer + ": " + e.message;
  return out;
}

TEST(StoreSettings, PostgresNeedsAUrl) {
  EXPECT_NE(outcome(R"({"store":{"driver":"postgres"}})").find("/store/url: store.driver"),
            std::string::npos);
  EXPECT_EQ(outcome(R"({"store":{"driver":"postgres","url":"host=/run/postgresql dbname=db",
                                 "passwordEnv":"DB_PASSWORD"}})"),
            "ok");
  const auto parsed = parse_config(
      R"({"store":{"driver":"postgres","url":"postgresql://bot@db/x"},"cluster":{"replicaId":"a:1","leaseMs":3000}})");
  ASSERT_TRUE(parsed.config);
  EXPECT_EQ(parsed.config->store.url, "postgresql://bot@db/x");
  EXPECT_EQ(parsed.config->cluster.replica_id, "a:1");
  EXPECT_EQ(parsed.config->cluster.lease_ms, 3000);
}

TEST(StoreSettings, APasswordInTheUrlIsRefusedWithoutEchoingIt) {
  for (const char* url : {"host=db password=hunter2", "postgresql://bot:hunter2@db/x",
                          "postgres://bot:hunter2@db", "host=db PASSWORD='hunter2'"}) {
    const std::string text =
        std::string(R"({"store":{"driver":"postgres","url":")") + url + R"("}})";
    const auto got = outcome(text);
    EXPECT_NE(got.find("/store/url: holds a password"), std::string::npos) << url;
    EXPECT_EQ(got.find("hunter2"), std::string::npos) << got;
  }
  // A user without a password, and an '@' in the query, are fine.
  EXPECT_EQ(
      outcome(
          R"({"store":{"driver":"postgres","url":"postgresql://bot@db/x?application_name=a:b"}})"),
      "ok");
}

TEST(StoreSettings, NamesAndLeaseTimeAreChecked) {
  EXPECT_NE(outcome(R"({"store":{"passwordEnv":"1BAD"}})").find("/store/passwordEnv"),
            std::string::npos);
  EXPECT_NE(outcome(R"({"store":{"passwordEnv":"A B"}})").find("/store/passwordEnv"),
            std::string::npos);
  EXPECT_NE(outcome(R"({"cluster":{"replicaId":"a/b"}})").find("/cluster/replicaId"),
            std::string::npos);
  EXPECT_NE(outcome(R"({"cluster":{"leaseMs":100}})").find("/cluster/leaseMs"), std::string::npos);
  EXPECT_NE(outcome(R"({"store":{"driver":"mysql"}})").find("/store/driver"), std::string::npos);
  EXPECT_EQ(outcome(R"({"cluster":{"replicaId":"host-1.example:18789"}})"), "ok");
}

}  // namespace
}  // namespace drawbridge::config
