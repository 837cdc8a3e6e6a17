#pragma once

// A thin RAII layer over libpq: a connection with a cache of prepared statements, results and
// transactions. Values only ever travel as parameters ($1, $2, ...), never inside SQL text.
// Every failure is a StoreError carrying PostgreSQL's message (never the connection string).

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

struct pg_conn;
struct pg_result;

namespace drawbridge::store {
class StoreError;
}

namespace drawbridge::store::pg {

// Text PostgreSQL can store: valid UTF-8 without NUL. Each NUL byte and each byte that is not
// part of a valid UTF-8 sequence becomes U+FFFD, so that a message SQLite would take is never
// refused (a channel asks again for what was not stored: a refusal would repeat forever).
std::string storable_text(std::string_view s);

// One query parameter in text format; nullopt is SQL NULL. Text goes through storable_text.
// Implicit, so that a call reads like the statement: conn.query(sql, id, text, nullptr).
class Param {
 public:
  Param(std::nullptr_t) {}
  Param(std::int64_t v) : value_(std::to_string(v)) {}
  Param(int v) : value_(std::to_string(v)) {}
  Param(bool v) : value_(v ? "true" : "false") {}
  Param(std::string_view v) : value_(storable_text(v)) {}
  Param(const std::string& v) : value_(storable_text(v)) {}
  Param(const char* v) : value_(storable_text(v)) {}
  Param(const std::optional<std::int64_t>& v) {
    if (v) value_ = std::to_string(*v);
  }
  // A bigint[] literal, for `= ANY($n)`.
  static Param int64_array(const std::vector<std::int64_t>& values);
  // A text[] literal (each element made storable_text), for `unnest($n::text[])`.
  static Param text_array(const std::vector<std::string>& values);

  const std::optional<std::string>& value() const { return value_; }

 private:
  std::optional<std::string> value_;
};

// The rows of one statement, text format. Owns the PGresult.
class Result {
 public:
  explicit Result(pg_result* res) : res_(res) {}
  Result(Result&& other) noexcept;
  Result& operator=(Result&& other) noexcept;
  Result(const Result&) = delete;
  Result& operator=(const Result&) = delete;
  ~Result();

  int rows() const;
  bool is_null(int row, int column) const;
  std::string text(int row, int column) const;    // NULL reads as ""
  std::int64_t int64(int row, int column) const;  // NULL reads as 0
  bool boolean(int row, int column) const;        // NULL reads as false
  // Rows an INSERT, UPDATE or DELETE changed (its RETURNING rows included or not).
  std::int64_t affected() const;
  // The command tag: "COMMIT", "ROLLBACK", "INSERT 0 1", ...
  std::string command() const;

 private:
  pg_result* res_ = nullptr;
};

// One connection. Not thread-safe: PostgresStore serializes its calls.
class Connection {
 public:
  // `conninfo`: a libpq connection string or URI. `password`: sent as a keyword of its own
  // (PQconnectdbParams), never spliced into the string; "" leaves it to libpq (PGPASSWORD,
  // ~/.pgpass, the conninfo). Throws StoreError with libpq's reason.
  Connection(const std::string& conninfo, const std::string& password);
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection();

  // Runs `sql` with its parameters through a statement prepared on first use and kept for the
  // connection's life. `sql` must be a constant: the text is the cache key.
  template <typename... Args>
  Result query(std::string_view sql, const Args&... args) {
    return run(sql, {Param(args)...});
  }
  Result run(std::string_view sql, const std::vector<Param>& params);
  // A statement whose answer the caller need not wait for. Inside a batch (pipeline mode) it
  // is sent at once and its answer read with the next statement that waits for one (run(),
  // the commit): the statements between two such go in one round trip. `check` runs on the
  // answer then and may throw StoreError (as a failed statement does): the batch fails.
  // Outside a batch: run() and check, now.
  void defer(std::string_view sql, std::vector<Param> params,
             std::function<void(const Result&)> check = nullptr);
  template <typename... Args>
  void later(std::string_view sql, const Args&... args) {
    defer(sql, {Param(args)...});
  }
  // Runs SQL without parameters through the simple protocol (several statements allowed):
  // schema and session settings, never values.
  void exec(const std::string& sql);

  // Group commit, as sqlite::Database: between begin_batch() and commit_batch() every
  // Transaction joins one transaction. A method that fails inside it rolls the whole batch
  // back at once, and commit_batch() then throws. A batch runs in libpq's pipeline mode:
  // BEGIN and the deferred statements travel with the next statement that waits.
  void begin_batch();
  void commit_batch();
  void rollback_batch();
  bool in_batch() const { return batch_; }

  // Session settings (`SET ...`, no values): run now and again after every reconnect.
  void set_session_setup(std::string sql);
  // Re-establishes a connection that was lost (server restart, network), outside a
  // transaction only. Prepared statements are prepared again on their next use.
  void reconnect_if_lost();

  // LISTEN's side (store/pg_listener.h): the socket to wait on, and the notices that arrived
  // (channel, payload), read without blocking. Throws StoreError when the link is lost.
  int socket() const;
  std::vector<std::pair<std::string, std::string>> take_notices();

 private:
  friend class Transaction;
  [[noreturn]] void fail(std::string_view what, pg_result* res = nullptr) const;
  // The error `fail` throws (`res` is cleared).
  StoreError error_of(std::string_view what, pg_result* res) const;
  Result check(pg_result* res, std::string_view what, bool rows) const;
  bool in_transaction() const;

  void commit_now();

  // Pipeline mode (a batch).
  struct Pending {
    std::string what;                          // for the error
    std::function<void(const Result&)> check;  // on its answer
    bool keep = false;                         // the answer sync() returns
  };
  // The prepared statement's name, prepared first when new (in pipeline mode after a sync).
  const std::string& prepared(std::string_view sql, int params);
  void send(const std::string& name, const std::vector<Param>& params, Pending pending);
  void send_plain(const char* sql, Pending pending);
  // Sends a sync and reads every answer up to it, running the checks; then throws the first
  // error there was (a failed statement, a check). Returns the kept answer.
  std::optional<Result> sync();
  // Reads what is pending (errors ignored) and leaves pipeline mode.
  void leave_pipeline();

  pg_conn* conn_ = nullptr;
  std::string session_setup_;
  std::unordered_map<std::string, std::string> prepared_;  // SQL -> statement name
  bool batch_ = false;
  bool batch_failed_ = false;
  bool pipelined_ = false;
  std::vector<Pending> pending_;
  // A sync at most this many statements apart: what the server answers meanwhile waits in
  // the socket's buffers, which must not fill up while this side is still sending.
  static constexpr std::size_t kMaxPending = 128;
};

// A unit of work on the connection. `block`: several statements, BEGIN ... COMMIT. `single`:
// one statement, atomic on its own, so no BEGIN outside a batch. Inside a batch both join it;
// destroyed without commit() (an exception), it rolls back, and inside a batch it rolls the
// whole batch back and marks it failed (the SQLite driver's rule).
class Transaction {
 public:
  enum class Mode { single, block };
  Transaction(Connection& conn, Mode mode);
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  ~Transaction();
  void commit();

 private:
  Connection& conn_;
  bool open_ = true;
  bool nested_ = false;  // part of a batch
  bool began_ = false;   // this object sent BEGIN
};

}  // namespace drawbridge::store::pg
