#include "store/sqlite_store.h"

#include <algorithm>
#include <array>
#include <limits>
#include <mutex>
#include <string_view>
#include <utility>

#include "store/sqlite.h"

namespace drawbridge::store {
namespace {

using sqlite::Cursor;
using sqlite::Database;
using sqlite::Statement;
using sqlite::Transaction;

// Migration i takes the schema from user_version i to i + 1. Append only: a migration that has
// shipped is never edited, since databases in the field already ran it.
constexpr std::array<std::string_view, 2> kMigrations = {
    R"sql(
CREATE TABLE inbox (
  id INTEGER PRIMARY KEY,
  channel TEXT NOT NULL,
  external_id TEXT NOT NULL,
  session_key TEXT NOT NULL,
  chat_id TEXT NOT NULL,
  sender TEXT NOT NULL,
  text TEXT NOT NULL,
  run_id TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('pending', 'running', 'done', 'aborted', 'failed')),
  received_at_ms INTEGER NOT NULL,
  UNIQUE (channel, external_id)
);
-- Partial: it holds only the rows a restart replays, not the whole history. The WHERE must stay
-- textually identical to the one in the queries for SQLite to use it.
CREATE INDEX inbox_unfinished ON inbox (id) WHERE state IN ('pending', 'running');

CREATE TABLE outbox (
  id INTEGER PRIMARY KEY,
  idem_key TEXT NOT NULL UNIQUE,
  inbound_id INTEGER REFERENCES inbox (id),
  part INTEGER NOT NULL,
  final_part INTEGER NOT NULL,
  channel TEXT NOT NULL,
  chat_id TEXT NOT NULL,
  session_key TEXT NOT NULL,
  run_id TEXT NOT NULL,
  text TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'failed')),
  created_at_ms INTEGER NOT NULL,
  sent_at_ms INTEGER
);
CREATE INDEX outbox_by_state ON outbox (state, id);
CREATE INDEX outbox_by_inbound ON outbox (inbound_id, part) WHERE inbound_id IS NOT NULL;

CREATE TABLE sessions (
  session_key TEXT PRIMARY KEY,
  created_at_ms INTEGER NOT NULL,
  updated_at_ms INTEGER NOT NULL,
  state TEXT NOT NULL DEFAULT 'idle'
) WITHOUT ROWID;

CREATE TABLE transcript (
  id INTEGER PRIMARY KEY,
  session_key TEXT NOT NULL REFERENCES sessions (session_key),
  role TEXT NOT NULL,
  text TEXT NOT NULL,
  run_id TEXT NOT NULL,
  inbound_id INTEGER REFERENCES inbox (id),
  created_at_ms INTEGER NOT NULL
);
CREATE INDEX transcript_by_session ON transcript (session_key, id);

CREATE TABLE kv (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;
)sql",
    R"sql(
-- Restart-loop protection: how many restarts in a row interrupted a turn of the session, and
-- whether the drain of the last run counted its restart already (mark_interrupted), so that
-- repair_interrupted at the next start does not count the same restart twice.
ALTER TABLE sessions ADD COLUMN interrupts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN interrupt_counted INTEGER NOT NULL DEFAULT 0;
CREATE INDEX sessions_interrupted ON sessions (session_key) WHERE interrupts > 0;

-- Outbox state 'stale' (messages.replyTtlMs). SQLite cannot alter a CHECK: the table is
-- rebuilt. Nothing references outbox, so dropping the old one checks no foreign key.
CREATE TABLE outbox_v2 (
  id INTEGER PRIMARY KEY,
  idem_key TEXT NOT NULL UNIQUE,
  inbound_id INTEGER REFERENCES inbox (id),
  part INTEGER NOT NULL,
  final_part INTEGER NOT NULL,
  channel TEXT NOT NULL,
  chat_id TEXT NOT NULL,
  session_key TEXT NOT NULL,
  run_id TEXT NOT NULL,
  text TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'failed', 'stale')),
  created_at_ms INTEGER NOT NULL,
  sent_at_ms INTEGER
);
INSERT INTO outbox_v2 (id, idem_key, inbound_id, part, final_part, channel, chat_id, session_key,
                       run_id, text, state, created_at_ms, sent_at_ms)
  SELECT id, idem_key, inbound_id, part, final_part, channel, chat_id, session_key, run_id, text,
         state, created_at_ms, sent_at_ms FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_v2 RENAME TO outbox;
