#pragma once

// Private to the SqliteStore sources (sqlite_store*.cpp): the connection with its prepared
// statements, and the row mapping every part of the store shares. Not for other includers.

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "store/rows.h"
#include "store/sqlite.h"
#include "store/sqlite_store.h"

namespace drawbridge::store {

using sqlite::Cursor;
using sqlite::Database;
using sqlite::Statement;
using sqlite::Transaction;

inline constexpr std::string_view kInboxColumns =
    "id, channel, external_id, session_key, chat_id, sender, text, run_id, state, "
    "received_at_ms, merged_into";
inline constexpr std::string_view kOutboxColumns =
    "id, idem_key, inbound_id, part, final_part, channel, chat_id, session_key, run_id, text, "
    "state, created_at_ms, sent_at_ms";
inline constexpr std::string_view kTranscriptColumns =
    "id, session_key, role, text, run_id, inbound_id, created_at_ms, state";


InboxRecord read_inbox(const Cursor& c);
OutboxRecord read_outbox(const Cursor& c);
TranscriptEntry read_transcript(const Cursor& c);
std::optional<std::int64_t> null_if_zero(std::int64_t id);

struct SqliteStore::Impl {
  explicit Impl(std::unique_ptr<Database> database)
      : db(std::move(database)),
        insert_inbox(db->prepare(
            "INSERT INTO inbox (channel, external_id, session_key, chat_id, sender, text, run_id, "
            "state, received_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?) "
            "ON CONFLICT (channel, external_id) DO NOTHING")),
        inbox_by_key(db->prepare(
            select_from(kInboxColumns, "FROM inbox WHERE channel = ? AND external_id = ?"))),
        inbox_by_id(db->prepare(select_from(kInboxColumns, "FROM inbox WHERE id = ?"))),
        unfinished_inbox(db->prepare(select_from(
            kInboxColumns, "FROM inbox WHERE state IN ('pending', 'running') ORDER BY id"))),
        set_inbox_state(db->prepare("UPDATE inbox SET state = ? WHERE id = ?")),
        set_merged_into(db->prepare("UPDATE inbox SET merged_into = ? WHERE id = ? AND id <> ?")),
        upsert_session(db->prepare(
            "INSERT INTO sessions (session_key, created_at_ms, updated_at_ms) VALUES (?, ?, ?) "
            "ON CONFLICT (session_key) DO UPDATE SET updated_at_ms = excluded.updated_at_ms")),
        insert_transcript(db->prepare(
            "INSERT INTO transcript (session_key, role, text, run_id, inbound_id, created_at_ms) "
            "VALUES (?, ?, ?, ?, ?, ?)")),
        insert_interrupted(db->prepare(
            "INSERT INTO transcript (session_key, role, text, run_id, inbound_id, created_at_ms, "
            "state) VALUES (?, 'assistant', ?, ?, ?, ?, 'interrupted')")),
        // A reset session (session_meta.history_from) starts its transcript after the reset.
        transcript_tail(db->prepare(select_from(
            kTranscriptColumns,
            "FROM transcript WHERE session_key = ?1 AND id > coalesce((SELECT history_from "
            "FROM session_meta WHERE session_key = ?1), 0) ORDER BY id DESC LIMIT ?2"))),
        transcript_before(db->prepare(select_from(
            kTranscriptColumns,
            "FROM transcript WHERE session_key = ?1 AND id < ?2 AND id > coalesce((SELECT "
            "history_from FROM session_meta WHERE session_key = ?1), 0) ORDER BY id DESC "
            "LIMIT ?3"))),
        insert_outbox(db->prepare(
            "INSERT INTO outbox (idem_key, inbound_id, part, final_part, channel, chat_id, "
            "session_key, run_id, text, state, created_at_ms) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?) ON CONFLICT (idem_key) DO NOTHING")),
        insert_outbox_sent(db->prepare(
            "INSERT INTO outbox (idem_key, inbound_id, part, final_part, channel, chat_id, "
            "session_key, run_id, text, state, created_at_ms, sent_at_ms) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'sent', ?, ?) ON CONFLICT (idem_key) DO NOTHING")),
        outbox_by_key(db->prepare(select_from(kOutboxColumns, "FROM outbox WHERE idem_key = ?"))),
        outbox_by_inbound(db->prepare(
            select_from(kOutboxColumns, "FROM outbox WHERE inbound_id = ? ORDER BY part"))),
        pending_outbox(db->prepare(
            select_from(kOutboxColumns, "FROM outbox WHERE state = 'pending' ORDER BY id"))),
        set_outbox_state(db->prepare("UPDATE outbox SET state = ?, sent_at_ms = ? WHERE id = ?")),
        counts(db->prepare("SELECT (SELECT count(*) FROM inbox), "
                           "(SELECT count(*) FROM inbox WHERE state IN ('pending', 'running')), "
                           "(SELECT count(*) FROM outbox WHERE state = 'pending'), "
                           "(SELECT count(*) FROM outbox WHERE state = 'sent'), "
                           "(SELECT count(*) FROM outbox WHERE state = 'stale'), "
                           "(SELECT count(*) FROM sessions), "
                           "(SELECT count(*) FROM sessions WHERE state = 'suspended')")),
        get_value(db->prepare("SELECT value FROM kv WHERE key = ?")),
        set_value(db->prepare("INSERT INTO kv (key, value) VALUES (?, ?) "
                              "ON CONFLICT (key) DO UPDATE SET value = excluded.value")),
        erase_value(db->prepare("DELETE FROM kv WHERE key = ?")),
        set_session_state(db->prepare(
            "UPDATE sessions SET state = ?, updated_at_ms = ? WHERE session_key = ?")),
        sessions_in_state(
            db->prepare("SELECT session_key FROM sessions WHERE state = ? ORDER BY session_key")),
        unfinished_sessions(db->prepare("SELECT DISTINCT session_key FROM inbox WHERE state IN "
                                        "('pending', 'running') ORDER BY session_key")),
        remove_dangling(db->prepare(
            "DELETE FROM transcript WHERE role <> 'user' AND inbound_id IN "
            "(SELECT id FROM inbox WHERE state IN ('pending', 'running'))")),
        unsuspend_session(db->prepare("UPDATE sessions SET state = 'idle' "
                                      "WHERE session_key = ? AND state = 'suspended'")),
        reset_interrupts(
            db->prepare("UPDATE sessions SET interrupts = 0, interrupt_counted = 0 "
                        "WHERE session_key = ? AND (interrupts <> 0 OR interrupt_counted <> 0)")),
        mark_interrupted(db->prepare(
            "UPDATE sessions SET state = 'resume_pending', interrupts = interrupts + 1, "
            "interrupt_counted = 1, updated_at_ms = ? WHERE session_key = ?")),
        count_crash_interrupts(db->prepare(
            "UPDATE sessions SET interrupts = interrupts + 1 WHERE interrupt_counted = 0 AND "
            "session_key IN "
            "(SELECT session_key FROM inbox WHERE state IN ('pending', 'running'))")),
        clear_interrupt_counted(
            db->prepare("UPDATE sessions SET interrupt_counted = 0 WHERE interrupt_counted <> 0")),
        sessions_interrupted(db->prepare(
            "SELECT session_key, interrupts FROM sessions WHERE interrupts > 0 AND interrupts >= ? "
            "ORDER BY session_key")),
        unfinished_of_session(db->prepare(
            select_from(kInboxColumns,
                        "FROM inbox WHERE state IN ('pending', 'running') AND session_key = ? "
                        "ORDER BY id"))),
        newest_inbound_of_session(db->prepare(
            "SELECT inbound_id FROM transcript WHERE session_key = ? AND inbound_id IS NOT NULL "
            "ORDER BY id DESC LIMIT 1")),
        suspend_session(db->prepare(
            "UPDATE sessions SET state = 'suspended', interrupts = 0, interrupt_counted = 0, "
            "updated_at_ms = ? WHERE session_key = ?")),
        mark_stale(db->prepare(
            "UPDATE outbox SET state = 'stale', sent_at_ms = NULL WHERE id = ? AND state = "
            "'pending'")) {}

