// The PostgresStore: schema, migrations, opening, the row mapping and the statements the
// operations share. The operations live in postgres_store_messages.cpp (inbox, outbox,
// batches), postgres_store_reads.cpp (transcript, counts), postgres_store_sessions.cpp
// (session state, restart loops, key/value), postgres_store_catalog.cpp (the control plane's
// session catalog) and postgres_store_leases.cpp (leases and fencing).

#include "store/postgres_store.h"

#include <algorithm>
#include <array>
#include <limits>
#include <string_view>
#include <utility>

#include "store/pg.h"
#include "store/postgres_store_rows.h"

namespace drawbridge::store {
namespace postgres {
namespace {

// Migration i takes the schema from version i to i + 1. Append only: a migration that has
// shipped is never edited, since databases in the field already ran it.
// Version 1 is the SQLite schema as it stands at its user_version 4 with its catalog tables,
// plus the leases. Keys that are sorted on are COLLATE "C": byte order, as SQLite sorts, and
// the same on every server whatever its locale.
constexpr std::array<std::string_view, 1> kMigrations = {
    R"sql(
CREATE TABLE inbox (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  channel text COLLATE "C" NOT NULL,
  external_id text COLLATE "C" NOT NULL,
  session_key text COLLATE "C" NOT NULL,
  chat_id text NOT NULL,
  sender text NOT NULL,
  text text NOT NULL,
  run_id text NOT NULL,
  state text NOT NULL CHECK (state IN ('pending', 'running', 'done', 'aborted', 'failed')),
  received_at_ms bigint NOT NULL,
  merged_into bigint REFERENCES inbox (id),
  UNIQUE (channel, external_id)
);
-- Partial: only the rows a restart replays or a replica takes over, not the whole history.
CREATE INDEX inbox_unfinished ON inbox (id) WHERE state IN ('pending', 'running');
CREATE INDEX inbox_unfinished_by_session ON inbox (session_key, id)
  WHERE state IN ('pending', 'running');

CREATE TABLE outbox (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  idem_key text COLLATE "C" NOT NULL UNIQUE,
  inbound_id bigint REFERENCES inbox (id),
  part integer NOT NULL,
  final_part boolean NOT NULL,
  channel text NOT NULL,
  chat_id text NOT NULL,
  session_key text COLLATE "C" NOT NULL,
  run_id text NOT NULL,
  text text NOT NULL,
  state text NOT NULL CHECK (state IN ('pending', 'sent', 'failed', 'stale')),
  created_at_ms bigint NOT NULL,
  sent_at_ms bigint
);
CREATE INDEX outbox_by_state ON outbox (state, id);
CREATE INDEX outbox_by_inbound ON outbox (inbound_id, part) WHERE inbound_id IS NOT NULL;

CREATE TABLE sessions (
  session_key text COLLATE "C" PRIMARY KEY,
  created_at_ms bigint NOT NULL,
  updated_at_ms bigint NOT NULL,
  state text NOT NULL DEFAULT 'idle',
  -- Restart-loop protection, as in SQLite's migration 2.
  interrupts integer NOT NULL DEFAULT 0,
  interrupt_counted boolean NOT NULL DEFAULT false
);
CREATE INDEX sessions_interrupted ON sessions (session_key) WHERE interrupts > 0;
CREATE INDEX sessions_by_activity ON sessions (updated_at_ms DESC, session_key);

CREATE TABLE transcript (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  session_key text COLLATE "C" NOT NULL REFERENCES sessions (session_key),
  role text NOT NULL,
  text text NOT NULL,
  run_id text NOT NULL,
  inbound_id bigint REFERENCES inbox (id),
  created_at_ms bigint NOT NULL,
  state text NOT NULL DEFAULT 'complete' CHECK (state IN ('complete', 'interrupted'))
);
CREATE INDEX transcript_by_session ON transcript (session_key, id);
CREATE INDEX transcript_by_inbound ON transcript (inbound_id) WHERE inbound_id IS NOT NULL;

CREATE TABLE kv (
  key text COLLATE "C" PRIMARY KEY,
  value text NOT NULL
);

CREATE TABLE session_meta (
  session_key text COLLATE "C" PRIMARY KEY,
  label text NOT NULL DEFAULT '',
  history_from bigint NOT NULL DEFAULT 0
);

-- holder '': nobody holds it (never claimed, or released). expires_at_ms is on the server's
-- clock. epoch is the fencing token.
CREATE TABLE leases (
  name text COLLATE "C" PRIMARY KEY,
  holder text NOT NULL DEFAULT '',
  epoch bigint NOT NULL DEFAULT 0,
  expires_at_ms bigint NOT NULL DEFAULT 0
);
CREATE INDEX leases_by_holder ON leases (holder);
)sql",
};

// pg_advisory_xact_lock's key for migrations: "drawbrdg" in ASCII. Held by the migrating
// transaction only, so replicas that start together migrate one after the other.
constexpr std::int64_t kMigrationLock = 0x6472617762726467;

// One transaction for the whole upgrade, version check included, under the advisory lock:
// the first replica migrates, the others wait and then find the schema current.
void migrate(Connection& c) {
  Transaction tx(c, Transaction::Mode::block);
  c.query("SELECT pg_advisory_xact_lock($1)", kMigrationLock);
  c.exec(
      "CREATE TABLE IF NOT EXISTS schema_version ("
      "singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton), "
      "version bigint NOT NULL)");
  const Result r = c.query("SELECT version FROM schema_version");
  const std::int64_t version = r.rows() > 0 ? r.int64(0, 0) : 0;
  const auto latest = static_cast<std::int64_t>(kMigrations.size());
  if (version > latest) {
    throw StoreError("schema version " + std::to_string(version) +
                     " is newer than this drawbridge understands (" + std::to_string(latest) +
                     "); refusing to touch it");
  }
  for (std::int64_t v = version; v < latest; ++v) {
    c.exec(std::string(kMigrations[static_cast<std::size_t>(v)]));
  }
  if (version != latest) {
    c.query(
        "INSERT INTO schema_version (version) VALUES ($1) "
        "ON CONFLICT (singleton) DO UPDATE SET version = excluded.version",
        latest);
  }
  tx.commit();
}

// Read committed: every statement here is written for it (ON CONFLICT, FOR UPDATE, SKIP
// LOCKED re-check the newest row version), whatever the server's default. A commit is durable
// before it returns unless the server or role chose synchronous_commit = off, which is raised
// to on ("accepted means durable"); stronger settings (remote_apply, ...) are kept.
constexpr const char* kSessionSetup =
    "SET default_transaction_isolation = 'read committed'; "
    "SELECT set_config('synchronous_commit', 'on', false) "
    "WHERE current_setting('synchronous_commit') = 'off'";

}  // namespace

InboxRecord read_inbox(const Result& r, int row) {
  InboxRecord out;
  out.id = r.int64(row, 0);
  out.channel = r.text(row, 1);
  out.external_id = r.text(row, 2);
  out.session_key = r.text(row, 3);
  out.chat_id = r.text(row, 4);
  out.sender = r.text(row, 5);
  out.text = r.text(row, 6);
  out.run_id = r.text(row, 7);
  out.state = inbox_state_from(r.text(row, 8));
  out.received_at_ms = r.int64(row, 9);
  out.merged_into = r.int64(row, 10);  // NULL reads as 0
  return out;
}

OutboxRecord read_outbox(const Result& r, int row) {
  OutboxRecord out;
  out.id = r.int64(row, 0);
  out.idem_key = r.text(row, 1);
  out.inbound_id = r.int64(row, 2);  // NULL reads as 0, the documented "answers no inbound row"
  out.part = static_cast<int>(r.int64(row, 3));
  out.final_part = r.boolean(row, 4);
  out.channel = r.text(row, 5);
  out.chat_id = r.text(row, 6);
  out.session_key = r.text(row, 7);
  out.run_id = r.text(row, 8);
  out.text = r.text(row, 9);
  out.state = outbox_state_from(r.text(row, 10));
  out.created_at_ms = r.int64(row, 11);
  out.sent_at_ms = r.int64(row, 12);
  return out;
}

TranscriptEntry read_transcript(const Result& r, int row) {
  TranscriptEntry e;
  e.id = r.int64(row, 0);
  e.session_key = r.text(row, 1);
  e.role = r.text(row, 2);
  e.text = r.text(row, 3);
  e.run_id = r.text(row, 4);
  e.inbound_id = r.int64(row, 5);
  e.created_at_ms = r.int64(row, 6);
  e.state =
      r.text(row, 7) == "interrupted" ? TranscriptState::interrupted : TranscriptState::complete;
  return e;
}

Lease read_lease(const Result& r, int row) {
  Lease l;
  l.name = r.text(row, 0);
  l.holder = r.text(row, 1);
  l.epoch = r.int64(row, 2);
  l.expires_at_ms = r.int64(row, 3);
  return l;
}

std::optional<std::int64_t> null_if_zero(std::int64_t id) {
  return id == 0 ? std::nullopt : std::optional<std::int64_t>(id);
}

std::int64_t clamp_to_int64(std::size_t n) {
  return static_cast<std::int64_t>(
      std::min<std::size_t>(n, static_cast<std::size_t>(std::numeric_limits<std::int64_t>::max())));
}

std::optional<InboxRecord> find_inbox(Connection& c, std::int64_t id, bool for_update) {
  static const std::string plain = select_from(kInboxColumns, "FROM inbox WHERE id = $1");
  static const std::string locked = plain + " FOR UPDATE";
  const Result r = c.query(for_update ? locked : plain, id);
  if (r.rows() == 0) return std::nullopt;
  return read_inbox(r, 0);
}

std::vector<OutboxRecord> outbox_for(Connection& c, std::int64_t inbound_id) {
  static const std::string sql =
      select_from(kOutboxColumns, "FROM outbox WHERE inbound_id = $1 ORDER BY part");
  const Result r = c.query(sql, inbound_id);
  std::vector<OutboxRecord> rows;
  rows.reserve(static_cast<std::size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) rows.push_back(read_outbox(r, i));
  return rows;
}

void append_transcript(Connection& c, const std::string& session_key, std::string_view role,
                       std::string_view text, const std::string& run_id, std::int64_t inbound_id,
                       std::int64_t now_ms) {
  // Nothing read back: in a batch both go with the next statement that waits.
  c.later(
      "INSERT INTO sessions (session_key, created_at_ms, updated_at_ms) VALUES ($1, $2, $2) "
      "ON CONFLICT (session_key) DO UPDATE SET updated_at_ms = excluded.updated_at_ms",
      session_key, now_ms);
  c.later(
      "INSERT INTO transcript (session_key, role, text, run_id, inbound_id, created_at_ms) "
      "VALUES ($1, $2, $3, $4, $5, $6)",
      session_key, role, text, run_id, null_if_zero(inbound_id), now_ms);
}

std::int64_t insert_outbox(Connection& c, const OutboxRecord& r, bool as_sent,
                           std::int64_t now_ms) {
  const Result res = c.query(
      "INSERT INTO outbox (idem_key, inbound_id, part, final_part, channel, chat_id, "
      "session_key, run_id, text, state, created_at_ms, sent_at_ms) "
      "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) "
      "ON CONFLICT (idem_key) DO NOTHING RETURNING id",
      r.idem_key, null_if_zero(r.inbound_id), r.part, r.final_part, r.channel, r.chat_id,
      r.session_key, r.run_id, r.text, as_sent ? "sent" : "pending", now_ms,
      as_sent ? std::optional<std::int64_t>(now_ms) : std::nullopt);
  return res.rows() > 0 ? res.int64(0, 0) : 0;
}

}  // namespace postgres

