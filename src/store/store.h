#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace drawbridge::store {

// The only exception the store throws: SQLite failures (with SQLite's reason), unknown ids and
// arguments that would corrupt the dedupe keys. A method that throws has written nothing.
class StoreError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class InboxState { pending, running, done, aborted, failed };
const char* to_string(InboxState s);

struct NewInbound {
  std::string channel;      // channel id, e.g. "local"
  std::string external_id;  // idempotency key / upstream message id; dedupe key with channel
  std::string session_key;  // the conversation this message belongs to
  std::string chat_id;      // where replies go on the channel
  std::string sender;
  std::string text;
  std::string run_id;  // run id to record when the row is new
};

struct InboxRecord {
  std::int64_t id = 0;
  std::string channel;
  std::string external_id;
  std::string session_key;
  std::string chat_id;
  std::string sender;
  std::string text;
  std::string run_id;
  InboxState state = InboxState::pending;
  std::int64_t received_at_ms = 0;
  // Debounced into the turn of row `merged_into` (set_merged), 0: answered by its own turn.
  std::int64_t merged_into = 0;
};

struct InsertInboundResult {
  InboxRecord record;
  bool duplicate = false;  // true: the row existed already, nothing was written
};

// stale: never sent, because the gateway came back too late for it (messages.replyTtlMs).
enum class OutboxState { pending, sent, failed, stale };
const char* to_string(OutboxState s);

struct OutboxRecord {
  std::int64_t id = 0;
  std::string idem_key;         // "<inbound id>:<part>" for replies, "send:<key>" for `send`
  std::int64_t inbound_id = 0;  // 0 for messages not answering an inbound row
  int part = 0;
  bool final_part = false;
  std::string channel;
  std::string chat_id;
  std::string session_key;
  std::string run_id;
  std::string text;
  OutboxState state = OutboxState::pending;
  std::int64_t created_at_ms = 0;
  std::int64_t sent_at_ms = 0;
};

struct NewOutbound {
  std::string idem_key;
  std::string channel;
  std::string chat_id;
  std::string session_key;
  std::string run_id;
  std::string text;
};

// An assistant entry is complete (the reply as sent), or interrupted: what a turn cut short
// (chat.abort, /stop, a drain's timeout) had said so far, possibly nothing. An interrupted
// entry is never passed off as a whole reply (chat.history marks it, the agent's history
// says it was cut).
enum class TranscriptState { complete, interrupted };

struct TranscriptEntry {
  std::int64_t id = 0;
  std::string session_key;
  std::string role;  // "user" or "assistant"
  std::string text;
  std::string run_id;
  std::int64_t inbound_id = 0;
  std::int64_t created_at_ms = 0;
  TranscriptState state = TranscriptState::complete;
};

struct StoreCounts {
  std::int64_t inbox_total = 0;
  std::int64_t inbox_unfinished = 0;  // pending + running
  std::int64_t outbox_pending = 0;
  std::int64_t outbox_sent = 0;
  std::int64_t outbox_stale = 0;
  std::int64_t sessions = 0;
  std::int64_t sessions_suspended = 0;
};

// A session whose turns restarts keep interrupting (see Store::sessions_interrupted).
struct InterruptedSession {
  std::string session_key;
  int interrupts = 0;  // restarts in a row that interrupted a turn of the session
};

// What Store::suspend_session did.
struct Suspension {
  std::vector<InboxRecord> closed;     // unfinished rows closed as aborted, oldest first
  std::optional<OutboxRecord> notice;  // the reply to the chat (pending); none: no chat known
};

// A session as the control plane lists it (sessions.list, sessions.describe).
struct SessionSummary {
  std::string session_key;
  std::int64_t created_at_ms = 0;
  std::int64_t updated_at_ms = 0;
  std::string state;  // idle | resume_pending | suspended
  std::string label;  // "" when none was set
  // The newest transcript entry since the last reset; empty role: none.
  std::string last_role;
  std::string last_text;
};

// Whether a message taken with `external_id` was taken up by a turn (inputReceipts).
struct InputReceipt {
  std::string session_key;
  InboxState state = InboxState::pending;
  std::int64_t transcript_id = 0;  // the user entry it wrote
};

// A named lease: who may act for a channel account ("channel:<channel>:<account>"), a session
// ("session:<key>") or a replica's presence ("replica:<id>"). With store.driver "postgres" the
// replicas share it; with "sqlite" one gateway holds them all, under the same rules.
struct Lease {
  std::string name;
  std::string holder;               // replica id; "" when nobody ever held it
  std::int64_t epoch = 0;           // the fencing token: one more each time the holder changes
  std::int64_t expires_at_ms = 0;   // the store's clock (see Store::claim_lease)
  bool held = false;                // claim_lease: the caller holds it now
  // claim_sessions_with_work: who held it before this claim ("" when it was free or released:
  // a hand-over; a replica id when that replica died or froze with it).
  std::string taken_from;
};

