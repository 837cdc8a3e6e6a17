#include "pipeline/pipeline.h"

#include <algorithm>
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
  // Queued callbacks of agents and channels check this flag: they may outlive the pipeline.
  *alive_ = false;
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

void Pipeline::add_channel(Channel* channel, Agent* agent, int max_message_chars) {
  routes_[channel->id()] = Route{channel, agent, max_message_chars};
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
  lanes_.clear();
  draining_ = false;
  std::size_t replayed = 0;
  for (const auto& row : store_.unfinished_inbound()) {
    if (!routes_.count(row.channel)) {
      spdlog::warn("inbound {} on channel {} waits: the channel is not configured", row.id,
                   row.channel);
      continue;
    }
    ++replayed;
    if (lanes_.enqueue(row.session_key, row.id)) start_turn(row);
  }
  auto pending = store_.pending_outbox();
  if (replayed || !pending.empty()) {
    spdlog::info("replaying {} unfinished message(s) and {} undelivered reply part(s)", replayed,
                 pending.size());
  }
  // Parts of one reply stay together and in order.
  std::map<std::string, std::vector<store::OutboxRecord>> chains;
  for (auto& row : pending) {
    std::string key = row.inbound_id ? std::to_string(row.inbound_id) : row.idem_key;
    chains[key].push_back(std::move(row));
  }
  for (auto& [key, rows] : chains) dispatch(std::move(rows));
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
    AcceptResult out = on_committed(*res);
    done(out);
    // The turn starts after the acknowledgement went out: its first delta follows the ack.
    if (out.status == "started") start_turn(res->record);
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
    if (res.record.state == store::InboxState::pending &&
        lanes_.active(res.record.session_key) == res.record.id) {
      out.status = "in_flight";
    }
    return out;
  }
  ++metrics_.inbound_total;
  if (draining_) {
    // Journaled, not forgotten: the next generation's start() replays it.
    out.status = "queued";
    out.reason = "gateway-restarting";
    return out;
  }
  if (lanes_.enqueue(res.record.session_key, res.record.id)) {
    out.status = "started";
  } else {
    out.status = "queued";
  }
  return out;
}

void Pipeline::start_turn(std::int64_t inbound_id) {
  std::optional<store::InboxRecord> rec;
  try {
    rec = store_.inbound(inbound_id);
  } catch (const std::exception& e) {
    spdlog::error("cannot load inbound {}: {}", inbound_id, e.what());
    ++metrics_.errors_total;
  }
  if (rec) start_turn(*rec);
}

void Pipeline::start_turn(const store::InboxRecord& record) {
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
  try {
    // The row stays "pending" while its turn runs: a restart re-runs pending rows either way,
    // and one commit less per message matters on the hot path. The transcript never holds a
    // partial reply (the assistant entry is written with the reply), so nothing needs repair.
    const bool history = route_it->second.agent->wants_history();
    for (auto& e : history ? store_.transcript(session, options_.history_limit)
                           : std::vector<store::TranscriptEntry>{}) {
      // User messages are journaled when accepted, before earlier turns answered: the history
      // of this turn is what came before it, then the message itself.
      if (e.role == "user" && e.inbound_id >= inbound_id) continue;
      req.history.push_back(HistoryEntry{std::move(e.role), std::move(e.text)});
    }
    req.history.push_back(HistoryEntry{"user", rec->text});
  } catch (const std::exception& e) {
    spdlog::error("inbound {}: cannot start its turn: {}", inbound_id, e.what());
    ++metrics_.errors_total;
    next_in_lane(session);
    return;
  }

  work_.begin(core::WorkKind::turn);
  ++metrics_.turns_started;
  RunningTurn& rt = running_[session];
  rt = RunningTurn{};
  rt.info = ActiveRun{rec->run_id, session, inbound_id, clock_.wall_ms()};
  rt.channel = rec->channel;

  auto alive = alive_;
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

  if (outcome.kind == TurnOutcome::Kind::aborted && rt.interrupted) {
    // Interrupted by a drain: the row is still pending and runs again in the next generation.
    ++metrics_.turns_aborted;
    finish_turn(session);
    return;
  }
  {
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
        write([rows, inbound_id, parts = std::move(parts), now = clock_.wall_ms()](
                  store::Store& s) { *rows = s.stage_reply(inbound_id, parts, now); });
        // The turn counts as work until its reply is committed and handed to delivery, so a
        // drain cannot slip between the two. A failed commit leaves the row unfinished: the
        // next start runs it again.
        after_commit([this, rows, session](const std::string& error) {
          if (error.empty()) dispatch(std::move(*rows));
          finish_turn(session);
        });
        return;
      }
      case TurnOutcome::Kind::aborted: {
        ++metrics_.turns_aborted;
        write([inbound_id](store::Store& s) {
          s.set_inbound_state(inbound_id, store::InboxState::aborted);
        });
        ChatEvent ev;
        ev.state = ChatEvent::State::aborted;
        ev.run_id = rt.info.run_id;
        ev.session_key = session;
        ev.error = outcome.error.empty() ? "aborted" : outcome.error;
        ev.ts_ms = clock_.wall_ms();
        after_commit([this, ev, session](const std::string&) {
          publish(ev);
          finish_turn(session);
        });
        return;
      }
    }
  }
  finish_turn(session);
}

