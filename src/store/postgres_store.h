#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "store/store.h"

namespace drawbridge::store {

namespace pg {
class Connection;
}

struct PostgresOptions {
  std::string conninfo;  // libpq connection string or URI
  std::string password;  // "" = libpq's own (PGPASSWORD, ~/.pgpass, the conninfo)
  // > 0: the server ends this connection when it sits that long inside a transaction
  // (idle_in_transaction_session_timeout). A replica frozen mid-batch (SIGSTOP, a VM pause)
  // holds row locks, the lease row's among them: the cluster sets this below its lease time so
  // that another replica can take over.
  std::int64_t idle_in_transaction_timeout_ms = 0;
};

// The Store on one PostgreSQL connection, with the SqliteStore's semantics, for replicas that
// share one database (store.driver "postgres"). Tables are unqualified: the connection's
// search_path decides the schema. Calls may come from any thread; they are serialized. Commits
// are durable as the server's synchronous_commit says (raised to "on" if it was "off").
class PostgresStore final : public Store {
 public:
  // Connects and brings the schema up to date (versioned migrations, one transaction under an
  // advisory lock, so replicas starting together migrate once). Throws StoreError with
  // PostgreSQL's reason; a schema newer than this drawbridge knows is refused.
  static std::unique_ptr<PostgresStore> open(const PostgresOptions& options);
  ~PostgresStore() override;

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
  void fence(const std::string& key, const std::string& value, const std::string& lease_name,
             std::int64_t epoch, std::int64_t now_ms, const std::string& refusal) override;
  std::vector<Lease> claim_sessions_with_work(const std::string& holder, std::int64_t ttl_ms,
                                              std::size_t limit, std::int64_t now_ms,
                                              const std::vector<std::string>& only = {},
                                              std::int64_t up_to_row = 0,
                                              const std::vector<std::string>& not_channels = {}) override;

  std::string notice_scope() override;
  void notify(const std::string& channel, const std::string& payload) override;
  void notify_all(const std::string& channel, const std::vector<std::string>& payloads) override;
  std::optional<std::string> get_value(const std::string& key) override;
  void set_value(const std::string& key, const std::string& value) override;
  void erase_value(const std::string& key) override;

 private:
  explicit PostgresStore(std::unique_ptr<pg::Connection> conn);
  std::vector<OutboxRecord> stage_reply_locked(std::int64_t inbound_id,
                                               const std::vector<std::string>& parts,
                                               std::int64_t now_ms, bool as_sent);

  // Calls are serialized: the prepared statements and the transaction state belong to the
  // connection, which libpq does not share between threads.
  std::mutex mutex_;
  std::unique_ptr<pg::Connection> conn_;
};

}  // namespace drawbridge::store
