#include "pipeline/pipeline.h"

#include <algorithm>
#include <cctype>
#include <memory>
#include <string>
#include <string_view>

#include <spdlog/spdlog.h>

namespace drawbridge::pipeline {
namespace {

// Appended to an interrupted assistant entry in the history a turn sends to its agent.
constexpr std::string_view kInterruptedMark = "\n\n[interrupted: this reply was cut short]";

}  // namespace

bool Pipeline::stages_as_sent(const std::string& channel) const {
  auto it = routes_.find(channel);
  return it != routes_.end() && it->second.channel->send_cannot_fail();
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

void Pipeline::start_turn(const store::InboxRecord& rec, TurnInput input) {
  const std::int64_t inbound_id = rec.id;
  const std::string session = rec.session_key;
  if (auto m = merged_.find(inbound_id); m != merged_.end()) {
    // Rows debounced into this one, then rows of a collect batch.
    input.members.insert(input.members.begin(), m->second.begin(), m->second.end());
    merged_.erase(m);
  }
  auto route_it = routes_.find(rec.channel);
  if (route_it == routes_.end() || route_it->second.agent == nullptr) {
    spdlog::error("inbound {}: no agent for channel {}", inbound_id, rec.channel);
    next_in_lane(session);
    return;
  }
  if (run_command(rec, input)) return;
  const bool wants_history = route_it->second.agent->wants_history();
  std::optional<std::vector<store::TranscriptEntry>> tail;
  if (wants_history) tail = history_.tail(session);
  if ((!wants_history || tail) && input.members.empty()) {
    run_turn(rec, std::move(input), {}, tail ? *tail : std::vector<store::TranscriptEntry>{});
    return;
  }
  if (replaying_) {
    // start() reads the store where it stands (the inbox and outbox too): no message waits on
    // the loop yet, and the replayed turns begin before start() returns, as before.
    std::vector<store::InboxRecord> earlier;
    std::vector<store::TranscriptEntry> history;
    try {
      for (auto id : input.members) {
        if (auto r = store_.inbound(id)) earlier.push_back(std::move(*r));
      }
      if (wants_history) history = store_.transcript(session, options_.history_limit);
    } catch (const std::exception& e) {
      spdlog::error("inbound {}: cannot start its turn: {}", inbound_id, e.what());
      ++metrics_.errors_total;
      next_in_lane(session);
      return;
    }
    if (wants_history) history_.seed(session, history);
    run_turn(rec, std::move(input), std::move(earlier), history);
    return;
  }
  // What the turn needs from the store is read on the store thread, in the round's batch: it
  // sees every write committed before it, and the entries committed after it reach the
  // SessionHistory seeded here in commit order. The turn counts as work meanwhile.
  struct Reads {
    std::vector<store::InboxRecord> earlier;
    std::vector<store::TranscriptEntry> history;
    std::string error;
  };
  auto reads = std::make_shared<Reads>();
  write([reads, members = input.members, session, wants_history,
         limit = options_.history_limit](store::Store& s) {
    try {
      for (auto id : members) {
        if (auto r = s.inbound(id)) reads->earlier.push_back(std::move(*r));
      }
      if (wants_history) reads->history = s.transcript(session, limit);
    } catch (const std::exception& e) {
      reads->error = e.what();  // a failed read must not fail the writes of the batch
    }
  });
  const auto work =
      work_.start(core::WorkKind::turn,
                  core::WorkInfo{"", rec.run_id, session, "starting", "history", clock_.now()});
  after_commit([this, alive = gen_alive_, rec, input = std::move(input), reads, work,
                wants_history](const std::string& error) mutable {
    if (!*alive) return;
    const std::string why = error.empty() ? reads->error : error;
    if (!why.empty()) {
      spdlog::error("inbound {}: cannot start its turn: {}", rec.id, why);
      ++metrics_.errors_total;
      held_.erase(rec.id);  // a replica's next look at the inbox runs it again
      for (auto id : input.members) held_.erase(id);
      finish_turn(rec.session_key, work);
      return;
    }
    if (wants_history) history_.seed(rec.session_key, reads->history);
    run_turn(rec, std::move(input), std::move(reads->earlier), reads->history);
    work_.finish(work);  // after the turn's own work began: the count never touches zero
  });
}

void Pipeline::run_turn(const store::InboxRecord& record, TurnInput input,
                        std::vector<store::InboxRecord> earlier,
                        const std::vector<store::TranscriptEntry>& history) {
  const store::InboxRecord* rec = &record;
  const std::int64_t inbound_id = rec->id;
  const std::string session = rec->session_key;
  auto route_it = routes_.find(rec->channel);
  if (route_it == routes_.end() || route_it->second.agent == nullptr) {
    spdlog::error("inbound {}: no agent for channel {}", inbound_id, rec->channel);
    next_in_lane(session);
    return;
  }
  TurnRequest req;
  req.run_id = rec->run_id;
  req.session_key = session;
  req.channel = rec->channel;
  req.chat_id = rec->chat_id;
  req.sender = rec->sender;
  req.text = rec->text;
  // Rows merged into this turn (debounce, collect) come first, in arrival order.
  const std::int64_t first_id =
      earlier.empty() ? inbound_id : std::min(earlier.front().id, inbound_id);
  if (!earlier.empty()) {
    std::string joined;
    for (const auto& r : earlier) joined += r.text + "\n";
    req.text = joined + rec->text;
  }
  // The row stays "pending" while its turn runs: a restart re-runs pending rows either way,
  // and one commit less per message matters on the hot path. The transcript never holds a
  // partial reply as complete: the assistant entry is written with the reply, or with what it
  // had said when the turn was aborted, marked interrupted (close_interrupted).
  for (const auto& e : history) {
    // User messages are journaled when accepted, before earlier turns answered: the history
    // of this turn is what came before it, then the message itself.
    if (e.role == "user" && e.inbound_id >= first_id) continue;
    if (e.state == store::TranscriptState::interrupted) {
      // A reply cut short goes to the agent marked as cut, never as a whole answer; one that
      // had said nothing leaves the user's message unanswered, which every endpoint accepts.
      if (!e.text.empty()) {
        req.history.push_back(HistoryEntry{e.role, e.text + std::string(kInterruptedMark)});
      }
      continue;
    }
    req.history.push_back(HistoryEntry{e.role, e.text});
  }
  // The channel's historyLimit keeps the newest entries only.
  if (const int limit = route_it->second.history_limit;
      limit > 0 && req.history.size() > static_cast<std::size_t>(limit)) {
    req.history.erase(req.history.begin(),
                      req.history.end() - static_cast<std::ptrdiff_t>(limit));
  }
  if (resume_pending_.count(session)) {
    req.history.push_back(HistoryEntry{
        "system", "The previous turn of this conversation was interrupted by a gateway "
                  "restart before its reply was finished."});
  }
  if (input.dropped > 0) {
    req.history.push_back(HistoryEntry{
        "system", "dropped " + std::to_string(input.dropped) +
                      " message(s): the queue of this conversation was full."});
  }
  for (const auto& r : earlier) req.history.push_back(HistoryEntry{"user", r.text});
  req.history.push_back(HistoryEntry{"user", rec->text});

  ++metrics_.turns_started;
  RunningTurn& rt = running_[session];
  rt = RunningTurn{};
  rt.info = ActiveRun{rec->run_id, session, inbound_id, clock_.wall_ms()};
  rt.channel = rec->channel;
  rt.chat_id = rec->chat_id;
  rt.members = std::move(input.members);
  for (const auto& r : earlier) rt.member_runs.push_back(r.run_id);
  rt.work = work_.start(core::WorkKind::turn,
                        core::WorkInfo{"", rec->run_id, session, "running",
                                       route_it->second.agent->describe() + " turn",
                                       clock_.now()});
  // Held from now until the reply's parts are enqueued: a drain waiting for deliveries cannot
  // slip between the end of the turn and its reply.
  rt.reservation = delivery_.reserve(std::to_string(inbound_id));

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

bool Pipeline::run_command(const store::InboxRecord& rec, const TurnInput& input) {
  std::string_view text = rec.text;
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) {
    text.remove_prefix(1);
  }
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) {
    text.remove_suffix(1);
  }
  if (!input.members.empty()) return false;
  std::string answer;
  bool request = false;
  if (text == "/stop") {
    // The abort happened as it was accepted (Pipeline::accept): its turn only answers.
    auto it = command_answers_.find(rec.id);
    answer = it != command_answers_.end() ? it->second : "Nothing was running.";
    if (it != command_answers_.end()) command_answers_.erase(it);
  } else if (text == "/status") {
    const auto waiting = waiting_count();
    answer = "drawbridge is running (generation " + std::to_string(generation_) + "): " +
             std::to_string(running_.size()) + " turn(s) running, " + std::to_string(waiting) +
             " message(s) waiting.";
  } else if (text != "/restart") {
    return false;
  } else if (!settings_.restart_command) {
    answer = "/restart is turned off on this gateway (commands.restart).";
  } else if (rec.id <= replay_horizon_ || rec.received_at_ms < generation_started_ms_) {
    // Sent before the last restart (or crash) and replayed by it: that restart answered it.
    // The row id decides even when the wall clock stepped back across the restart.
    answer = "The gateway has restarted since you asked.";
  } else {
    answer = "Restarting the gateway.";
    request = true;
  }
  ChatCommand cmd{std::string(text.substr(1)), rec.run_id, rec.session_key, rec.channel};
  auto rows = std::make_shared<std::vector<store::OutboxRecord>>();
  auto reservation = delivery_.reserve(std::to_string(rec.id));
  const bool marked = stages_as_sent(rec.channel);
  write([rows, id = rec.id, answer, marked, now = clock_.wall_ms()](store::Store& s) {
    *rows = marked ? s.stage_reply_as_sent(id, {answer}, now) : s.stage_reply(id, {answer}, now);
  });
  const auto session = rec.session_key;
  const auto work = work_.start(core::WorkKind::turn,
                                core::WorkInfo{"", rec.run_id, session, "running",
                                                std::string(text), clock_.now()});
  after_commit([this, alive = gen_alive_, rows, reservation, session, work, cmd, request, marked,
                answer, run = rec.run_id, id = rec.id](const std::string& error) {
    if (!*alive) return;
    if (error.empty()) {
      history_.append(session, store::TranscriptEntry{0, session, "assistant", answer, run, id,
                                                      clock_.wall_ms()});
      delivery_.dispatch(std::move(*rows), reservation, marked);
    } else {
      history_.forget(session);
      delivery_.release(reservation);
    }
    if (error.empty() && request && command_handler_) command_handler_(cmd);
    finish_turn(session, work);
  });
  return true;
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
    delivery_.release(reservation);
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
        // The user is told why instead of waiting forever; the notice is the reply. A reply
        // cut short keeps what was said, marked as cut, never passed off as complete.
        if (outcome.text.empty()) {
          parts = {"Sorry, I could not answer that: " + outcome.error};
        } else {
          parts = split_reply(outcome.text + "\n\n[reply cut short: " + outcome.error + "]",
                              route ? route->max_message_chars : 0);
        }
      }
      auto rows = std::make_shared<std::vector<store::OutboxRecord>>();
      std::string whole;
      for (const auto& p : parts) whole += p;
      // A channel whose send cannot fail gets its parts staged as sent: no third commit.
      const bool marked = stages_as_sent(rt.channel);
      close_members(store::InboxState::done);
      write([rows, inbound_id, parts = std::move(parts), marked, now = clock_.wall_ms()](
                store::Store& s) {
        // A channel whose send cannot fail: the parts are staged as sent, in this commit.
        *rows = marked ? s.stage_reply_as_sent(inbound_id, parts, now)
                       : s.stage_reply(inbound_id, parts, now);
      });
      if (resumed) {
        write([session, now = clock_.wall_ms()](store::Store& s) {
          s.set_session_state(session, "idle", now);
        });
      }
      // Merged rows have run ids of their own that clients may wait on: close them too.
      // The turn counts as work until its reply is committed and handed to delivery, so a
      // drain cannot slip between the two. A failed commit leaves the row unfinished: the
      // next start runs it again.
      after_commit([this, alive = gen_alive_, rows, session, work, reservation, marked,
                    inbound_id, whole = std::move(whole), member_runs = std::move(rt.member_runs),
                    members = rt.members, lead_run = rt.info.run_id](const std::string& error) {
        if (!*alive) return;
        if (error.empty()) {
          // What stage_reply appended to the transcript (nothing for an empty reply).
          if (!whole.empty()) {
            history_.append(session, store::TranscriptEntry{0, session, "assistant", whole,
                                                            lead_run, inbound_id,
                                                            clock_.wall_ms()});
          }
          for (const auto& run : member_runs) {
            ChatEvent ev;
            ev.state = ChatEvent::State::final;
            ev.run_id = run;
            ev.session_key = session;
            ev.message_id = "merged:" + lead_run;
            publish(ev);
          }
          delivery_.dispatch(std::move(*rows), reservation, marked);
        } else {
          history_.forget(session);
          delivery_.release(reservation);
          // A replica's next look at the inbox runs it again (a single gateway's next start).
          held_.erase(inbound_id);
          for (auto id : members) held_.erase(id);
        }
        finish_turn(session, work);
      });
      return;
    }
    case TurnOutcome::Kind::aborted: {
      ++metrics_.turns_aborted;
      close_members(store::InboxState::aborted);
      // What the reply had said is kept, marked interrupted (never stored as complete).
      auto partial =
          std::make_shared<std::string>(outcome.text.empty() ? rt.streamed : outcome.text);
      auto entry = std::make_shared<std::int64_t>(0);
      const auto now = clock_.wall_ms();
      write([inbound_id, partial, entry, now](store::Store& s) {
        *entry = s.close_interrupted(inbound_id, *partial, now);
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
      after_commit([this, alive = gen_alive_, ev, session, work, reservation, partial, entry,
                    inbound_id, now](const std::string& error) {
        if (!*alive) return;
        if (!error.empty()) {
          history_.forget(session);
        } else if (*entry != 0) {
          history_.append(session, store::TranscriptEntry{*entry, session, "assistant", *partial,
                                                          ev.run_id, inbound_id, now,
                                                          store::TranscriptState::interrupted});
        }
        publish(ev);
        delivery_.release(reservation);
        finish_turn(session, work);
      });
      return;
    }
  }
}

void Pipeline::finish_turn(const std::string& session, core::WorkId work) {
  // The next turn starts before this one stops counting: the tracker never touches zero
  // between two turns of a busy session.
  touch(session);
  next_in_lane(session);
  work_.finish(work);
}

void Pipeline::next_in_lane(const std::string& session) {
  auto next = followups_.on_turn_finished(session);
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

}  // namespace drawbridge::pipeline
