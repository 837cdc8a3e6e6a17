#include "pipeline/pipeline.h"

#include <algorithm>
#include <cctype>
#include <limits>
#include <random>

#include <spdlog/spdlog.h>

namespace drawbridge::pipeline {

const char* to_string(ChatEvent::State s) {
  switch (s) {
    case ChatEvent::State::delta: return "delta";
    case ChatEvent::State::final: return "final";
    case ChatEvent::State::error: return "error";
    case ChatEvent::State::aborted: return "aborted";
  }
  return "?";
}

namespace {

const char* duplicate_status(store::InboxState s) {
  switch (s) {
    case store::InboxState::pending: return "queued";
    case store::InboxState::running: return "in_flight";
    case store::InboxState::done: return "done";
    case store::InboxState::aborted: return "aborted";
    case store::InboxState::failed: return "failed";
  }
  return "queued";
}

// Length of the longest prefix of `s` (at most `max` bytes) that does not cut a UTF-8
// sequence in two.
std::size_t utf8_prefix(std::string_view s, std::size_t max) {
  if (s.size() <= max) return s.size();
  std::size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return n == 0 ? max : n;
}

}  // namespace

Pipeline::Pipeline(core::Clock& clock, core::Executor& executor, store::Store& store,
                   BatchRunner& writer, PipelineOptions options)
    : clock_(clock), executor_(executor), store_(store), writer_(writer), options_(options) {}

Pipeline::~Pipeline() {
  // Queued callbacks of agents and channels check these flags: they may outlive the pipeline.
  *alive_ = false;
  *gen_alive_ = false;
  // Commit what the last round wrote; its callbacks would reach channels that may be gone
  // (they check `alive_`), and the next start replays whatever was not delivered.
  if (batch_open_) flush_and_wait();
}

void Pipeline::write(StoreOp op) {
  batch_ops_.push_back(std::move(op));
  if (batch_open_) return;
  batch_open_ = true;
  auto alive = alive_;
  // The batch closes after the work queued now: every write of this round shares the commit.
  executor_.post([this, alive] {
    if (*alive) flush();
  });
}

void Pipeline::after_commit(std::function<void(const std::string& error)> after) {
  after_commit_.push_back(std::move(after));
}

void Pipeline::flush() {
  if (!batch_open_) return;
  batch_open_ = false;
  auto ops = std::exchange(batch_ops_, {});
  auto callbacks = std::exchange(after_commit_, {});
  const std::size_t n = ops.size();
  auto alive = alive_;
  writer_.run(std::move(ops), [this, alive, n, callbacks = std::move(callbacks)](
                                  std::string error) mutable {
    if (!*alive) return;
    if (!error.empty()) {
      spdlog::error("commit failed, {} write(s) not done: {}", n, error);
      ++metrics_.errors_total;
    }
    for (auto& cb : callbacks) cb(error);
  });
}

void Pipeline::flush_and_wait() {
  flush();
  writer_.wait_idle();
}

void Pipeline::configure(const PipelineSettings& settings) {
  settings_ = settings;
  followups_.set_options(settings.queue);
  // Live (a config reload): every channel's debouncer follows the new window. A debouncer
  // that goes away hands what it buffered to the sessions, so nothing waits for a timer that
  // no longer exists.
  for (const auto& [id, route] : routes_) {
    if (debounce_bypass_) break;
    if (settings_.inbound_debounce > core::Duration::zero()) {
      debouncers_.add(id, settings_.inbound_debounce);
    } else {
      release_batches(debouncers_.remove(id));
    }
  }
  if (!routes_.empty()) arm_debounce_timer();
}

void Pipeline::remove_channel(const std::string& id) {
  release_batches(debouncers_.remove(id));
  routes_.erase(id);
}

bool Pipeline::set_agent(const std::string& channel, Agent* agent) {
  auto it = routes_.find(channel);
  if (it == routes_.end()) return false;
  it->second.agent = agent;
  return true;
}

void Pipeline::release_batches(std::vector<core::InboundDebouncer::Batch> batches) {
  for (auto& batch : batches) {
    auto& items = batch.items;
    if (items.empty()) continue;
    const auto lead = items.back();
    std::vector<std::int64_t> members(items.begin(), items.end() - 1);
    for (auto id : items) debounced_session_.erase(id);
    std::optional<store::InboxRecord> rec;
    try {
      rec = store_.inbound(lead);
    } catch (const std::exception& e) {
      spdlog::error("cannot load inbound {}: {}", lead, e.what());
      ++metrics_.errors_total;
    }
    if (rec && routes_.count(rec->channel)) enqueue(*rec, std::move(members));
  }
}

void Pipeline::add_channel(Channel* channel, Agent* agent, int max_message_chars) {
  const bool returning = started_ && !routes_.count(channel->id());
  routes_[channel->id()] = Route{channel, agent, max_message_chars};
  if (settings_.inbound_debounce > core::Duration::zero() && !debounce_bypass_) {
    debouncers_.add(channel->id(), settings_.inbound_debounce);
  }
  // Added by a hot reload while the generation runs: what waited for it runs now.
  if (returning && !draining_) replay(channel->id());
}

void Pipeline::add_listener(ChatEventListener* listener) { listeners_.push_back(listener); }

void Pipeline::remove_listener(ChatEventListener* listener) {
  listeners_.erase(std::remove(listeners_.begin(), listeners_.end(), listener), listeners_.end());
}

std::string Pipeline::new_run_id() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  char buf[40];
  std::snprintf(buf, sizeof buf, "run-%016llx%04llx", static_cast<unsigned long long>(rng()),
                static_cast<unsigned long long>(++run_counter_ & 0xffff));
  return buf;
}