std::unique_ptr<PostgresStore> PostgresStore::open(const PostgresOptions& options) {
  auto conn = std::make_unique<pg::Connection>(options.conninfo, options.password);
  try {
    std::string setup = postgres::kSessionSetup;
    if (options.idle_in_transaction_timeout_ms > 0) {
      setup += "; SET idle_in_transaction_session_timeout = " +
                std::to_string(options.idle_in_transaction_timeout_ms);
    }
    conn->set_session_setup(setup);
    // Text is stored as UTF-8 (pg::storable_text) and previews count its characters.
    const auto encoding = conn->query("SELECT current_setting('server_encoding')").text(0, 0);
    if (encoding != "UTF8") {
      throw StoreError("the database's encoding is " + encoding +
                       "; drawbridge needs UTF8 (CREATE DATABASE ... ENCODING 'UTF8')");
    }
    postgres::migrate(*conn);
  } catch (const StoreError& e) {
    throw StoreError(std::string("cannot open the PostgreSQL store: ") + e.what());
  }
  return std::unique_ptr<PostgresStore>(new PostgresStore(std::move(conn)));
}

PostgresStore::PostgresStore(std::unique_ptr<pg::Connection> conn) : conn_(std::move(conn)) {}

PostgresStore::~PostgresStore() = default;

}  // namespace drawbridge::store
