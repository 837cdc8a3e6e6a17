// PostgresStore: session state, restart-loop protection and small named values.

#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "store/postgres_store_rows.h"

namespace drawbridge::store {

using namespace postgres;

std::optional<std::string> PostgresStore::get_value(const std::string& key) {
  std::lock_guard lock(mutex_);
  Transaction tx(*conn_, Transaction::Mode::single);
  const Result r = conn_->query("SELECT value FROM kv WHERE key = $1", key);
  std::optional<std::string> value;
  if (r.rows() > 0) value = r.text(0, 0);
  tx.commit();
  return value;
}

std::string PostgresStore::notice_scope() {
  std::lock_guard lock(mutex_);
  Transaction tx(*conn_, Transaction::Mode::single);
  const Result r = conn_->query("SELECT current_database() || '.' || current_schema()");
  std::string scope = r.rows() > 0 ? r.text(0, 0) : std::string();
  tx.commit();
  return scope;
}

void PostgresStore::notify(const std::string& channel, const std::string& payload) {
  if (payload.size() > kNoticeBytes) {
    throw StoreError("a notice of " + std::to_string(payload.size()) + " bytes is over " +
                     std::to_string(kNoticeBytes));
  }
  std::lock_guard lock(mutex_);
  Transaction tx(*conn_, Transaction::Mode::single);
  conn_->later("SELECT pg_notify($1, $2)", channel, payload);
  tx.commit();
}

void PostgresStore::notify_all(const std::string& channel,
                               const std::vector<std::string>& payloads) {
  if (payloads.empty()) return;
  for (const auto& p : payloads) {
    if (p.size() > kNoticeBytes) {
      throw StoreError("a notice of " + std::to_string(p.size()) + " bytes is over " +
                       std::to_string(kNoticeBytes));
    }
  }
  std::lock_guard lock(mutex_);
  Transaction tx(*conn_, Transaction::Mode::single);
  // unnest keeps the array's order (WITH ORDINALITY makes it explicit).
  conn_->later(
      "SELECT count(pg_notify($1, p)) FROM unnest($2::text[]) WITH ORDINALITY AS t(p, i)",
      channel, pg::Param::text_array(payloads));
  tx.commit();
}

void PostgresStore::set_value(const std::string& key, const std::string& value) {
  std::lock_guard lock(mutex_);
  Transaction tx(*conn_, Transaction::Mode::single);
  conn_->query(
      "INSERT INTO kv (key, value) VALUES ($1, $2) "
      "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
      key, value);
  tx.commit();
}

void PostgresStore::erase_value(const std::string& key) {
  std::lock_guard lock(mutex_);
  Transaction tx(*conn_, Transaction::Mode::single);
  conn_->query("DELETE FROM kv WHERE key = $1", key);
  tx.commit();
}

void PostgresStore::set_session_state(const std::string& session_key, const std::string& state,
                                      std::int64_t now_ms) {
  std::lock_guard lock(mutex_);
  Transaction tx(*conn_, Transaction::Mode::single);
  conn_->query("UPDATE sessions SET state = $1, updated_at_ms = $2 WHERE session_key = $3", state,
               now_ms, session_key);
  tx.commit();
}

std::vector<std::string> PostgresStore::sessions_in_state(const std::string& state) {
  std::lock_guard lock(mutex_);
  Transaction tx(*conn_, Transaction::Mode::single);
  const Result r =
      conn_->query("SELECT session_key FROM sessions WHERE state = $1 ORDER BY session_key", state);
  std::vector<std::string> out;
  out.reserve(static_cast<std::size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) out.push_back(r.text(i, 0));
  tx.commit();
  return out;
}

Store::Repair PostgresStore::repair_interrupted() {
  std::lock_guard lock(mutex_);
  Connection& c = *conn_;
  Transaction tx(c, Transaction::Mode::block);
  Repair out;
  {
    const Result r = c.query(
        "SELECT DISTINCT session_key FROM inbox WHERE state IN ('pending', 'running') "
        "ORDER BY session_key");
    for (int i = 0; i < r.rows(); ++i) out.sessions.push_back(r.text(i, 0));
  }
  out.removed_entries = c.query(
                             "DELETE FROM transcript WHERE role <> 'user' AND inbound_id IN "
                             "(SELECT id FROM inbox WHERE state IN ('pending', 'running'))")
                            .affected();
  c.query(
      "UPDATE sessions SET interrupts = interrupts + 1 WHERE NOT interrupt_counted AND "
      "session_key IN (SELECT session_key FROM inbox WHERE state IN ('pending', 'running'))");
  c.query("UPDATE sessions SET interrupt_counted = false WHERE interrupt_counted");
  tx.commit();
  return out;
}

Store::Repair PostgresStore::repair_sessions(const std::vector<std::string>& sessions,
                                             const std::vector<std::string>& count) {
  static const std::string unfinished_of =
      "SELECT id FROM inbox WHERE state IN ('pending', 'running') AND session_key = ANY($1)";
  std::lock_guard lock(mutex_);
  Connection& c = *conn_;
  Transaction tx(c, Transaction::Mode::block);
  Repair out;
  const auto keys = Param::text_array(sessions);
  {
    const Result r = c.query(
        "SELECT DISTINCT session_key FROM inbox WHERE state IN ('pending', 'running') AND "
        "session_key = ANY($1) ORDER BY session_key",
        keys);
    for (int i = 0; i < r.rows(); ++i) out.sessions.push_back(r.text(i, 0));
  }
  out.removed_entries =
      c.query("DELETE FROM transcript WHERE role <> 'user' AND inbound_id IN (" + unfinished_of +
                  ")",
              keys)
          .affected();
  c.query(
      "UPDATE sessions SET interrupts = interrupts + 1 WHERE NOT interrupt_counted AND "
      "session_key = ANY($1) AND session_key IN (SELECT session_key FROM inbox WHERE state IN "
      "('pending', 'running') AND session_key = ANY($1))",
      Param::text_array(count));
  c.query("UPDATE sessions SET interrupt_counted = false WHERE interrupt_counted AND "
          "session_key = ANY($1)",
          keys);
  tx.commit();
  return out;
}

void PostgresStore::mark_interrupted(const std::string& session_key, std::int64_t now_ms) {
  std::lock_guard lock(mutex_);
  Transaction tx(*conn_, Transaction::Mode::single);
  conn_->query(
      "UPDATE sessions SET state = 'resume_pending', interrupts = interrupts + 1, "
      "interrupt_counted = true, updated_at_ms = $1 WHERE session_key = $2",
      now_ms, session_key);
  tx.commit();
}

std::vector<InterruptedSession> PostgresStore::sessions_interrupted(int at_least) {
  std::lock_guard lock(mutex_);
  Transaction tx(*conn_, Transaction::Mode::single);
  const Result r = conn_->query(
      "SELECT session_key, interrupts FROM sessions WHERE interrupts > 0 AND interrupts >= $1 "
      "ORDER BY session_key",
      at_least);
  std::vector<InterruptedSession> out;
  for (int i = 0; i < r.rows(); ++i) {
    out.push_back({r.text(i, 0), static_cast<int>(r.int64(i, 1))});
  }
  tx.commit();
  return out;
}

Suspension PostgresStore::suspend_session(const std::string& session_key, const std::string& notice,
                                          std::int64_t now_ms) {
  static const std::string unfinished = select_from(
      kInboxColumns,
      "FROM inbox WHERE state IN ('pending', 'running') AND session_key = $1 ORDER BY id "
      "FOR UPDATE");
  std::lock_guard lock(mutex_);
  Connection& c = *conn_;
  Transaction tx(c, Transaction::Mode::block);
  Suspension out;
  {
    const Result r = c.query(unfinished, session_key);
    for (int i = 0; i < r.rows(); ++i) out.closed.push_back(read_inbox(r, i));
  }
  if (!out.closed.empty()) {
    std::vector<std::int64_t> ids;
    for (auto& row : out.closed) {
      ids.push_back(row.id);
      row.state = InboxState::aborted;
    }
    c.query("UPDATE inbox SET state = 'aborted' WHERE id = ANY($1::bigint[])",
            Param::int64_array(ids));
  }
  c.query(
      "UPDATE sessions SET state = 'suspended', interrupts = 0, interrupt_counted = false, "
      "updated_at_ms = $1 WHERE session_key = $2",
      now_ms, session_key);

  // The notice goes where the session's last message came from.
  std::optional<InboxRecord> newest;
  if (!out.closed.empty()) {
    newest = out.closed.back();
  } else {
    const Result r = c.query(
        "SELECT inbound_id FROM transcript WHERE session_key = $1 AND inbound_id IS NOT NULL "
        "ORDER BY id DESC LIMIT 1",
        session_key);
    if (r.rows() > 0 && r.int64(0, 0) != 0) newest = find_inbox(c, r.int64(0, 0), false);
  }
  if (newest && !notice.empty()) {
    OutboxRecord r;
    r.idem_key = "suspended:" + session_key + ":" + std::to_string(newest->id);
    r.part = 0;
    r.final_part = true;
    r.channel = newest->channel;
    r.chat_id = newest->chat_id;
    r.session_key = session_key;
    r.run_id = r.idem_key;
    r.text = notice;
    r.state = OutboxState::pending;
    r.created_at_ms = now_ms;
    // Keyed by the newest message: one notice per suspension, never two for one.
    r.id = insert_outbox(c, r, false, now_ms);
    if (r.id != 0) {
      append_transcript(c, session_key, "assistant", notice, r.run_id, 0, now_ms);
      out.notice = std::move(r);
    }
  }
  tx.commit();
  return out;
}

}  // namespace drawbridge::store
