#pragma once

#include <memory>
#include <string>

#include "store/store.h"

namespace drawbridge::store {

// How far a commit is durable before the call returns.
// - process: WAL with synchronous=NORMAL. A commit is in the OS before the call returns, so it
//   survives the gateway being killed (SIGKILL, OOM, crash) at any point; a power loss or
//   kernel crash can lose the last commits. Thousands of messages/s.
// - power: WAL with synchronous=FULL. Every commit is fsynced; survives power loss too. With
//   group commit the cost is one fsync per batch (docs/BENCHMARKS.md).
enum class Durability { process, power };

// The Store on one SQLite connection: WAL, foreign keys on, statements prepared once at open.
// Calls may come from any thread; they are serialized.
class SqliteStore final : public Store {
 public:
  // Opens or creates the database file at `path` and brings its schema up to date. Creates no
  // folder: the caller owns the data folder. ":memory:" gives a private in-memory store.
  // Throws StoreError naming the path and SQLite's reason.
  // `wal_autocheckpoint`: the WAL size in pages at which a commit checkpoints on its own
  // thread; a gateway's writer raises it to WalCheckpointer::kBackstopPages and lets a
  // WalCheckpointer do the work off the commit path.
  static std::unique_ptr<SqliteStore> open(const std::string& path,
                                           Durability durability = Durability::process,
                                           int wal_autocheckpoint = 4000);
  ~SqliteStore() override;

  InsertInboundResult insert_inbound(const NewInbound& m, std::int64_t now_ms) override;
  std::optional<InboxRecord> inbound(std::int64_t id) override;
  std::vector<InboxRecord> unfinished_inbound() override;
  void set_inbound_state(std::int64_t id, InboxState state) override;
  void set_merged(std::int64_t lead, const std::vector<std::int64_t>& members) override;
  std::int64_t close_interrupted(std::int64_t inbound_id, const std::string& partial,
                                 std::int64_t now_ms) override;

  std::vector<OutboxRecord> stage_reply(std::int64_t inbound_id,
                                        const std::vector<std::string>& parts,
                                        std::int64_t now_ms) override;
  std::vector<OutboxRecord> stage_reply_as_sent(std::int64_t inbound_id,
                                                const std::vector<std::string>& parts,
                                                std::int64_t now_ms) override;
  std::pair<OutboxRecord, bool> stage_outbound(const NewOutbound& m, std::int64_t now_ms) override;
  std::vector<OutboxRecord> pending_outbox() override;
  void mark_sent(std::int64_t outbox_id, std::int64_t now_ms) override;
  void mark_failed(std::int64_t outbox_id, std::int64_t now_ms) override;
  std::int64_t mark_stale(const std::vector<std::int64_t>& outbox_ids,
                          std::int64_t now_ms) override;

  TranscriptPage transcript_page(const std::string& session_key, std::size_t limit,
                                 std::size_t max_bytes, std::int64_t before_id) override;
  std::vector<TranscriptEntry> transcript(const std::string& session_key,
                                          std::size_t limit) override;

  StoreCounts counts() override;
  void set_session_state(const std::string& session_key, const std::string& state,
                         std::int64_t now_ms) override;
  std::vector<std::string> sessions_in_state(const std::string& state) override;
  Repair repair_interrupted() override;
  Repair repair_sessions(const std::vector<std::string>& sessions,
                         const std::vector<std::string>& count) override;
  void mark_interrupted(const std::string& session_key, std::int64_t now_ms) override;
  std::vector<InterruptedSession> sessions_interrupted(int at_least) override;
  Suspension suspend_session(const std::string& session_key, const std::string& notice,
                             std::int64_t now_ms) override;
  void begin_batch() override;
  void commit_batch() override;
  void rollback_batch() override;

  std::vector<SessionSummary> list_sessions(std::size_t limit, std::size_t offset,
                                            std::size_t preview_chars) override;
  std::optional<SessionSummary> session_summary(const std::string& session_key,
                                                std::size_t preview_chars) override;
  bool create_session(const std::string& session_key, const std::string& label,
                      std::int64_t now_ms) override;
  bool set_session_label(const std::string& session_key, const std::string& label,
                         std::int64_t now_ms) override;
  bool reset_session(const std::string& session_key, std::int64_t now_ms) override;
  std::optional<InputReceipt> input_receipt(const std::string& channel,
                                            const std::string& external_id) override;
  Lease claim_lease(const std::string& name, const std::string& holder, std::int64_t ttl_ms,
                    std::int64_t now_ms) override;
  std::vector<Lease> renew_leases(const std::string& holder, std::int64_t ttl_ms,
                                  std::int64_t now_ms) override;
  bool release_lease(const std::string& name, const std::string& holder, std::int64_t epoch,
                     std::int64_t now_ms) override;
  std::vector<Lease> list_leases(const std::string& prefix) override;
  bool set_value_fenced(const std::string& key, const std::string& value,
                        const std::string& lease_name, std::int64_t epoch,
                        std::int64_t now_ms) override;
  std::vector<Lease> claim_sessions_with_work(const std::string& holder, std::int64_t ttl_ms,
                                              std::size_t limit, std::int64_t now_ms,
                                              const std::vector<std::string>& only = {},
                                              std::int64_t up_to_row = 0,
                                              const std::vector<std::string>& not_channels = {}) override;
  std::optional<std::string> get_value(const std::string& key) override;
  void set_value(const std::string& key, const std::string& value) override;
  void erase_value(const std::string& key) override;

 private:
  struct Impl;
  explicit SqliteStore(std::unique_ptr<Impl> impl);
  // Keeps <sqlite3.h> and the statement cache out of every includer.
  std::unique_ptr<Impl> impl_;
};

}  // namespace drawbridge::store
