#include "store/pg.h"

#include <libpq-fe.h>

#include <charconv>
#include <cstring>
#include <utility>

#include "store/store.h"

namespace drawbridge::store::pg {
namespace {

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// Notices ("relation already exists, skipping") are not errors; libpq would print them.
void ignore_notice(void*, const char*) {}

}  // namespace

namespace {

// The length of the valid UTF-8 sequence at s[i] (RFC 3629: no overlong forms, no surrogates,
// nothing above U+10FFFF), 0 when there is none; NUL counts as none.
std::size_t utf8_sequence(std::string_view s, std::size_t i) {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const unsigned char c = byte(0);
  if (c == 0) return 0;
  if (c < 0x80) return 1;
  std::size_t n = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // the range of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (i + n > s.size() || byte(1) < lo || byte(1) > hi) return 0;
  for (std::size_t k = 2; k < n; ++k) {
    if ((byte(k) & 0xC0) != 0x80) return 0;
  }
  return n;
}

}  // namespace

std::string storable_text(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const std::size_t n = utf8_sequence(s, i);
    if (n == 0) break;
    i += n;
  }
  if (i == s.size()) return std::string(s);  // the usual case: nothing to replace
  std::string out(s.substr(0, i));
  while (i < s.size()) {
    const std::size_t n = utf8_sequence(s, i);
    if (n == 0) {
      out += "\xEF\xBF\xBD";  // U+FFFD
      ++i;
    } else {
      out.append(s.substr(i, n));
      i += n;
    }
  }
  return out;
}

Param Param::int64_array(const std::vector<std::int64_t>& values) {
  std::string s = "{";
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (i > 0) s += ',';
    s += std::to_string(values[i]);
  }
  s += '}';
  return Param(s);
}

Param Param::text_array(const std::vector<std::string>& values) {
  // Each element quoted, with " and \ escaped: the array literal's own syntax, never SQL.
  std::string s = "{";
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (i > 0) s += ',';
    s += '"';
    for (char c : storable_text(values[i])) {
      if (c == '"' || c == '\\') s += '\\';
      s += c;
    }
    s += '"';
  }
  s += '}';
  Param p(nullptr);
  p.value_ = std::move(s);
  return p;
}

Result::Result(Result&& other) noexcept : res_(std::exchange(other.res_, nullptr)) {}

Result& Result::operator=(Result&& other) noexcept {
  if (this != &other) {
    PQclear(res_);
    res_ = std::exchange(other.res_, nullptr);
  }
  return *this;
}

Result::~Result() {
  PQclear(res_);
}

int Result::rows() const {
  return PQntuples(res_);
}

bool Result::is_null(int row, int column) const {
  return PQgetisnull(res_, row, column) != 0;
}

std::string Result::text(int row, int column) const {
  if (is_null(row, column)) return {};
  return std::string(PQgetvalue(res_, row, column),
                     static_cast<std::size_t>(PQgetlength(res_, row, column)));
}

std::int64_t Result::int64(int row, int column) const {
  if (is_null(row, column)) return 0;
  const char* data = PQgetvalue(res_, row, column);
  const char* end = data + PQgetlength(res_, row, column);
  std::int64_t value = 0;
  const auto [ptr, ec] = std::from_chars(data, end, value);
  if (ec != std::errc() || ptr != end) {
    throw StoreError("column " + std::to_string(column) + " is not an integer: \"" +
                     std::string(data, end) + "\"");
  }
  return value;
}

bool Result::boolean(int row, int column) const {
  return !is_null(row, column) && PQgetvalue(res_, row, column)[0] == 't';
}

std::int64_t Result::affected() const {
  const char* n = PQcmdTuples(res_);
  std::int64_t value = 0;
  std::from_chars(n, n + std::strlen(n), value);
  return value;
}

std::string Result::command() const {
  return PQcmdStatus(res_);
}

Connection::Connection(const std::string& conninfo, const std::string& password) {
  // Later keywords win over earlier ones, and the expanded conninfo over what precedes it: the
  // defaults come first, what must hold (the password given apart, UTF-8) last.
  // A TCP link that goes dead (a cut network, a host gone) fails a call within about 10 s
  // instead of hanging the store thread or the heartbeat for the kernel's 15 minutes:
  // unacknowledged data times out (tcp_user_timeout) and an idle link is probed (keepalives).
  std::vector<const char*> keys = {"connect_timeout",     "tcp_user_timeout",
                                   "keepalives",          "keepalives_idle",
                                   "keepalives_interval", "keepalives_count",
                                   "fallback_application_name", "dbname",
                                   "client_encoding"};
  std::vector<const char*> values = {"10", "10000", "1", "5", "2", "3",
                                     "drawbridge", conninfo.c_str(), "UTF8"};
  if (!password.empty()) {
    keys.push_back("password");
    values.push_back(password.c_str());
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);
  conn_ = PQconnectdbParams(keys.data(), values.data(), 1);
  if (conn_ == nullptr) throw StoreError("cannot connect to PostgreSQL: out of memory");
  if (PQstatus(conn_) != CONNECTION_OK) {
    // libpq's reason names the server and the user, never the password or the conninfo.
    std::string reason = trimmed(PQerrorMessage(conn_));
    PQfinish(conn_);
    conn_ = nullptr;
    throw StoreError("cannot connect to PostgreSQL: " + reason);
  }
  PQsetNoticeProcessor(conn_, ignore_notice, nullptr);
}

