#include "server/control_json.h"

namespace drawbridge::server {

using nlohmann::json;

json to_json(const RestartAnswer& a) {
  json out = {{"ok", a.ok}, {"status", a.status}};
  if (a.cycle) out["cycle"] = *a.cycle;
  if (a.due_in_ms) out["dueInMs"] = *a.due_in_ms;
  out["note"] = a.note;
  return out;
}

json to_json(const StopAnswer& a) {
  json out = {{"ok", true}, {"status", a.status}};
  if (!a.note.empty()) out["note"] = a.note;
  return out;
}

namespace {

// OpenClaw's account snapshot keys (running, connected, lastError) and drawbridge's state.
json link_json(const ChannelLink& l) {
  json out = {{"state", l.state},
              {"running", l.state != "stopped"},
              {"connected", l.state == "connected"},
              {"lastError", l.last_error.empty() ? json(nullptr) : json(l.last_error)},
              {"lastErrorAt", l.last_error_at_ms ? json(l.last_error_at_ms) : json(nullptr)},
              {"errors", l.errors}};
  if (l.conflicts) out["conflicts"] = l.conflicts;
  if (!l.detail.empty()) out["detail"] = l.detail;
  return out;
}

}  // namespace

json to_json(const HealthReport& h) {
  json channels = json::object();
  json order = json::array();
  for (const auto& c : h.channels) {
    channels[c.id] = {{"ready", c.ready}, {"agent", c.agent}, {"configured", true}};
    channels[c.id].update(link_json(c.link));
    order.push_back(c.id);
  }
  return {{"ok", true},
          {"ts", h.ts_ms},
          {"durationMs", h.duration_ms},
          {"channels", channels},
          {"channelOrder", order},
          {"defaultAgentId", h.default_agent}};
}

namespace {

template <class T>
json or_null(const std::optional<T>& v) {
  return v ? json(*v) : json(nullptr);
}

json store_json(const StatusReport::StoreCounts& c) {
  if (!c.error.empty()) return {{"error", c.error}};
  return {{"inboxTotal", c.inbox_total},         {"inboxUnfinished", c.inbox_unfinished},
          {"outboxPending", c.outbox_pending},   {"outboxSent", c.outbox_sent},
          {"outboxStale", c.outbox_stale},       {"sessionsSuspended", c.sessions_suspended},
          {"sessions", c.sessions}};
}

}  // namespace

json to_json(const StatusReport& s) {
  json channels = json::array();
  for (const auto& c : s.channels) {
    json entry = {{"id", c.id}, {"ready", c.ready}, {"agent", c.agent}, {"starts", c.starts}};
    entry.update(link_json(c.link));
    channels.push_back(std::move(entry));
  }
  json agents = json::array();
  for (const auto& a : s.agents) {
    json entry = {{"id", a.id}, {"type", a.type}};
    if (!a.endpoint.empty()) {
      entry["endpoint"] = a.endpoint;
      entry["model"] = a.model;
      entry["lastError"] = a.last_error.empty() ? json() : json(a.last_error);
      entry["lastErrorAt"] = a.last_error_at_ms > 0 ? json(a.last_error_at_ms) : json();
      entry["latencyMs"] = a.last_latency_ms >= 0 ? json(a.last_latency_ms) : json();
    }
    agents.push_back(std::move(entry));
  }
  json runs = json::array();
  for (const auto& r : s.active_runs) {
    runs.push_back(
        {{"runId", r.run_id}, {"sessionKey", r.session_key}, {"startedAtMs", r.started_at_ms}});
  }
  json out = {{"version", s.version},
              {"state", s.state},
              {"pid", s.pid},
              {"uptimeMs", s.uptime_ms},
              {"generation", s.generation},
              {"bind", s.bind},
              {"port", s.port},
              {"configPath", s.config_path},
              {"dataDir", s.data_dir},
              {"cleanStart", s.clean_start},
              {"channels", channels},
              {"agents", agents},
              {"activeRuns", runs},
              {"queueDepth", s.queue_depth},
              {"debounced", s.debounced},
              {"pendingDeliveries", s.pending_deliveries},
              {"connections", s.connections},
              {"store", store_json(s.store)},
              {"cluster", s.cluster},
              {"drain", s.drain},
              {"lastRestart", s.last_restart},
              {"restarts", s.restarts},
              {"binary", s.binary},
              {"supervisor", s.supervisor},
              {"restartMode", s.restart_mode},
              {"inheritedSocket", s.inherited_socket},
              {"lastUpdate", s.last_update},
              {"config", s.config},
              {"degraded", or_null(s.degraded)},
              {"lastStartError", or_null(s.last_start_error)}};
  if (s.scheduled_restart) {
    out["scheduledRestart"] = {{"reason", s.scheduled_restart->reason},
                               {"dueInMs", s.scheduled_restart->due_in_ms},
                               {"cycle", s.scheduled_restart->cycle}};
  }
  return out;
}

json to_json(const ReloadReport& r) {
  json actions = json::array();
  for (const auto& a : r.actions) actions.push_back({{"action", a.action}, {"target", a.target}});
  json paths = json::array();
  for (const auto& p : r.paths) {
    json one = {{"path", p.path}, {"kind", p.kind}, {"rule", p.rule}};
    if (p.action) one["action"] = *p.action;
    if (!p.target.empty()) one["target"] = p.target;
    paths.push_back(std::move(one));
  }
  json out = {{"kind", r.kind},
              {"mode", r.mode},
              {"applied", r.applied},
              {"actions", std::move(actions)},
              {"paths", std::move(paths)}};
  if (!r.note.empty()) out["note"] = r.note;
  if (!r.error.empty()) out["error"] = r.error;
  if (r.restart) {
    out["restart"] = {{"status", r.restart->status},
                      {"cycle", r.restart->cycle.value_or(0)},
                      {"dueInMs", r.restart->due_in_ms.value_or(0)}};
  }
  if (r.cancelled_restart) out["cancelledRestart"] = true;
  return out;
}

json to_json(const ConfigWriteDone& d) {
  json out = {{"ok", true},
              {"path", d.path},
              {"hash", d.hash},
              {"written", d.written},
              {"changedPaths", d.changed_paths},
              {"plan", to_json(d.plan)}};
  if (!d.dropped_placeholders.empty()) {
    std::string list;
    for (const auto& p : d.dropped_placeholders) list += (list.empty() ? "" : ", ") + p;
    out["droppedPlaceholders"] = d.dropped_placeholders;
    out["note"] =
        "not written (a redacted placeholder with no secret in the file to restore; the secret "
        "stays as it was): " +
        list;
  }
  if (!d.warning.empty()) out["warning"] = d.warning;
  return out;
}

json to_json(const ConfigSnapshot& c) {
  json errors = json::array();
  for (const auto& e : c.errors) {
    errors.push_back({{"path", e.path}, {"pointer", e.pointer}, {"message", e.message}});
  }
  json out = {{"path", c.path},
              {"exists", c.exists},
              {"raw", c.raw},
              {"rawRedacted", c.raw_redacted},
              {"hash", c.hash},
              {"config", c.config},
              {"sourceConfig", c.source_config},
              {"valid", c.valid},
              {"errors", std::move(errors)},
              {"appliedHash", c.applied_hash},
              {"pending", c.pending},
              {"degraded", c.degraded},
              {"reloadMode", c.reload_mode}};
  if (out["sourceConfig"].is_null()) out.erase("sourceConfig");
  return out;
}

json to_json(const LogTail& t) {
  json out = {{"file", t.file}, {"cursor", t.cursor}, {"size", t.size}, {"lines", t.lines},
              {"truncated", t.truncated}, {"reset", t.reset}};
  if (t.skipped_bytes > 0) out["skippedBytes"] = t.skipped_bytes;
  return out;
}

// There is no Node: nodeVersion says what runs instead, in the field the dashboard shows.
json to_json(const SystemInfo& s) {
  json out = {{"machineName", s.hostname},
              {"hostname", s.hostname},
              {"platform", "linux"},
              {"release", s.release},
              {"arch", s.arch},
              {"osLabel", s.os_label},
              {"port", s.port},
              {"nodeVersion", "n/a (drawbridge " + s.version + ")"},
              {"pid", s.pid},
              {"uptimeMs", s.uptime_ms},
              {"cpuCount", s.cpu_count},
              {"memoryTotalBytes", s.memory_total_bytes},
              {"memoryFreeBytes", s.memory_free_bytes}};
  if (!s.cpu_model.empty()) out["cpuModel"] = s.cpu_model;
  if (s.load_average) out["loadAverage"] = *s.load_average;
  if (!s.disk_path.empty()) {
    out["diskPath"] = s.disk_path;
    out["diskTotalBytes"] = s.disk_total_bytes;
    out["diskAvailableBytes"] = s.disk_available_bytes;
  }
  return out;
}

}  // namespace drawbridge::server
