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

Pipeline::Pipeline(core::Clock& clock, core::Executor& executor, store::Store& store,
                   BatchRunner& writer, PipelineOptions options)
    : clock_(clock),
      executor_(executor),
      store_(store),
      writer_(writer),
      options_(options),
      round_(executor, writer),
      delivery_(clock, executor, round_, routes_, metrics_,
                [this](ChatEvent ev) { publish(std::move(ev)); },
                {options.retry_initial, options.retry_max}),
      history_(options.history_limit, options.history_sessions, options.history_bytes) {
  round_.on_error([this](const std::string& error, std::size_t writes) {
    spdlog::error("commit failed, {} write(s) not done: {}", writes, error);
    ++metrics_.errors_total;
  });
}

Pipeline::~Pipeline() {
  // Queued callbacks of agents and channels check this flag: they may outlive the pipeline.
  *gen_alive_ = false;
  // Commit what the last round wrote; its callbacks would reach channels that may be gone,
  // and the next start replays whatever was not delivered.
  round_.finish();
}

std::optional<std::string> Pipeline::load_cursor(const std::string& key) {
  return store_.get_value("cursor." + key);
}

void Pipeline::save_cursor(const std::string& key, std::string value,
                           std::function<void(const std::string& error)> done,
                           std::optional<CursorFence> fence) {
  if (!fence) {
    write([key = "cursor." + key, value = std::move(value)](store::Store& s) {
      s.set_value(key, value);
    });
    after_commit(std::move(done));
    return;
  }
  // Written by the store thread, read after the commit on the loop (the commit orders them).
  auto refused = std::make_shared<bool>(false);
  write([key = "cursor." + key, value = std::move(value), fence = *fence,
         now = clock_.wall_ms(), refused](store::Store& s) {
    *refused = !s.set_value_fenced(key, value, fence.lease, fence.epoch, now);
  });
  after_commit([done = std::move(done), refused, fence = *fence](const std::string& error) {
    if (!error.empty() || !*refused) return done(error);
    done(std::string(kFenced) + ": lease " + fence.lease + " is no longer at epoch " +
         std::to_string(fence.epoch));
  });
}

void Pipeline::flush() { round_.flush(); }

void Pipeline::flush_and_wait() { round_.flush_and_wait(); }

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

bool Pipeline::set_agent(const std::string& channel, Agent* agent, std::string agent_id) {
  auto it = routes_.find(channel);
  if (it == routes_.end()) return false;
  it->second.agent = agent;
  it->second.agent_id = std::move(agent_id);
  return true;
}

std::string Pipeline::agent_of(const std::string& channel) const {
  auto it = routes_.find(channel);
  return it == routes_.end() ? std::string() : it->second.agent_id;
}

void Pipeline::add_channel(Channel* channel, Agent* agent, int max_message_chars,
                           std::string agent_id, int history_limit) {
  const bool returning = started_ && !routes_.count(channel->id());
  routes_[channel->id()] =
      Route{channel, agent, std::move(agent_id), max_message_chars, history_limit};
  if (settings_.inbound_debounce > core::Duration::zero() && !debounce_bypass_) {
    debouncers_.add(channel->id(), settings_.inbound_debounce);
  }
  // Added by a hot reload while the generation runs: what waited for it runs now.
  if (returning && !draining_) {
    if (session_leases_ == nullptr) {
      replay(channel->id());
    } else {
      const auto held = session_leases_->held_sessions();
      const std::unordered_set<std::string> mine(held.begin(), held.end());
      replay(channel->id(), {}, &mine);
    }
  }
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

namespace {

bool is_stop_command(std::string_view text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) {
    text.remove_prefix(1);
  }
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) {
    text.remove_suffix(1);
  }
  return text == "/stop";
}

}  // namespace

void Pipeline::stop_now_if_asked(const store::InboxRecord& rec) {
  if (!is_stop_command(rec.text)) return;
  // "/stop" ends the session's running turn now, not when its own turn comes (it waits
  // behind the very turn it stops); that turn only answers (run_command).
  command_answers_[rec.id] =
      abort(rec.session_key, "").empty() ? "Nothing was running." : "Stopped.";
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
  std::optional<std::string> announce;
  if (session_leases_ && !session_leases_->holds(m.session_key)) {
    announce = work_channel_;
  }
  write([row = std::move(row), res, now = clock_.wall_ms(),
         announce = std::move(announce)](store::Store& s) {
    *res = s.insert_inbound(row, now);
    // Delivered at the commit: the active replica reads the row it names.
    if (announce && !res->duplicate) s.notify(*announce, std::to_string(res->record.id));
  });
  after_commit([this, res, done = std::move(done)](const std::string& error) {
    if (!error.empty()) {
      AcceptResult failed;
      failed.error = error;
      done(failed);
      return;
    }
    const auto& rec = res->record;
    if (!res->duplicate) {
      history_.append(rec.session_key, store::TranscriptEntry{0, rec.session_key, "user", rec.text,
                                                              rec.run_id, rec.id,
                                                              rec.received_at_ms});
    }
    if (!res->duplicate && runs_here(rec.session_key)) {
      touch(rec.session_key);
      stop_now_if_asked(rec);
    }
    bool start_now = false;
    auto result = on_committed(*res, start_now);
    auto alive = gen_alive_;
    done(std::move(result));
    // Right after the acknowledgement (its frame is queued first), not a loop turn later.
    if (start_now && *alive) start_turn(rec, TurnInput{rec.id, {}, 0});
  });
}