Connection::~Connection() {
  PQfinish(conn_);
}

void Connection::fail(std::string_view what, pg_result* res) const {
  std::string message(what);
  message += ": ";
  const char* primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : nullptr;
  const char* sqlstate = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : nullptr;
  // The primary message only: a DETAIL may quote the row's values.
  message += primary ? std::string(primary) : trimmed(PQerrorMessage(conn_));
  if (sqlstate) message += std::string(" (SQLSTATE ") + sqlstate + ")";
  PQclear(res);
  throw StoreError(message);
}

Result Connection::check(pg_result* res, std::string_view what, bool rows) const {
  if (res == nullptr) fail(what);
  const auto status = PQresultStatus(res);
  if (status == PGRES_COMMAND_OK || (rows && status == PGRES_TUPLES_OK)) return Result(res);
  fail(what, res);
}

Result Connection::run(std::string_view sql, const std::vector<Param>& params) {
  std::string key(sql);
  auto it = prepared_.find(key);
  if (it == prepared_.end()) {
    const std::string name = "drawbridge_" + std::to_string(prepared_.size() + 1);
    check(PQprepare(conn_, name.c_str(), key.c_str(), static_cast<int>(params.size()), nullptr),
          "prepare failed (" + key + ")", false);
    it = prepared_.emplace(std::move(key), name).first;
  }
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const auto& p : params) values.push_back(p.value() ? p.value()->c_str() : nullptr);
  return check(PQexecPrepared(conn_, it->second.c_str(), static_cast<int>(values.size()),
                              values.data(), nullptr, nullptr, 0),
               "query failed (" + it->first + ")", true);
}

void Connection::exec(const std::string& sql) {
  check(PQexec(conn_, sql.c_str()), "exec failed (" + sql + ")", true);
}

void Connection::set_session_setup(std::string sql) {
  session_setup_ = std::move(sql);
  exec(session_setup_);
}

void Connection::reconnect_if_lost() {
  if (PQstatus(conn_) == CONNECTION_OK || batch_) return;
  prepared_.clear();
  PQreset(conn_);
  if (PQstatus(conn_) != CONNECTION_OK) fail("cannot reconnect to PostgreSQL");
  if (!session_setup_.empty()) exec(session_setup_);
}

int Connection::socket() const { return PQsocket(conn_); }

std::vector<std::pair<std::string, std::string>> Connection::take_notices() {
  if (PQconsumeInput(conn_) == 0) fail("lost the connection to PostgreSQL");
  std::vector<std::pair<std::string, std::string>> out;
  while (PGnotify* n = PQnotifies(conn_)) {
    out.emplace_back(n->relname ? n->relname : "", n->extra ? n->extra : "");
    PQfreemem(n);
  }
  return out;
}

bool Connection::in_transaction() const {
  const auto status = PQtransactionStatus(conn_);
  return status == PQTRANS_INTRANS || status == PQTRANS_INERROR || status == PQTRANS_ACTIVE;
}

void Connection::commit_now() {
  Result res = check(PQexec(conn_, "COMMIT"), "commit failed", false);
  // COMMIT of a transaction that an error aborted answers "ROLLBACK", not an error.
  if (res.command() != "COMMIT") {
    throw StoreError("commit failed: the transaction had been rolled back by an earlier error");
  }
}

void Connection::begin_batch() {
  if (batch_) return;
  reconnect_if_lost();
  exec("BEGIN");
  batch_ = true;
  batch_failed_ = false;
}

void Connection::commit_batch() {
  if (batch_failed_) {
    batch_failed_ = false;
    throw StoreError("an operation of the batch failed; the whole batch was rolled back");
  }
  if (!batch_) return;
  batch_ = false;
  if (PQtransactionStatus(conn_) == PQTRANS_INERROR) {
    exec("ROLLBACK");
    throw StoreError("the batch was rolled back by an earlier error; nothing in it was committed");
  }
  try {
    commit_now();
  } catch (const StoreError&) {
    if (in_transaction()) exec("ROLLBACK");
    throw;
  }
}

void Connection::rollback_batch() {
  batch_failed_ = false;
  if (!batch_) return;
  batch_ = false;
  if (in_transaction()) exec("ROLLBACK");
}

Transaction::Transaction(Connection& conn, Mode mode) : conn_(conn) {
  if (conn.batch_) {
    nested_ = true;
    return;
  }
  conn.reconnect_if_lost();
  if (mode == Mode::block) {
    conn.exec("BEGIN");
    began_ = true;
  }
}

Transaction::~Transaction() {
  if (!open_) return;
  // A destructor has no one to report a failed ROLLBACK to (a lost connection ends the
  // transaction anyway).
  if ((nested_ || began_) && conn_.in_transaction()) {
    try {
      conn_.exec("ROLLBACK");
    } catch (const StoreError&) {
    }
  }
  if (nested_) {
    // PostgreSQL aborts the whole transaction at a failed statement: the batch goes, as
    // SQLite's does without savepoints.
    conn_.batch_ = false;
    conn_.batch_failed_ = true;
  }
}

void Transaction::commit() {
  if (began_) conn_.commit_now();
  open_ = false;
}

}  // namespace drawbridge::store::pg