  std::optional<InboxRecord> find_inbox(std::int64_t id) {
    Cursor c = inbox_by_id.query(id);
    if (!c.next()) return std::nullopt;
    return read_inbox(c);
  }

  std::vector<OutboxRecord> outbox_for(std::int64_t inbound_id) {
    std::vector<OutboxRecord> rows;
    Cursor c = outbox_by_inbound.query(inbound_id);
    while (c.next()) rows.push_back(read_outbox(c));
    return rows;
  }

  std::int64_t append_transcript(const std::string& session_key, std::string_view role,
                                 std::string_view text, const std::string& run_id,
                                 std::int64_t inbound_id, std::int64_t now_ms) {
    // The session row first: the transcript references it.
    upsert_session.execute(session_key, now_ms, now_ms);
    insert_transcript.execute(session_key, role, text, run_id, null_if_zero(inbound_id), now_ms);
    return db->last_insert_rowid();
  }

  // SqliteStore::stage_reply and stage_reply_as_sent (`as_sent`: new parts written sent).
  std::vector<OutboxRecord> stage_reply(std::int64_t inbound_id,
                                        const std::vector<std::string>& parts,
                                        std::int64_t now_ms, bool as_sent);

  void set_outbox(const char* caller, std::int64_t id, OutboxState state, std::int64_t now_ms) {
    Transaction tx(*db, Transaction::Mode::write);
    if (set_outbox_state.execute(to_string(state), now_ms, id) == 0) {
      throw StoreError(std::string(caller) + ": no outbox row with id " + std::to_string(id));
    }
    tx.commit();
  }

  // Calls are serialized: the cached statements and the connection's transaction state are
  // shared by every caller.
  std::mutex mutex;
  // Declared before the statements, so they are finalized before the connection closes.
  std::unique_ptr<Database> db;
  Statement insert_inbox;
  Statement inbox_by_key;
  Statement inbox_by_id;
  Statement unfinished_inbox;
  Statement set_inbox_state;
  Statement set_merged_into;
  Statement upsert_session;
  Statement insert_transcript;
  Statement insert_interrupted;
  Statement transcript_tail;
  Statement transcript_before;
  Statement insert_outbox;
  Statement insert_outbox_sent;
  Statement outbox_by_key;
  Statement outbox_by_inbound;
  Statement pending_outbox;
  Statement set_outbox_state;
  Statement counts;
  Statement get_value;
  Statement set_value;
  Statement erase_value;
  Statement set_session_state;
  Statement sessions_in_state;
  Statement unfinished_sessions;
  Statement remove_dangling;
  Statement unsuspend_session;
  Statement reset_interrupts;
  Statement mark_interrupted;
  Statement count_crash_interrupts;
  Statement clear_interrupt_counted;
  Statement sessions_interrupted;
  Statement unfinished_of_session;
  Statement newest_inbound_of_session;
  Statement suspend_session;
  Statement mark_stale;
};

}  // namespace drawbridge::store