void Pipeline::send(const SendRequest& req, std::function<void(SendResult)> done) {
  if (!routes_.count(req.channel)) {
    throw std::invalid_argument("channel \"" + req.channel + "\" is not configured");
  }
  if (served_elsewhere(req.channel)) {
    // Its part could not go out from here (an IRC connection another replica keeps).
    auto why = "channel " + req.channel + " is kept by another replica (" +
               routes_.at(req.channel).channel->health().detail + "): send through it";
    executor_.post([done = std::move(done), why = std::move(why)] {
      done(SendResult{{}, {}, false, why});
    });
    return;
  }
  const std::string session = req.session_key.empty() ? req.to : req.session_key;
  if (session_leases_ && !session_leases_->holds(session)) {
    // Its parts are delivered by the replica that runs the session: this one, once it holds it.
    session_leases_->claim_session(
        session, [this, alive = gen_alive_, req, done = std::move(done)](
                     bool held, const std::string& holder) mutable {
          if (!*alive) return done(SendResult{{}, {}, false, "the gateway is restarting"});
          if (!held) {
            return done(SendResult{
                {}, {}, false,
                holder.empty() ? std::string("the session's lease could not be claimed: try again")
                               : "the session runs on replica " + holder + ": send through it"});
          }
          if (!routes_.count(req.channel)) {
            return done(SendResult{{}, {}, false, "channel \"" + req.channel + "\" is not configured"});
          }
          send(req, [this, alive, done = std::move(done),
                     session = req.session_key.empty() ? req.to : req.session_key](
                        SendResult r) mutable {
            done(std::move(r));
            // Whatever else the session has waiting runs here now too (the part just sent
            // is being delivered: the replay leaves it alone).
            if (*alive) take_over_sessions({{session, false}});
          });
        });
    return;
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
    if (error.empty() && inserted) {
      if (!rec.session_key.empty()) {
        history_.append(rec.session_key, store::TranscriptEntry{0, rec.session_key, "assistant",
                                                                rec.text, rec.run_id, 0,
                                                                rec.created_at_ms});
      }
      delivery_.dispatch({rec});
    }
    done(r);
  });
}

std::optional<std::string> Pipeline::passed_on_notice(const std::string& kind,
                                                      const std::string& session_key,
                                                      const std::string& run_id) {
  std::string out = kind + " " + std::to_string(session_key.size()) + " " + session_key + run_id;
  if (out.size() > store::Store::kNoticeBytes) return std::nullopt;
  return out;
}

void Pipeline::pass_on(const std::string& kind, const std::string& session_key,
                       const std::string& run_id) {
  auto notice = passed_on_notice(kind, session_key, run_id);
  if (!notice) {
    spdlog::warn("{} of session {}: too long to pass on to the replica that runs it", kind,
                 session_key.substr(0, 64));
    return;
  }
  write([channel = work_channel_, notice = std::move(*notice)](store::Store& s) {
    s.notify(channel, notice);
  });
}

bool Pipeline::act_on_notice(const std::string& payload) {
  const auto space = payload.find(' ');
  if (space == std::string::npos) return false;
  const std::string kind = payload.substr(0, space);
  if (kind != "abort" && kind != "reset") return false;
  const auto len_end = payload.find(' ', space + 1);
  if (len_end == std::string::npos || len_end - space - 1 > 8) return false;
  std::size_t len = 0;
  for (auto i = space + 1; i < len_end; ++i) {
    if (payload[i] < '0' || payload[i] > '9') return false;
    len = len * 10 + static_cast<std::size_t>(payload[i] - '0');
  }
  if (len > payload.size() - len_end - 1) return false;
  const std::string session = payload.substr(len_end + 1, len);
  const std::string run_id = payload.substr(len_end + 1 + len);
  if (!runs_here(session)) return false;
  abort(session, kind == "abort" ? run_id : std::string());
  if (kind == "reset") history_.forget(session);
  return true;
}

std::vector<std::string> Pipeline::abort(const std::string& session_key,
                                         const std::string& run_id) {
  std::vector<std::string> aborted;
  if (runs_elsewhere(session_key)) {
    pass_on("abort", session_key, run_id);
    return aborted;
  }
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
    close_dropped({id}, session_key, "aborted before it started");
    aborted.push_back(run_id);
  }
  return aborted;
}

void Pipeline::send_notice(const ActiveChat& chat, const std::string& text,
                           std::function<void(std::string error)> done) {
  delivery_.send_notice(new_run_id(), chat.channel, chat.chat_id, chat.session_key, text,
                        std::move(done));
}

HistoryPage Pipeline::history_page(const std::string& session_key, std::size_t limit,
                                   std::size_t max_bytes, std::int64_t before_id) {
  auto page = store_.transcript_page(session_key, limit, max_bytes, before_id);
  HistoryPage out;
  out.more = page.more;
  out.messages.reserve(page.entries.size());
  for (auto& e : page.entries) {
    out.messages.push_back(TranscriptMessage{e.id, std::move(e.role), std::move(e.text),
                                             std::move(e.run_id), e.created_at_ms,
                                             e.state == store::TranscriptState::interrupted});
  }
  return out;
}

std::string Pipeline::describe_work() const {
  return fmt::format("{} turn(s) running, {} waiting, {} debounced, {} deliver(ies)",
                     active_runs().size(), waiting_count(), debounced_count(),
                     pending_deliveries());
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
  if (run_seq_.size() >= kMaxOpenRuns && !run_seq_.count(event.run_id)) {
    // Runs whose last event never came (another replica's, a notice lost): numbered afresh.
    run_seq_.clear();
  }
  auto& seq = run_seq_[event.run_id];
  event.seq = seq++;
  const bool last = event.state != ChatEvent::State::delta && event.final_part;
  if (last) run_seq_.erase(event.run_id);
  auto listeners = listeners_;
  for (auto* l : listeners) l->on_chat_event(event);
}

}  // namespace drawbridge::pipeline