void Pipeline::start() {
  ++generation_;
  started_ = true;
  generation_started_ms_ = clock_.wall_ms();
  draining_ = false;
  debounce_bypass_ = false;
  try {
    auto pending = store_.sessions_in_state("resume_pending");
    resume_pending_ = {pending.begin(), pending.end()};
  } catch (const std::exception& e) {
    spdlog::error("cannot read sessions to resume: {}", e.what());
  }
  std::unordered_set<std::string> suspended;
  try {
    suspended = suspend_restart_loops();
  } catch (const std::exception& e) {
    spdlog::error("cannot read the sessions restarts interrupted: {}", e.what());
    ++metrics_.errors_total;
  }
  replay(std::nullopt, suspended);
}

std::unordered_set<std::string> Pipeline::suspend_restart_loops() {
  std::unordered_set<std::string> out;
  for (const auto& loop : store_.sessions_interrupted(kSuspendAfterInterrupts)) {
    const std::string session = loop.session_key;
    out.insert(session);
    resume_pending_.erase(session);
    ++metrics_.sessions_suspended;
    auto result = std::make_shared<store::Suspension>();
    // Holds "deliveries idle" until the notice is queued, as a turn's reply does.
    const auto reservation = replies_.reserve("suspended:" + session);
    write([result, session, now = clock_.wall_ms()](store::Store& s) {
      *result = s.suspend_session(session, kSuspendedNotice, now);
    });
    after_commit([this, alive = gen_alive_, result, session, reservation,
                  interrupts = loop.interrupts](const std::string& error) {
      if (!*alive) return;
      if (!error.empty()) {
        spdlog::error("session {} could not be suspended: {}", session, error);
        replies_.release(reservation);
        return;
      }
      spdlog::warn("session {} is suspended: {} restarts in a row interrupted its turn; {} "
                   "unfinished message(s) closed without running them again; a new message "
                   "resumes it",
                   session, interrupts, result->closed.size());
      for (const auto& row : result->closed) {
        ++metrics_.turns_aborted;
        ChatEvent ev;
        ev.state = ChatEvent::State::aborted;
        ev.run_id = row.run_id;
        ev.session_key = session;
        ev.error = kSuspendedReason;
        publish(ev);
      }
      if (result->notice) {
        dispatch({*result->notice}, reservation);
      } else {
        replies_.release(reservation);
      }
    });
  }
  return out;
}

void Pipeline::drop_stale(std::vector<store::OutboxRecord>& pending) {
  const auto ttl = settings_.reply_ttl.count();
  if (ttl <= 0) return;
  const std::int64_t now = clock_.wall_ms();
  std::vector<std::int64_t> stale;
  std::erase_if(pending, [&](const store::OutboxRecord& r) {
    if (now - r.created_at_ms <= ttl) return false;
    stale.push_back(r.id);
    return true;
  });
  if (stale.empty()) return;
  metrics_.replies_stale += stale.size();
  // A reply this late answers a conversation that has moved on: it stays in the transcript,
  // but the chat is not sent it. Its inbox row was closed with the reply, so nothing re-runs.
  spdlog::warn("not sending {} reply part(s) older than messages.replyTtlMs ({} ms): stale",
               stale.size(), ttl);
  write([stale = std::move(stale), now](store::Store& s) { s.mark_stale(stale, now); });
}

void Pipeline::replay(const std::optional<std::string>& only_channel,
                      const std::unordered_set<std::string>& suspended) {
  std::size_t replayed = 0;
  // The task registry of this generation is the inbox: every row not yet answered runs again,
  // in arrival order per session. The queue cap is for live traffic: a replayed row was
  // accepted already and is never dropped.
  auto live = settings_.queue;
  auto unlimited = live;
  unlimited.cap = std::numeric_limits<std::size_t>::max();
  followups_.set_options(unlimited);
  for (const auto& row : store_.unfinished_inbound()) {
    if (!only_channel) replay_horizon_ = std::max(replay_horizon_, row.id);
    if (suspended.count(row.session_key)) continue;  // closed by its suspension
    if (only_channel && (row.channel != *only_channel || followups_.active(row.session_key))) {
      // A channel coming back: a session with a live lane carries on from it.
      continue;
    }
    if (!routes_.count(row.channel)) {
      spdlog::warn("inbound {} on channel {} waits: the channel is not configured", row.id,
                   row.channel);
      continue;
    }
    ++replayed;
    auto res = followups_.enqueue(row.session_key, row.id, core::FollowupMode::followup);
    if (res.action == core::EnqueueAction::start_now) start_turn(row, TurnInput{row.id, {}, 0});
  }
  followups_.set_options(live);
  auto pending = store_.pending_outbox();
  if (only_channel) {
    std::erase_if(pending, [&](const store::OutboxRecord& r) {
      return r.channel != *only_channel || outbox_rows_.count(r.id) != 0;
    });
  }
  drop_stale(pending);
  if (replayed || !pending.empty()) {
    spdlog::info("replaying {} unfinished message(s) and {} undelivered reply part(s){}",
                 replayed, pending.size(),
                 only_channel ? " of channel " + *only_channel : std::string());
  }
  // Parts of one reply stay together and in order.
  std::map<std::string, std::vector<store::OutboxRecord>> chains;
  for (auto& row : pending) {
    std::string key = row.inbound_id ? std::to_string(row.inbound_id) : row.idem_key;
    chains[key].push_back(std::move(row));
  }
  for (auto& [key, rows] : chains) dispatch(std::move(rows));
}