// Durable state of the message path. Every method is one transaction; a method that returns
// has committed (WAL, synchronous=FULL for commits that acknowledge something upstream).
// Errors are thrown as StoreError; callers on the event loop catch them at the boundary.
class Store {
 public:
  virtual ~Store() = default;

  // Dedupes by (channel, external_id). A new row also appends the user's transcript entry and
  // creates the session row, in the same transaction; a suspended session becomes "idle".
  virtual InsertInboundResult insert_inbound(const NewInbound& m, std::int64_t now_ms) = 0;
  virtual std::optional<InboxRecord> inbound(std::int64_t id) = 0;
  // Rows still pending or running, oldest first: what a restart replays.
  virtual std::vector<InboxRecord> unfinished_inbound() = 0;
  virtual void set_inbound_state(std::int64_t id, InboxState state) = 0;
  // Rows `members` are answered by the turn of row `lead` (debounced into it): kept, so that a
  // restart before that turn runs replays them as one turn again. Unknown rows are skipped.
  virtual void set_merged(std::int64_t lead, const std::vector<std::int64_t>& members) = 0;
  // Closes an inbound row whose turn was cut short (chat.abort, /stop, a drain's timeout): the
  // row becomes "aborted" and the transcript gets an assistant entry in state interrupted
  // holding what the reply had said so far (`partial`, possibly empty), in one transaction.
  // A row already closed is left alone (no second entry). Returns the entry's id, 0 when
  // nothing was written.
  virtual std::int64_t close_interrupted(std::int64_t inbound_id, const std::string& partial,
                                         std::int64_t now_ms) = 0;

  // Closes an inbound row with its reply: appends the assistant transcript entry (the whole
  // text), writes every part to the outbox as pending with key "<inbound id>:<part>", and marks
  // the inbox row done, all in one transaction. Calling it again for a closed row writes
  // nothing and returns the parts already there. A turn of the session finished: its count of
  // interrupted restarts goes back to 0 (same transaction).
  virtual std::vector<OutboxRecord> stage_reply(std::int64_t inbound_id,
                                                const std::vector<std::string>& parts,
                                                std::int64_t now_ms) = 0;
  // stage_reply, then mark_sent of every part it returned pending, as one operation: for a
  // channel whose delivery cannot fail (the local one), whose parts are staged as sent.
  // Returns what stage_reply returned (the states before the marking), so the caller hands
  // the parts that were pending to the channel. The default composes the two calls; the
  // SqliteStore writes a new part as sent at once (one write per part instead of two).
  virtual std::vector<OutboxRecord> stage_reply_as_sent(std::int64_t inbound_id,
                                                        const std::vector<std::string>& parts,
                                                        std::int64_t now_ms);
  // Outbound message that answers no inbound row (`send`). Deduped by idem_key: a second call
  // returns the existing row and `false`.
  virtual std::pair<OutboxRecord, bool> stage_outbound(const NewOutbound& m,
                                                       std::int64_t now_ms) = 0;
  virtual std::vector<OutboxRecord> pending_outbox() = 0;
  virtual void mark_sent(std::int64_t outbox_id, std::int64_t now_ms) = 0;
  virtual void mark_failed(std::int64_t outbox_id, std::int64_t now_ms) = 0;
  // Parts that will never be sent (too old): "stale". Rows no longer pending are left alone
  // (their inbox row was closed with the reply already). Returns how many were marked.
  virtual std::int64_t mark_stale(const std::vector<std::int64_t>& outbox_ids,
                                  std::int64_t now_ms) = 0;

  // The newest `limit` entries of a session, returned oldest first.
  virtual std::vector<TranscriptEntry> transcript(const std::string& session_key,
                                                  std::size_t limit) = 0;
  // A page for a reader outside: the newest entries older than `before_id` (0 = the newest),
  // at most `limit` of them and at most `max_bytes` of text (the newest entry always comes,
  // whatever its size, so paging makes progress), oldest first; `more` when older entries
  // remain. Memory stays bounded by max_bytes whatever the session holds.
  struct TranscriptPage {
    std::vector<TranscriptEntry> entries;
    bool more = false;
  };
  virtual TranscriptPage transcript_page(const std::string& session_key, std::size_t limit,
                                         std::size_t max_bytes, std::int64_t before_id) = 0;

