#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "core/clock.h"
#include "core/executor.h"
#include "core/followup_queue.h"
#include "core/inbound_debouncer.h"
#include "core/reply_dispatcher.h"
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

// Where a notice goes: a chat with a turn running (see Pipeline::active_chats).
struct ActiveChat {
  std::string channel;
  std::string chat_id;
  std::string session_key;
  std::string run_id;
  bool detached = false;  // the turn that asked for the restart
};

struct PipelineOptions {
  std::size_t history_limit = 50;  // transcript entries handed to the agent
  core::Duration retry_initial{500};
  core::Duration retry_max{30000};
};

// One transcript entry as the control plane shows it (chat.history, GET /v1/history).
struct TranscriptMessage {
  std::int64_t id = 0;  // increases with time; the `before` of the next older page
  std::string role;     // "user" or "assistant"
  std::string text;
  std::string run_id;
  std::int64_t created_at_ms = 0;
};

// A page of a session's transcript, oldest first; `more` when older entries remain.
struct HistoryPage {
  std::vector<TranscriptMessage> messages;
  bool more = false;
};

// What a generation takes from the config (messages.*, commands.restart).
struct PipelineSettings {
  core::Duration inbound_debounce{0};
  core::FollowupMode queue_mode = core::FollowupMode::followup;
  core::FollowupOptions queue;
  bool restart_command = true;  // "/restart" in chat requests a restart
  // messages.replyTtlMs: a reply part still undelivered when a start replays the outbox is
  // not sent once it is older than this (it is marked stale); 0 = never stale.
  core::Duration reply_ttl{21'600'000};
};

// A chat command the pipeline answered and hands to the runtime.
struct ChatCommand {
  std::string name;  // "restart"
  std::string run_id;
  std::string session_key;
  std::string channel;
};

// The message path of shared/DESIGN.md: inbox -> session lane -> agent turn -> outbox ->
// channel. Runs on the event loop thread; every state change is committed to the store first.
class Pipeline {
 public:
  // A session whose turn this many restarts in a row interrupted (a drain aborted it, or the
  // process died mid-turn) is suspended at the next start instead of run again: a message
  // that crashes the gateway cannot crash it forever.
  static constexpr int kSuspendAfterInterrupts = 3;
  static constexpr const char* kSuspendedNotice =
      "This conversation was interrupted by 3 restarts in a row and is paused so it cannot "
      "crash the gateway again. Send a new message to continue.";
  static constexpr const char* kSuspendedReason = "suspended after 3 interrupted restarts";

  // `store` serves the reads of the event loop; writes go through `writer` in batches. Both
  // may be one store (InlineBatchRunner), or the writer may commit on a thread of its own.
  Pipeline(core::Clock& clock, core::Executor& executor, store::Store& store, BatchRunner& writer,
           PipelineOptions options = {});
  ~Pipeline();
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  // Wiring (by the runtime, before start()). Not owned.
  void configure(const PipelineSettings& settings);
  void add_channel(Channel* channel, Agent* agent, int max_message_chars);
  // A hot reload: the channel's route goes away (its debounced messages go to their sessions
  // first; later messages for it are journaled and wait for the channel to come back).
  void remove_channel(const std::string& id);
  // A hot reload: new turns of `channel` run on `agent`; running turns finish on the old one.
  bool set_agent(const std::string& channel, Agent* agent);
  // Chat commands ("/restart") go here once their answer is committed.
  void on_command(std::function<void(const ChatCommand&)> handler) {
    command_handler_ = std::move(handler);
  }
  void add_listener(ChatEventListener* listener);
  void remove_listener(ChatEventListener* listener);

  // Replays the store: unfinished inbound rows go back into their lanes, pending outbox parts
  // are sent again (those older than PipelineSettings::reply_ttl are marked stale instead),
  // and sessions interrupted kSuspendAfterInterrupts restarts in a row are suspended. Call
  // once per generation, after the channels are wired.
  void start();
  // Ends a generation once it is drained: forgets routes, queues, debounce buffers and
  // deliveries (the store holds what is left) and drops the callbacks of the old channels and
  // agents. The runtime then wires the next generation and calls start().
  void reset();
  std::uint64_t generation() const { return generation_; }

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