void Pipeline::reset() {
  if (!running_.empty()) {
    spdlog::error("generation {} ends with {} turn(s) still running: they run again", generation_,
                  running_.size());
    interrupt_all("generation reset");
  }
  *gen_alive_ = false;
  gen_alive_ = std::make_shared<bool>(true);
  if (debounce_timer_) executor_.cancel(*debounce_timer_);
  debounce_timer_.reset();
  // Whatever the debouncers still held is pending in the inbox: the next start replays it.
  debouncers_.flush_all();
  debouncers_ = core::DebouncerRegistry{};
  debounced_session_.clear();
  merged_.clear();
  followups_.clear();
  auto waiters = std::exchange(followup_waiters_, {});
  for (auto& w : waiters) w();
  replies_.clear();
  outbox_rows_.clear();
  running_.clear();
  run_seq_.clear();
  routes_.clear();
  draining_ = false;
  started_ = false;
}

void Pipeline::accept(const InboundMessage& m, std::function<void(AcceptResult)> done) {
  if (!routes_.count(m.channel)) {
    throw std::invalid_argument("channel \"" + m.channel + "\" is not configured");
  }
  store::NewInbound row{m.channel,
                        m.external_id,
                        m.session_key,
                        m.chat_id.empty() ? m.session_key : m.chat_id,
                        m.sender,
                        m.text,
                        m.run_id.empty() ? new_run_id() : m.run_id};
  auto res = std::make_shared<store::InsertInboundResult>();
  write([row = std::move(row), res, now = clock_.wall_ms()](store::Store& s) {
    *res = s.insert_inbound(row, now);
  });
  after_commit([this, res, done = std::move(done)](const std::string& error) {
    if (!error.empty()) {
      AcceptResult failed;
      failed.error = error;
      done(failed);
      return;
    }
    done(on_committed(*res));
  });
}

AcceptResult Pipeline::on_committed(const store::InsertInboundResult& res) {
  AcceptResult out;
  out.inbound_id = res.record.id;
  out.run_id = res.record.run_id;
  out.duplicate = res.duplicate;
  if (res.duplicate) {
    ++metrics_.inbound_duplicates;
    out.status = duplicate_status(res.record.state);
    if (res.record.state == store::InboxState::pending) {
      if (auto it = running_.find(res.record.session_key);
          it != running_.end() && it->second.info.inbound_id == res.record.id) {
        out.status = "in_flight";
      }
    }
    return out;
  }
  ++metrics_.inbound_total;
  if (draining_ || !routes_.count(res.record.channel)) {
    // Journaled, not forgotten: the next generation's start() replays it.
    out.status = "queued";
    out.reason = "gateway-restarting";
    return out;
  }
  auto* debouncer = debounce_bypass_ ? nullptr : debouncers_.find(res.record.channel);
  if (debouncer != nullptr) {
    // Only the row id waits here; the store has the message, so a crash loses the timing only.
    debounced_session_[res.record.id] = res.record.session_key;
    debouncer->add(core::debounce_key(res.record.channel, res.record.chat_id), res.record.id,
                   clock_.now());
    arm_debounce_timer();
    out.status = "queued";
    out.reason = "debounce";
    return out;
  }
  auto q = enqueue(res.record, {});
  out.status = q.status;
  out.reason = q.reason;
  return out;
}

AcceptResult Pipeline::enqueue(const store::InboxRecord& rec, std::vector<std::int64_t> members) {
  AcceptResult out;
  // Agents take no input mid-turn yet: "steer" waits for the turn like "followup".
  auto mode = settings_.queue_mode == core::FollowupMode::steer ? core::FollowupMode::followup
                                                                : settings_.queue_mode;
  if (!members.empty()) merged_[rec.id] = members;
  auto res = followups_.enqueue(rec.session_key, rec.id, mode);
  if (!res.dropped.empty()) {
    close_dropped(res.dropped, rec.session_key,
                  res.action == core::EnqueueAction::interrupt_active
                      ? "superseded by a newer message"
                      : "dropped: the session's queue is full");
  }
  switch (res.action) {
    case core::EnqueueAction::start_now:
      out.status = "started";
      // The turn starts after the acknowledgement went out: its first delta follows the ack.
      // Rows merged into it wait in merged_: start_turn() takes them from there.
      executor_.post([this, alive = gen_alive_, rec] {
        if (*alive) start_turn(rec, TurnInput{rec.id, {}, 0});
      });
      break;
    case core::EnqueueAction::queued:
    case core::EnqueueAction::steered:
      out.status = "queued";
      break;
    case core::EnqueueAction::interrupt_active:
      out.status = "queued";
      out.reason = "interrupting";
      if (auto it = running_.find(rec.session_key); it != running_.end()) {
        spdlog::info("run {} interrupted by a newer message in session {}", it->second.info.run_id,
                     rec.session_key);
        it->second.turn->cancel();
      }
      break;
    case core::EnqueueAction::dropped_new:
      out.status = "dropped";
      out.reason = "queue-full";
      break;
  }
  return out;
}

