#include "store/pg.h"

#include <libpq-fe.h>

#include <algorithm>
#include <charconv>
#include <optional>
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

StoreError Connection::error_of(std::string_view what, pg_result* res) const {
  std::string message(what);
  message += ": ";
  const char* primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : nullptr;
  const char* sqlstate = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : nullptr;
  // The primary message only: a DETAIL may quote the row's values.
  message += primary ? std::string(primary) : trimmed(PQerrorMessage(conn_));
  if (sqlstate) message += std::string(" (SQLSTATE ") + sqlstate + ")";
  PQclear(res);
  return StoreError(message);
}

void Connection::fail(std::string_view what, pg_result* res) const {
  throw error_of(what, res);
}

Result Connection::check(pg_result* res, std::string_view what, bool rows) const {
  if (res == nullptr) fail(what);
  const auto status = PQresultStatus(res);
  if (status == PGRES_COMMAND_OK || (rows && status == PGRES_TUPLES_OK)) return Result(res);
  fail(what, res);
}

const std::string& Connection::prepared(std::string_view sql, int params) {
  std::string key(sql);
  auto it = prepared_.find(key);
  if (it != prepared_.end()) return it->second;
  // PQprepare waits for its answer, which pipeline mode forbids: what is pending is read
  // first (once per statement and connection).
  const bool pipelined = pipelined_;
  if (pipelined) {
    if (!pending_.empty()) sync();
    if (PQexitPipelineMode(conn_) != 1) fail("cannot leave pipeline mode");
    pipelined_ = false;
  }
  const std::string name = "drawbridge_" + std::to_string(prepared_.size() + 1);
  check(PQprepare(conn_, name.c_str(), key.c_str(), params, nullptr),
        "prepare failed (" + key + ")", false);
  it = prepared_.emplace(std::move(key), name).first;
  if (pipelined) {
    if (PQenterPipelineMode(conn_) != 1) fail("cannot enter pipeline mode");
    pipelined_ = true;
  }
  return it->second;
}

Result Connection::run(std::string_view sql, const std::vector<Param>& params) {
  const std::string& name = prepared(sql, static_cast<int>(params.size()));
  if (pipelined_) {
    send(name, params, {"query failed (" + std::string(sql) + ")", nullptr, true});
    return std::move(*sync());
  }
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const auto& p : params) values.push_back(p.value() ? p.value()->c_str() : nullptr);
  return check(PQexecPrepared(conn_, name.c_str(), static_cast<int>(values.size()),
                              values.data(), nullptr, nullptr, 0),
               "query failed (" + std::string(sql) + ")", true);
}

void Connection::defer(std::string_view sql, std::vector<Param> params,
                       std::function<void(const Result&)> check_answer) {
  if (!pipelined_) {
    const Result r = run(sql, params);
    if (check_answer) check_answer(r);
    return;
  }
  const std::string& name = prepared(sql, static_cast<int>(params.size()));
  send(name, params, {"query failed (" + std::string(sql) + ")", std::move(check_answer), false});
  if (pending_.size() >= kMaxPending) sync();
}

void Connection::send(const std::string& name, const std::vector<Param>& params,
                      Pending pending) {
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const auto& p : params) values.push_back(p.value() ? p.value()->c_str() : nullptr);
  if (PQsendQueryPrepared(conn_, name.c_str(), static_cast<int>(values.size()), values.data(),
                          nullptr, nullptr, 0) != 1) {
    fail(pending.what);
  }
  pending_.push_back(std::move(pending));
}

void Connection::send_plain(const char* sql, Pending pending) {
  if (PQsendQueryParams(conn_, sql, 0, nullptr, nullptr, nullptr, nullptr, 0) != 1) {
    fail(pending.what);
  }
  pending_.push_back(std::move(pending));
}