  virtual StoreCounts counts() = 0;

  // Session lifecycle state: "idle", "resume_pending" once a restart aborted its turn (the
  // next turn is told so, then it is "idle" again), or "suspended" (suspend_session). Unknown
  // sessions are left alone.
  virtual void set_session_state(const std::string& session_key, const std::string& state,
                                 std::int64_t now_ms) = 0;
  virtual std::vector<std::string> sessions_in_state(const std::string& state) = 0;

  // After a start without the clean-shutdown marker: removes what a turn that never finished
  // may have left in the transcript (any non-user entry of an inbox row still unfinished), so
  // the replayed turn starts from a consistent history. Returns the sessions with unfinished
  // rows (those the replay resumes) and how many entries were removed.
  // Each of those sessions counts one more interrupted restart, unless mark_interrupted
  // counted this restart for it already (a drain aborted its turn, then the process went on
  // without the marker): one restart is one interrupt.
  struct Repair {
    std::vector<std::string> sessions;
    std::int64_t removed_entries = 0;
  };
  virtual Repair repair_interrupted() = 0;
  // The same for `sessions` only (a replica takes them over from one that died, or finds them
  // its own after its own crash): removes the non-user entries of their unfinished rows, and
  // counts one more interrupted restart for each of `count` that has unfinished rows (unless
  // mark_interrupted counted it already). Runs inside a batch as well.
  virtual Repair repair_sessions(const std::vector<std::string>& sessions,
                                 const std::vector<std::string>& count) = 0;

  // --- Restart-loop protection: interrupted restarts in a row, per session ---
  // A restart's drain aborted the session's turn: "resume_pending", and one more interrupted
  // restart in a row. Unknown sessions are left alone.
  virtual void mark_interrupted(const std::string& session_key, std::int64_t now_ms) = 0;
  // Sessions that restarts interrupted at least `at_least` times in a row, by session key.
  virtual std::vector<InterruptedSession> sessions_interrupted(int at_least) = 0;
  // One transaction: closes the session's unfinished rows as aborted, sets it "suspended" with
  // its count back to 0, and stages `notice` as a message to the chat of its newest inbox row
  // (key "suspended:<session>:<newest inbox id>", in the transcript like any reply).
  virtual Suspension suspend_session(const std::string& session_key, const std::string& notice,
                                     std::int64_t now_ms) = 0;

  // Group commit. Between begin_batch() and commit_batch() the methods above write into one
  // transaction, and commit_batch() makes all of them durable at once. Nothing written in a
  // batch may be acknowledged before commit_batch() returns. A batch is all or nothing: a
  // method that throws inside it rolls the whole batch back, and commit_batch() then throws
  // StoreError (as it does when the commit itself fails): none of the batch was committed.
  virtual void begin_batch() = 0;
  virtual void commit_batch() = 0;
  virtual void rollback_batch() = 0;

  // --- The session catalog of the control plane ---
  // Sessions by last activity, newest first; `last_text` cut to `preview_chars` bytes.
  virtual std::vector<SessionSummary> list_sessions(std::size_t limit, std::size_t offset,
                                                    std::size_t preview_chars) = 0;
  virtual std::optional<SessionSummary> session_summary(const std::string& session_key,
                                                        std::size_t preview_chars) = 0;
  // Creates an empty session (false: it existed, nothing changed but a non-empty label).
  virtual bool create_session(const std::string& session_key, const std::string& label,
                              std::int64_t now_ms) = 0;
  // False: no such session.
  virtual bool set_session_label(const std::string& session_key, const std::string& label,
                                 std::int64_t now_ms) = 0;
  // The session starts over: entries written so far no longer reach the agent or
  // chat.history (they stay in the file). False: no such session.
  virtual bool reset_session(const std::string& session_key, std::int64_t now_ms) = 0;
  virtual std::optional<InputReceipt> input_receipt(const std::string& channel,
                                                    const std::string& external_id) = 0;