void Pipeline::close_dropped(const std::vector<std::int64_t>& ids, const std::string& session,
                             const std::string& why) {
  for (auto id : ids) {
    std::vector<std::int64_t> rows{id};
    if (auto m = merged_.find(id); m != merged_.end()) {
      rows.insert(rows.end(), m->second.begin(), m->second.end());
      merged_.erase(m);
    }
    for (auto row_id : rows) {
      std::optional<store::InboxRecord> rec;
      try {
        rec = store_.inbound(row_id);
      } catch (const std::exception& e) {
        spdlog::error("cannot load inbound {}: {}", row_id, e.what());
      }
      write([row_id](store::Store& s) { s.set_inbound_state(row_id, store::InboxState::aborted); });
      ++metrics_.turns_aborted;
      if (!rec) continue;
      spdlog::info("inbound {} (run {}) of session {} not run: {}", row_id, rec->run_id, session,
                   why);
      ChatEvent ev;
      ev.state = ChatEvent::State::aborted;
      ev.run_id = rec->run_id;
      ev.session_key = session;
      ev.error = why;
      after_commit([this, ev](const std::string&) { publish(ev); });
    }
  }
}

void Pipeline::arm_debounce_timer() {
  auto next = debouncers_.next_deadline();
  if (!next) return;
  if (debounce_timer_) executor_.cancel(*debounce_timer_);
  auto delay = std::max(core::Duration::zero(),
                        std::chrono::duration_cast<core::Duration>(*next - clock_.now()));
  debounce_timer_ = executor_.schedule(delay, [this, alive = gen_alive_] {
    if (!*alive) return;
    debounce_timer_.reset();
    on_debounce_timer();
  });
}

void Pipeline::on_debounce_timer() {
  std::vector<core::InboundDebouncer::Batch> batches;
  for (auto& named : debouncers_.due(clock_.now())) batches.push_back(std::move(named.batch));
  release_batches(std::move(batches));
  arm_debounce_timer();
}

std::size_t Pipeline::flush_debouncers() {
  debounce_bypass_ = true;
  if (debounce_timer_) executor_.cancel(*debounce_timer_);
  debounce_timer_.reset();
  auto flushed = debouncers_.flush_all();
  const auto count = flushed.count();
  std::vector<core::InboundDebouncer::Batch> batches;
  for (auto& named : flushed.batches) batches.push_back(std::move(named.batch));
  release_batches(std::move(batches));
  return count;
}

void Pipeline::when_followups_drained(std::function<void()> fn) {
  if (followups_.pending_count() == 0) {
    fn();
    return;
  }
  followup_waiters_.push_back(std::move(fn));
}

void Pipeline::notify_followup_waiters() {
  if (followups_.pending_count() != 0 || followup_waiters_.empty()) return;
  auto waiters = std::exchange(followup_waiters_, {});
  for (auto& w : waiters) w();
}

void Pipeline::start_turn(TurnInput input) {
  std::optional<store::InboxRecord> rec;
  try {
    rec = store_.inbound(input.lead);
  } catch (const std::exception& e) {
    spdlog::error("cannot load inbound {}: {}", input.lead, e.what());
    ++metrics_.errors_total;
  }
  if (rec) start_turn(*rec, std::move(input));
}

bool Pipeline::run_command(const store::InboxRecord& rec, const TurnInput& input) {
  std::string_view text = rec.text;
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) {
    text.remove_prefix(1);
  }
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) {
    text.remove_suffix(1);
  }
  if (text != "/restart" || !input.members.empty()) return false;
  std::string answer;
  bool request = false;
  if (!settings_.restart_command) {
    answer = "/restart is turned off on this gateway (commands.restart).";
  } else if (rec.id <= replay_horizon_ || rec.received_at_ms < generation_started_ms_) {
    // Sent before the last restart (or crash) and replayed by it: that restart answered it.
    // The row id decides even when the wall clock stepped back across the restart.
    answer = "The gateway has restarted since you asked.";
  } else {
    answer = "Restarting the gateway.";
    request = true;
  }
  ChatCommand cmd{"restart", rec.run_id, rec.session_key, rec.channel};
  auto rows = std::make_shared<std::vector<store::OutboxRecord>>();
  auto reservation = replies_.reserve(std::to_string(rec.id));
  write([rows, id = rec.id, answer, now = clock_.wall_ms()](store::Store& s) {
    *rows = s.stage_reply(id, {answer}, now);
  });
  const auto session = rec.session_key;
  const auto work = work_.start(core::WorkKind::turn,
                                core::WorkInfo{"", rec.run_id, session, "running", "/restart"});
  after_commit([this, alive = gen_alive_, rows, reservation, session, work, cmd, request](
                   const std::string& error) {
    if (!*alive) return;
    if (error.empty()) {
      dispatch(std::move(*rows), reservation);
    } else {
      replies_.release(reservation);
    }
    if (error.empty() && request && command_handler_) command_handler_(cmd);
    finish_turn(session, work);
  });
  return true;
}

