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
#include "core/gate.h"
#include "core/inbound_debouncer.h"
#include "core/work_tracker.h"
#include "pipeline/account_leases.h"
#include "pipeline/agent.h"
#include "pipeline/batch_runner.h"
#include "pipeline/channel.h"
#include "pipeline/chat_event.h"
#include "pipeline/commit_round.h"
#include "pipeline/metrics.h"
#include "pipeline/reply_delivery.h"
#include "pipeline/routes.h"
#include "pipeline/session_history.h"
#include "pipeline/session_leases.h"
#include "pipeline/types.h"
#include "store/store.h"

namespace drawbridge::pipeline {

// The message path of shared/DESIGN.md: inbox -> session lane -> agent turn -> outbox ->
// channel. Runs on the event loop thread; every state change is committed to the store first.
// The facade the rest of the gateway uses; its parts, one concern each (docs/DECISIONS.md
// "One message path"): pipeline.cpp (wiring, accept, send, queries), intake.cpp (inbox ->
// debounce -> session lane), turn_runner.cpp (a turn from its input to its staged reply),
// generation.cpp (start/replay, reset, the drain's hooks), and the units CommitRound (group
// commit), ReplyDelivery (outbox -> channel -> chat events) and SessionHistory (the history a
// turn needs, kept in memory).
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
  // `agent_id` names the agent for status (agent_of).
  void add_channel(Channel* channel, Agent* agent, int max_message_chars,
                   std::string agent_id = {}, int history_limit = 0);
  // A hot reload: the channel's route goes away (its debounced messages go to their sessions
  // first; later messages for it are journaled and wait for the channel to come back).
  void remove_channel(const std::string& id);
  // A hot reload: new turns of `channel` run on `agent`; running turns finish on the old one.
  bool set_agent(const std::string& channel, Agent* agent, std::string agent_id = {});
  // The agent id a channel's new turns run on ("" when the channel has no route).
  std::string agent_of(const std::string& channel) const;
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
  // The injected clock, for channels that stamp what they report (ChannelHealth).
  core::Clock& clock() const { return clock_; }

