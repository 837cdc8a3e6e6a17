#include "unit/store/store_drivers.h"

#include <sqlite3.h>

#include <stdexcept>

#include "fakes/pg_server.h"
#include "store/postgres_store.h"
#include "store/sqlite_store.h"
#include "unit/store/temp_dir.h"

namespace drawbridge::store::test_support {
namespace {

class SqliteDatabase final : public TestDatabase {
 public:
  SqliteDatabase() : TestDatabase(Driver::sqlite), path_((dir_.path / "store.db").string()) {}

  std::unique_ptr<Store> open() override { return SqliteStore::open(path_); }

  std::string sql(const std::string& statement) override {
    sqlite3* db = nullptr;
    if (sqlite3_open(path_.c_str(), &db) != SQLITE_OK) {
      sqlite3_close(db);
      throw std::runtime_error("cannot open " + path_);
    }
    sqlite3_stmt* stmt = nullptr;
    int rc = sqlite3_prepare_v2(db, statement.c_str(), -1, &stmt, nullptr);
    std::string value;
    while (rc == SQLITE_OK || rc == SQLITE_ROW) {
      rc = sqlite3_step(stmt);
      if (rc == SQLITE_ROW && value.empty() && sqlite3_column_text(stmt, 0) != nullptr) {
        value = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
      }
    }
    const std::string error = sqlite3_errmsg(db);
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    if (rc != SQLITE_DONE) throw std::runtime_error(statement + ": " + error);
    return value;
  }

  std::int64_t store_now_ms() override { return 0; }

 private:
  TempDir dir_;
  std::string path_;
};

class PostgresDatabase final : public TestDatabase {
 public:
  explicit PostgresDatabase(std::string conninfo)
      : TestDatabase(Driver::postgres), conninfo_(std::move(conninfo)) {}

  std::unique_ptr<Store> open() override { return PostgresStore::open({conninfo_, ""}); }
  std::string sql(const std::string& statement) override {
    return drawbridge::testing::pg_query(conninfo_, statement);
  }
  std::int64_t store_now_ms() override { return drawbridge::testing::pg_server_now_ms(conninfo_); }

 private:
  std::string conninfo_;
};

}  // namespace

std::string driver_name(const ::testing::TestParamInfo<Driver>& info) {
  return info.param == Driver::sqlite ? "sqlite" : "postgres";
}

std::unique_ptr<TestDatabase> fresh_database(Driver driver, std::string* why) {
  if (driver == Driver::sqlite) return std::make_unique<SqliteDatabase>();
  auto conninfo = drawbridge::testing::fresh_pg_schema(why);
  if (!conninfo) return nullptr;
  return std::make_unique<PostgresDatabase>(*conninfo);
}

NewInbound message(const std::string& external_id, const std::string& text,
                   const std::string& session_key) {
  NewInbound m;
  m.channel = "local";
  m.external_id = external_id;
  m.session_key = session_key;
  m.chat_id = "chat-" + session_key;
  m.sender = "alice";
  m.text = text;
  m.run_id = "run-" + external_id;
  return m;
}

NewOutbound send_request(const std::string& key, const std::string& text) {
  NewOutbound m;
  m.idem_key = "send:" + key;
  m.channel = "local";
  m.chat_id = "chat-bob";
  m.session_key = "local:bob";
  m.run_id = "run-send";
  m.text = text;
  return m;
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

}  // namespace drawbridge::store::test_support
