#include "store/sqlite.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <limits>
#include <system_error>
#include <utility>

#include "store/store.h"
#include "store/wal_write_buffer.h"

namespace drawbridge::store::sqlite {
namespace {

[[noreturn]] void fail(sqlite3* db, std::string_view what) {
  std::string message(what);
  message += ": ";
  message += db ? sqlite3_errmsg(db) : "out of memory";
  throw StoreError(message);
}

[[noreturn]] void fail(sqlite3_stmt* stmt, std::string_view what) {
  std::string message(what);
  message += " (";
  message += sqlite3_sql(stmt);
  message += ")";
  fail(sqlite3_db_handle(stmt), message);
}

}  // namespace

Cursor::~Cursor() {
  sqlite3_reset(stmt_);
}

bool Cursor::next() {
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  fail(stmt_, "step failed");
}

std::int64_t Cursor::int64(int column) const {
  return sqlite3_column_int64(stmt_, column);
}

std::string Cursor::text(int column) const {
  // The pointer must be read before the byte count: the count is of the converted value.
  const auto* data = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, column));
  const int size = sqlite3_column_bytes(stmt_, column);
  return data ? std::string(data, static_cast<std::size_t>(size)) : std::string();
}

bool Cursor::is_null(int column) const {
  return sqlite3_column_type(stmt_, column) == SQLITE_NULL;
}

Statement::Statement(sqlite3* db, std::string_view sql) {
  // PERSISTENT: these live as long as the connection, so SQLite keeps them out of lookaside.
  if (sqlite3_prepare_v3(db, sql.data(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT,
                         &stmt_, nullptr) != SQLITE_OK) {
    fail(db, "prepare failed (" + std::string(sql) + ")");
  }
}

Statement::Statement(Statement&& other) noexcept : stmt_(std::exchange(other.stmt_, nullptr)) {}

Statement& Statement::operator=(Statement&& other) noexcept {
  if (this != &other) {
    sqlite3_finalize(stmt_);
    stmt_ = std::exchange(other.stmt_, nullptr);
  }
  return *this;
}

Statement::~Statement() {
  sqlite3_finalize(stmt_);
}

void Statement::reset() {
  sqlite3_reset(stmt_);
}

int Statement::changes() const {
  return sqlite3_changes(sqlite3_db_handle(stmt_));
}

void Statement::bind(int index, std::int64_t value) {
  if (sqlite3_bind_int64(stmt_, index, value) != SQLITE_OK) fail(stmt_, "bind failed");
}

void Statement::bind(int index, std::string_view value) {
  // TRANSIENT copies the text, so a temporary argument cannot dangle before the step.
  if (sqlite3_bind_text64(stmt_, index, value.data(), value.size(), SQLITE_TRANSIENT,
                          SQLITE_UTF8) != SQLITE_OK) {
    fail(stmt_, "bind failed");
  }
}

void Statement::bind(int index, std::nullptr_t) {
  if (sqlite3_bind_null(stmt_, index) != SQLITE_OK) fail(stmt_, "bind failed");
}

void Statement::bind(int index, const std::optional<std::int64_t>& value) {
  if (value) {
    bind(index, *value);
  } else {
    bind(index, nullptr);
  }
}

void Database::Close::operator()(sqlite3* db) const {
  sqlite3_close_v2(db);
}

namespace {

// SQLite creates a database file 0644 less the umask, and its -wal and -shm files with the
// database file's mode: made 0600 first, every transcript stays private whatever the umask.
// An existing file keeps its mode; a failure here is left for SQLite to report.
// Only a file that does not exist yet is opened (O_EXCL): closing a descriptor of a file drops
// every POSIX lock this process holds on it, so opening and closing an existing database here
// would drop the SHARED lock of this process's other connections. Another process (the
// successor of a re-exec, the predecessor that hands over to it, a CLI command) could then take
// the EXCLUSIVE lock when it closes its last connection, checkpoint, and delete the -wal and
// -shm files this process still writes to: its commits from then on were lost at a kill -9.
void create_private_file(const std::string& path) {
  if (path.empty() || path == ":memory:" || path.starts_with("file:")) return;
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd >= 0) ::close(fd);  // new: nobody, this process included, can hold a lock on it yet
}

sqlite3* open_connection(const std::string& path) {
  create_private_file(path);
  sqlite3* raw = nullptr;
  // NOMUTEX: SqliteStore serializes every call itself, SQLite's own mutex would be redundant.
  const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
  // The WAL's frames of a commit go to the file in a few writes (store/wal_write_buffer.h).
  const int rc = sqlite3_open_v2(path.c_str(), &raw, flags, wal_write_buffer_vfs());
  if (rc == SQLITE_OK) return raw;
  std::string message = "cannot open store \"" + path + "\": ";
  message += raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc);
  // SQLite's "unable to open database file" does not say why; the OS error does.
  if (const int os_error = raw ? sqlite3_system_errno(raw) : 0; os_error != 0) {
    message += " (" + std::generic_category().message(os_error) + ")";
  }
  sqlite3_close_v2(raw);
  throw StoreError(message);
}

}  // namespace

