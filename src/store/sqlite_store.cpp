// The SqliteStore: schema, migrations, opening, and the row mapping. The operations live in
// sqlite_store_messages.cpp (inbox, outbox, batches), sqlite_store_reads.cpp (transcript,
// counts) and sqlite_store_sessions.cpp (session state, restart loops, key/value); the
// connection and its statements in sqlite_store_impl.h.

#include "store/sqlite_store.h"

#include <array>
#include <string_view>
#include <utility>

#include "store/sqlite_store_impl.h"

namespace drawbridge::store {
namespace {

// Migration i takes the schema from user_version i to i + 1. Append only: a migration that has
// shipped is never edited, since databases in the field already ran it.
constexpr std::array<std::string_view, 4> kMigrations = {
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
    R"sql(
-- An assistant entry cut short (chat.abort, /stop, a drain's timeout) is kept as
-- 'interrupted' with what it had said, never as a complete reply. Existing rows are complete.
ALTER TABLE transcript ADD COLUMN state TEXT NOT NULL DEFAULT 'complete'
  CHECK (state = 'complete' OR state = 'interrupted');
)sql",
    R"sql(
-- A debounce merge, durable: the row is answered by the turn of row merged_into, so a restart
-- before that turn runs replays the rows as one turn again (the drain need not wait for it).
ALTER TABLE inbox ADD COLUMN merged_into INTEGER REFERENCES inbox (id);
)sql",
};

// What the control plane's session catalog adds (labels, resets, receipts). Additive and
// without a new user_version: an older drawbridge opens the database as before and ignores
// the table and the index (it then shows a reset session's older entries again; nothing is
// lost), so rolling back stays possible.
constexpr std::string_view kCatalogSchema = R"sql(
CREATE TABLE IF NOT EXISTS session_meta (
  session_key TEXT PRIMARY KEY,
  label TEXT NOT NULL DEFAULT '',
  history_from INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS transcript_by_inbound ON transcript (inbound_id)
  WHERE inbound_id IS NOT NULL;
-- Leases and fencing (store.h): additive like the catalog; an older drawbridge ignores it.
CREATE TABLE IF NOT EXISTS leases (
  name TEXT PRIMARY KEY,
  holder TEXT NOT NULL DEFAULT '',
  epoch INTEGER NOT NULL DEFAULT 0,
  expires_at_ms INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
)sql";

void add_catalog_schema(Database& db) {
  Transaction tx(db, Transaction::Mode::write);
  db.exec(std::string(kCatalogSchema));
  tx.commit();
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

// The state CHECKs as migrations 1 and 2 wrote them (`state IN (...)`) and the same constraints
// as OR chains. SQLite evaluates a constant IN list of more than two values through a temporary
// b-tree that it builds, fills and frees on every INSERT and every UPDATE of the column: about a
// fifth of the store thread's CPU per message. An OR chain is a few comparisons. The rewrite
// changes the constraint's text, not what it allows (every row that passed the old one passes
// the new one), so it needs no table rebuild and no new user_version: an older drawbridge opens
// the database as before (rolling back stays possible) and enforces the same states.
// A future migration that rebuilds these tables writes the OR form itself.
constexpr std::array<std::pair<std::string_view, std::string_view>, 2> kCheckRewrites = {{
    {"CHECK (state IN ('pending', 'running', 'done', 'aborted', 'failed'))",
     "CHECK (state = 'pending' OR state = 'running' OR state = 'done' OR state = 'aborted' OR "
     "state = 'failed')"},
    {"CHECK (state IN ('pending', 'sent', 'failed', 'stale'))",
     "CHECK (state = 'pending' OR state = 'sent' OR state = 'failed' OR state = 'stale')"},
}};

std::string sql_quote(std::string_view s) {
  std::string q = "'";
  for (char c : s) {
    q += c;
    if (c == '\'') q += '\'';
  }
  return q + "'";
}

// SQLite's documented way to change a CHECK without rebuilding the table (ALTER TABLE, "making
// other kinds of table schema changes"): edit the table's text in sqlite_schema and bump
// schema_version, in one transaction. A database without the old text (new, or rewritten
// before) is left alone. A failure leaves the schema as it was and only costs speed.
void rewrite_state_checks(Database& db) {
  std::string where;
  for (const auto& [from, to] : kCheckRewrites) {
    where += where.empty() ? "" : " OR ";
    where += "instr(sql, " + sql_quote(from) + ") > 0";
  }
  {
    Statement probe = db.prepare("SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND "
                                 "name IN ('inbox', 'outbox') AND (" +
                                 where + ")");
    Cursor c = probe.query();
    if (!c.next() || c.int64(0) == 0) return;
  }
  Transaction tx(db, Transaction::Mode::write);
  std::int64_t schema_version = 0;
  {
    Statement stmt = db.prepare("PRAGMA schema_version");
    Cursor c = stmt.query();
    if (c.next()) schema_version = c.int64(0);
  }
  db.exec("PRAGMA writable_schema = ON");
  try {
    for (const auto& [from, to] : kCheckRewrites) {
      db.exec("UPDATE sqlite_schema SET sql = replace(sql, " + sql_quote(from) + ", " +
              sql_quote(to) + ") WHERE type = 'table' AND name IN ('inbox', 'outbox')");
    }
    db.exec("PRAGMA schema_version = " + std::to_string(schema_version + 1));
  } catch (const StoreError&) {
    db.exec("PRAGMA writable_schema = OFF");
    throw;
  }
  db.exec("PRAGMA writable_schema = OFF");
  tx.commit();
}

std::unique_ptr<Database> open_database(const std::string& path, Durability durability,
                                        int wal_autocheckpoint) {
  auto db = std::make_unique<Database>(path);
  try {
    db->set_busy_timeout(5000);
    // journal_mode and foreign_keys are no-ops inside a transaction: set them before migrating.
    db->exec("PRAGMA journal_mode = WAL");
    db->exec(durability == Durability::power ? "PRAGMA synchronous = FULL"
                                             : "PRAGMA synchronous = NORMAL");
    db->exec("PRAGMA foreign_keys = ON");
    db->exec("PRAGMA temp_store = MEMORY");
    // Checkpoint every 4000 WAL pages (~16 MB) instead of SQLite's 1000: a page the messages
    // keep writing (an index's rightmost leaf, a session's transcript tail) is copied to the
    // database once per checkpoint however often it was committed, so fewer, larger
    // checkpoints copy fewer pages (25.8 -> 20.2 kB written per message at 100 sessions) and
    // fsync less. Durability is not affected: commits go to the WAL as before, with the same
    // `synchronous`. The cost: the WAL file stays ~16 MB, and recovery after a kill reads up to
    // that much.
    db->exec("PRAGMA wal_autocheckpoint = " + std::to_string(wal_autocheckpoint));
    migrate(*db);
    add_catalog_schema(*db);
    try {
      rewrite_state_checks(*db);
    } catch (const StoreError&) {
      // Slower, not wrong: the IN form allows the same states.
    }
  } catch (const StoreError& e) {
    throw StoreError("cannot open store \"" + path + "\": " + e.what());
  }
  return db;
}

}  // namespace

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
  r.merged_into = c.int64(10);  // NULL reads as 0
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
  e.state = c.text(7) == "interrupted" ? TranscriptState::interrupted : TranscriptState::complete;
  return e;
}

std::optional<std::int64_t> null_if_zero(std::int64_t id) {
  return id == 0 ? std::nullopt : std::optional<std::int64_t>(id);
}

std::unique_ptr<SqliteStore> SqliteStore::open(const std::string& path, Durability durability,
                                               int wal_autocheckpoint) {
  return std::unique_ptr<SqliteStore>(
      new SqliteStore(std::make_unique<Impl>(open_database(path, durability, wal_autocheckpoint))));
}

SqliteStore::SqliteStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

SqliteStore::~SqliteStore() = default;

}  // namespace drawbridge::store
