// PostgresStore: the inbox, the outbox and group-commit batches.

#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "store/postgres_store_rows.h"

namespace drawbridge::store {

using namespace postgres;

InsertInboundResult PostgresStore::insert_inbound(const NewInbound& m, std::int64_t now_ms) {
  if (m.channel.empty() || m.external_id.empty()) {
    throw StoreError(
        "insert_inbound: channel and external_id are required, they are the dedupe key");
  }
  std::lock_guard lock(mutex_);
  Connection& c = *conn_;
  Transaction tx(c, Transaction::Mode::block);
  // ON CONFLICT DO NOTHING: a duplicate is no error, so inside a batch it spoils nothing.
  const Result inserted = c.query(
      "INSERT INTO inbox (channel, external_id, session_key, chat_id, sender, text, run_id, "
      "state, received_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8) "
      "ON CONFLICT (channel, external_id) DO NOTHING RETURNING id",
      m.channel, m.external_id, m.session_key, m.chat_id, m.sender, m.text, m.run_id, now_ms);
  if (inserted.rows() == 0) {
    // Read committed: this statement sees the conflicting row even when another connection
    // committed it after the INSERT began (the INSERT waited for that commit).
    static const std::string sql =
        select_from(kInboxColumns, "FROM inbox WHERE channel = $1 AND external_id = $2");
    const Result r = c.query(sql, m.channel, m.external_id);
    if (r.rows() == 0) throw StoreError("insert_inbound: conflicting inbox row vanished");
    InboxRecord existing = read_inbox(r, 0);
    tx.commit();
    return {std::move(existing), true};
  }
  InsertInboundResult result;
  InboxRecord& r = result.record;
  r.id = inserted.int64(0, 0);
  r.channel = m.channel;
  r.external_id = m.external_id;
  r.session_key = m.session_key;
  r.chat_id = m.chat_id;
  r.sender = m.sender;
  r.text = m.text;
  r.run_id = m.run_id;
  r.state = InboxState::pending;
  r.received_at_ms = now_ms;
  append_transcript(c, m.session_key, "user", m.text, m.run_id, r.id, now_ms);
  // A new message is what resumes a suspended session (suspend_session).
  c.later("UPDATE sessions SET state = 'idle' WHERE session_key = $1 AND state = 'suspended'",
          m.session_key);
  tx.commit();
  return result;
}

std::optional<InboxRecord> PostgresStore::inbound(std::int64_t id) {
  std::lock_guard lock(mutex_);
  Transaction tx(*conn_, Transaction::Mode::single);
  auto row = find_inbox(*conn_, id, false);
  tx.commit();
  return row;
}

std::vector<InboxRecord> PostgresStore::unfinished_inbound() {
  std::lock_guard lock(mutex_);
  Transaction tx(*conn_, Transaction::Mode::single);
  static const std::string sql =
      select_from(kInboxColumns, "FROM inbox WHERE state IN ('pending', 'running') ORDER BY id");
  const Result r = conn_->query(sql);
  std::vector<InboxRecord> rows;
  rows.reserve(static_cast<std::size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) rows.push_back(read_inbox(r, i));
  tx.commit();
  return rows;
}

void PostgresStore::set_inbound_state(std::int64_t id, InboxState state) {
  std::lock_guard lock(mutex_);
  Transaction tx(*conn_, Transaction::Mode::single);
  conn_->defer("UPDATE inbox SET state = $1 WHERE id = $2", {to_string(state), id},
               [id](const Result& r) {
                 if (r.affected() == 0) {
                   throw StoreError("set_inbound_state: no inbound message with id " +
                                    std::to_string(id));
                 }
               });
  tx.commit();
}

void PostgresStore::set_merged(std::int64_t lead, const std::vector<std::int64_t>& members) {
  std::lock_guard lock(mutex_);
  Transaction tx(*conn_, Transaction::Mode::single);
  if (!members.empty()) {
    conn_->query("UPDATE inbox SET merged_into = $1 WHERE id = ANY($2::bigint[]) AND id <> $1",
                 lead, Param::int64_array(members));
  }
  tx.commit();
}

std::int64_t PostgresStore::close_interrupted(std::int64_t inbound_id, const std::string& partial,
                                              std::int64_t now_ms) {
  std::lock_guard lock(mutex_);
  Connection& c = *conn_;
  Transaction tx(c, Transaction::Mode::block);
  const auto inbox = find_inbox(c, inbound_id, true);
  if (!inbox) {
    throw StoreError("close_interrupted: no inbound message with id " + std::to_string(inbound_id));
  }
  if (is_closed(inbox->state)) {
    tx.commit();
    return 0;  // answered or closed already: its transcript says so
  }
  c.query(
      "INSERT INTO sessions (session_key, created_at_ms, updated_at_ms) VALUES ($1, $2, $2) "
      "ON CONFLICT (session_key) DO UPDATE SET updated_at_ms = excluded.updated_at_ms",
      inbox->session_key, now_ms);
  const Result r = c.query(
      "INSERT INTO transcript (session_key, role, text, run_id, inbound_id, created_at_ms, "
      "state) VALUES ($1, 'assistant', $2, $3, $4, $5, 'interrupted') RETURNING id",
      inbox->session_key, partial, inbox->run_id, inbound_id, now_ms);
  const std::int64_t id = r.int64(0, 0);
  c.query("UPDATE inbox SET state = 'aborted' WHERE id = $1", inbound_id);
  tx.commit();
  return id;
}

std::vector<OutboxRecord> PostgresStore::stage_reply(std::int64_t inbound_id,
                                                     const std::vector<std::string>& parts,
                                                     std::int64_t now_ms) {
  std::lock_guard lock(mutex_);
  return stage_reply_locked(inbound_id, parts, now_ms, false);
}

// One transaction, as SqliteStore's: the default (stage_reply, then mark_sent of each part)
// would commit the parts pending first.
std::vector<OutboxRecord> PostgresStore::stage_reply_as_sent(std::int64_t inbound_id,
                                                             const std::vector<std::string>& parts,
                                                             std::int64_t now_ms) {
  std::lock_guard lock(mutex_);
  return stage_reply_locked(inbound_id, parts, now_ms, true);
}

std::vector<OutboxRecord> PostgresStore::stage_reply_locked(std::int64_t inbound_id,
                                                            const std::vector<std::string>& parts,
                                                            std::int64_t now_ms, bool as_sent) {
  Connection& c = *conn_;
  Transaction tx(c, Transaction::Mode::block);
  // Locked: a second replica replaying the same row waits here, then finds it closed.
  const auto inbox = find_inbox(c, inbound_id, true);
  if (!inbox) {
    throw StoreError("stage_reply: no inbound message with id " + std::to_string(inbound_id));
  }
  if (is_closed(inbox->state)) {
    // Already answered (or given up on): a replayed turn must not send a second reply.
    auto rows = outbox_for(c, inbound_id);
    if (as_sent) {
      for (const auto& r : rows) {
        if (r.state == OutboxState::pending &&
            c.query("UPDATE outbox SET state = 'sent', sent_at_ms = $1 WHERE id = $2", now_ms, r.id)
                    .affected() == 0) {
          throw StoreError("stage_reply: outbox row " + std::to_string(r.id) + " vanished");
        }
      }
    }
    tx.commit();
    return rows;
  }

  std::vector<OutboxRecord> rows;
  if (!parts.empty()) {
    std::string whole;
    for (const auto& p : parts) whole += p;
    append_transcript(c, inbox->session_key, "assistant", whole, inbox->run_id, inbound_id, now_ms);
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
      r.state = OutboxState::pending;  // returned pending (what a delivery looks at)
      r.created_at_ms = now_ms;
      r.id = insert_outbox(c, r, as_sent, now_ms);
      if (r.id == 0) {
        // Only possible if something else took a reply key: fail rather than send its text.
        throw StoreError("stage_reply: outbox key " + r.idem_key + " is already used");
      }
    }
  }
  c.later("UPDATE inbox SET state = 'done' WHERE id = $1", inbound_id);
  // A turn of the session finished: the run of interrupted restarts is broken.
  c.later(
      "UPDATE sessions SET interrupts = 0, interrupt_counted = false "
      "WHERE session_key = $1 AND (interrupts <> 0 OR interrupt_counted)",
      inbox->session_key);
  tx.commit();
  return rows;
}

