// SqliteStore: session state, restart-loop protection and small named values.

#include <algorithm>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "store/sqlite_store_impl.h"

namespace drawbridge::store {

std::optional<std::string> SqliteStore::get_value(const std::string& key) {
  Impl& s = *impl_;
  std::lock_guard lock(s.mutex);
  Transaction tx(*s.db, Transaction::Mode::read);
  std::optional<std::string> value;
  {
    Cursor c = s.get_value.query(key);
    if (c.next()) value = c.text(0);
  }
  tx.commit();
  return value;
}

void SqliteStore::set_value(const std::string& key, const std::string& value) {
  Impl& s = *impl_;
  std::lock_guard lock(s.mutex);
  Transaction tx(*s.db, Transaction::Mode::write);
  s.set_value.execute(key, value);
  tx.commit();
}

void SqliteStore::erase_value(const std::string& key) {
  Impl& s = *impl_;
  std::lock_guard lock(s.mutex);
  Transaction tx(*s.db, Transaction::Mode::write);
  s.erase_value.execute(key);
  tx.commit();
}

void SqliteStore::set_session_state(const std::string& session_key, const std::string& state,
                                    std::int64_t now_ms) {
  Impl& s = *impl_;
  std::lock_guard lock(s.mutex);
  Transaction tx(*s.db, Transaction::Mode::write);
  s.set_session_state.execute(state, now_ms, session_key);
  tx.commit();
}

std::vector<std::string> SqliteStore::sessions_in_state(const std::string& state) {
  Impl& s = *impl_;
  std::lock_guard lock(s.mutex);
  Transaction tx(*s.db, Transaction::Mode::read);
  std::vector<std::string> out;
  {
    Cursor c = s.sessions_in_state.query(state);
    while (c.next()) out.push_back(c.text(0));
  }
  // Committed: inside a batch, a transaction left open is rolled back, and the batch with it.
  tx.commit();
  return out;
}

Store::Repair SqliteStore::repair_interrupted() {
  Impl& s = *impl_;
  std::lock_guard lock(s.mutex);
  Transaction tx(*s.db, Transaction::Mode::write);
  Repair r;
  {
    Cursor c = s.unfinished_sessions.query();
    while (c.next()) r.sessions.push_back(c.text(0));
  }
  r.removed_entries = s.remove_dangling.execute();
  s.count_crash_interrupts.execute();
  s.clear_interrupt_counted.execute();
  tx.commit();
  return r;
}

Store::Repair SqliteStore::repair_sessions(const std::vector<std::string>& sessions,
                                           const std::vector<std::string>& count) {
  Impl& s = *impl_;
  std::lock_guard lock(s.mutex);
  Transaction tx(*s.db, Transaction::Mode::write);
  Repair r;
  Statement unfinished = s.db->prepare(
      "SELECT 1 FROM inbox WHERE session_key = ? AND state IN ('pending', 'running') LIMIT 1");
  Statement remove = s.db->prepare(
      "DELETE FROM transcript WHERE role <> 'user' AND inbound_id IN (SELECT id FROM inbox "
      "WHERE session_key = ? AND state IN ('pending', 'running'))");
  Statement interrupt = s.db->prepare(
      "UPDATE sessions SET interrupts = interrupts + 1 WHERE session_key = ? AND "
      "interrupt_counted = 0");
  Statement clear =
      s.db->prepare("UPDATE sessions SET interrupt_counted = 0 WHERE session_key = ?");
  std::vector<std::string> keys = sessions;
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  for (const auto& key : keys) {
    if (!unfinished.query(key).next()) {
      clear.execute(key);
      continue;
    }
    r.sessions.push_back(key);
    r.removed_entries += remove.execute(key);
    if (std::find(count.begin(), count.end(), key) != count.end()) interrupt.execute(key);
    clear.execute(key);
  }
  tx.commit();
  return r;
}

void SqliteStore::mark_interrupted(const std::string& session_key, std::int64_t now_ms) {
  Impl& s = *impl_;
  std::lock_guard lock(s.mutex);
  Transaction tx(*s.db, Transaction::Mode::write);
  s.mark_interrupted.execute(now_ms, session_key);
  tx.commit();
}

std::vector<InterruptedSession> SqliteStore::sessions_interrupted(int at_least) {
  Impl& s = *impl_;
  std::lock_guard lock(s.mutex);
  Transaction tx(*s.db, Transaction::Mode::read);
  std::vector<InterruptedSession> out;
  {
    Cursor c = s.sessions_interrupted.query(static_cast<std::int64_t>(at_least));
    while (c.next()) out.push_back({c.text(0), static_cast<int>(c.int64(1))});
  }
  tx.commit();
  return out;
}

Suspension SqliteStore::suspend_session(const std::string& session_key, const std::string& notice,
                                        std::int64_t now_ms) {
  Impl& s = *impl_;
  std::lock_guard lock(s.mutex);
  Transaction tx(*s.db, Transaction::Mode::write);
  Suspension out;
  {
    Cursor c = s.unfinished_of_session.query(session_key);
    while (c.next()) out.closed.push_back(read_inbox(c));
  }
  for (auto& row : out.closed) {
    s.set_inbox_state.execute(to_string(InboxState::aborted), row.id);
    row.state = InboxState::aborted;
  }
  s.suspend_session.execute(now_ms, session_key);

  // The notice goes where the session's last message came from.
  std::optional<InboxRecord> newest;
  if (!out.closed.empty()) {
    newest = out.closed.back();
  } else {
    std::int64_t id = 0;
    {
      Cursor c = s.newest_inbound_of_session.query(session_key);
      if (c.next()) id = c.int64(0);
    }
    if (id != 0) newest = s.find_inbox(id);
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
    if (s.insert_outbox.execute(r.idem_key, nullptr, 0, 1, r.channel, r.chat_id, r.session_key,
                                r.run_id, r.text, now_ms) != 0) {
      r.id = s.db->last_insert_rowid();
      s.append_transcript(session_key, "assistant", notice, r.run_id, 0, now_ms);
      out.notice = std::move(r);
    }
  }
  tx.commit();
  return out;
}

}  // namespace drawbridge::store