Database::Database(const std::string& path)
    : db_(open_connection(path)),
      begin_read_(db_.get(), "BEGIN"),
      begin_write_(db_.get(), "BEGIN IMMEDIATE"),
      commit_(db_.get(), "COMMIT"),
      rollback_(db_.get(), "ROLLBACK") {}

void Database::begin_batch() {
  if (batch_) return;
  begin_write_.execute();
  batch_ = true;
  batch_failed_ = false;
}

void Database::commit_batch() {
  if (batch_failed_) {
    batch_failed_ = false;
    throw StoreError("an operation of the batch failed; the whole batch was rolled back");
  }
  if (!batch_) return;
  batch_ = false;
  // An error such as SQLITE_FULL may have rolled the whole batch back already.
  if (sqlite3_get_autocommit(db_.get()) != 0) {
    throw StoreError("the batch was rolled back by an earlier error; nothing in it was committed");
  }
  try {
    commit_.execute();
  } catch (const StoreError&) {
    if (sqlite3_get_autocommit(db_.get()) == 0) rollback_.execute();
    throw;
  }
}

void Database::rollback_batch() {
  batch_failed_ = false;
  if (!batch_) return;
  batch_ = false;
  if (sqlite3_get_autocommit(db_.get()) == 0) rollback_.execute();
}

void Database::exec(const std::string& sql) {
  char* error = nullptr;
  if (sqlite3_exec(db_.get(), sql.c_str(), nullptr, nullptr, &error) != SQLITE_OK) {
    std::string message = error ? error : sqlite3_errmsg(db_.get());
    sqlite3_free(error);
    throw StoreError("exec failed (" + sql + "): " + message);
  }
}

std::int64_t Database::last_insert_rowid() const {
  return sqlite3_last_insert_rowid(db_.get());
}

void Database::set_busy_timeout(int ms) {
  if (sqlite3_busy_timeout(db_.get(), ms) != SQLITE_OK) fail(db_.get(), "busy_timeout failed");
}

Transaction::Transaction(Database& db, Mode mode) : db_(db) {
  if (db.batch_ && sqlite3_get_autocommit(db.handle()) == 0) {
    nested_ = true;
    return;
  }
  (mode == Mode::write ? db.begin_write_ : db.begin_read_).execute();
}

Transaction::~Transaction() {
  // Some errors (SQLITE_FULL, IOERR, BUSY) already rolled the transaction back; a second
  // ROLLBACK would only fail. A destructor has no one to report a rollback failure to.
  if (open_ && sqlite3_get_autocommit(db_.handle()) == 0) {
    try {
      db_.rollback_.execute();
    } catch (const StoreError&) {
    }
  }
  if (open_ && nested_) {
    // Without savepoints the failed operation cannot be undone alone: the batch goes.
    db_.batch_ = false;
    db_.batch_failed_ = true;
  }
}

void Transaction::commit() {
  if (!nested_) db_.commit_.execute();
  open_ = false;
}

}  // namespace drawbridge::store::sqlite