CREATE INDEX outbox_by_state ON outbox (state, id);
CREATE INDEX outbox_by_inbound ON outbox (inbound_id, part) WHERE inbound_id IS NOT NULL;
)sql",
};

constexpr std::string_view kInboxColumns =
    "id, channel, external_id, session_key, chat_id, sender, text, run_id, state, "
    "received_at_ms";
constexpr std::string_view kOutboxColumns =
    "id, idem_key, inbound_id, part, final_part, channel, chat_id, session_key, run_id, text, "
    "state, created_at_ms, sent_at_ms";
constexpr std::string_view kTranscriptColumns =
    "id, session_key, role, text, run_id, inbound_id, created_at_ms";

std::string select_from(std::string_view columns, std::string_view rest) {
  std::string sql = "SELECT ";
  sql += columns;
  sql += ' ';
  sql += rest;
  return sql;
}

InboxState inbox_state_from(const std::string& s) {
  for (auto state : {InboxState::pending, InboxState::running, InboxState::done,
                     InboxState::aborted, InboxState::failed}) {
    if (s == to_string(state)) return state;
  }
  throw StoreError("inbox row has unknown state \"" + s + "\"");
}

OutboxState outbox_state_from(const std::string& s) {
  for (auto state :
       {OutboxState::pending, OutboxState::sent, OutboxState::failed, OutboxState::stale}) {
    if (s == to_string(state)) return state;
  }
  throw StoreError("outbox row has unknown state \"" + s + "\"");
}

bool is_closed(InboxState s) {
  return s == InboxState::done || s == InboxState::aborted || s == InboxState::failed;
}

InboxRecord read_inbox(const Cursor& c) {
  InboxRecord r;
  r.id = c.int64(0);
  r.channel = c.text(1);
  r.external_id = c.text(2);
  r.session_key = c.text(3);
  r.chat_id = c.text(4);
  r.sender = c.text(5);
  r.text = c.text(6);
  r.run_id = c.text(7);
  r.state = inbox_state_from(c.text(8));
  r.received_at_ms = c.int64(9);
  return r;
}

OutboxRecord read_outbox(const Cursor& c) {
  OutboxRecord r;
  r.id = c.int64(0);
  r.idem_key = c.text(1);
  r.inbound_id = c.int64(2);  // NULL reads as 0, the documented "answers no inbound row"
  r.part = static_cast<int>(c.int64(3));
  r.final_part = c.int64(4) != 0;
  r.channel = c.text(5);
  r.chat_id = c.text(6);
  r.session_key = c.text(7);
  r.run_id = c.text(8);
  r.text = c.text(9);
  r.state = outbox_state_from(c.text(10));
  r.created_at_ms = c.int64(11);
  r.sent_at_ms = c.int64(12);
  return r;
}

TranscriptEntry read_transcript(const Cursor& c) {
  TranscriptEntry e;
  e.id = c.int64(0);
  e.session_key = c.text(1);
  e.role = c.text(2);
  e.text = c.text(3);
  e.run_id = c.text(4);
  e.inbound_id = c.int64(5);
  e.created_at_ms = c.int64(6);
  return e;
}

std::optional<std::int64_t> null_if_zero(std::int64_t id) {
  return id == 0 ? std::nullopt : std::optional<std::int64_t>(id);
}

std::int64_t user_version(Database& db) {
  Statement stmt = db.prepare("PRAGMA user_version");
  Cursor c = stmt.query();
  return c.next() ? c.int64(0) : 0;
}

void migrate(Database& db) {
  // One transaction for the whole upgrade, version check included, so two processes opening
  // the same file cannot both run a migration.
  Transaction tx(db, Transaction::Mode::write);
  const std::int64_t version = user_version(db);
  const auto latest = static_cast<std::int64_t>(kMigrations.size());
  if (version > latest) {
    throw StoreError("schema version " + std::to_string(version) +
                     " is newer than this drawbridge understands (" + std::to_string(latest) +
                     "); refusing to touch it");
  }
  for (std::int64_t v = version; v < latest; ++v) {
    db.exec(std::string(kMigrations[static_cast<std::size_t>(v)]));
  }
  if (version != latest) db.exec("PRAGMA user_version = " + std::to_string(latest));
  tx.commit();
}