std::optional<Result> Connection::sync() {
  auto pending = std::move(pending_);
  pending_.clear();
  if (PQpipelineSync(conn_) != 1) fail("lost the connection to PostgreSQL");
  std::optional<Result> kept;
  std::optional<StoreError> error;
  // Each statement's answer is its result, then a null; the sync's is PGRES_PIPELINE_SYNC.
  // After an error, the statements up to the sync answer PGRES_PIPELINE_ABORTED.
  std::size_t i = 0;
  while (true) {
    pg_result* r = PQgetResult(conn_);
    if (r == nullptr) {
      if (PQstatus(conn_) != CONNECTION_OK || i >= pending.size()) {
        fail("lost the connection to PostgreSQL");
      }
      ++i;
      continue;
    }
    const auto status = PQresultStatus(r);
    if (status == PGRES_PIPELINE_SYNC) {
      PQclear(r);
      break;
    }
    if (i >= pending.size()) {
      PQclear(r);  // not asked for: cannot happen
      continue;
    }
    const Pending& p = pending[i];
    if (status == PGRES_PIPELINE_ABORTED) {
      PQclear(r);
      if (!error) error = StoreError(p.what + ": the batch was aborted by an earlier error");
      continue;
    }
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
      if (!error) {
        error = error_of(p.what, r);
      } else {
        PQclear(r);
      }
      continue;
    }
    Result res(r);
    if (!error && p.check) {
      try {
        p.check(res);
      } catch (const StoreError& e) {
        error = e;
      }
    }
    if (p.keep) kept = std::move(res);
  }
  if (error) {
    // Whoever catches it, the batch does not commit (a refused fence above all).
    if (batch_) batch_failed_ = true;
    throw *error;
  }
  return kept;
}

void Connection::leave_pipeline() {
  if (!pipelined_) return;
  if (!pending_.empty()) {
    try {
      sync();
    } catch (const StoreError&) {
      // Read to the sync, or the connection is lost: either way nothing is pending now.
    }
  }
  pending_.clear();
  PQexitPipelineMode(conn_);
  pipelined_ = false;
}

void Connection::exec(const std::string& sql) {
  leave_pipeline();  // PQexec waits for its answer, which pipeline mode forbids
  check(PQexec(conn_, sql.c_str()), "exec failed (" + sql + ")", true);
}

void Connection::set_session_setup(std::string sql) {
  session_setup_ = std::move(sql);
  exec(session_setup_);
}

void Connection::reconnect_if_lost() {
  if (PQstatus(conn_) == CONNECTION_OK || batch_) return;
  prepared_.clear();
  pending_.clear();
  pipelined_ = false;
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
  if (PQenterPipelineMode(conn_) != 1) fail("cannot enter pipeline mode");
  pipelined_ = true;
  try {
    send_plain("BEGIN", {"begin failed", nullptr, false});  // answered with the next statement
  } catch (const StoreError&) {
    leave_pipeline();
    throw;
  }
  batch_ = true;
  batch_failed_ = false;
}

void Connection::commit_batch() {
  if (batch_failed_) {
    batch_failed_ = false;
    leave_pipeline();
    throw StoreError("an operation of the batch failed; the whole batch was rolled back");
  }
  if (!batch_) return;
  batch_ = false;
  try {
    if (pipelined_) {
      // A check is this side's: the answers it looks at are read before the commit is sent.
      if (std::any_of(pending_.begin(), pending_.end(),
                      [](const Pending& p) { return static_cast<bool>(p.check); })) {
        sync();
      }
      send_plain("COMMIT", {"commit failed", nullptr, true});
      const auto res = sync();
      leave_pipeline();
      // COMMIT of a transaction an error aborted answers "ROLLBACK", not an error.
      if (!res || res->command() != "COMMIT") {
        throw StoreError("commit failed: the transaction had been rolled back by an earlier error");
      }
      return;
    }
    if (PQtransactionStatus(conn_) == PQTRANS_INERROR) {
      exec("ROLLBACK");
      throw StoreError(
          "the batch was rolled back by an earlier error; nothing in it was committed");
    }
    commit_now();
  } catch (const StoreError&) {
    leave_pipeline();
    if (in_transaction()) exec("ROLLBACK");
    throw;
  }
}

void Connection::rollback_batch() {
  batch_failed_ = false;
  leave_pipeline();
  if (!batch_) return;
  batch_ = false;
  if (in_transaction()) exec("ROLLBACK");
}

Transaction::Transaction(Connection& conn, Mode mode) : conn_(conn) {
  if (conn.batch_failed_) {
    // An operation of the batch failed and someone caught it: nothing more is written (not
    // even on its own) until the batch ends.
    open_ = false;
    throw StoreError("an earlier operation of the batch failed; nothing more is written in it");
  }
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
  // What the batch sent is read first: the transaction's state is known after it.
  if (nested_) conn_.leave_pipeline();
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