std::pair<OutboxRecord, bool> PostgresStore::stage_outbound(const NewOutbound& m,
                                                            std::int64_t now_ms) {
  if (m.idem_key.empty()) throw StoreError("stage_outbound: idem_key is required");
  std::lock_guard lock(mutex_);
  Connection& c = *conn_;
  Transaction tx(c, Transaction::Mode::block);
  OutboxRecord r;
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
  r.id = insert_outbox(c, r, false, now_ms);
  if (r.id == 0) {
    static const std::string sql = select_from(kOutboxColumns, "FROM outbox WHERE idem_key = $1");
    const Result existing = c.query(sql, m.idem_key);
    if (existing.rows() == 0) throw StoreError("stage_outbound: conflicting outbox row vanished");
    OutboxRecord row = read_outbox(existing, 0);
    tx.commit();
    return {std::move(row), false};
  }
  // A message sent to a bare chat belongs to no session, so it has no history to show in.
  if (!m.session_key.empty()) {
    append_transcript(c, m.session_key, "assistant", m.text, m.run_id, 0, now_ms);
  }
  tx.commit();
  return {std::move(r), true};
}

std::vector<OutboxRecord> PostgresStore::pending_outbox() {
  std::lock_guard lock(mutex_);
  Transaction tx(*conn_, Transaction::Mode::single);
  static const std::string sql =
      select_from(kOutboxColumns, "FROM outbox WHERE state = 'pending' ORDER BY id");
  const Result r = conn_->query(sql);
  std::vector<OutboxRecord> rows;
  rows.reserve(static_cast<std::size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) rows.push_back(read_outbox(r, i));
  tx.commit();
  return rows;
}