std::unique_ptr<Database> open_database(const std::string& path, Durability durability) {
  auto db = std::make_unique<Database>(path);
  try {
    db->set_busy_timeout(5000);
    // journal_mode and foreign_keys are no-ops inside a transaction: set them before migrating.
    db->exec("PRAGMA journal_mode = WAL");
    db->exec(durability == Durability::power ? "PRAGMA synchronous = FULL"
                                             : "PRAGMA synchronous = NORMAL");
    db->exec("PRAGMA foreign_keys = ON");
    db->exec("PRAGMA temp_store = MEMORY");
    migrate(*db);
  } catch (const StoreError& e) {
    throw StoreError("cannot open store \"" + path + "\": " + e.what());
  }
  return db;
}

}  // namespace

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
        upsert_session(db->prepare(
            "INSERT INTO sessions (session_key, created_at_ms, updated_at_ms) VALUES (?, ?, ?) "
            "ON CONFLICT (session_key) DO UPDATE SET updated_at_ms = excluded.updated_at_ms")),
        insert_transcript(db->prepare(
            "INSERT INTO transcript (session_key, role, text, run_id, inbound_id, created_at_ms) "
            "VALUES (?, ?, ?, ?, ?, ?)")),
        transcript_tail(db->prepare(select_from(
            kTranscriptColumns, "FROM transcript WHERE session_key = ? ORDER BY id DESC LIMIT ?"))),
        transcript_before(db->prepare(select_from(
            kTranscriptColumns,
            "FROM transcript WHERE session_key = ? AND id < ? ORDER BY id DESC LIMIT ?"))),
        insert_outbox(db->prepare(
            "INSERT INTO outbox (idem_key, inbound_id, part, final_part, channel, chat_id, "
            "session_key, run_id, text, state, created_at_ms) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?) ON CONFLICT (idem_key) DO NOTHING")),
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
  Statement upsert_session;
  Statement insert_transcript;
  Statement transcript_tail;
  Statement transcript_before;
  Statement insert_outbox;
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

std::unique_ptr<SqliteStore> SqliteStore::open(const std::string& path, Durability durability) {
  return std::unique_ptr<SqliteStore>(
      new SqliteStore(std::make_unique<Impl>(open_database(path, durability))));
}

SqliteStore::SqliteStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

SqliteStore::~SqliteStore() = default;

InsertInboundResult SqliteStore::insert_inbound(const NewInbound& m, std::int64_t now_ms) {
  if (m.channel.empty() || m.external_id.empty()) {
    throw StoreError(
        "insert_inbound: channel and external_id are required, they are the dedupe key");
  }
  Impl& s = *impl_;
  std::lock_guard lock(s.mutex);
  Transaction tx(*s.db, Transaction::Mode::write);
  if (s.insert_inbox.execute(m.channel, m.external_id, m.session_key, m.chat_id, m.sender, m.text,
                             m.run_id, now_ms) == 0) {
    InboxRecord existing;
    {
      Cursor c = s.inbox_by_key.query(m.channel, m.external_id);
      if (!c.next()) throw StoreError("insert_inbound: conflicting inbox row vanished");
      existing = read_inbox(c);
    }
    tx.commit();  // nothing was written; inside a batch a rollback would undo the batch
    return {std::move(existing), true};
  }
  InsertInboundResult result;
  InboxRecord& r = result.record;
  r.id = s.db->last_insert_rowid();
  r.channel = m.channel;
  r.external_id = m.external_id;
  r.session_key = m.session_key;
  r.chat_id = m.chat_id;
  r.sender = m.sender;
  r.text = m.text;
  r.run_id = m.run_id;
  r.state = InboxState::pending;
  r.received_at_ms = now_ms;
  s.append_transcript(m.session_key, "user", m.text, m.run_id, r.id, now_ms);
  // A new message is what resumes a suspended session (suspend_session).
  s.unsuspend_session.execute(m.session_key);
  tx.commit();
  return result;
}

std::optional<InboxRecord> SqliteStore::inbound(std::int64_t id) {
  Impl& s = *impl_;
  std::lock_guard lock(s.mutex);
  Transaction tx(*s.db, Transaction::Mode::read);
  auto row = s.find_inbox(id);
  tx.commit();
  return row;
}

std::vector<InboxRecord> SqliteStore::unfinished_inbound() {
  Impl& s = *impl_;
  std::lock_guard lock(s.mutex);
  Transaction tx(*s.db, Transaction::Mode::read);
  std::vector<InboxRecord> rows;
  {
    Cursor c = s.unfinished_inbox.query();
    while (c.next()) rows.push_back(read_inbox(c));
  }
  tx.commit();
  return rows;
}