void Pipeline::start_turn(const store::InboxRecord& record, TurnInput input) {
  const store::InboxRecord* rec = &record;
  const std::int64_t inbound_id = rec->id;
  const std::string session = rec->session_key;
  if (auto m = merged_.find(inbound_id); m != merged_.end()) {
    // Rows debounced into this one, then rows of a collect batch.
    input.members.insert(input.members.begin(), m->second.begin(), m->second.end());
    merged_.erase(m);
  }
  auto route_it = routes_.find(rec->channel);
  if (route_it == routes_.end() || route_it->second.agent == nullptr) {
    spdlog::error("inbound {}: no agent for channel {}", inbound_id, rec->channel);
    next_in_lane(session);
    return;
  }
  if (run_command(*rec, input)) return;

  TurnRequest req;
  req.run_id = rec->run_id;
  req.session_key = session;
  req.channel = rec->channel;
  req.chat_id = rec->chat_id;
  req.sender = rec->sender;
  req.text = rec->text;
  try {
    // Rows merged into this turn (debounce, collect) come first, in arrival order.
    std::vector<store::InboxRecord> earlier;
    for (auto id : input.members) {
      if (auto r = store_.inbound(id)) earlier.push_back(std::move(*r));
    }
    const std::int64_t first_id = earlier.empty() ? inbound_id : std::min(earlier.front().id,
                                                                          inbound_id);
    if (!earlier.empty()) {
      std::string joined;
      for (const auto& r : earlier) joined += r.text + "\n";
      req.text = joined + rec->text;
    }
    // The row stays "pending" while its turn runs: a restart re-runs pending rows either way,
    // and one commit less per message matters on the hot path. The transcript never holds a
    // partial reply (the assistant entry is written with the reply), so nothing needs repair.
    const bool history = route_it->second.agent->wants_history();
    for (auto& e : history ? store_.transcript(session, options_.history_limit)
                           : std::vector<store::TranscriptEntry>{}) {
      // User messages are journaled when accepted, before earlier turns answered: the history
      // of this turn is what came before it, then the message itself.
      if (e.role == "user" && e.inbound_id >= first_id) continue;
      req.history.push_back(HistoryEntry{std::move(e.role), std::move(e.text)});
    }
    if (resume_pending_.count(session)) {
      req.history.push_back(HistoryEntry{
          "system", "The previous turn of this conversation was interrupted by a gateway "
                    "restart before it could answer."});
    }
    if (input.dropped > 0) {
      req.history.push_back(HistoryEntry{
          "system", "dropped " + std::to_string(input.dropped) +
                        " message(s): the queue of this conversation was full."});
    }
    for (const auto& r : earlier) req.history.push_back(HistoryEntry{"user", r.text});
    req.history.push_back(HistoryEntry{"user", rec->text});
  } catch (const std::exception& e) {
    spdlog::error("inbound {}: cannot start its turn: {}", inbound_id, e.what());
    ++metrics_.errors_total;
    next_in_lane(session);
    return;
  }

  ++metrics_.turns_started;
  RunningTurn& rt = running_[session];
  rt = RunningTurn{};
  rt.info = ActiveRun{rec->run_id, session, inbound_id, clock_.wall_ms()};
  rt.channel = rec->channel;
  rt.chat_id = rec->chat_id;
  rt.members = std::move(input.members);
  rt.work = work_.start(core::WorkKind::turn,
                        core::WorkInfo{"", rec->run_id, session, "running",
                                       std::string(route_it->second.agent->type()) + " turn"});
  // Held from now until the reply's parts are enqueued: a drain waiting for deliveries cannot
  // slip between the end of the turn and its reply.
  rt.reservation = replies_.reserve(std::to_string(inbound_id));

  auto alive = gen_alive_;
  TurnCallbacks cb;
  cb.on_delta = [this, alive, session, inbound_id](std::string_view delta) {
    if (!*alive) return;
    auto it = running_.find(session);
    if (it == running_.end() || it->second.info.inbound_id != inbound_id) return;
    it->second.streamed.append(delta);
    ChatEvent ev;
    ev.state = ChatEvent::State::delta;
    ev.run_id = it->second.info.run_id;
    ev.session_key = session;
    ev.text = std::string(delta);
    ev.accumulated = it->second.streamed;
    ev.ts_ms = clock_.wall_ms();
    publish(ev);
  };
  cb.on_done = [this, alive, session, inbound_id](TurnOutcome outcome) {
    if (!*alive) return;
    on_turn_done(session, inbound_id, std::move(outcome));
  };
  rt.turn = route_it->second.agent->start(std::move(req), std::move(cb));
}

