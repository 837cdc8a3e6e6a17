// Pipeline: sessions on every replica (docs/DECISIONS.md "Replicas on PostgreSQL"): the
// claims of sessions, their takeover, the give-back of idle ones, and the sessions whose
// channel's connection another replica holds (IRC: it runs them).

#include <spdlog/spdlog.h>

#include <unordered_set>

#include "pipeline/pipeline.h"

namespace drawbridge::pipeline {

void Pipeline::ask_for(const std::string& session_key) {
  if (session_leases_ == nullptr) return;
  claims_wanted_.insert(session_key);
  if (draining_ || !started_) return;  // the next start asks
  post_claims();
}

void Pipeline::post_claims() {
  if (session_leases_ == nullptr || claim_posted_ || claims_wanted_.empty()) return;
  claim_posted_ = true;
  executor_.post([this, alive = gen_alive_] {
    if (!*alive) return;
    claim_posted_ = false;
    std::vector<std::string> wanted(claims_wanted_.begin(), claims_wanted_.end());
    claims_wanted_.clear();
    std::erase_if(wanted, [&](const std::string& s) { return session_leases_->holds(s); });
    if (wanted.empty()) return;
    session_leases_->claim_sessions(
        std::move(wanted),
        [this, alive](std::vector<SessionLeases::Taken> taken) {
          if (*alive) take_over_sessions(std::move(taken));
        },
        0, channels_served_elsewhere());
  });
}

void Pipeline::claim_free_sessions(bool newest_too) {
  if (session_leases_ == nullptr || draining_ || !started_) return;
  const std::int64_t up_to = newest_too ? 0 : claim_horizon_;
  claim_horizon_ = newest_unfinished_seen_;
  if (!newest_too && up_to == 0) return;  // nothing was waiting at the last look
  session_leases_->claim_sessions(
      {},
      [this, alive = gen_alive_](std::vector<SessionLeases::Taken> taken) {
        if (*alive) take_over_sessions(std::move(taken));
      },
      up_to, channels_served_elsewhere());
}

bool Pipeline::idle_here(const std::string& session,
                         const std::unordered_set<std::string>& busy) const {
  return !busy.count(session) && !running_.count(session) && !followups_.active(session) &&
         followups_.queued(session).empty() && !delivery_.delivering_to(session);
}

std::unordered_set<std::string> Pipeline::sessions_with_work() const {
  // A turn counts as work until its reply is committed and handed to delivery: a session with
  // work listed is not idle, however long its turn has run.
  std::unordered_set<std::string> busy;
  for (const auto& w : work_.list()) busy.insert(w.info.session);
  return busy;
}

void Pipeline::give_back(const std::vector<std::string>& sessions, bool announce) {
  for (const auto& session : sessions) {
    last_active_.erase(session);
    history_.forget(session);  // its next holder may write to it
  }
  session_leases_->release_sessions(sessions, announce);
}

std::size_t Pipeline::release_idle_sessions(core::Duration idle_for, std::size_t limit) {
  if (session_leases_ == nullptr || draining_ || !started_) return 0;
  const auto now = clock_.now();
  const auto busy = sessions_with_work();
  std::vector<std::string> idle;
  for (const auto& session : session_leases_->held_sessions()) {
    if (idle.size() >= limit) break;
    auto it = last_active_.find(session);
    if (it != last_active_.end() && now - it->second < idle_for) continue;
    if (idle_here(session, busy)) idle.push_back(session);
  }
  // A debounced row waits under its chat, not its session: none is given back meanwhile.
  if (idle.empty() || debouncers_.buffered_items() > 0) return 0;
  give_back(idle, false);
  return idle.size();
}

std::vector<std::string> Pipeline::channels_served_elsewhere() const {
  std::vector<std::string> out;
  for (const auto& [id, route] : routes_) {
    if (route.channel->served_elsewhere()) out.push_back(id);
  }
  return out;
}

bool Pipeline::served_elsewhere(const std::string& channel) const {
  auto it = routes_.find(channel);
  return it != routes_.end() && it->second.channel->served_elsewhere();
}

void Pipeline::hand_to_connection(const std::unordered_set<std::string>& sessions) {
  if (session_leases_ == nullptr || sessions.empty()) return;
  const auto busy = sessions_with_work();
  std::vector<std::string> idle;
  for (const auto& s : sessions) {
    if (session_leases_->holds(s) && idle_here(s, busy)) idle.push_back(s);
  }
  // A session with a turn of its own here keeps it; the next look at the inbox asks again.
  if (idle.empty() || debouncers_.buffered_items() > 0) return;
  spdlog::info("cluster: {} session(s) with messages of a channel another replica keeps the "
               "connection of: given back to it",
               idle.size());
  give_back(idle, true);
}

void Pipeline::connection_taken() {
  if (session_leases_ == nullptr || draining_ || !started_) return;
  // The sessions of this channel that waited for a replica with its connection.
  claim_free_sessions(true);
  try {
    adopt_unfinished();
  } catch (const std::exception& e) {
    spdlog::warn("cluster: cannot read the messages waiting for a connection: {}", e.what());
  }
}

void Pipeline::take_over_sessions(std::vector<SessionLeases::Taken> taken) {
  if (taken.empty()) return;
  std::vector<std::string> sessions;
  std::vector<std::string> count;
  for (auto& t : taken) {
    if (t.from_dead) count.push_back(t.session);
    sessions.push_back(std::move(t.session));
  }
  // Repaired in the next commit, which the fence guards: the dead holder's last batch
  // committed before the claim (store.h), and nothing of it can land after.
  auto repair = std::make_shared<store::Store::Repair>();
  write([sessions, count = std::move(count), repair](store::Store& s) {
    *repair = s.repair_sessions(sessions, count);
  });
  after_commit([this, alive = gen_alive_, sessions, repair](const std::string& error) {
    if (!*alive) return;
    if (!error.empty()) {
      // The fence refused (this replica lost its presence: the runtime ends it) or the store
      // failed: the sessions stay held, and their rows wait for this replica's next start.
      spdlog::error("cluster: {} session(s) taken but not run: {}", sessions.size(), error);
      return;
    }
    if (repair->removed_entries > 0) {
      spdlog::warn("cluster: took {} session(s) from a replica that died; removed {} dangling "
                   "transcript entr(ies)",
                   sessions.size(), repair->removed_entries);
    }
    run_taken(sessions);
  });
}

void Pipeline::run_taken(const std::vector<std::string>& sessions) {
  if (draining_ || !started_) return;  // the next start runs what this replica holds
  const std::unordered_set<std::string> only(sessions.begin(), sessions.end());
  for (const auto& s : sessions) {
    history_.forget(s);  // other replicas wrote to them
    touch(s);
  }
  in_takeover_ = true;
  struct End {
    bool& flag;
    ~End() { flag = false; }
  } end{in_takeover_};
  try {
    start_work(&only);
  } catch (const std::exception& e) {
    spdlog::error("cluster: cannot read the work of {} session(s) taken: {}", sessions.size(),
                  e.what());
  }
}

}  // namespace drawbridge::pipeline