void SqliteStore::set_inbound_state(std::int64_t id, InboxState state) {
  Impl& s = *impl_;
  std::lock_guard lock(s.mutex);
  Transaction tx(*s.db, Transaction::Mode::write);
  if (s.set_inbox_state.execute(to_string(state), id) == 0) {
    throw StoreError("set_inbound_state: no inbound message with id " + std::to_string(id));
  }
  tx.commit();
}

std::vector<OutboxRecord> SqliteStore::stage_reply(std::int64_t inbound_id,
                                                   const std::vector<std::string>& parts,
                                                   std::int64_t now_ms) {
  Impl& s = *impl_;
  std::lock_guard lock(s.mutex);
  Transaction tx(*s.db, Transaction::Mode::write);
  const auto inbox = s.find_inbox(inbound_id);
  if (!inbox) {
    throw StoreError("stage_reply: no inbound message with id " + std::to_string(inbound_id));
  }
  if (is_closed(inbox->state)) {
    // Already answered (or given up on): a replayed turn must not send a second reply.
    auto rows = s.outbox_for(inbound_id);
    tx.commit();
    return rows;
  }

  std::vector<OutboxRecord> rows;
  if (!parts.empty()) {
    std::string whole;
    for (const auto& p : parts) whole += p;
    s.append_transcript(inbox->session_key, "assistant", whole, inbox->run_id, inbound_id, now_ms);
    rows.reserve(parts.size());
    for (std::size_t i = 0; i < parts.size(); ++i) {
      OutboxRecord& r = rows.emplace_back();
      r.idem_key = std::to_string(inbound_id) + ":" + std::to_string(i);
      r.inbound_id = inbound_id;
      r.part = static_cast<int>(i);
      r.final_part = i + 1 == parts.size();
      r.channel = inbox->channel;
      r.chat_id = inbox->chat_id;
      r.session_key = inbox->session_key;
      r.run_id = inbox->run_id;
      r.text = parts[i];
      r.state = OutboxState::pending;
      r.created_at_ms = now_ms;
      if (s.insert_outbox.execute(r.idem_key, inbound_id, r.part, r.final_part, r.channel,
                                  r.chat_id, r.session_key, r.run_id, r.text, now_ms) == 0) {
        // Only possible if something else took a reply key: fail rather than send its text.
        throw StoreError("stage_reply: outbox key " + r.idem_key + " is already used");
      }
      r.id = s.db->last_insert_rowid();
    }
  }
  s.set_inbox_state.execute(to_string(InboxState::done), inbound_id);
  // A turn of the session finished: the run of interrupted restarts is broken.
  s.reset_interrupts.execute(inbox->session_key);
  tx.commit();
  return rows;
}

std::pair<OutboxRecord, bool> SqliteStore::stage_outbound(const NewOutbound& m,
                                                          std::int64_t now_ms) {
  if (m.idem_key.empty()) throw StoreError("stage_outbound: idem_key is required");
  Impl& s = *impl_;
  std::lock_guard lock(s.mutex);
  Transaction tx(*s.db, Transaction::Mode::write);
  if (s.insert_outbox.execute(m.idem_key, nullptr, 0, 1, m.channel, m.chat_id, m.session_key,
                              m.run_id, m.text, now_ms) == 0) {
    OutboxRecord existing;
    {
      Cursor c = s.outbox_by_key.query(m.idem_key);
      if (!c.next()) throw StoreError("stage_outbound: conflicting outbox row vanished");
      existing = read_outbox(c);
    }
    tx.commit();  // nothing was written; inside a batch a rollback would undo the batch
    return {std::move(existing), false};
  }
  OutboxRecord r;
  r.id = s.db->last_insert_rowid();
  r.idem_key = m.idem_key;
  r.part = 0;
  r.final_part = true;
  r.channel = m.channel;
  r.chat_id = m.chat_id;
  r.session_key = m.session_key;
  r.run_id = m.run_id;
  r.text = m.text;
  r.state = OutboxState::pending;
  r.created_at_ms = now_ms;
  // A message sent to a bare chat belongs to no session, so it has no history to show in.
  if (!m.session_key.empty()) {
    s.append_transcript(m.session_key, "assistant", m.text, m.run_id, 0, now_ms);
  }
  tx.commit();
  return {std::move(r), true};
}