  // --- The drain (shared/DESIGN.md "The lifecycle"), driven by the runtime ---
  // Hands every debounce buffer to its session now; later messages skip the debouncer until
  // reset(). Returns how many buffers were flushed.
  std::size_t flush_debouncers();
  // Runs `fn` once no followup waits for its session's turn (at once when none does): the
  // queues handed everything to turns. Event-driven; the caller bounds the wait.
  void when_followups_drained(std::function<void()> fn);
  std::size_t followups_pending() const { return followups_.pending_count(); }
  // Draining: accepted messages are journaled but no new turn starts until the next start().
  void set_draining(bool draining) { draining_ = draining; }
  bool draining() const { return draining_; }
  // Runs `fn` once no reply is reserved, queued or being sent.
  void when_deliveries_idle(std::function<void()> fn) { replies_.when_idle(std::move(fn)); }
  // The turn of `run_id` asked for the restart: the drain does not wait for it. False when no
  // turn of that run is running.
  bool detach_run(const std::string& run_id);
  // Ends detached turns now: their row is closed as answered with what they streamed so far,
  // so the restart they asked for does not run them again. Returns how many.
  std::size_t finish_detached();
  // The drain's budget ran out: aborts every running turn (but detached ones); their rows are
  // closed as aborted and their sessions become resume_pending, with one more interrupted
  // restart counted (kSuspendAfterInterrupts). Returns the chats affected.
  std::vector<ActiveChat> abort_for_drain(const std::string& reason);
  // Aborts every active turn; their inbox rows go back to pending so the next generation
  // runs them again (a stop at its budget).
  std::size_t interrupt_all(const std::string& reason);
  // Chats with a turn running, one entry per turn.
  std::vector<ActiveChat> active_chats() const;
  // A lifecycle notice: sent once, not journaled (best effort); `done` gets the error or "".
  void send_notice(const ActiveChat& chat, const std::string& text,
                   std::function<void(std::string error)> done);

