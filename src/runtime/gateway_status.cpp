#include "runtime/gateway_status.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <sstream>

#include "runtime/config_reloader.h"
#include "runtime/drain_runner.h"
#include "runtime/gateway.h"
#include "runtime/generation.h"
#include "runtime/hand_off.h"
#include "server/server.h"

namespace drawbridge::runtime {

using nlohmann::json;

server::Readiness readiness(const GatewayFacts& f, const GatewayParts& p) {
  server::Readiness r{true, {}, nullptr};
  auto detail = [&r](const char* key, json value) {
    if (r.details.is_null()) r.details = json::object();
    r.details[key] = std::move(value);
  };
  if (!p.reloader.file_errors().empty() || !p.reloader.degraded_reason().empty()) {
    // Serving on the config it had; a probe should still see that the file is broken.
    detail("config", p.reloader.config_health());
  }
  if (f.state != core::LifecycleState::running) {
    r.ready = false;
    r.reason = core::to_string(f.state);
    if (f.state == core::LifecycleState::failed && !f.last_start_error.empty()) {
      detail("error", f.last_start_error);
    }
    return r;
  }
  json waiting = json::array();
  json links = json::object();
  for (auto& [id, ch] : p.generation.channels()) {
    if (ch->ready()) continue;
    waiting.push_back(id);
    const auto h = ch->health();
    links[id] = {{"state", pipeline::link_state_name(h.state)}};
    if (!h.last_error.empty()) {
      links[id]["lastError"] = h.last_error;
      links[id]["lastErrorAt"] = h.last_error_at_ms;
    }
  }
  if (!waiting.empty()) {
    r.ready = false;
    r.reason = "channels";
    detail("channelsNotReady", waiting);
    detail("channels", links);
    detail("message", "channel(s) not ready: " + waiting.dump());
  }
  return r;
}

std::string status_line(const GatewayFacts& f, const GatewayParts& p) {
  std::string out = std::string(core::to_string(f.state)) + ", generation " +
                    std::to_string(f.generation) + ", " +
                    std::to_string(p.generation.channels().size()) + " channel(s)";
  if (!p.reloader.degraded_reason().empty()) {
    out += ", DEGRADED: config invalid, on last-known-good";
  }
  return out;
}

namespace {

server::ChannelLink link_of(const pipeline::Channel& ch) {
  const auto h = ch.health();
  return {pipeline::link_state_name(h.state), h.last_error, h.last_error_at_ms, h.errors,
          h.conflicts, h.detail};
}

}  // namespace

server::HealthReport health_report(const GatewayParts& p) {
  const auto t0 = p.clock.now();
  server::HealthReport h;
  for (auto& [id, ch] : p.generation.channels()) {
    h.channels.push_back({id, ch->ready(), p.pipeline.agent_of(id), link_of(*ch)});
  }
  p.store.counts();  // throws when the store cannot be read
  h.ts_ms = p.clock.wall_ms();
  h.duration_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(p.clock.now() - t0).count();
  h.default_agent = p.cfg.default_agent;
  return h;
}

server::AgentCatalog agent_catalog(const GatewayParts& p) {
  server::AgentCatalog c;
  c.default_agent = p.cfg.default_agent;
  for (auto& [id, a] : p.generation.agents()) {
    const auto h = a->health();
    c.agents.push_back({id, std::string(a->type()), h.model, h.endpoint});
  }
  for (auto& [id, ch] : p.generation.channels()) c.channels.push_back(id);
  return c;
}

server::StatusReport status_report(const GatewayFacts& f, const GatewayParts& p) {
  server::StatusReport s;
  for (auto& [id, ch] : p.generation.channels()) {
    s.channels.push_back(
        {id, ch->ready(), p.pipeline.agent_of(id), p.generation.starts(id), link_of(*ch)});
  }
  for (auto& [id, a] : p.generation.agents()) {
    const auto h = a->health();
    s.agents.push_back({id, std::string(a->type()), h.endpoint, h.model, h.last_error,
                        h.last_error_at_ms, h.last_latency_ms});
  }
  for (const auto& r : p.pipeline.active_runs()) {
    s.active_runs.push_back({r.run_id, r.session_key, r.started_at_ms});
  }
  try {
    auto c = p.store.counts();
    s.store = {c.inbox_total,  c.inbox_unfinished,   c.outbox_pending, c.outbox_sent,
               c.outbox_stale, c.sessions_suspended, c.sessions,       {}};
  } catch (const std::exception& e) {
    s.store.error = e.what();
  }
  s.version = DRAWBRIDGE_VERSION;
  s.state = core::to_string(f.state);
  s.pid = ::getpid();
  s.uptime_ms = f.uptime_ms;
  s.generation = f.generation;
  s.bind = bind_address(p.cfg.gateway.bind);
  s.port = p.server ? p.server->port() : p.cfg.gateway.port;
  s.config_path = f.config_path;
  s.data_dir = f.data_dir;
  s.clean_start = f.clean_start;
  s.queue_depth = p.pipeline.waiting_count();
  s.debounced = p.pipeline.debounced_count();
  s.pending_deliveries = p.pipeline.pending_deliveries();
  s.connections = p.server ? p.server->connection_count() : 0;
  s.drain = p.drain.status();
  s.last_restart = f.last_restart;
  s.restarts = f.restarts_total;
  s.binary = p.hand_off.self_exe();
  s.supervisor = f.supervisor;
  s.restart_mode = p.cfg.gateway.restart.mode;
  s.inherited_socket = f.inherited_socket;
  s.last_update = p.hand_off.last_update();
  s.config = p.reloader.config_health();
  if (!p.reloader.degraded_reason().empty()) s.degraded = p.reloader.degraded_reason();
  if (!f.last_start_error.empty()) s.last_start_error = f.last_start_error;
  if (auto w = p.scheduler.next_wakeup(); w && p.scheduler.pending()) {
    s.scheduled_restart = server::StatusReport::ScheduledRestart{
        p.scheduler.pending()->reason,
        std::max<std::int64_t>(
            0, std::chrono::duration_cast<std::chrono::milliseconds>(w->at - p.clock.now())
                   .count()),
        w->cycle};
  }
  return s;
}

std::string metrics_text(const GatewayFacts& f, const GatewayParts& p) {
  const auto& m = p.pipeline.metrics();
  std::ostringstream o;
  auto metric = [&](const char* name, const char* type, const char* help, auto value) {
    o << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n'
      << name << ' ' << value << '\n';
  };
  metric("drawbridge_inbound_messages_total", "counter",
         "Inbound messages committed to the inbox.", m.inbound_total);
  metric("drawbridge_inbound_duplicates_total", "counter",
         "Inbound messages recognised as duplicates and not run again.", m.inbound_duplicates);
  o << "# HELP drawbridge_turns_total Agent turns by outcome.\n"
       "# TYPE drawbridge_turns_total counter\n"
    << "drawbridge_turns_total{outcome=\"started\"} " << m.turns_started << '\n'
    << "drawbridge_turns_total{outcome=\"completed\"} " << m.turns_completed << '\n'
    << "drawbridge_turns_total{outcome=\"failed\"} " << m.turns_failed << '\n'
    << "drawbridge_turns_total{outcome=\"aborted\"} " << m.turns_aborted << '\n';
  metric("drawbridge_replies_sent_total", "counter", "Reply parts delivered to channels.",
         m.replies_sent);
  metric("drawbridge_reply_send_failures_total", "counter",
         "Reply parts a channel refused for good.", m.reply_send_failures);
  metric("drawbridge_replies_stale_total", "counter",
         "Undelivered reply parts not sent at a start because older than messages.replyTtlMs.",
         m.replies_stale);
  metric("drawbridge_sessions_suspended_total", "counter",
         "Sessions suspended after 3 interrupted restarts in a row.", m.sessions_suspended);
  metric("drawbridge_turns_active", "gauge", "Agent turns running now.",
         p.pipeline.active_runs().size());
  metric("drawbridge_queue_depth", "gauge", "Messages waiting for their session's turn.",
         p.pipeline.waiting_count());
  metric("drawbridge_deliveries_pending", "gauge", "Replies being delivered now.",
         p.pipeline.pending_deliveries());
  metric("drawbridge_restarts_total", "counter", "Gateway restarts in this process.",
         f.restarts_total);
  metric("drawbridge_generation", "gauge", "Generation of the running gateway (1 + restarts).",
         f.generation);
  metric("drawbridge_errors_total", "counter", "Errors on the message path.", m.errors_total);
  metric("drawbridge_websocket_connections", "gauge", "Open WebSocket connections.",
         p.server ? p.server->connection_count() : 0);
  metric("drawbridge_ready", "gauge", "1 when /readyz answers 200.",
         f.ready ? 1 : 0);
  metric("drawbridge_uptime_seconds", "gauge", "Seconds since the process started.",
         f.uptime_ms / 1000.0);
  // Per channel: its link state (one series per state, 1 for the current one), its errors and
  // the 409 Conflicts in a row (Telegram).
  using pipeline::LinkState;
  constexpr LinkState kStates[] = {LinkState::connecting, LinkState::connected,
                                   LinkState::conflict, LinkState::failed, LinkState::stopped,
                                   LinkState::standby};
  std::ostringstream state, errors, conflicts;
  for (auto& [id, ch] : p.generation.channels()) {
    const auto h = ch->health();
    std::string label;
    for (char c : id) {
      if (c == '"' || c == '\\') label += '\\';
      if (c == '\n') {
        label += "\\n";
        continue;
      }
      label += c;
    }
    for (auto st : kStates) {
      state << "drawbridge_channel_state{channel=\"" << label << "\",state=\""
            << pipeline::link_state_name(st) << "\"} " << (h.state == st ? 1 : 0) << '\n';
    }
    errors << "drawbridge_channel_errors_total{channel=\"" << label << "\"} " << h.errors << '\n';
    conflicts << "drawbridge_channel_conflicts{channel=\"" << label << "\"} " << h.conflicts
              << '\n';
  }
  o << "# HELP drawbridge_channel_state 1 for the channel's link state (connecting, connected, "
       "conflict, failed, stopped).\n# TYPE drawbridge_channel_state gauge\n"
    << state.str()
    << "# HELP drawbridge_channel_errors_total Errors of the channel's link since it was "
       "created.\n# TYPE drawbridge_channel_errors_total counter\n"
    << errors.str()
    << "# HELP drawbridge_channel_conflicts 409 Conflicts in a row (another poller or a "
       "webhook has the bot).\n# TYPE drawbridge_channel_conflicts gauge\n"
    << conflicts.str();
  return o.str();
}


}  // namespace drawbridge::runtime