void Pipeline::on_turn_done(const std::string& session, std::int64_t inbound_id,
                            TurnOutcome outcome) {
  auto it = running_.find(session);
  if (it == running_.end() || it->second.info.inbound_id != inbound_id) return;
  RunningTurn rt = std::move(it->second);
  running_.erase(it);
  // on_done may run inside the turn's own cancel(): destroy the turn later, not under it.
  executor_.post([turn = std::shared_ptr<Turn>(std::move(rt.turn))] {});
  const Route* route = nullptr;
  if (auto r = routes_.find(rt.channel); r != routes_.end()) route = &r->second;
  const auto work = rt.work;
  const auto reservation = rt.reservation;
  auto close_members = [this, members = rt.members](store::InboxState state) {
    for (auto id : members) {
      write([id, state](store::Store& s) { s.set_inbound_state(id, state); });
    }
  };

  if (outcome.kind == TurnOutcome::Kind::aborted && rt.interrupted) {
    // Interrupted by a stop: the rows are still pending and run again at the next start.
    ++metrics_.turns_aborted;
    replies_.release(reservation);
    finish_turn(session, work);
    return;
  }
  if (outcome.kind == TurnOutcome::Kind::aborted && rt.detached) {
    // The turn asked for the restart: it is answered with what it said so far, never re-run.
    outcome.kind = TurnOutcome::Kind::completed;
    if (outcome.text.empty()) outcome.text = rt.streamed;
    if (outcome.text.empty()) outcome.text = "(the gateway restarted as asked)";
  }
  const bool resumed = resume_pending_.erase(session) > 0;
  switch (outcome.kind) {
    case TurnOutcome::Kind::completed:
    case TurnOutcome::Kind::failed: {
      std::vector<std::string> parts;
      if (outcome.kind == TurnOutcome::Kind::completed) {
        ++metrics_.turns_completed;
        parts = split_reply(outcome.text, route ? route->max_message_chars : 0);
      } else {
        ++metrics_.turns_failed;
        spdlog::warn("run {} failed: {}", rt.info.run_id, outcome.error);
        // The user is told why instead of waiting forever; the notice is the reply.
        parts = {"Sorry, I could not answer that: " + outcome.error};
      }
      auto rows = std::make_shared<std::vector<store::OutboxRecord>>();
      close_members(store::InboxState::done);
      write([rows, inbound_id, parts = std::move(parts), now = clock_.wall_ms()](
                store::Store& s) { *rows = s.stage_reply(inbound_id, parts, now); });
      if (resumed) {
        write([session, now = clock_.wall_ms()](store::Store& s) {
          s.set_session_state(session, "idle", now);
        });
      }
      // Merged rows have run ids of their own that clients may wait on: close them too.
      std::vector<std::string> member_runs;
      for (auto id : rt.members) {
        try {
          if (auto r = store_.inbound(id)) member_runs.push_back(r->run_id);
        } catch (const std::exception&) {
        }
      }
      // The turn counts as work until its reply is committed and handed to delivery, so a
      // drain cannot slip between the two. A failed commit leaves the row unfinished: the
      // next start runs it again.
      after_commit([this, alive = gen_alive_, rows, session, work, reservation,
                    member_runs = std::move(member_runs),
                    lead_run = rt.info.run_id](const std::string& error) {
        if (!*alive) return;
        if (error.empty()) {
          for (const auto& run : member_runs) {
            ChatEvent ev;
            ev.state = ChatEvent::State::final;
            ev.run_id = run;
            ev.session_key = session;
            ev.message_id = "merged:" + lead_run;
            publish(ev);
          }
          dispatch(std::move(*rows), reservation);
        } else {
          replies_.release(reservation);
        }
        finish_turn(session, work);
      });
      return;
    }
    case TurnOutcome::Kind::aborted: {
      ++metrics_.turns_aborted;
      close_members(store::InboxState::aborted);
      write([inbound_id](store::Store& s) {
        s.set_inbound_state(inbound_id, store::InboxState::aborted);
      });
      if (rt.drain_aborted) {
        resume_pending_.insert(session);
        // resume_pending, and one more restart in a row that interrupted this session.
        write([session, now = clock_.wall_ms()](store::Store& s) {
          s.mark_interrupted(session, now);
        });
      } else if (resumed) {
        write([session, now = clock_.wall_ms()](store::Store& s) {
          s.set_session_state(session, "idle", now);
        });
      }
      ChatEvent ev;
      ev.state = ChatEvent::State::aborted;
      ev.run_id = rt.info.run_id;
      ev.session_key = session;
      ev.error = outcome.error.empty() ? "aborted" : outcome.error;
      ev.ts_ms = clock_.wall_ms();
      // The reservation holds the drain's "deliveries idle" until the aborted event is out.
      after_commit([this, alive = gen_alive_, ev, session, work, reservation](const std::string&) {
        if (!*alive) return;
        publish(ev);
        replies_.release(reservation);
        finish_turn(session, work);
      });
      return;
    }
  }
}

void Pipeline::finish_turn(const std::string& session, core::WorkId work) {
  // The next turn starts before this one stops counting: the tracker never touches zero
  // between two turns of a busy session.
  next_in_lane(session);
  work_.finish(work);
}

void Pipeline::next_in_lane(const std::string& session) {
  auto next = followups_.on_turn_finished(session);
  notify_followup_waiters();
  if (!next) return;
  // While draining the waiting rows stay pending in the store for the next generation.
  if (draining_) return;
  TurnInput input;
  input.lead = next->items.back();
  input.members.assign(next->items.begin(), next->items.end() - 1);
  input.dropped = next->dropped_count;
  // Rows debounced into a collected row come before it.
  std::vector<std::int64_t> members;
  for (auto id : input.members) {
    if (auto m = merged_.find(id); m != merged_.end()) {
      members.insert(members.end(), m->second.begin(), m->second.end());
      merged_.erase(m);
    }
    members.push_back(id);
  }
  input.members = std::move(members);
  start_turn(std::move(input));
}

void Pipeline::dispatch(std::vector<store::OutboxRecord> rows,
                        std::optional<core::ReplyDispatcher::ReservationId> reservation) {
  rows.erase(std::remove_if(rows.begin(), rows.end(),
                            [](const auto& r) { return r.state != store::OutboxState::pending; }),
             rows.end());
  if (rows.empty()) {
    if (reservation) replies_.release(*reservation);
    return;
  }
  const std::string key =
      rows.front().inbound_id ? std::to_string(rows.front().inbound_id) : rows.front().idem_key;
  std::vector<core::ReplyDispatcher::Part> parts;
  parts.reserve(rows.size());
  for (auto& row : rows) {
    parts.push_back({row.id, row.part});
    outbox_rows_[row.id] = std::move(row);
  }
  if (auto first = replies_.enqueue(key, std::move(parts), reservation)) {
    send_part(key, *first, options_.retry_initial);
  }
}