  core::WorkTracker& work() { return work_; }
  std::vector<ActiveRun> active_runs() const;
  std::size_t waiting_count() const { return followups_.pending_count(); }
  std::size_t debounced_count() const { return debouncers_.buffered_items(); }
  std::size_t pending_deliveries() const { return replies_.queued() + replies_.in_flight(); }
  std::size_t reserved_replies() const { return replies_.reservations(); }
  const Metrics& metrics() const { return metrics_; }
  Metrics& metrics() { return metrics_; }
  // The entries of `session_key` older than `before_id` (0: the newest), at most `limit` of
  // them and `max_bytes` of text (the newest always comes, so paging makes progress). A read
  // of the store on the calling thread; throws what the store throws.
  HistoryPage history_page(const std::string& session_key, std::size_t limit,
                           std::size_t max_bytes, std::int64_t before_id);
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
    std::string chat_id;
    std::vector<std::int64_t> members;  // earlier rows answered by this turn (debounce, collect)
    std::unique_ptr<Turn> turn;
    std::string streamed;
    core::WorkId work = 0;
    core::ReplyDispatcher::ReservationId reservation = 0;
    bool interrupted = false;    // by a stop: the rows go back to pending
    bool drain_aborted = false;  // by a restart's budget: closed, session resume_pending
    bool detached = false;       // asked for the restart: closed with what it streamed
  };
  // What a turn answers: the lead row (its run id, its reply) and rows merged into it.
  struct TurnInput {
    std::int64_t lead = 0;
    std::vector<std::int64_t> members;
    std::size_t dropped = 0;  // summarize: messages the queue dropped before these
  };

  void start_turn(TurnInput input);
  void start_turn(const store::InboxRecord& rec, TurnInput input);
  bool run_command(const store::InboxRecord& rec, const TurnInput& input);
  AcceptResult on_committed(const store::InsertInboundResult& res);
  // Hands a row (with the rows debounced into it) to its session's followup queue.
  AcceptResult enqueue(const store::InboxRecord& rec, std::vector<std::int64_t> members);
  void on_debounce_timer();
  void release_batches(std::vector<core::InboundDebouncer::Batch> batches);
  // Runs unfinished rows and sends pending parts again: all of them (start) or those of one
  // channel that was just added back (its sessions with a live lane carry on as they are).
  void replay(const std::optional<std::string>& only_channel,
              const std::unordered_set<std::string>& suspended = {});
  // Suspends the sessions restarts keep interrupting; returns them (their rows are not run).
  std::unordered_set<std::string> suspend_restart_loops();
  // Marks the pending parts older than the reply TTL stale and takes them out of `pending`.
  void drop_stale(std::vector<store::OutboxRecord>& pending);
  void arm_debounce_timer();
  void close_dropped(const std::vector<std::int64_t>& ids, const std::string& session,
                     const std::string& why);
  void finish_turn(const std::string& session_key, core::WorkId work);
  void notify_followup_waiters();
  // Opens the round's batch when none is open and schedules its commit after the work queued
  // now; `after` runs once the batch is committed (ok) or failed (error message).
  void write(StoreOp op);
  void after_commit(std::function<void(const std::string& error)> after);
  void on_turn_done(const std::string& session_key, std::int64_t inbound_id, TurnOutcome outcome);
  void next_in_lane(const std::string& session_key);
  void dispatch(std::vector<store::OutboxRecord> rows,
                std::optional<core::ReplyDispatcher::ReservationId> reservation = std::nullopt);
  void send_part(const std::string& key, core::ReplyDispatcher::Part part,
                 core::Duration retry_delay);
  // Marks a delivered part sent; a failed commit writes it again after `retry_delay`.
  void record_sent(std::int64_t outbox_id, std::int64_t now_ms, core::Duration retry_delay,
                   std::optional<core::ReplyDispatcher::ReservationId> held);
  std::string new_run_id();

  core::Clock& clock_;
  core::Executor& executor_;
  store::Store& store_;
  BatchRunner& writer_;
  PipelineOptions options_;
  std::map<std::string, Route> routes_;
  std::vector<ChatEventListener*> listeners_;
  PipelineSettings settings_;
  std::function<void(const ChatCommand&)> command_handler_;
  core::FollowupQueue followups_;
  core::DebouncerRegistry debouncers_;
  std::unordered_map<std::int64_t, std::string> debounced_session_;  // buffered row -> session
  // A lead row -> the rows merged into its turn, until that turn starts.
  std::unordered_map<std::int64_t, std::vector<std::int64_t>> merged_;
  std::optional<core::TimerId> debounce_timer_;
  bool debounce_bypass_ = false;
  std::vector<std::function<void()>> followup_waiters_;
  std::unordered_set<std::string> resume_pending_;  // sessions whose last turn a restart aborted
  core::WorkTracker work_;
  core::ReplyDispatcher replies_;
  std::unordered_map<std::int64_t, store::OutboxRecord> outbox_rows_;  // parts being delivered
  std::unordered_map<std::string, RunningTurn> running_;  // by session key
  Metrics metrics_;
  std::uint64_t generation_ = 0;
  std::int64_t generation_started_ms_ = 0;
  // The newest inbox row replayed by start(): rows up to it were accepted before this
  // generation began (a replayed "/restart" was answered by the restart that followed it).
  std::int64_t replay_horizon_ = 0;
  bool started_ = false;  // between start() and reset(): channels added now are hot-added
  bool draining_ = false;
  bool batch_open_ = false;
  std::vector<StoreOp> batch_ops_;
  std::vector<std::function<void(const std::string&)>> after_commit_;
  std::uint64_t run_counter_ = 0;
  std::unordered_map<std::string, int> run_seq_;  // next chat event seq of runs not yet final
  // Lives as long as the pipeline: commit callbacks check it.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  // Lives as long as a generation: callbacks of its agents, channels and timers check it.
  std::shared_ptr<bool> gen_alive_ = std::make_shared<bool>(true);
};

}  // namespace drawbridge::pipeline
