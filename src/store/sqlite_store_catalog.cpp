// SqliteStore: the session catalog the control plane shows (sessions.list, describe, create,
// reset, labels) and the receipts of taken messages. Statements are prepared per call: these
// are operator actions and page loads, not the message path.

#include <algorithm>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "store/sqlite_store_impl.h"

namespace drawbridge::store {

namespace {

// The session row, its label and its newest entry since the last reset.
constexpr std::string_view kSummarySelect =
    "SELECT s.session_key, s.created_at_ms, s.updated_at_ms, s.state, "
    "coalesce(m.label, ''), "
    "(SELECT t.role FROM transcript t WHERE t.session_key = s.session_key AND t.id > "
    "coalesce(m.history_from, 0) ORDER BY t.id DESC LIMIT 1), "
    "(SELECT substr(t.text, 1, ?1) FROM transcript t WHERE t.session_key = s.session_key AND "
    "t.id > coalesce(m.history_from, 0) ORDER BY t.id DESC LIMIT 1) "
    "FROM sessions s LEFT JOIN session_meta m ON m.session_key = s.session_key ";

SessionSummary read_summary(const Cursor& c) {
  SessionSummary out;
  out.session_key = c.text(0);
  out.created_at_ms = c.int64(1);
  out.updated_at_ms = c.int64(2);
  out.state = c.text(3);
  out.label = c.text(4);
  if (!c.is_null(5)) out.last_role = c.text(5);
  if (!c.is_null(6)) out.last_text = c.text(6);
  return out;
}

std::int64_t clamp(std::size_t n) {
  return static_cast<std::int64_t>(std::min<std::size_t>(n, 1u << 30));
}

// substr() counts characters; a cut inside a multi-byte sequence cannot happen there, but the
// preview is still bounded in bytes by the caller's limit times four at most.
std::int64_t preview_limit(std::size_t chars) {
  return std::max<std::int64_t>(clamp(chars), 0);
}

void write_label(Database& db, const std::string& session_key, const std::string& label) {
  Statement set = db.prepare(
      "INSERT INTO session_meta (session_key, label) VALUES (?, ?) "
      "ON CONFLICT (session_key) DO UPDATE SET label = excluded.label");
  set.execute(session_key, label);
}

// False: no such session.
bool touch(Database& db, const std::string& session_key, std::int64_t now_ms) {
  Statement st = db.prepare("UPDATE sessions SET updated_at_ms = ? WHERE session_key = ?");
  return st.execute(now_ms, session_key) > 0;
}

}  // namespace

std::vector<SessionSummary> SqliteStore::list_sessions(std::size_t limit, std::size_t offset,
                                                       std::size_t preview_chars) {
  Impl& s = *impl_;
  std::lock_guard lock(s.mutex);
  Transaction tx(*s.db, Transaction::Mode::read);
  std::vector<SessionSummary> out;
  {
    Statement st = s.db->prepare(std::string(kSummarySelect) +
                                 "ORDER BY s.updated_at_ms DESC, s.session_key LIMIT ?2 OFFSET ?3");
    Cursor c = st.query(preview_limit(preview_chars), clamp(limit), clamp(offset));
    while (c.next()) out.push_back(read_summary(c));
  }
  tx.commit();
  return out;
}

std::optional<SessionSummary> SqliteStore::session_summary(const std::string& session_key,
                                                           std::size_t preview_chars) {
  Impl& s = *impl_;
  std::lock_guard lock(s.mutex);
  Transaction tx(*s.db, Transaction::Mode::read);
  std::optional<SessionSummary> out;
  {
    Statement st = s.db->prepare(std::string(kSummarySelect) + "WHERE s.session_key = ?2");
    Cursor c = st.query(preview_limit(preview_chars), session_key);
    if (c.next()) out = read_summary(c);
  }
  tx.commit();
  return out;
}

bool SqliteStore::create_session(const std::string& session_key, const std::string& label,
                                 std::int64_t now_ms) {
  Impl& s = *impl_;
  std::lock_guard lock(s.mutex);
  Transaction tx(*s.db, Transaction::Mode::write);
  Statement insert = s.db->prepare(
      "INSERT INTO sessions (session_key, created_at_ms, updated_at_ms) VALUES (?, ?, ?) "
      "ON CONFLICT (session_key) DO NOTHING");
  const bool created = insert.execute(session_key, now_ms, now_ms) > 0;
  if (!label.empty()) write_label(*s.db, session_key, label);
  tx.commit();
  return created;
}

bool SqliteStore::set_session_label(const std::string& session_key, const std::string& label,
                                    std::int64_t now_ms) {
  Impl& s = *impl_;
  std::lock_guard lock(s.mutex);
  Transaction tx(*s.db, Transaction::Mode::write);
  // Committed either way: inside a batch, a rollback would undo the batch.
  const bool found = touch(*s.db, session_key, now_ms);
  if (found) write_label(*s.db, session_key, label);
  tx.commit();
  return found;
}

bool SqliteStore::reset_session(const std::string& session_key, std::int64_t now_ms) {
  Impl& s = *impl_;
  std::lock_guard lock(s.mutex);
  Transaction tx(*s.db, Transaction::Mode::write);
  const bool found = touch(*s.db, session_key, now_ms);
  if (found) {
    Statement set = s.db->prepare(
        "INSERT INTO session_meta (session_key, history_from) VALUES (?1, "
        "coalesce((SELECT max(id) FROM transcript WHERE session_key = ?1), 0)) "
        "ON CONFLICT (session_key) DO UPDATE SET history_from = excluded.history_from");
    set.execute(session_key);
  }
  tx.commit();
  return found;
}

std::optional<InputReceipt> SqliteStore::input_receipt(const std::string& channel,
                                                       const std::string& external_id) {
  Impl& s = *impl_;
  std::lock_guard lock(s.mutex);
  Transaction tx(*s.db, Transaction::Mode::read);
  std::optional<InputReceipt> out;
  {
    Statement st = s.db->prepare(
        "SELECT i.session_key, i.state, (SELECT t.id FROM transcript t WHERE t.inbound_id = i.id "
        "AND t.role = 'user' ORDER BY t.id LIMIT 1) FROM inbox i "
        "WHERE i.channel = ? AND i.external_id = ?");
    Cursor c = st.query(channel, external_id);
    if (c.next()) {
      out = InputReceipt{c.text(0), inbox_state_from(c.text(1)), c.is_null(2) ? 0 : c.int64(2)};
    }
  }
  tx.commit();
  return out;
}

}  // namespace drawbridge::store