void Pipeline::finish_turn(const std::string& session) {
  next_in_lane(session);
  work_.end(core::WorkKind::turn);
}

void Pipeline::next_in_lane(const std::string& session) {
  auto next = lanes_.finish(session);
  // While draining the waiting rows stay pending in the store for the next generation.
  if (next && !draining_) start_turn(*next);
}

void Pipeline::dispatch(std::vector<store::OutboxRecord> rows) {
  rows.erase(std::remove_if(rows.begin(), rows.end(),
                            [](const auto& r) { return r.state != store::OutboxState::pending; }),
             rows.end());
  if (rows.empty()) return;
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.part < b.part; });
  work_.begin(core::WorkKind::delivery);
  auto chain = std::make_shared<std::vector<store::OutboxRecord>>(std::move(rows));
  using Step = std::function<void(std::size_t, core::Duration)>;
  auto step = std::make_shared<Step>();
  auto alive = alive_;
  // Sends part i, then i+1 once i is settled; retries with backoff while the channel asks.
  // The step holds itself only weakly; pending callbacks hold it strongly.
  *step = [this, alive, chain, weak = std::weak_ptr<Step>(step)](std::size_t i,
                                                                  core::Duration delay) {
    if (!*alive) return;
    auto step = weak.lock();
    if (!step) return;
    if (i >= chain->size()) {
      work_.end(core::WorkKind::delivery);
      return;
    }
    const auto& row = (*chain)[i];
    auto route = routes_.find(row.channel);
    if (route == routes_.end()) {
      spdlog::error("reply {} for channel {} dropped: the channel is not configured",
                    row.idem_key, row.channel);
      (*step)(i + 1, options_.retry_initial);
      return;
    }
    OutboundPart p{row.id,      row.idem_key,    row.inbound_id, row.part, row.final_part,
                   row.channel, row.chat_id,     row.session_key, row.run_id, row.text};
    route->second.channel->send(p, [this, alive, chain, step, i, delay](SendStatus st,
                                                                         std::string err) {
      if (!*alive) return;
      const auto& row = (*chain)[i];
      try {
        switch (st) {
          case SendStatus::sent:
            // If this write is lost to a crash the part is sent again at the next start: the
            // documented window of a duplicate.
            write([id = row.id, now = clock_.wall_ms()](store::Store& s) { s.mark_sent(id, now); });
            ++metrics_.replies_sent;
            (*step)(i + 1, options_.retry_initial);
            return;
          case SendStatus::retry: {
            auto next = std::min(delay * 2, options_.retry_max);
            spdlog::warn("reply {} not sent ({}), retrying in {} ms", row.idem_key, err,
                         delay.count());
            executor_.schedule(delay, [step, i, next] { (*step)(i, next); });
            return;
          }
          case SendStatus::failed:
            write([id = row.id, now = clock_.wall_ms()](store::Store& s) {
              s.mark_failed(id, now);
            });
            ++metrics_.reply_send_failures;
            spdlog::error("reply {} could not be delivered: {}", row.idem_key, err);
            (*step)(i + 1, options_.retry_initial);
            return;
        }
      } catch (const std::exception& e) {
        spdlog::error("reply {}: cannot record delivery: {}", row.idem_key, e.what());
        ++metrics_.errors_total;
        (*step)(i + 1, options_.retry_initial);
      }
    });
  };
  (*step)(0, options_.retry_initial);
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
  for (auto id : lanes_.waiting(session_key)) {
    auto rec = store_.inbound(id);
    if (!rec || rec->run_id != run_id) continue;
    lanes_.remove_waiting(session_key, id);
    write([id](store::Store& s) { s.set_inbound_state(id, store::InboxState::aborted); });
    ++metrics_.turns_aborted;
    ChatEvent ev;
    ev.state = ChatEvent::State::aborted;
    ev.run_id = run_id;
    ev.session_key = session_key;
    ev.error = "aborted before it started";
    ev.ts_ms = clock_.wall_ms();
    after_commit([this, ev](const std::string&) { publish(ev); });
    aborted.push_back(run_id);
  }
  return aborted;
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
