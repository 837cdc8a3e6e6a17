#include "store/fault_injecting_store.h"

#include <algorithm>
#include <array>
#include <stdexcept>
#include <string_view>

namespace drawbridge::store {
namespace {

// clang-format off
constexpr std::array<std::string_view, 40> kOperations = {
    "insert_inbound", "inbound", "unfinished_inbound", "set_inbound_state", "set_merged",
    "close_interrupted",
    "stage_reply", "stage_outbound", "pending_outbox", "mark_sent", "mark_failed", "mark_stale", "transcript",
    "transcript_page", "counts", "set_session_state", "sessions_in_state",
    "repair_interrupted", "repair_sessions", "mark_interrupted", "sessions_interrupted", "suspend_session",
    "begin_batch", "commit_batch", "rollback_batch", "get_value", "set_value", "erase_value",
    "list_sessions", "session_summary", "create_session", "set_session_label", "reset_session",
    "input_receipt", "claim_lease", "renew_leases", "release_lease", "list_leases",
    "set_value_fenced", "claim_sessions_with_work"};
// clang-format on

StoreError injected(const std::string& what) {
  return StoreError("injected fault: " + what);
}

}  // namespace

void FaultInjectingStore::fail_batch(std::uint64_t n) {
  std::lock_guard lock(mutex_);
  fail_batch_ = n;
}

void FaultInjectingStore::fail_commit(std::uint64_t n) {
  std::lock_guard lock(mutex_);
  fail_commit_ = n;
}

void FaultInjectingStore::lose_batch(std::uint64_t n) {
  std::lock_guard lock(mutex_);
  lose_batch_ = n;
}

void FaultInjectingStore::fail_operation(const std::string& name, std::uint64_t nth) {
  if (std::find(kOperations.begin(), kOperations.end(), name) == kOperations.end()) {
    throw std::invalid_argument("fail_operation: no Store method is called \"" + name + "\"");
  }
  std::lock_guard lock(mutex_);
  fail_op_[name] = std::max<std::uint64_t>(nth, 1);
}

std::uint64_t FaultInjectingStore::batches_begun() const {
  std::lock_guard lock(mutex_);
  return begun_;
}

std::uint64_t FaultInjectingStore::batches_committed() const {
  std::lock_guard lock(mutex_);
  return committed_;
}

std::uint64_t FaultInjectingStore::batches_failed() const {
  std::lock_guard lock(mutex_);
  return failed_;
}

bool FaultInjectingStore::crashed() const {
  std::lock_guard lock(mutex_);
  return crashed_;
}

void FaultInjectingStore::check(const char* op, bool writes, bool batch_control) {
  std::lock_guard lock(mutex_);
  if (auto it = fail_op_.find(op); it != fail_op_.end() && --it->second == 0) {
    fail_op_.erase(it);
    throw injected(std::string(op) + " failed");
  }
  if (batch_control) return;
  if (in_batch_ && fail_batch_ == begun_) {
    fail_batch_ = 0;
    throw injected("batch " + std::to_string(begun_) + " failed at " + op);
  }
  if (crashed_ && writes && !in_batch_) {
    throw injected(std::string(op) + " after the crash: nothing reaches the disk");
  }
}

void FaultInjectingStore::begin_batch() {
  check("begin_batch", false, true);
  {
    std::lock_guard lock(mutex_);
    ++begun_;
    in_batch_ = true;
  }
  inner_.begin_batch();
}

void FaultInjectingStore::commit_batch() {
  check("commit_batch", false, true);
  enum class Fault { none, fail, lose } fault = Fault::none;
  std::uint64_t n = 0;
  {
    std::lock_guard lock(mutex_);
    n = begun_;
    in_batch_ = false;
    if (fail_batch_ == n || fail_commit_ == n) {
      fail_batch_ = fail_batch_ == n ? 0 : fail_batch_;
      fail_commit_ = fail_commit_ == n ? 0 : fail_commit_;
      ++failed_;
      fault = Fault::fail;
    } else if (crashed_ || lose_batch_ == n) {
      if (lose_batch_ == n) lose_batch_ = 0;
      crashed_ = true;
      fault = Fault::lose;
    }
  }
  if (fault != Fault::none) {
    inner_.rollback_batch();
    if (fault == Fault::lose) return;  // reported as committed: the process is gone
    throw injected("commit of batch " + std::to_string(n) + " failed");
  }
  try {
    inner_.commit_batch();
  } catch (...) {
    std::lock_guard lock(mutex_);
    ++failed_;
    throw;
  }
  std::lock_guard lock(mutex_);
  ++committed_;
}

void FaultInjectingStore::rollback_batch() {
  check("rollback_batch", false, true);
  {
    std::lock_guard lock(mutex_);
    if (in_batch_) ++failed_;  // the caller gives the batch up: an operation of it failed
    in_batch_ = false;
  }
  inner_.rollback_batch();
}

InsertInboundResult FaultInjectingStore::insert_inbound(const NewInbound& m, std::int64_t now_ms) {
  check("insert_inbound", true);
  return inner_.insert_inbound(m, now_ms);
}

std::optional<InboxRecord> FaultInjectingStore::inbound(std::int64_t id) {
  check("inbound", false);
  return inner_.inbound(id);
}

std::vector<InboxRecord> FaultInjectingStore::unfinished_inbound() {
  check("unfinished_inbound", false);
  return inner_.unfinished_inbound();
}

void FaultInjectingStore::set_inbound_state(std::int64_t id, InboxState state) {
  check("set_inbound_state", true);
  inner_.set_inbound_state(id, state);
}

void FaultInjectingStore::set_merged(std::int64_t lead, const std::vector<std::int64_t>& members) {
  check("set_merged", true);
  inner_.set_merged(lead, members);
}

std::int64_t FaultInjectingStore::close_interrupted(std::int64_t inbound_id,
                                                    const std::string& partial,
                                                    std::int64_t now_ms) {
  check("close_interrupted", true);
  return inner_.close_interrupted(inbound_id, partial, now_ms);
}

std::vector<OutboxRecord> FaultInjectingStore::stage_reply(std::int64_t inbound_id,
                                                           const std::vector<std::string>& parts,
                                                           std::int64_t now_ms) {
  check("stage_reply", true);
  return inner_.stage_reply(inbound_id, parts, now_ms);
}

std::pair<OutboxRecord, bool> FaultInjectingStore::stage_outbound(const NewOutbound& m,
                                                                  std::int64_t now_ms) {
  check("stage_outbound", true);
  return inner_.stage_outbound(m, now_ms);
}

std::vector<OutboxRecord> FaultInjectingStore::pending_outbox() {
  check("pending_outbox", false);
  return inner_.pending_outbox();
}

void FaultInjectingStore::mark_sent(std::int64_t outbox_id, std::int64_t now_ms) {
  check("mark_sent", true);
  inner_.mark_sent(outbox_id, now_ms);
}

void FaultInjectingStore::mark_failed(std::int64_t outbox_id, std::int64_t now_ms) {
  check("mark_failed", true);
  inner_.mark_failed(outbox_id, now_ms);
}

std::int64_t FaultInjectingStore::mark_stale(const std::vector<std::int64_t>& outbox_ids,
                                             std::int64_t now_ms) {
  check("mark_stale", true);
  return inner_.mark_stale(outbox_ids, now_ms);
}

std::vector<TranscriptEntry> FaultInjectingStore::transcript(const std::string& session_key,
                                                             std::size_t limit) {
  check("transcript", false);
  return inner_.transcript(session_key, limit);
}

Store::TranscriptPage FaultInjectingStore::transcript_page(const std::string& session_key,
                                                           std::size_t limit, std::size_t max_bytes,
                                                           std::int64_t before_id) {
  check("transcript_page", false);
  return inner_.transcript_page(session_key, limit, max_bytes, before_id);
}

StoreCounts FaultInjectingStore::counts() {
  check("counts", false);
  return inner_.counts();
}

void FaultInjectingStore::set_session_state(const std::string& session_key,
                                            const std::string& state, std::int64_t now_ms) {
  check("set_session_state", true);
  inner_.set_session_state(session_key, state, now_ms);
}

std::vector<std::string> FaultInjectingStore::sessions_in_state(const std::string& state) {
  check("sessions_in_state", false);
  return inner_.sessions_in_state(state);
}

Store::Repair FaultInjectingStore::repair_interrupted() {
  check("repair_interrupted", true);
  return inner_.repair_interrupted();
}

Store::Repair FaultInjectingStore::repair_sessions(const std::vector<std::string>& sessions,
                                                   const std::vector<std::string>& count) {
  check("repair_sessions", true);
  return inner_.repair_sessions(sessions, count);
}

void FaultInjectingStore::mark_interrupted(const std::string& session_key, std::int64_t now_ms) {
  check("mark_interrupted", true);
  inner_.mark_interrupted(session_key, now_ms);
}

std::vector<InterruptedSession> FaultInjectingStore::sessions_interrupted(int at_least) {
  check("sessions_interrupted", false);
  return inner_.sessions_interrupted(at_least);
}

Suspension FaultInjectingStore::suspend_session(const std::string& session_key,
                                                const std::string& notice, std::int64_t now_ms) {
  check("suspend_session", true);
  return inner_.suspend_session(session_key, notice, now_ms);
}

std::vector<SessionSummary> FaultInjectingStore::list_sessions(std::size_t limit,
                                                               std::size_t offset,
                                                               std::size_t preview_chars) {
  check("list_sessions", false);
  return inner_.list_sessions(limit, offset, preview_chars);
}

std::optional<SessionSummary> FaultInjectingStore::session_summary(const std::string& session_key,
                                                                   std::size_t preview_chars) {
  check("session_summary", false);
  return inner_.session_summary(session_key, preview_chars);
}

bool FaultInjectingStore::create_session(const std::string& session_key, const std::string& label,
                                         std::int64_t now_ms) {
  check("create_session", true);
  return inner_.create_session(session_key, label, now_ms);
}

bool FaultInjectingStore::set_session_label(const std::string& session_key,
                                            const std::string& label, std::int64_t now_ms) {
  check("set_session_label", true);
  return inner_.set_session_label(session_key, label, now_ms);
}

bool FaultInjectingStore::reset_session(const std::string& session_key, std::int64_t now_ms) {
  check("reset_session", true);
  return inner_.reset_session(session_key, now_ms);
}

std::optional<InputReceipt> FaultInjectingStore::input_receipt(const std::string& channel,
                                                               const std::string& external_id) {
  check("input_receipt", false);
  return inner_.input_receipt(channel, external_id);
}

Lease FaultInjectingStore::claim_lease(const std::string& name, const std::string& holder,
                                       std::int64_t ttl_ms, std::int64_t now_ms) {
  check("claim_lease", true);
  return inner_.claim_lease(name, holder, ttl_ms, now_ms);
}

std::vector<Lease> FaultInjectingStore::renew_leases(const std::string& holder,
                                                     std::int64_t ttl_ms, std::int64_t now_ms) {
  check("renew_leases", true);
  return inner_.renew_leases(holder, ttl_ms, now_ms);
}

bool FaultInjectingStore::release_lease(const std::string& name, const std::string& holder,
                                        std::int64_t epoch, std::int64_t now_ms) {
  check("release_lease", true);
  return inner_.release_lease(name, holder, epoch, now_ms);
}

std::vector<Lease> FaultInjectingStore::list_leases(const std::string& prefix) {
  check("list_leases", false);
  return inner_.list_leases(prefix);
}

bool FaultInjectingStore::set_value_fenced(const std::string& key, const std::string& value,
                                           const std::string& lease_name, std::int64_t epoch,
                                           std::int64_t now_ms) {
  check("set_value_fenced", true);
  return inner_.set_value_fenced(key, value, lease_name, epoch, now_ms);
}

std::vector<Lease> FaultInjectingStore::claim_sessions_with_work(const std::string& holder,
                                                                 std::int64_t ttl_ms,
                                                                 std::size_t limit,
                                                                 std::int64_t now_ms,
                                                                 const std::vector<std::string>& only,
                                                                 std::int64_t up_to_row,
    const std::vector<std::string>& not_channels) {
  check("claim_sessions_with_work", true);
  return inner_.claim_sessions_with_work(holder, ttl_ms, limit, now_ms, only, up_to_row,
                                         not_channels);
}

std::optional<std::string> FaultInjectingStore::get_value(const std::string& key) {
  check("get_value", false);
  return inner_.get_value(key);
}

void FaultInjectingStore::set_value(const std::string& key, const std::string& value) {
  check("set_value", true);
  inner_.set_value(key, value);
}

void FaultInjectingStore::erase_value(const std::string& key) {
  check("erase_value", true);
  inner_.erase_value(key);
}

}  // namespace drawbridge::store
