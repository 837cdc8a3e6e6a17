#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/clock.h"
#include "core/executor.h"
#include "core/session_lanes.h"
#include "core/work_tracker.h"
#include "pipeline/agent.h"
#include "pipeline/batch_runner.h"
#include "pipeline/channel.h"
#include "pipeline/chat_event.h"
#include "pipeline/metrics.h"
#include "store/store.h"

namespace drawbridge::pipeline {

struct InboundMessage {
  std::string channel;      // channel id
  std::string external_id;  // idempotency key / upstream message id
  std::string session_key;
  std::string chat_id;  // empty: same as session_key
  std::string sender;
  std::string text;
  std::string run_id;  // empty: generated
};

struct AcceptResult {
  std::int64_t inbound_id = 0;
  std::string run_id;
  bool duplicate = false;
  // "started": a turn began; "queued": waits behind the session's turn or for the restart;
  // "in_flight" / "done" / "aborted" / "failed": a duplicate of a message in that state.
  std::string status;
  std::string reason;  // "gateway-restarting" when queued by a drain
  std::string error;   // set when the message could not be committed: it was not accepted
};

struct SendRequest {
  std::string channel;
  std::string to;  // chat id
  std::string text;
  std::string idempotency_key;
  std::string session_key;  // empty: same as `to`
};

struct SendResult {
  std::string message_id;
  std::string run_id;
  bool duplicate = false;
  std::string error;  // set when it could not be committed
};

struct ActiveRun {
  std::string run_id;
  std::string session_key;
  std::int64_t inbound_id = 0;
  std::int64_t started_at_ms = 0;
};

struct PipelineOptions {
  std::size_t history_limit = 50;  // transcript entries handed to the agent
  core::Duration retry_initial{500};
  core::Duration retry_max{30000};
};

// The message path of shared/DESIGN.md: inbox -> session lane -> agent turn -> outbox ->
// channel. Runs on the event loop thread; every state change is committed to the store first.
class Pipeline {
 public:
  // `store` serves the reads of the event loop; writes go through `writer` in batches. Both
  // may be one store (InlineBatchRunner), or the writer may commit on a thread of its own.
  Pipeline(core::Clock& clock, core::Executor& executor, store::Store& store, BatchRunner& writer,
           PipelineOptions options = {});
  ~Pipeline();
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  // Wiring (by the runtime, before start()). Not owned.
  void add_channel(Channel* channel, Agent* agent, int max_message_chars);
  void add_listener(ChatEventListener* listener);
  void remove_listener(ChatEventListener* listener);

  // Replays the store: unfinished inbound rows go back into their lanes, pending outbox parts
  // are sent again. Call once per generation, after the channels are wired.
  void start();

  // Commits the message to the inbox (deduplicated), then calls `done` and schedules its turn.
  // Writes of one event-loop round share one commit (group commit): `done` runs after that
  // commit, never before, so an acknowledgement sent from it is durable. On a store error
  // `done` gets AcceptResult::error and nothing was accepted. Throws std::invalid_argument
  // (before writing anything) when the channel is not configured.
  void accept(const InboundMessage& message, std::function<void(AcceptResult)> done);
  void send(const SendRequest& request, std::function<void(SendResult)> done);
  // Hands the writes of the current round to the writer now.
  void flush();
  // Flushes and waits until everything handed to the writer is committed (for shutdown).
  void flush_and_wait();
  // Aborts the session's active run (when `run_id` is empty or names it) or drops a waiting
  // run with that id. Returns the ids of the runs aborted.
  std::vector<std::string> abort(const std::string& session_key, const std::string& run_id);

  // Draining: accepted messages are journaled but no new turn starts until the next start().
  void set_draining(bool draining) { draining_ = draining; }
  bool draining() const { return draining_; }
  // Aborts every active turn; their inbox rows go back to pending so the next generation
  // runs them again.
  std::size_t interrupt_all(const std::string& reason);

  core::WorkTracker& work() { return work_; }
  std::vector<ActiveRun> active_runs() const;
  std::size_t waiting_count() const { return lanes_.waiting_count(); }
  std::size_t pending_deliveries() const { return work_.count(core::WorkKind::delivery); }
  const Metrics& metrics() const { return metrics_; }
  Metrics& metrics() { return metrics_; }
  store::Store& store() { return store_; }
  bool has_channel(const std::string& id) const { return routes_.count(id) != 0; }

  static std::vector<std::string> split_reply(const std::string& text, int max_chars);

  // Hands a chat event to every listener; channels that deliver as chat events (the local
  // channel) use it for their sends. `seq` is filled in per run.
  void publish(ChatEvent event);

 private:
  struct Route {
    Channel* channel = nullptr;
    Agent* agent = nullptr;
    int max_message_chars = 0;
  };
  struct RunningTurn {
    ActiveRun info;
    std::string channel;
    std::unique_ptr<Turn> turn;
    std::string streamed;
    bool interrupted = false;  // by a drain: the row goes back to pending
  };

  void start_turn(std::int64_t inbound_id);
  void start_turn(const store::InboxRecord& rec);
  AcceptResult on_committed(const store::InsertInboundResult& res);
  void finish_turn(const std::string& session_key);
  // Opens the round's batch when none is open and schedules its commit after the work queued
  // now; `after` runs once the batch is committed (ok) or failed (error message).
  void write(StoreOp op);
  void after_commit(std::function<void(const std::string& error)> after);
  void on_turn_done(const std::string& session_key, std::int64_t inbound_id, TurnOutcome outcome);
  void next_in_lane(const std::string& session_key);
  void dispatch(std::vector<store::OutboxRecord> rows);
  void send_part(store::OutboxRecord row, core::Duration retry_delay);
  void send_next_part(const std::string& idem_key_prefix);
  std::string new_run_id();

  core::Clock& clock_;
  core::Executor& executor_;
  store::Store& store_;
  BatchRunner& writer_;
  PipelineOptions options_;
  std::map<std::string, Route> routes_;
  std::vector<ChatEventListener*> listeners_;
  core::SessionLanes lanes_;
  core::WorkTracker work_;
  std::unordered_map<std::string, RunningTurn> running_;  // by session key
  // Parts of one reply go out in order: the rest wait here until the previous one is sent.
  std::unordered_map<std::int64_t, std::vector<store::OutboxRecord>> queued_parts_;
  Metrics metrics_;
  bool draining_ = false;
  bool batch_open_ = false;
  std::vector<StoreOp> batch_ops_;
  std::vector<std::function<void(const std::string&)>> after_commit_;
  std::uint64_t run_counter_ = 0;
  std::unordered_map<std::string, int> run_seq_;  // next chat event seq of runs not yet final
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace drawbridge::pipeline