void Pipeline::send_part(const std::string& key, core::ReplyDispatcher::Part part,
                         core::Duration delay) {
  auto it = outbox_rows_.find(part.id);
  if (it == outbox_rows_.end()) return;
  const store::OutboxRecord& row = it->second;
  auto alive = gen_alive_;
  auto settle = [this, key, part] {
    outbox_rows_.erase(part.id);
    if (auto next = replies_.settled(key, part.id)) {
      send_part(key, *next, options_.retry_initial);
    }
  };
  auto route = routes_.find(row.channel);
  if (route == routes_.end()) {
    spdlog::error("reply {} for channel {} dropped: the channel is not configured", row.idem_key,
                  row.channel);
    settle();
    return;
  }
  OutboundPart p{row.id,      row.idem_key, row.inbound_id,  row.part,   row.final_part,
                 row.channel, row.chat_id,  row.session_key, row.run_id, row.text};
  route->second.channel->send(p, [this, alive, key, part, delay, settle](SendStatus st,
                                                                         std::string err) {
    if (!*alive) return;
    auto it = outbox_rows_.find(part.id);
    if (it == outbox_rows_.end()) return;
    const auto idem_key = it->second.idem_key;
    try {
      switch (st) {
        case SendStatus::sent:
          // If this write is lost to a crash the part is sent again at the next start: the
          // documented window of a duplicate.
          record_sent(part.id, clock_.wall_ms(), options_.retry_initial, std::nullopt);
          ++metrics_.replies_sent;
          settle();
          return;
        case SendStatus::retry: {
          auto next = std::min(delay * 2, options_.retry_max);
          spdlog::warn("reply {} not sent ({}), retrying in {} ms", idem_key, err, delay.count());
          executor_.schedule(delay, [this, alive, key, part, next] {
            if (*alive) send_part(key, part, next);
          });
          return;
        }
        case SendStatus::failed:
          write([id = part.id, now = clock_.wall_ms()](store::Store& s) {
            s.mark_failed(id, now);
          });
          ++metrics_.reply_send_failures;
          spdlog::error("reply {} could not be delivered: {}", idem_key, err);
          settle();
          return;
      }
    } catch (const std::exception& e) {
      spdlog::error("reply {}: cannot record delivery: {}", idem_key, e.what());
      ++metrics_.errors_total;
      settle();
    }
  });
}

void Pipeline::record_sent(std::int64_t outbox_id, std::int64_t now_ms, core::Duration retry_delay,
                           std::optional<core::ReplyDispatcher::ReservationId> held) {
  write([outbox_id, now_ms](store::Store& s) { s.mark_sent(outbox_id, now_ms); });
  after_commit([this, alive = gen_alive_, outbox_id, now_ms, retry_delay,
                held](const std::string& error) {
    if (!*alive) return;
    if (error.empty()) {
      if (held) replies_.release(*held);
      return;
    }
    // The part was delivered: left pending, the next start would send it a second time. Write
    // it again, backing off, and hold "deliveries idle" meanwhile so a drain waits for it.
    const auto hold = held ? *held : replies_.reserve("sent:" + std::to_string(outbox_id));
    spdlog::warn("outbox {} was delivered but not recorded as sent; again in {} ms", outbox_id,
                 retry_delay.count());
    executor_.schedule(retry_delay, [this, alive, outbox_id, now_ms, hold,
                                     next = std::min(retry_delay * 2, options_.retry_max)] {
      if (*alive) record_sent(outbox_id, now_ms, next, hold);
    });
  });
}

void Pipeline::send(const SendRequest& req, std::function<void(SendResult)> done) {
  if (!routes_.count(req.channel)) {
    throw std::invalid_argument("channel \"" + req.channel + "\" is not configured");
  }
  // As chat.send, the run id of a send is its idempotency key: clients match events by it.
  store::NewOutbound row{"send:" + req.channel + ":" + req.idempotency_key, req.channel, req.to,
                         req.session_key.empty() ? req.to : req.session_key,
                         req.idempotency_key, req.text};
  auto result = std::make_shared<std::pair<store::OutboxRecord, bool>>();
  write([row = std::move(row), result, now = clock_.wall_ms()](store::Store& s) {
    *result = s.stage_outbound(row, now);
  });
  after_commit([this, result, done = std::move(done)](const std::string& error) {
    const auto& [rec, inserted] = *result;
    SendResult r{rec.idem_key, rec.run_id, !inserted, error};
    if (error.empty() && inserted) dispatch({rec});
    done(r);
  });
}

std::vector<std::string> Pipeline::abort(const std::string& session_key,
                                         const std::string& run_id) {
  std::vector<std::string> aborted;
  if (auto it = running_.find(session_key); it != running_.end()) {
    if (run_id.empty() || it->second.info.run_id == run_id) {
      aborted.push_back(it->second.info.run_id);
      it->second.turn->cancel();  // on_done(aborted) follows and closes the row
      if (!run_id.empty()) return aborted;
    }
  }
  if (run_id.empty()) return aborted;
  for (auto id : followups_.queued(session_key)) {
    auto rec = store_.inbound(id);
    if (!rec || rec->run_id != run_id) continue;
    followups_.remove_waiting(session_key, id);
    notify_followup_waiters();
    close_dropped({id}, session_key, "aborted before it started");
    aborted.push_back(run_id);
  }
  return aborted;
}