namespace {

void set_outbox(Connection& c, const char* caller, std::int64_t id, OutboxState state,
                std::int64_t now_ms) {
  Transaction tx(c, Transaction::Mode::single);
  c.defer("UPDATE outbox SET state = $1, sent_at_ms = $2 WHERE id = $3",
          {to_string(state), now_ms, id}, [caller = std::string(caller), id](const Result& r) {
            if (r.affected() == 0) {
              throw StoreError(caller + ": no outbox row with id " + std::to_string(id));
            }
          });
  tx.commit();
}

}  // namespace

void PostgresStore::mark_sent(std::int64_t outbox_id, std::int64_t now_ms) {
  std::lock_guard lock(mutex_);
  set_outbox(*conn_, "mark_sent", outbox_id, OutboxState::sent, now_ms);
}

void PostgresStore::mark_failed(std::int64_t outbox_id, std::int64_t now_ms) {
  std::lock_guard lock(mutex_);
  set_outbox(*conn_, "mark_failed", outbox_id, OutboxState::failed, now_ms);
}

std::int64_t PostgresStore::mark_stale(const std::vector<std::int64_t>& outbox_ids,
                                       std::int64_t /*now_ms*/) {
  std::lock_guard lock(mutex_);
  Transaction tx(*conn_, Transaction::Mode::single);
  std::int64_t marked = 0;
  if (!outbox_ids.empty()) {
    marked = conn_
                 ->query(
                     "UPDATE outbox SET state = 'stale', sent_at_ms = NULL "
                     "WHERE id = ANY($1::bigint[]) AND state = 'pending'",
                     Param::int64_array(outbox_ids))
                 .affected();
  }
  tx.commit();
  return marked;
}

void PostgresStore::begin_batch() {
  std::lock_guard lock(mutex_);
  conn_->begin_batch();
}

void PostgresStore::commit_batch() {
  std::lock_guard lock(mutex_);
  conn_->commit_batch();
}

void PostgresStore::rollback_batch() {
  std::lock_guard lock(mutex_);
  conn_->rollback_batch();
}

}  // namespace drawbridge::store