  // Commits the message to the inbox (deduplicated), then calls `done` and schedules its turn.
  // Writes of one event-loop round share one commit (group commit): `done` runs after that
  // commit, never before, so an acknowledgement sent from it is durable. On a store error
  // `done` gets AcceptResult::error and nothing was accepted. Throws std::invalid_argument
  // (before writing anything) when the channel is not configured.
  void accept(const InboundMessage& message, std::function<void(AcceptResult)> done);
  void send(const SendRequest& request, std::function<void(SendResult)> done);
  // A channel's cursor (Telegram's update offset) under `key`: the value last saved, read from
  // the store. A channel reads it once as it starts.
  std::optional<std::string> load_cursor(const std::string& key);
  // Saves a cursor with the writes of this round; `done` runs after that commit with its error
  // (empty: saved). With a `fence` the write is made only while that lease is at that epoch
  // and live (Store::set_value_fenced); a refusal is an error starting with kFenced.
  struct CursorFence {
    std::string lease;
    std::int64_t epoch = 0;
  };
  static constexpr const char* kFenced = "fenced";
  void save_cursor(const std::string& key, std::string value,
                   std::function<void(const std::string& error)> done,
                   std::optional<CursorFence> fence = std::nullopt);
  // Cluster-wide ownership of channel accounts (runtime wires it with store.driver postgres;
  // null otherwise). Not owned.
  void set_account_leases(AccountLeases* leases) { account_leases_ = leases; }
  AccountLeases* account_leases() const { return account_leases_; }
  // --- Replicas (store.driver postgres; docs/DECISIONS.md "Replicas on PostgreSQL") ---
  // A message of a session another replica holds is journaled, acknowledged and announced to
  // the others with a notice on kWorkChannel (the row's id), in the commit that journals it.
  static constexpr const char* kWorkChannel = "drawbridge_work";
  // The notice channel of this cluster (kWorkChannel with a suffix of the store's scope).
  void set_work_channel(std::string channel) { work_channel_ = std::move(channel); }
  // Runs the unfinished rows of the sessions held here that another replica accepted (or
  // whose turn's commit failed here). Rows this generation already holds (accepted here, replayed, adopted before) are left alone, so a
  // row runs once however often it is announced. Returns how many it took. A read of the
  // store on the calling thread; throws what the store throws.
  std::size_t adopt_unfinished();
  // The same for the rows a notice named (their ids): a read of each, not of the whole inbox.
  std::size_t adopt(const std::vector<std::int64_t>& ids);
  // Sessions on every replica (store.driver postgres): this replica runs the turns of the
  // sessions it holds; a message of another session is journaled, announced on the work
  // channel and claimed (taken when it is free or its holder died; else its holder runs it).
  // Set before start(); null (the default): every session runs here. Not owned.
  void set_session_leases(SessionLeases* leases) { session_leases_ = leases; }
  SessionLeases* session_leases() const { return session_leases_; }
  // The key of the clean-shutdown marker (the runtime writes it after a clean drain and reads
  // it at the next start): one per replica in a cluster.
  std::string clean_marker_key() const {
    return session_leases_ ? "clean_shutdown." + session_leases_->replica_id() : "clean_shutdown";
  }
  // Another replica runs the session: chat.abort and sessions.reset are passed on to it.
  bool runs_elsewhere(const std::string& session_key) const {
    return session_leases_ != nullptr && !session_leases_->holds(session_key);
  }
  // A notice on the work channel that passes an abort ("abort") or a reset ("reset") of a
  // session on to its holder: "<kind> <length of session> <session><run id>". nullopt when
  // it would not fit in a notice.
  static std::optional<std::string> passed_on_notice(const std::string& kind,
                                                     const std::string& session_key,
                                                     const std::string& run_id);
  // Acts on such a notice when this replica holds the session (an abort, or the abort and
  // the history cache of a reset). False when it is no such notice or not ours.
  bool act_on_notice(const std::string& payload);
  // Whether this replica runs the session's turns now.
  bool runs_here(const std::string& session_key) const {
    return session_leases_ == nullptr || session_leases_->holds(session_key);
  }
  // Sessions this replica just took: repairs what a dead holder may have left (in the next
  // commit, fenced), then runs their unfinished rows and sends their pending parts.
  void take_over_sessions(std::vector<SessionLeases::Taken> taken);
  // Claims whatever session with work is free or was a dead replica's (the backstop of the
  // claims a message makes, and what a replica that stopped handed over). A look every
  // leaseMs / 2 (`newest_too` false) leaves alone sessions whose oldest unfinished row was not
  // there at the last look (adopt_unfinished): the replica that accepted it claims it itself.
  void claim_free_sessions(bool newest_too = false);
  // Gives back (at most `limit` of) the sessions held here that did nothing for `idle_for`:
  // no turn, nothing queued, debounced or being delivered. Keeps what a replica holds, and
  // its heartbeat, bounded by its recent sessions. Returns how many.
  std::size_t release_idle_sessions(core::Duration idle_for, std::size_t limit);
  // A channel of this replica took its account's connection over (it was another replica's,
  // or nobody's): claims the sessions with work that waited for it and runs the unfinished
  // rows of the held ones.
  void connection_taken();
  // Joins the writes of this round (the cluster's event notices ride along with its commit).
  void write_along(StoreOp op) { write(std::move(op)); }

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
  std::size_t followups_pending() const { return followups_.pending_count(); }
  // Draining: accepted messages are journaled but no new turn starts until the next start();
  // replies a channel cannot take now are left to it too (ReplyDelivery::set_handing_over).
  void set_draining(bool draining) {
    draining_ = draining;
    delivery_.set_handing_over(draining);
  }
  bool draining() const { return draining_; }
  // Runs `fn` once no reply is reserved, queued or being sent.
  void when_deliveries_idle(std::function<void()> fn) { delivery_.when_idle(std::move(fn)); }
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
  // "N turn(s) running, N waiting, N debounced, N deliver(ies)", for the log.
  std::string describe_work() const;
  std::size_t waiting_count() const { return followups_.pending_count(); }
  // Messages of one session waiting for its running turn to end.
  std::size_t waiting_in(const std::string& session_key) const {
    return followups_.queued(session_key).size();
  }
  std::size_t debounced_count() const { return debouncers_.buffered_items(); }
  std::size_t pending_deliveries() const { return delivery_.pending(); }
  std::size_t reserved_replies() const { return delivery_.reservations(); }
  const Metrics& metrics() const { return metrics_; }
  Metrics& metrics() { return metrics_; }
  // The entries of `session_key` older than `before_id` (0: the newest), at most `limit` of
  // them and `max_bytes` of text (the newest always comes, so paging makes progress). A read
  // of the store on the calling thread; throws what the store throws.
  HistoryPage history_page(const std::string& session_key, std::size_t limit,
                           std::size_t max_bytes, std::int64_t before_id);
  // The session catalog of the control plane (sessions.*, inputReceipts): reads and rare
  // operator writes of the store on the calling thread; throws what the store throws.
  std::vector<SessionInfo> list_sessions(std::size_t limit, std::size_t offset);
  std::optional<SessionInfo> session_summary(const std::string& session_key);
  bool create_session(const std::string& session_key, const std::string& label);
  bool label_session(const std::string& session_key, const std::string& label);
  // Aborts the session's running turn, then starts the session over: what it said before no
  // longer reaches the agent. False: no such session.
  bool reset_session(const std::string& session_key);
  std::optional<InputReceipt> input_receipt(const std::string& channel,
                                            const std::string& external_id);
  bool has_channel(const std::string& id) const { return routes_.count(id) != 0; }

