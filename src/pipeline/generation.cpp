#include "pipeline/pipeline.h"

#include <algorithm>
#include <limits>
#include <unordered_set>

#include <spdlog/spdlog.h>

namespace drawbridge::pipeline {

void Pipeline::start() {
  ++generation_;
  started_ = true;
  generation_started_ms_ = clock_.wall_ms();
  draining_ = false;
  delivery_.set_handing_over(false);
  debounce_bypass_ = false;
  if (session_leases_ == nullptr) return start_work();
  // A replica runs the sessions it holds (the runtime repaired them before this start), and
  // claims the free ones with work: messages of new sessions it accepted while it drained.
  const auto held = session_leases_->held_sessions();
  const std::unordered_set<std::string> mine(held.begin(), held.end());
  for (const auto& s : held) touch(s);
  start_work(&mine);
  post_claims();  // sessions of messages it accepted while it drained
}

void Pipeline::start_work(const std::unordered_set<std::string>* only_sessions) {
  try {
    for (auto& s : store_.sessions_in_state("resume_pending")) {
      if (!only_sessions || only_sessions->count(s)) resume_pending_.insert(std::move(s));
    }
  } catch (const std::exception& e) {
    spdlog::error("cannot read sessions to resume: {}", e.what());
  }
  std::unordered_set<std::string> suspended;
  try {
    suspended = suspend_restart_loops(only_sessions);
  } catch (const std::exception& e) {
    spdlog::error("cannot read the sessions restarts interrupted: {}", e.what());
    ++metrics_.errors_total;
  }
  replay(std::nullopt, suspended, only_sessions);
}

std::unordered_set<std::string> Pipeline::suspend_restart_loops(
    const std::unordered_set<std::string>* only_sessions) {
  std::unordered_set<std::string> out;
  for (const auto& loop : store_.sessions_interrupted(kSuspendAfterInterrupts)) {
    const std::string session = loop.session_key;
    if (only_sessions && !only_sessions->count(session)) continue;
    out.insert(session);
    resume_pending_.erase(session);
    ++metrics_.sessions_suspended;
    auto result = std::make_shared<store::Suspension>();
    // Holds "deliveries idle" until the notice is queued, as a turn's reply does.
    const auto reservation = delivery_.reserve("suspended:" + session);
    write([result, session, now = clock_.wall_ms()](store::Store& s) {
      *result = s.suspend_session(session, kSuspendedNotice, now);
    });
    after_commit([this, alive = gen_alive_, result, session, reservation,
                  interrupts = loop.interrupts](const std::string& error) {
      if (!*alive) return;
      history_.forget(session);  // the notice went into its transcript
      if (!error.empty()) {
        spdlog::error("session {} could not be suspended: {}", session, error);
        delivery_.release(reservation);
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
        delivery_.dispatch({*result->notice}, reservation);
      } else {
        delivery_.release(reservation);
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
                      const std::unordered_set<std::string>& suspended,
                      const std::unordered_set<std::string>* only_sessions) {
  std::size_t replayed = 0;
  // The task registry of this generation is the inbox: every row not yet answered runs again,
  // in arrival order per session. The queue cap is for live traffic: a replayed row was
  // accepted already and is never dropped.
  auto live = settings_.queue;
  auto unlimited = live;
  unlimited.cap = std::numeric_limits<std::size_t>::max();
  followups_.set_options(unlimited);
  replaying_ = true;
  struct EndReplay {
    bool& flag;
    ~EndReplay() { flag = false; }
  } end_replay{replaying_};
  auto rows = store_.unfinished_inbound();
  if (only_sessions) {
    std::erase_if(rows, [&](const auto& r) { return !only_sessions->count(r.session_key); });
  }
  // Rows debounced into a later row that is still unfinished run in that row's turn, as they
  // would have before the restart (set_merged); the others run alone.
  std::unordered_set<std::int64_t> unfinished;
  for (const auto& row : rows) unfinished.insert(row.id);
  std::map<std::int64_t, std::vector<std::int64_t>> merges;
  std::unordered_set<std::string> elsewhere;
  for (const auto& row : rows) {
    if (!only_channel && !in_takeover_) replay_horizon_ = std::max(replay_horizon_, row.id);
    if (row.merged_into != 0 && row.merged_into > row.id && unfinished.count(row.merged_into)) {
      merges[row.merged_into].push_back(row.id);
    }
  }
  for (const auto& row : rows) {
    if (held_.count(row.id)) continue;  // run already (a takeover after a notice adopted it)
    if (row.merged_into != 0 && merges.count(row.merged_into)) continue;  // in its lead's turn
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
    if (elsewhere.count(row.session_key) || served_elsewhere(row.channel)) {
      elsewhere.insert(row.session_key);  // its channel's connection is another replica's
      continue;
    }
    ++replayed;
    held_.insert(row.id);
    if (auto m = merges.find(row.id); m != merges.end()) {
      replayed += m->second.size();
      merged_[row.id] = m->second;
      held_.insert(m->second.begin(), m->second.end());
    }
    auto res = followups_.enqueue(row.session_key, row.id, core::FollowupMode::followup);
    if (res.action == core::EnqueueAction::start_now) start_turn(row, TurnInput{row.id, {}, 0});
  }
  followups_.set_options(live);
  hand_to_connection(elsewhere);
  auto pending = store_.pending_outbox();
  if (only_sessions) {
    std::erase_if(pending, [&](const store::OutboxRecord& r) {
      return !only_sessions->count(r.session_key) || delivery_.delivering(r.id);
    });
  }
  if (only_channel) {
    std::erase_if(pending, [&](const store::OutboxRecord& r) {
      return r.channel != *only_channel || delivery_.delivering(r.id);
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
  for (auto& [key, rows] : chains) delivery_.dispatch(std::move(rows));
}

std::size_t Pipeline::adopt_unfinished() {
  if (draining_ || !started_) return 0;
  const auto rows = store_.unfinished_inbound();
  std::unordered_set<std::int64_t> unfinished;
  newest_unfinished_seen_ = 0;
  for (const auto& row : rows) {
    unfinished.insert(row.id);
    newest_unfinished_seen_ = std::max(newest_unfinished_seen_, row.id);
  }
  // A row once finished never becomes unfinished again within a generation: forget it.
  std::erase_if(held_, [&](std::int64_t id) { return !unfinished.count(id); });
  return adopt_rows(rows, unfinished);
}

std::size_t Pipeline::adopt(const std::vector<std::int64_t>& ids) {
  if (draining_ || !started_) return 0;
  std::vector<store::InboxRecord> rows;
  std::unordered_set<std::int64_t> unfinished;
  for (auto id : ids) {
    if (held_.count(id)) continue;
    auto rec = store_.inbound(id);
    if (!rec || (rec->state != store::InboxState::pending &&
                 rec->state != store::InboxState::running)) {
      continue;
    }
    unfinished.insert(id);
    rows.push_back(std::move(*rec));
  }
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  return adopt_rows(rows, unfinished);
}

std::size_t Pipeline::adopt_rows(const std::vector<store::InboxRecord>& rows,
                                 const std::unordered_set<std::int64_t>& unfinished) {
  auto live = settings_.queue;
  auto unlimited = live;
  unlimited.cap = std::numeric_limits<std::size_t>::max();  // accepted already: never dropped
  followups_.set_options(unlimited);
  std::size_t adopted = 0;
  std::unordered_set<std::string> elsewhere;  // sessions for the replica with the connection
  for (const auto& row : rows) {
    if (held_.count(row.id)) continue;
    if (!runs_here(row.session_key)) continue;  // its holder runs it
    const auto lead = row.merged_into;
    if (lead != 0 && (unfinished.count(lead) || held_.count(lead))) continue;  // in its lead's
    if (!routes_.count(row.channel)) continue;  // runs when the channel comes back
    if (elsewhere.count(row.session_key) || served_elsewhere(row.channel)) {
      elsewhere.insert(row.session_key);  // and what comes after it in its session
      continue;
    }
    held_.insert(row.id);
    ++adopted;
    // Its user entry went into the transcript on the replica that accepted it.
    history_.forget(row.session_key);
    stop_now_if_asked(row);
    auto res = followups_.enqueue(row.session_key, row.id, core::FollowupMode::followup);
    if (res.action == core::EnqueueAction::start_now) start_turn(row, TurnInput{row.id, {}, 0});
  }
  followups_.set_options(live);
  if (adopted) spdlog::debug("cluster: took {} message(s) another replica accepted", adopted);
  hand_to_connection(elsewhere);
  return adopted;
}

void Pipeline::reset() {
  if (!running_.empty()) {
    spdlog::error("generation {} ends with {} turn(s) still running: they run again", generation_,
                  running_.size());
    interrupt_all("generation reset");
  }
  *gen_alive_ = false;
  gen_alive_ = std::make_shared<bool>(true);
  command_answers_.clear();
  if (debounce_timer_) executor_.cancel(*debounce_timer_);
  debounce_timer_.reset();
  // Whatever the debouncers still held is pending in the inbox: the next start replays it.
  debouncers_.flush_all();
  debouncers_ = core::DebouncerRegistry{};
  merged_.clear();
  followups_.clear();
  delivery_.reset();
  history_.clear();  // the next generation reads what it needs again
  running_.clear();
  held_.clear();
  claim_posted_ = false;  // claims_wanted_ stays: the next start asks for them
  last_active_.clear();
  run_seq_.clear();
  routes_.clear();
  draining_ = false;
  started_ = false;
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

}  // namespace drawbridge::pipeline
