#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>

#include "store/store.h"

namespace drawbridge::store {

// The storage seam, in the spirit of LevelDB's fault-injection env: wraps any Store, forwards
// every call to it, and fails or loses what a test programs, so the promise ("acknowledged
// means durable", "answered once") is proved by deterministic unit tests instead of SIGKILL
// loops alone. For tests; nothing in the gateway wires it.
//
// Batches are numbered from 1 in the order begin_batch() is called on the wrapper.
// - fail_batch(n): the first call inside batch n throws StoreError without reaching the inner
//   store (an operation failing mid-batch, as SQLITE_FULL would). The caller rolls the batch
//   back (run_batch does), so nothing of it is written; a batch with no call fails at commit.
// - fail_commit(n): every operation of batch n succeeds (results are filled in), then
//   commit_batch() rolls the inner batch back and throws StoreError: the COMMIT itself failed.
// - lose_batch(n): the process "dies" as batch n commits. commit_batch() rolls the inner batch
//   back but returns as if it had committed. From then on the wrapper is crashed(): every
//   later batch is lost the same way and every write outside a batch throws, since nothing a
//   dead process does reaches the disk. What the caller does after the loss (acks, sends) never
//   happened: the test stops recording once crashed() is true, discards the pipeline, and
//   builds the next "process" on the inner store.
// - fail_operation(name, nth): the nth call (counted from now, from 1) of the Store method
//   `name` ("insert_inbound", "stage_reply", "mark_sent", ...) throws StoreError instead of
//   reaching the inner store; inside a batch that fails the whole batch.
// Each programmed fault fires once. The fault state is guarded by a mutex, so a store thread
// may drive the wrapper; the inner store's calls are not serialized by it.
class FaultInjectingStore final : public Store {
 public:
  explicit FaultInjectingStore(Store& inner) : inner_(inner) {}

  void fail_batch(std::uint64_t n);
  void fail_commit(std::uint64_t n);
  void lose_batch(std::uint64_t n);
  // Throws std::invalid_argument for a name that is not a Store method.
  void fail_operation(const std::string& name, std::uint64_t nth = 1);

  std::uint64_t batches_begun() const;
  std::uint64_t batches_committed() const;  // really committed to the inner store
  std::uint64_t batches_failed() const;     // the caller got an error
  bool crashed() const;

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
  std::pair<OutboxRecord, bool> stage_outbound(const NewOutbound& m, std::int64_t now_ms) override;
  std::vector<OutboxRecord> pending_outbox() override;
  void mark_sent(std::int64_t outbox_id, std::int64_t now_ms) override;
  void mark_failed(std::int64_t outbox_id, std::int64_t now_ms) override;
  std::int64_t mark_stale(const std::vector<std::int64_t>& outbox_ids,
                          std::int64_t now_ms) override;
  std::vector<TranscriptEntry> transcript(const std::string& session_key,
                                          std::size_t limit) override;
  TranscriptPage transcript_page(const std::string& session_key, std::size_t limit,
                                 std::size_t max_bytes, std::int64_t before_id) override;
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
  std::string notice_scope() override { return inner_.notice_scope(); }
  void notify(const std::string& channel, const std::string& payload) override {
    inner_.notify(channel, payload);
  }
  void notify_all(const std::string& channel, const std::vector<std::string>& payloads) override {
    inner_.notify_all(channel, payloads);
  }
  std::optional<std::string> get_value(const std::string& key) override;
  void set_value(const std::string& key, const std::string& value) override;
  void erase_value(const std::string& key) override;

 private:
  // Runs before every forwarded call: throws the fault programmed for it, if any.
  // `batch_control`: begin/commit/rollback, which only fail_operation() affects here.
  void check(const char* op, bool writes, bool batch_control = false);

  Store& inner_;
  mutable std::mutex mutex_;
  std::uint64_t fail_batch_ = 0;  // 0: none
  std::uint64_t fail_commit_ = 0;
  std::uint64_t lose_batch_ = 0;
  std::map<std::string, std::uint64_t> fail_op_;  // name -> calls left until the failing one
  std::uint64_t begun_ = 0;
  std::uint64_t committed_ = 0;
  std::uint64_t failed_ = 0;
  bool in_batch_ = false;
  bool crashed_ = false;
};

}  // namespace drawbridge::store
