#pragma once

// A thin RAII layer over the SQLite C API: a connection, cached prepared statements and
// transactions. Every failure is a StoreError carrying SQLite's message.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

struct sqlite3;
struct sqlite3_stmt;

namespace drawbridge::store::sqlite {

class Statement;

// The rows of one execution of a Statement. Resets the statement when it goes out of scope, so
// a cached statement never keeps a read snapshot open, even when the caller throws.
class Cursor {
 public:
  explicit Cursor(sqlite3_stmt* stmt) : stmt_(stmt) {}
  Cursor(const Cursor&) = delete;
  Cursor& operator=(const Cursor&) = delete;
  ~Cursor();

  // Steps to the next row; false when there are no more.
  bool next();

  std::int64_t int64(int column) const;
  std::string text(int column) const;
  bool is_null(int column) const;

 private:
  sqlite3_stmt* stmt_;
};

// A statement prepared once and reused: each call binds its arguments (1-based, in order) after
// resetting whatever the previous call left behind.
class Statement {
 public:
  Statement(sqlite3* db, std::string_view sql);
  Statement(Statement&& other) noexcept;
  Statement& operator=(Statement&& other) noexcept;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  ~Statement();

  template <typename... Args>
  Cursor query(const Args&... args) {
    reset();
    int index = 0;
    (bind(++index, args), ...);
    return Cursor(stmt_);
  }

  // Runs a statement that returns no rows; returns the number of rows it changed.
  template <typename... Args>
  int execute(const Args&... args) {
    Cursor cursor = query(args...);
    cursor.next();
    return changes();
  }

 private:
  void reset();
  int changes() const;
  void bind(int index, std::int64_t value);
  void bind(int index, std::string_view value);
  void bind(int index, const char* value) { bind(index, std::string_view(value)); }
  void bind(int index, std::nullptr_t);
  void bind(int index, const std::optional<std::int64_t>& value);

  sqlite3_stmt* stmt_ = nullptr;
};

// One connection. The begin/commit/rollback statements are cached here for Transaction.
class Database {
 public:
  // Opens or creates the file (never its folder). Throws StoreError naming the path and
  // SQLite's reason, including the OS error when there is one.
  explicit Database(const std::string& path);
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  // Runs one-off SQL (pragmas, migrations; several statements allowed). Not for the hot path.
  void exec(const std::string& sql);
  Statement prepare(std::string_view sql) { return Statement(db_.get(), sql); }
  std::int64_t last_insert_rowid() const;
  void set_busy_timeout(int ms);
  sqlite3* handle() const { return db_.get(); }

  // Group commit: between begin_batch() and commit_batch() every Transaction joins one write
  // transaction, so many operations share one WAL write (and one fsync). No savepoints: they
  // copy every page they touch into a sub-journal, which cost more than the operations. So a
  // batch is all or nothing: an operation that fails inside it rolls the whole batch back,
  // and commit_batch() then throws.
  void begin_batch();
  void commit_batch();
  void rollback_batch();
  bool in_batch() const { return batch_; }

 private:
  friend class Transaction;
  bool batch_ = false;
  bool batch_failed_ = false;
  struct Close {
    void operator()(sqlite3* db) const;
  };
  // Declared first so it is closed after the statements below are finalized.
  std::unique_ptr<sqlite3, Close> db_;
  Statement begin_read_;
  Statement begin_write_;
  Statement commit_;
  Statement rollback_;
};

// BEGIN on construction, ROLLBACK on destruction unless commit() succeeded. `write` takes the
// write lock up front (BEGIN IMMEDIATE) so a read never has to be upgraded mid-transaction,
// which is the one case busy_timeout cannot wait out.
class Transaction {
 public:
  enum class Mode { read, write };
  Transaction(Database& db, Mode mode);
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  ~Transaction();
  void commit();

 private:
  Database& db_;
  bool open_ = true;
  bool nested_ = false;  // part of a batch
};

}  // namespace drawbridge::store::sqlite