  static std::vector<std::string> split_reply(const std::string& text, int max_chars) {
    return ReplyDelivery::split(text, max_chars);
  }

  // Hands a chat event to every listener; channels that deliver as chat events (the local
  // channel) use it for their sends. `seq` is filled in per run.
  void publish(ChatEvent event);

 private:
  struct RunningTurn {
    ActiveRun info;
    std::string channel;
    std::string chat_id;
    std::vector<std::int64_t> members;  // earlier rows answered by this turn (debounce, collect)
    std::vector<std::string> member_runs;  // their run ids
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

  // "/stop" (accepted here, or adopted from another replica) aborts its session's turn now.
  void stop_now_if_asked(const store::InboxRecord& rec);

  // intake.cpp
  AcceptResult on_committed(const store::InsertInboundResult& res, bool& start_now);
  // Hands a row (with the rows debounced into it) to its session's followup queue.
  AcceptResult enqueue(const store::InboxRecord& rec, std::vector<std::int64_t> members,
                       bool& start_now);
  void on_debounce_timer();
  void release_batches(std::vector<core::InboundDebouncer::Batch> batches);
  void arm_debounce_timer();
  void close_dropped(const std::vector<std::int64_t>& ids, const std::string& session,
                     const std::string& why);

  // turn_runner.cpp
  void start_turn(TurnInput input);
  void start_turn(const store::InboxRecord& rec, TurnInput input);
  // Starts the agent with the turn's input: `earlier` are the rows merged into it, `history`
  // the session's newest transcript entries (from SessionHistory, or read on the store thread
  // when it does not hold the session: never a read on the event loop).
  void run_turn(const store::InboxRecord& rec, TurnInput input,
                std::vector<store::InboxRecord> earlier,
                const std::vector<store::TranscriptEntry>& history);
  bool run_command(const store::InboxRecord& rec, const TurnInput& input);
  // The channel's send cannot fail: its reply parts are staged as sent (no commit of their own).
  bool stages_as_sent(const std::string& channel) const;
  void on_turn_done(const std::string& session_key, std::int64_t inbound_id, TurnOutcome outcome);
  void finish_turn(const std::string& session_key, core::WorkId work);
  void next_in_lane(const std::string& session_key);