std::vector<OutboxRecord> SqliteStore::pending_outbox() {
  Impl& s = *impl_;
  std::lock_guard lock(s.mutex);
  Transaction tx(*s.db, Transaction::Mode::read);
  std::vector<OutboxRecord> rows;
  {
    Cursor c = s.pending_outbox.query();
    while (c.next()) rows.push_back(read_outbox(c));
  }
  tx.commit();
  return rows;
}

void SqliteStore::mark_sent(std::int64_t outbox_id, std::int64_t now_ms) {
  std::lock_guard lock(impl_->mutex);
  impl_->set_outbox("mark_sent", outbox_id, OutboxState::sent, now_ms);
}

void SqliteStore::mark_failed(std::int64_t outbox_id, std::int64_t now_ms) {
  std::lock_guard lock(impl_->mutex);
  impl_->set_outbox("mark_failed", outbox_id, OutboxState::failed, now_ms);
}

std::int64_t SqliteStore::mark_stale(const std::vector<std::int64_t>& outbox_ids,
                                     std::int64_t /*now_ms*/) {
  Impl& s = *impl_;
  std::lock_guard lock(s.mutex);
  Transaction tx(*s.db, Transaction::Mode::write);
  std::int64_t marked = 0;
  for (auto id : outbox_ids) marked += s.mark_stale.execute(id);
  tx.commit();
  return marked;
}

std::vector<TranscriptEntry> SqliteStore::transcript(const std::string& session_key,
                                                     std::size_t limit) {
  Impl& s = *impl_;
  std::lock_guard lock(s.mutex);
  const auto bound = static_cast<std::int64_t>(
      std::min<std::size_t>(limit, std::numeric_limits<std::int64_t>::max()));
  Transaction tx(*s.db, Transaction::Mode::read);
  std::vector<TranscriptEntry> entries;
  {
    Cursor c = s.transcript_tail.query(session_key, bound);
    while (c.next()) entries.push_back(read_transcript(c));
  }
  tx.commit();
  std::reverse(entries.begin(), entries.end());  // the query reads newest first
  return entries;
}

Store::TranscriptPage SqliteStore::transcript_page(const std::string& session_key,
                                                  std::size_t limit, std::size_t max_bytes,
                                                  std::int64_t before_id) {
  Impl& s = *impl_;
  std::lock_guard lock(s.mutex);
  TranscriptPage page;
  if (limit == 0) return page;
  // One row more than asked tells whether older entries remain.
  const auto bound = static_cast<std::int64_t>(
      std::min<std::size_t>(limit, std::numeric_limits<std::int64_t>::max() - 1) + 1);
  const std::int64_t before = before_id > 0 ? before_id : std::numeric_limits<std::int64_t>::max();
  Transaction tx(*s.db, Transaction::Mode::read);
  {
    Cursor c = s.transcript_before.query(session_key, before, bound);
    std::size_t bytes = 0;
    while (c.next()) {
      TranscriptEntry e = read_transcript(c);
      if (page.entries.size() == limit ||
          (!page.entries.empty() && bytes + e.text.size() > max_bytes)) {
        page.more = true;
        break;
      }
      bytes += e.text.size();
      page.entries.push_back(std::move(e));
    }
  }
  tx.commit();
  std::reverse(page.entries.begin(), page.entries.end());
  return page;
}

void SqliteStore::begin_batch() {
  std::lock_guard lock(impl_->mutex);
  impl_->db->begin_batch();
}

void SqliteStore::commit_batch() {
  std::lock_guard lock(impl_->mutex);
  impl_->db->commit_batch();
}

void SqliteStore::rollback_batch() {
  std::lock_guard lock(impl_->mutex);
  impl_->db->rollback_batch();
}

StoreCounts SqliteStore::counts() {
  Impl& s = *impl_;
  std::lock_guard lock(s.mutex);
  Transaction tx(*s.db, Transaction::Mode::read);
  StoreCounts n;
  {
    Cursor c = s.counts.query();
    if (c.next()) {
      n.inbox_total = c.int64(0);
      n.inbox_unfinished = c.int64(1);
      n.outbox_pending = c.int64(2);
      n.outbox_sent = c.int64(3);
      n.outbox_stale = c.int64(4);
      n.sessions = c.int64(5);
      n.sessions_suspended = c.int64(6);
    }
  }
  tx.commit();
  return n;
}

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
  Cursor c = s.sessions_in_state.query(state);
  while (c.next()) out.push_back(c.text(0));
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
