// PostgresStore: the session catalog the control plane shows (sessions.list, describe, create,
// reset, labels) and the receipts of taken messages.

#include <algorithm>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "store/postgres_store_rows.h"

namespace drawbridge::store {

using namespace postgres;

namespace {

// The session row, its label and its newest entry since the last reset. substr() counts
// characters, as SQLite's does.
constexpr std::string_view kSummarySelect =
    "SELECT s.session_key, s.created_at_ms, s.updated_at_ms, s.state, "
    "coalesce(m.label, ''), "
    "(SELECT t.role FROM transcript t WHERE t.session_key = s.session_key AND t.id > "
    "coalesce(m.history_from, 0) ORDER BY t.id DESC LIMIT 1), "
    "(SELECT substr(t.text, 1, $1::integer) FROM transcript t WHERE t.session_key = "
    "s.session_key AND t.id > coalesce(m.history_from, 0) ORDER BY t.id DESC LIMIT 1) "
    "FROM sessions s LEFT JOIN session_meta m ON m.session_key = s.session_key ";

SessionSummary read_summary(const Result& r, int row) {
  SessionSummary out;
  out.session_key = r.text(row, 0);
  out.created_at_ms = r.int64(row, 1);
  out.updated_at_ms = r.int64(row, 2);
  out.state = r.text(row, 3);
  out.label = r.text(row, 4);
  out.last_role = r.text(row, 5);  // NULL (no entry) reads as ""
  out.last_text = r.text(row, 6);
  return out;
}

// As SqliteStore's: at most 2^30 characters.
std::int64_t preview_limit(std::size_t chars) {
  return static_cast<std::int64_t>(std::min<std::size_t>(chars, 1u << 30));
}

void write_label(Connection& c, const std::string& session_key, const std::string& label) {
  c.query(
      "INSERT INTO session_meta (session_key, label) VALUES ($1, $2) "
      "ON CONFLICT (session_key) DO UPDATE SET label = excluded.label",
      session_key, label);
}

// False: no such session.
bool touch(Connection& c, const std::string& session_key, std::int64_t now_ms) {
  return c.query("UPDATE sessions SET updated_at_ms = $1 WHERE session_key = $2", now_ms,
                 session_key)
             .affected() > 0;
}

}  // namespace

std::vector<SessionSummary> PostgresStore::list_sessions(std::size_t limit, std::size_t offset,
                                                         std::size_t preview_chars) {
  static const std::string sql = std::string(kSummarySelect) +
                                 "ORDER BY s.updated_at_ms DESC, s.session_key LIMIT $2 OFFSET $3";
  std::lock_guard lock(mutex_);
  Transaction tx(*conn_, Transaction::Mode::single);
  const Result r = conn_->query(sql, preview_limit(preview_chars), clamp_to_int64(limit),
                                clamp_to_int64(offset));
  std::vector<SessionSummary> out;
  out.reserve(static_cast<std::size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) out.push_back(read_summary(r, i));
  tx.commit();
  return out;
}

std::optional<SessionSummary> PostgresStore::session_summary(const std::string& session_key,
                                                             std::size_t preview_chars) {
  static const std::string sql = std::string(kSummarySelect) + "WHERE s.session_key = $2";
  std::lock_guard lock(mutex_);
  Transaction tx(*conn_, Transaction::Mode::single);
  const Result r = conn_->query(sql, preview_limit(preview_chars), session_key);
  std::optional<SessionSummary> out;
  if (r.rows() > 0) out = read_summary(r, 0);
  tx.commit();
  return out;
}

bool PostgresStore::create_session(const std::string& session_key, const std::string& label,
                                   std::int64_t now_ms) {
  std::lock_guard lock(mutex_);
  Connection& c = *conn_;
  Transaction tx(c, Transaction::Mode::block);
  const bool created =
      c.query(
           "INSERT INTO sessions (session_key, created_at_ms, updated_at_ms) VALUES ($1, $2, $2) "
           "ON CONFLICT (session_key) DO NOTHING",
           session_key, now_ms)
          .affected() > 0;
  if (!label.empty()) write_label(c, session_key, label);
  tx.commit();
  return created;
}

bool PostgresStore::set_session_label(const std::string& session_key, const std::string& label,
                                      std::int64_t now_ms) {
  std::lock_guard lock(mutex_);
  Connection& c = *conn_;
  Transaction tx(c, Transaction::Mode::block);
  // Committed either way: inside a batch, a rollback would undo the batch.
  const bool found = touch(c, session_key, now_ms);
  if (found) write_label(c, session_key, label);
  tx.commit();
  return found;
}

bool PostgresStore::reset_session(const std::string& session_key, std::int64_t now_ms) {
  std::lock_guard lock(mutex_);
  Connection& c = *conn_;
  Transaction tx(c, Transaction::Mode::block);
  const bool found = touch(c, session_key, now_ms);
  if (found) {
    c.query(
        "INSERT INTO session_meta (session_key, history_from) VALUES ($1, "
        "coalesce((SELECT max(id) FROM transcript WHERE session_key = $1), 0)) "
        "ON CONFLICT (session_key) DO UPDATE SET history_from = excluded.history_from",
        session_key);
  }
  tx.commit();
  return found;
}

std::optional<InputReceipt> PostgresStore::input_receipt(const std::string& channel,
                                                         const std::string& external_id) {
  std::lock_guard lock(mutex_);
  Transaction tx(*conn_, Transaction::Mode::single);
  const Result r = conn_->query(
      "SELECT i.session_key, i.state, (SELECT t.id FROM transcript t WHERE t.inbound_id = i.id "
      "AND t.role = 'user' ORDER BY t.id LIMIT 1) FROM inbox i "
      "WHERE i.channel = $1 AND i.external_id = $2",
      channel, external_id);
  std::optional<InputReceipt> out;
  if (r.rows() > 0) {
    out = InputReceipt{r.text(0, 0), inbox_state_from(r.text(0, 1)), r.int64(0, 2)};
  }
  tx.commit();
  return out;
}

}  // namespace drawbridge::store