  // generation.cpp
  // Runs unfinished rows and sends pending parts again: all of them (start) or those of one
  // channel that was just added back (its sessions with a live lane carry on as they are).
  // The work of a start: resumes, suspensions, replay (of `only_sessions`: those held here).
  void start_work(const std::unordered_set<std::string>* only_sessions = nullptr);
  // Asks for the session's lease (claims of one loop round go together).
  void ask_for(const std::string& session_key);
  void post_claims();
  void pass_on(const std::string& kind, const std::string& session_key,
               const std::string& run_id);
  void run_taken(const std::vector<std::string>& sessions);
  // session_claims.cpp
  bool idle_here(const std::string& session, const std::unordered_set<std::string>& busy) const;
  std::unordered_set<std::string> sessions_with_work() const;
  void give_back(const std::vector<std::string>& sessions, bool announce);
  // The channels whose connection another replica holds (Channel::served_elsewhere).
  std::vector<std::string> channels_served_elsewhere() const;
  bool served_elsewhere(const std::string& channel) const;
  // Sessions held here with messages of such a channel: given back (those with nothing else
  // running here), with a notice, so the replica with the connection claims them.
  void hand_to_connection(const std::unordered_set<std::string>& sessions);
  // Runs `rows` (unfinished, in arrival order) that this generation does not hold yet.
  std::size_t adopt_rows(const std::vector<store::InboxRecord>& rows,
                         const std::unordered_set<std::int64_t>& unfinished);
  // `only_sessions`: those sessions alone (a takeover of sessions in a cluster).
  void replay(const std::optional<std::string>& only_channel,
              const std::unordered_set<std::string>& suspended = {},
              const std::unordered_set<std::string>* only_sessions = nullptr);
  // Suspends the sessions restarts keep interrupting; returns them (their rows are not run).
  std::unordered_set<std::string> suspend_restart_loops(
      const std::unordered_set<std::string>* only_sessions = nullptr);
  // Marks the pending parts older than the reply TTL stale and takes them out of `pending`.
  void drop_stale(std::vector<store::OutboxRecord>& pending);

  void write(StoreOp op) { round_.write(std::move(op)); }
  void after_commit(std::function<void(const std::string& error)> after) {
    round_.after_commit(std::move(after));
  }
  std::string new_run_id();

  core::Clock& clock_;
  core::Executor& executor_;
  store::Store& store_;
  BatchRunner& writer_;
  PipelineOptions options_;
  Routes routes_;
  std::vector<ChatEventListener*> listeners_;
  PipelineSettings settings_;
  std::function<void(const ChatCommand&)> command_handler_;
  core::FollowupQueue followups_;
  core::DebouncerRegistry debouncers_;
  // A lead row -> the rows merged into its turn, until that turn starts.
  std::unordered_map<std::int64_t, std::vector<std::int64_t>> merged_;
  std::optional<core::TimerId> debounce_timer_;
  bool debounce_bypass_ = false;
  // Answers of "/stop" rows (what their accept aborted), until their turn sends them.
  std::unordered_map<std::int64_t, std::string> command_answers_;
  std::unordered_set<std::string> resume_pending_;  // sessions whose last turn a restart aborted
  core::WorkTracker work_;
  std::unordered_map<std::string, RunningTurn> running_;  // by session key
  Metrics metrics_;
  std::uint64_t generation_ = 0;
  std::int64_t generation_started_ms_ = 0;
  // The newest inbox row replayed by start(): rows up to it were accepted before this
  // generation began (a replayed "/restart" was answered by the restart that followed it).
  std::int64_t replay_horizon_ = 0;
  bool started_ = false;  // between start() and reset(): channels added now are hot-added
  bool draining_ = false;
  AccountLeases* account_leases_ = nullptr;
  SessionLeases* session_leases_ = nullptr;
  std::unordered_set<std::string> claims_wanted_;  // sessions to claim at the end of the round
  bool claim_posted_ = false;
  bool in_takeover_ = false;  // replaying sessions taken at run time, not at a start
  std::int64_t newest_unfinished_seen_ = 0;  // by the last adopt_unfinished
  std::int64_t claim_horizon_ = 0;           // what the look before that had seen
  // Held sessions: when each last did something here (release_idle_sessions).
  std::unordered_map<std::string, core::TimePoint> last_active_;
  void touch(const std::string& session_key) {
    if (session_leases_) last_active_[session_key] = clock_.now();
  }
  std::string work_channel_ = kWorkChannel;
  // Inbox rows this generation has taken (accepted, replayed, adopted) and not seen finished:
  // adopt_unfinished() leaves them alone.
  std::unordered_set<std::int64_t> held_;
  bool replaying_ = false;  // inside replay(): turns read what they need from the store at once
  std::uint64_t run_counter_ = 0;
  std::unordered_map<std::string, int> run_seq_;  // next chat event seq of runs not yet final
  static constexpr std::size_t kMaxOpenRuns = 65536;
  CommitRound round_;
  ReplyDelivery delivery_;
  SessionHistory history_;
  // Lives as long as a generation: callbacks of its agents, channels and timers check it.
  std::shared_ptr<bool> gen_alive_ = std::make_shared<bool>(true);
};

}  // namespace drawbridge::pipeline