bool Pipeline::detach_run(const std::string& run_id) {
  for (auto& [session, rt] : running_) {
    if (rt.info.run_id != run_id) continue;
    rt.detached = true;
    work_.exempt_run(run_id);
    return true;
  }
  return false;
}

std::size_t Pipeline::finish_detached() {
  std::vector<std::string> sessions;
  for (auto& [session, rt] : running_) {
    if (rt.detached) sessions.push_back(session);
  }
  for (const auto& session : sessions) {
    if (auto it = running_.find(session); it != running_.end()) it->second.turn->cancel();
  }
  return sessions.size();
}

std::vector<ActiveChat> Pipeline::abort_for_drain(const std::string& reason) {
  std::vector<ActiveChat> chats;
  std::vector<std::string> sessions;
  for (auto& [session, rt] : running_) {
    if (rt.detached) continue;
    spdlog::warn("aborting run {} of session {}: {}", rt.info.run_id, session, reason);
    rt.drain_aborted = true;
    chats.push_back({rt.channel, rt.chat_id, session, rt.info.run_id, false});
    sessions.push_back(session);
  }
  for (const auto& session : sessions) {
    if (auto it = running_.find(session); it != running_.end()) it->second.turn->cancel();
  }
  return chats;
}

std::size_t Pipeline::interrupt_all(const std::string& reason) {
  std::vector<std::string> sessions;
  for (auto& [session, rt] : running_) {
    spdlog::warn("interrupting run {} of session {}: {}", rt.info.run_id, session, reason);
    rt.interrupted = true;
    sessions.push_back(session);
  }
  // cancel() may finish the turn at once, which erases it from running_.
  for (const auto& session : sessions) {
    if (auto it = running_.find(session); it != running_.end()) it->second.turn->cancel();
  }
  return sessions.size();
}

std::vector<ActiveChat> Pipeline::active_chats() const {
  std::vector<std::pair<std::int64_t, ActiveChat>> sorted;
  for (const auto& [session, rt] : running_) {
    sorted.push_back(
        {rt.info.inbound_id, {rt.channel, rt.chat_id, session, rt.info.run_id, rt.detached}});
  }
  std::sort(sorted.begin(), sorted.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<ActiveChat> out;
  for (auto& [id, chat] : sorted) out.push_back(std::move(chat));
  return out;
}

void Pipeline::send_notice(const ActiveChat& chat, const std::string& text,
                           std::function<void(std::string error)> done) {
  auto route = routes_.find(chat.channel);
  if (route == routes_.end()) {
    done("channel " + chat.channel + " is not configured");
    return;
  }
  OutboundPart p;
  p.idem_key = "notice:" + new_run_id();
  p.final_part = true;
  p.channel = chat.channel;
  p.chat_id = chat.chat_id;
  p.session_key = chat.session_key;
  p.run_id = p.idem_key;
  p.text = text;
  route->second.channel->send(
      p, [alive = gen_alive_, done = std::move(done)](SendStatus st, std::string err) {
        if (!*alive) return;
        done(st == SendStatus::sent ? std::string() : (err.empty() ? "not sent" : err));
      });
}

HistoryPage Pipeline::history_page(const std::string& session_key, std::size_t limit,
                                   std::size_t max_bytes, std::int64_t before_id) {
  auto page = store_.transcript_page(session_key, limit, max_bytes, before_id);
  HistoryPage out;
  out.more = page.more;
  out.messages.reserve(page.entries.size());
  for (auto& e : page.entries) {
    out.messages.push_back(TranscriptMessage{e.id, std::move(e.role), std::move(e.text),
                                             std::move(e.run_id), e.created_at_ms});
  }
  return out;
}

std::vector<ActiveRun> Pipeline::active_runs() const {
  std::vector<ActiveRun> out;
  out.reserve(running_.size());
  for (const auto& [s, rt] : running_) out.push_back(rt.info);
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.inbound_id < b.inbound_id; });
  return out;
}

void Pipeline::publish(ChatEvent event) {
  if (event.ts_ms == 0) event.ts_ms = clock_.wall_ms();
  auto& seq = run_seq_[event.run_id];
  event.seq = seq++;
  const bool last = event.state != ChatEvent::State::delta && event.final_part;
  if (last) run_seq_.erase(event.run_id);
  auto listeners = listeners_;
  for (auto* l : listeners) l->on_chat_event(event);
}

std::vector<std::string> Pipeline::split_reply(const std::string& text, int max_chars) {
  std::vector<std::string> parts;
  if (text.empty()) return parts;
  if (max_chars <= 0 || text.size() <= static_cast<std::size_t>(max_chars)) {
    parts.push_back(text);
    return parts;
  }
  std::string_view rest = text;
  const auto max = static_cast<std::size_t>(max_chars);
  while (!rest.empty()) {
    std::size_t n = utf8_prefix(rest, max);
    if (n < rest.size()) {
      // Prefer to break after a newline, then after a space, in the second half of the chunk.
      auto nl = rest.substr(0, n).rfind('\n');
      auto sp = rest.substr(0, n).rfind(' ');
      if (nl != std::string_view::npos && nl >= n / 2) {
        n = nl + 1;
      } else if (sp != std::string_view::npos && sp >= n / 2) {
        n = sp + 1;
      }
    }
    parts.emplace_back(rest.substr(0, n));
    rest.remove_prefix(n);
  }
  return parts;
}

}  // namespace drawbridge::pipeline
