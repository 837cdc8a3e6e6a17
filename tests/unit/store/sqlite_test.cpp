#include "store/sqlite.h"

#include <gtest/gtest.h>

#include <string>

#include "store/store.h"

namespace drawbridge::store::sqlite {
namespace {

std::int64_t count_rows(Database& db) {
  Statement count = db.prepare("SELECT count(*) FROM t");
  Cursor c = count.query();
  return c.next() ? c.int64(0) : -1;
}

TEST(Sqlite, TransactionRollsBackUnlessCommitted) {
  Database db(":memory:");
  db.exec("CREATE TABLE t (v TEXT NOT NULL UNIQUE)");
  Statement insert = db.prepare("INSERT INTO t (v) VALUES (?)");
  {
    Transaction tx(db, Transaction::Mode::write);
    insert.execute("kept");
    tx.commit();
  }
  {
    Transaction tx(db, Transaction::Mode::write);
    insert.execute("dropped");
  }
  EXPECT_EQ(count_rows(db), 1);
}

TEST(Sqlite, FailedStatementNamesItsSqlAndTheReason) {
  Database db(":memory:");
  db.exec("CREATE TABLE t (v TEXT NOT NULL UNIQUE)");
  Statement insert = db.prepare("INSERT INTO t (v) VALUES (?)");
  insert.execute("a");
  try {
    insert.execute("a");
    FAIL() << "expected a StoreError";
  } catch (const StoreError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("INSERT INTO t"), std::string::npos) << what;
    EXPECT_NE(what.find("UNIQUE constraint failed"), std::string::npos) << what;
  }
  EXPECT_EQ(insert.execute("b"), 1);  // the cached statement is reusable after an error
}

TEST(Sqlite, AbandonedCursorLeavesTheStatementReusable) {
  Database db(":memory:");
  db.exec("CREATE TABLE t (v TEXT NOT NULL); INSERT INTO t VALUES ('x'), ('y'), ('z')");
  Statement all = db.prepare("SELECT v FROM t ORDER BY v");
  {
    Cursor c = all.query();
    ASSERT_TRUE(c.next());
    EXPECT_EQ(c.text(0), "x");
  }
  Cursor c = all.query();
  int rows = 0;
  while (c.next()) ++rows;
  EXPECT_EQ(rows, 3);
}

TEST(Sqlite, TextKeepsEmbeddedNulAndUtf8AndNullReadsEmpty) {
  Database db(":memory:");
  db.exec("CREATE TABLE t (v TEXT, n INTEGER)");
  const std::string value("a\0b \xC3\xA9", 6);
  Statement insert = db.prepare("INSERT INTO t (v, n) VALUES (?, ?)");
  insert.execute(value, std::optional<std::int64_t>());
  insert.execute(nullptr, std::optional<std::int64_t>(7));
  Statement read = db.prepare("SELECT v, n FROM t ORDER BY rowid");
  Cursor c = read.query();
  ASSERT_TRUE(c.next());
  EXPECT_EQ(c.text(0), value);
  EXPECT_TRUE(c.is_null(1));
  ASSERT_TRUE(c.next());
  EXPECT_EQ(c.text(0), "");
  EXPECT_EQ(c.int64(1), 7);
}

TEST(Sqlite, BadSqlIsAStoreError) {
  Database db(":memory:");
  EXPECT_THROW(db.prepare("SELEKT 1"), StoreError);
  EXPECT_THROW(db.exec("CREATE TABLE"), StoreError);
}

}  // namespace
}  // namespace drawbridge::store::sqlite
