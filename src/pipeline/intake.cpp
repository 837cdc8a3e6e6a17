#include "pipeline/pipeline.h"

#include <algorithm>

#include <spdlog/spdlog.h>

namespace drawbridge::pipeline {

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

}  // namespace

AcceptResult Pipeline::on_committed(const store::InsertInboundResult& res, bool& start_now) {
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
  if (!runs_here(res.record.session_key)) {
    // Another replica runs the session (it heard the notice), or nobody does yet: this one
    // claims it.
    ask_for(res.record.session_key);
    out.status = "queued";
    out.reason = "cluster";
    return out;
  }
  if (draining_ || !routes_.count(res.record.channel)) {
    // Journaled, not forgotten: the next generation's start() replays it.
    out.status = "queued";
    out.reason = "gateway-restarting";
    return out;
  }
  if (!held_.insert(res.record.id).second) {
    out.status = "queued";  // adopted already: the notice of another replica came first
    return out;
  }
  auto* debouncer = debounce_bypass_ ? nullptr : debouncers_.find(res.record.channel);
  if (debouncer != nullptr) {
    // Only the row id waits here; the store has the message, so a crash loses the timing only.
    debouncer->add(core::debounce_key(res.record.channel, res.record.chat_id), res.record.id,
                   clock_.now());
    arm_debounce_timer();
    out.status = "queued";
    out.reason = "debounce";
    return out;
  }
  auto q = enqueue(res.record, {}, start_now);
  out.status = q.status;
  out.reason = q.reason;
  return out;
}

AcceptResult Pipeline::enqueue(const store::InboxRecord& rec, std::vector<std::int64_t> members,
                               bool& start_now) {
  AcceptResult out;
  // Agents take no input mid-turn yet: "steer" waits for the turn like "followup".
  auto mode = settings_.queue_mode == core::FollowupMode::steer ? core::FollowupMode::followup
                                                                : settings_.queue_mode;
  if (!members.empty()) {
    // Durable with the round: a restart before the turn runs replays the rows as one again.
    write([lead = rec.id, members](store::Store& s) { s.set_merged(lead, members); });
    merged_[rec.id] = members;
  }
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
      // The caller starts the turn once its acknowledgement is out: the first delta follows
      // the ack. Rows merged into it wait in merged_: start_turn() takes them from there.
      start_now = true;
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

void Pipeline::release_batches(std::vector<core::InboundDebouncer::Batch> batches) {
  for (auto& batch : batches) {
    auto& items = batch.items;
    if (items.empty()) continue;
    const auto lead = items.back();
    std::vector<std::int64_t> members(items.begin(), items.end() - 1);
    std::optional<store::InboxRecord> rec;
    try {
      rec = store_.inbound(lead);
    } catch (const std::exception& e) {
      spdlog::error("cannot load inbound {}: {}", lead, e.what());
      ++metrics_.errors_total;
    }
    bool start_now = false;
    if (rec && routes_.count(rec->channel)) enqueue(*rec, std::move(members), start_now);
    if (start_now) {
      // Counted from now, not from when the post runs: a drain that flushed this batch and
      // then waits for turns sees it.
      const auto work = work_.start(core::WorkKind::turn,
                                    core::WorkInfo{"", rec->run_id, rec->session_key, "starting",
                                                   "debounced batch", clock_.now()});
      executor_.post([this, alive = gen_alive_, rec = *rec, work] {
        if (*alive) start_turn(rec, TurnInput{rec.id, {}, 0});
        work_.finish(work);  // after the turn's own work began: the count never touches zero
      });
    }
  }
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

}  // namespace drawbridge::pipeline
