// SqliteStore: the inbox, the outbox and group-commit batches.

#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "store/sqlite_store_impl.h"

namespace drawbridge::store {

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

void SqliteStore::set_merged(std::int64_t lead, const std::vector<std::int64_t>& members) {
  Impl& s = *impl_;
  std::lock_guard lock(s.mutex);
  Transaction tx(*s.db, Transaction::Mode::write);
  for (auto id : members) s.set_merged_into.execute(lead, id, lead);
  tx.commit();
}

std::int64_t SqliteStore::close_interrupted(std::int64_t inbound_id, const std::string& partial,
                                            std::int64_t now_ms) {
  Impl& s = *impl_;
  std::lock_guard lock(s.mutex);
  Transaction tx(*s.db, Transaction::Mode::write);
  const auto inbox = s.find_inbox(inbound_id);
  if (!inbox) {
    throw StoreError("close_interrupted: no inbound message with id " +
                     std::to_string(inbound_id));
  }
  if (is_closed(inbox->state)) {
    tx.commit();
    return 0;  // answered or closed already: its transcript says so
  }
  s.upsert_session.execute(inbox->session_key, now_ms, now_ms);
  s.insert_interrupted.execute(inbox->session_key, partial, inbox->run_id, inbound_id, now_ms);
  const std::int64_t id = s.db->last_insert_rowid();
  s.set_inbox_state.execute(to_string(InboxState::aborted), inbound_id);
  tx.commit();
  return id;
}

std::vector<OutboxRecord> SqliteStore::stage_reply(std::int64_t inbound_id,
                                                   const std::vector<std::string>& parts,
                                                   std::int64_t now_ms) {
  std::lock_guard lock(impl_->mutex);
  return impl_->stage_reply(inbound_id, parts, now_ms, false);
}

std::vector<OutboxRecord> SqliteStore::stage_reply_as_sent(std::int64_t inbound_id,
                                                           const std::vector<std::string>& parts,
                                                           std::int64_t now_ms) {
  std::lock_guard lock(impl_->mutex);
  return impl_->stage_reply(inbound_id, parts, now_ms, true);
}

std::vector<OutboxRecord> SqliteStore::Impl::stage_reply(std::int64_t inbound_id,
                                                         const std::vector<std::string>& parts,
                                                         std::int64_t now_ms, bool as_sent) {
  Impl& s = *this;
  Transaction tx(*s.db, Transaction::Mode::write);
  const auto inbox = s.find_inbox(inbound_id);
  if (!inbox) {
    throw StoreError("stage_reply: no inbound message with id " + std::to_string(inbound_id));
  }
  if (is_closed(inbox->state)) {
    // Already answered (or given up on): a replayed turn must not send a second reply.
    auto rows = s.outbox_for(inbound_id);
    if (as_sent) {
      for (const auto& r : rows) {
        if (r.state == OutboxState::pending &&
            s.set_outbox_state.execute(to_string(OutboxState::sent), now_ms, r.id) == 0) {
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
      // Returned as pending (what a delivery looks at) even when written sent.
      const int inserted =
          as_sent ? s.insert_outbox_sent.execute(r.idem_key, inbound_id, r.part, r.final_part,
                                                 r.channel, r.chat_id, r.session_key, r.run_id,
                                                 r.text, now_ms, now_ms)
                  : s.insert_outbox.execute(r.idem_key, inbound_id, r.part, r.final_part,
                                            r.channel, r.chat_id, r.session_key, r.run_id, r.text,
                                            now_ms);
      if (inserted == 0) {
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

}  // namespace drawbridge::store