  // --- Leases and fencing (docs/DECISIONS.md "Replicas") ---
  // Time: `now_ms` is the caller's wall clock (ms since the epoch). A driver that several
  // machines share (postgres) takes its own server's clock instead, so the replicas' clocks
  // need not agree; leases are then compared on that one clock only.
  //
  // Claims `name` for `holder` until now + ttl_ms when it is free, expired, released or the
  // holder's already (then it is renewed, epoch unchanged). A change of holder, or a new
  // claim after a release or an expiry, takes epoch + 1. Another holder's live lease is left
  // alone: the answer has held = false and names that holder, its epoch and its expiry.
  virtual Lease claim_lease(const std::string& name, const std::string& holder,
                            std::int64_t ttl_ms, std::int64_t now_ms) = 0;
  // The heartbeat: extends every lease `holder` still holds (its name and epoch unchanged,
  // expired or not: nobody took it meanwhile) to now + ttl_ms, in one statement. Returns those
  // leases; a lease the holder lost (another holder, a new epoch) is not among them. A
  // presence lease ("replica:<id>") is the exception: once expired it is not renewed (its
  // sessions may have been taken over meanwhile; the replica must claim it again).
  virtual std::vector<Lease> renew_leases(const std::string& holder, std::int64_t ttl_ms,
                                          std::int64_t now_ms) = 0;
  // Gives a lease up at once (a hand-over): expired now, so another replica may claim it
  // without waiting. Only its holder at that epoch can; false when that is no longer so.
  virtual bool release_lease(const std::string& name, const std::string& holder,
                             std::int64_t epoch, std::int64_t now_ms) = 0;
  // Leases whose name starts with `prefix` ("" = all), by name.
  virtual std::vector<Lease> list_leases(const std::string& prefix) = 0;
  // The fencing check on a write: sets `key` to `value` only while lease `lease_name` is at
  // `epoch` and not expired; false, with nothing written, when it is not (a replica that paused
  // past its lease cannot commit a channel cursor). Inside a batch a refusal spoils nothing.
  virtual bool set_value_fenced(const std::string& key, const std::string& value,
                                const std::string& lease_name, std::int64_t epoch,
                                std::int64_t now_ms) = 0;
  // The fenced write a batch starts with (runtime::Replica::fence): set_value_fenced, and
  // StoreError(`refusal`) when it is refused. A driver may send it without waiting for the
  // answer and check it before the batch commits (postgres: pipeline mode); the batch fails
  // then, with nothing committed.
  virtual void fence(const std::string& key, const std::string& value,
                     const std::string& lease_name, std::int64_t epoch, std::int64_t now_ms,
                     const std::string& refusal) {
    if (!set_value_fenced(key, value, lease_name, epoch, now_ms)) throw StoreError(refusal);
  }
  // Work to take over: sessions with unfinished inbound rows (pending or running) whose lease
  // ("session:<key>") is free or released, or expired while its holder's presence lease
  // ("replica:<holder>") is expired or missing too: a session is its holder's as long as that
  // replica lives. Claims up to `limit` of them for `holder` (postgres: FOR UPDATE SKIP
  // LOCKED, so two replicas never take the same one; the dead holder's presence row is locked
  // too, so a batch it still had in flight commits first) and returns the leases taken,
  // oldest unfinished row first, each with `taken_from`. `only`: these sessions alone.
  // `up_to_row` > 0: only sessions whose oldest unfinished row is at most that id (a scan
  // leaves the newest messages to the replicas that accepted them, which claim them at once).
  // `not_channels`: a session with an unfinished row of one of these channels is left alone
  // (its channel's connection is another replica's: that one claims it).
  virtual std::vector<Lease> claim_sessions_with_work(const std::string& holder,
                                                      std::int64_t ttl_ms, std::size_t limit,
                                                      std::int64_t now_ms,
                                                      const std::vector<std::string>& only = {},
                                                      std::int64_t up_to_row = 0,
                                                      const std::vector<std::string>& not_channels = {}) = 0;

  // Tells the other replicas on this database (postgres: pg_notify, delivered when the write
  // commits: inside a batch only if the batch commits). A payload is at most kNoticeBytes.
  // One machine has nobody to tell: SQLite ignores it.
  static constexpr std::size_t kNoticeBytes = 7900;
  // What the store's notices are heard by: the replicas of this database and schema (postgres:
  // "<database>.<schema>"; notices are database-wide, so channels are named after it). "" for
  // SQLite.
  virtual std::string notice_scope() { return {}; }
  virtual void notify(const std::string& channel, const std::string& payload) {
    (void)channel;
    (void)payload;
  }
  // Several notices on one channel, in order (postgres: one statement).
  virtual void notify_all(const std::string& channel, const std::vector<std::string>& payloads) {
    for (const auto& p : payloads) notify(channel, p);
  }

  // Small named values: lifecycle markers, channel cursors, the generated token.
  virtual std::optional<std::string> get_value(const std::string& key) = 0;
  virtual void set_value(const std::string& key, const std::string& value) = 0;
  virtual void erase_value(const std::string& key) = 0;
};

}  // namespace drawbridge::store
