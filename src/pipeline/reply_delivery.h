#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/clock.h"
#include "core/executor.h"
#include "core/reply_dispatcher.h"
#include "pipeline/chat_event.h"
#include "pipeline/commit_round.h"
#include "pipeline/metrics.h"
#include "pipeline/routes.h"
#include "store/store.h"

namespace drawbridge::pipeline {

// Reply delivery: staged outbox parts go to their channel in order (one reply at a time per
// key, retried with backoff), are marked sent or failed, and every part delivered is published
// as a `final` chat event to the pipeline's listeners, whatever the channel. A channel whose
// send cannot fail (the local channel: its chat is those listeners) has its parts staged as
// sent in the commit that staged them, so its delivery needs no commit of its own
// (docs/DECISIONS.md "One message path").
class ReplyDelivery {
 public:
  using ReservationId = core::ReplyDispatcher::ReservationId;
  struct Options {
    core::Duration retry_initial{500};
    core::Duration retry_max{30000};
  };

  ReplyDelivery(core::Clock& clock, core::Executor& executor, CommitRound& round,
                const Routes& routes, Metrics& metrics, std::function<void(ChatEvent)> publish,
                Options options)
      : clock_(clock),
        executor_(executor),
        round_(round),
        routes_(routes),
        metrics_(metrics),
        publish_(std::move(publish)),
        options_(options) {}

  // Holds "deliveries idle" from a turn's start until its reply is handed over.
  ReservationId reserve(const std::string& key) { return replies_.reserve(key); }
  void release(ReservationId id) { replies_.release(id); }
  // Sends the pending parts of one reply (or `send`), in order. `marked_sent`: the commit that
  // staged them marked them sent already (a channel whose send cannot fail).
  void dispatch(std::vector<store::OutboxRecord> rows,
                std::optional<ReservationId> reservation = std::nullopt, bool marked_sent = false);
  // A lifecycle notice: sent once, not journaled; `done` gets the error or "".
  void send_notice(const std::string& id, const std::string& channel, const std::string& chat_id,
                   const std::string& session_key, const std::string& text,
                   std::function<void(std::string error)> done);

  bool delivering(std::int64_t outbox_id) const { return rows_.count(outbox_id) != 0; }
  // Whether a part of the session is being delivered (or waits to be).
  bool delivering_to(const std::string& session_key) const {
    for (const auto& [id, row] : rows_) {
      if (row.record.session_key == session_key) return true;
    }
    return false;
  }
  void when_idle(std::function<void()> fn) { replies_.when_idle(std::move(fn)); }
  std::size_t pending() const { return replies_.queued() + replies_.in_flight(); }
  std::size_t reservations() const { return replies_.reservations(); }
  // A new generation: forgets every reply (the store keeps what was not sent) and drops the
  // callbacks of the old channels.
  void reset();
  // While a drain runs: a part its channel cannot take now (a send answered "retry") is not
  // retried in this generation but left to the next one (its outbox row stays pending and the
  // next start sends it), so a channel that is down does not hold the drain for its backoff;
  // parts already waiting for a retry are left at once. False again at the next generation.
  void set_handing_over(bool on);

  // Splits a reply into parts of at most `max_chars` bytes (0: one part), preferring to break
  // after a newline or a space, never inside a UTF-8 sequence.
  static std::vector<std::string> split(const std::string& text, int max_chars);

 private:
  struct Row {
    store::OutboxRecord record;
    bool marked_sent = false;
    std::string key;  // the reply's lane in replies_
  };
  void send_part(const std::string& key, core::ReplyDispatcher::Part part,
                 core::Duration retry_delay);
  void settle(const std::string& key, std::int64_t id);
  // Marks a delivered part sent; a failed commit writes it again after `retry_delay`, holding
  // "deliveries idle" meanwhile (a part left pending would be sent again at the next start).
  void record_sent(std::int64_t outbox_id, std::int64_t now_ms, core::Duration retry_delay,
                   std::optional<ReservationId> held);
  void publish_final(const store::OutboxRecord& row);
  // Leaves the reply of `key` to the next generation (see set_handing_over).
  void hand_over(const std::string& key, const std::string& why);

  core::Clock& clock_;
  core::Executor& executor_;
  CommitRound& round_;
  const Routes& routes_;
  Metrics& metrics_;
  std::function<void(ChatEvent)> publish_;
  Options options_;
  core::ReplyDispatcher replies_;
  std::unordered_map<std::int64_t, Row> rows_;  // parts being delivered, by outbox id
  std::unordered_map<std::string, core::TimerId> retrying_;  // keys waiting for a retry
  bool handing_over_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace drawbridge::pipeline
