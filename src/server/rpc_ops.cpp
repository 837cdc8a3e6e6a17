#include "server/rpc_ops.h"

#include <algorithm>
#include <chrono>
#include <limits>
#include <map>

#include "config/edit.h"
#include "config/json_schema.h"
#include "server/control_json.h"
#include "server/rpc_errors.h"

namespace drawbridge::server {

using nlohmann::json;

namespace {

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The names OpenClaw's pages show for drawbridge's channel kinds.
std::string channel_label(const std::string& kind) {
  if (kind == "local") return "Local";
  if (kind == "telegram") return "Telegram";
  if (kind == "irc") return "IRC";
  return kind;
}

}  // namespace

std::pair<std::string, std::string> channel_kind_and_account(const std::string& channel_id) {
  const auto colon = channel_id.find(':');
  if (colon == std::string::npos || colon + 1 >= channel_id.size()) return {channel_id, "default"};
  return {channel_id.substr(0, colon), channel_id.substr(colon + 1)};
}

void OpsMethods::install(RpcMethods& rpc) {
  rpc.add("logs.tail", scope::read, [this](const Caller&, const json& p) { return logs_tail(p); });
  rpc.add("config.schema", scope::read,
          [this](const Caller&, const json&) { return config_schema(); });
  rpc.add("diagnostics.lanes", scope::read, [this](const Caller&, const json&) { return lanes(); });
  // OpenClaw's last agent heartbeat run; drawbridge runs no heartbeats, so there is none.
  rpc.add("last-heartbeat", scope::read,
          [](const Caller&, const json&) -> RpcOutcome { return json(nullptr); });
  rpc.add("system.info", scope::read, [this](const Caller&, const json&) { return system_info(); });
  rpc.add("system-presence", scope::read,
          [this](const Caller& c, const json&) { return presence(c); });
  rpc.add("channels.status", scope::read,
          [this](const Caller&, const json& p) { return channels_status(p); });
  // No channel of drawbridge pairs senders by code: nothing is ever pending.
  rpc.add("channels.pairing.list", scope::pairing, [](const Caller&, const json&) -> RpcOutcome {
    return json{{"accounts", json::array()},
                {"requests", json::array()},
                {"commandOwnerConfigured", false},
                {"limits", {{"pendingPerAccount", 0}, {"ttlMs", 0}}}};
  });
}

RpcOutcome OpsMethods::logs_tail(const json& params) {
  Params p(params);
  std::string err;
  auto cursor = p.integer("cursor", 0, std::numeric_limits<std::int64_t>::max(), err);
  auto limit = err.empty() ? p.integer("limit", 1, kMaxTailLines, err) : std::nullopt;
  auto max_bytes = err.empty() ? p.integer("maxBytes", 1, kMaxTailBytes, err) : std::nullopt;
  if (!err.empty()) return invalid(err);
  LogTailRequest r;
  if (cursor) r.cursor = static_cast<std::uint64_t>(*cursor);
  if (limit) r.limit = static_cast<std::size_t>(*limit);
  if (max_bytes) r.max_bytes = static_cast<std::size_t>(*max_bytes);
  try {
    return to_json(control_.logs_tail(r));
  } catch (const std::exception& e) {
    return control_failed("logs.tail", e);
  }
}

RpcOutcome OpsMethods::config_schema() {
  const auto& doc = config::json_schema();
  return json{{"schema", doc.schema},
              {"uiHints", doc.ui_hints},
              {"version", DRAWBRIDGE_VERSION},
              {"generatedAt", config::iso_timestamp(std::chrono::system_clock::now())}};
}

// OpenClaw's lanes are command queues; drawbridge's are its sessions: one turn at a time per
// session, later messages waiting behind it. Each session with a turn running is a lane, and
// `dynamic` sums them as OpenClaw sums its session lanes.
RpcOutcome OpsMethods::lanes() {
  const bool draining = pipeline_.draining();
  std::map<std::string, json> by_session;
  for (const auto& run : pipeline_.active_runs()) {
    auto& lane = by_session[run.session_key];
    if (lane.is_null()) {
      lane = {{"lane", "session:" + run.session_key},
              {"queuedCount", pipeline_.waiting_in(run.session_key)},
              {"activeCount", 0},
              {"maxConcurrent", 1},
              {"draining", draining},
              {"generation", pipeline_.generation()},
              {"blockedBy", nullptr},
              {"runs", json::array()}};
    }
    lane["activeCount"] = lane["activeCount"].get<int>() + 1;
    lane["runs"].push_back({{"runId", run.run_id}, {"startedAtMs", run.started_at_ms}});
  }
  json lanes = json::array();
  std::size_t active = 0, queued = 0, queued_lanes = 0;
  for (auto& [key, lane] : by_session) {
    active += lane["activeCount"].get<std::size_t>();
    const auto waiting = lane["queuedCount"].get<std::size_t>();
    queued += waiting;
    if (waiting > 0) ++queued_lanes;
    lanes.push_back(std::move(lane));
  }
  return json{{"ts", now_ms()},
              {"lanes", std::move(lanes)},
              {"dynamic", by_session.empty() ? json(nullptr)
                                             : json{{"laneCount", by_session.size()},
                                                    {"activeCount", active},
                                                    {"queuedCount", queued},
                                                    {"queuedLaneCount", queued_lanes}}},
              // Work that is in no lane: waiting in the debouncer, or being delivered.
              {"debounced", pipeline_.debounced_count()},
              {"pendingDeliveries", pipeline_.pending_deliveries()},
              {"waitingTotal", pipeline_.waiting_count()}};
}

RpcOutcome OpsMethods::system_info() {
  try {
    return to_json(control_.system_info());
  } catch (const std::exception& e) {
    return control_failed("system.info", e);
  }
}

// OpenClaw lists the gateway itself and the clients that announced themselves. drawbridge
// knows the gateway and the caller; other connections are not listed.
RpcOutcome OpsMethods::presence(const Caller& caller) {
  SystemInfo info;
  try {
    info = control_.system_info();
  } catch (const std::exception& e) {
    return control_failed("system-presence", e);
  }
  const auto ts = now_ms();
  const std::string host = info.hostname.empty() ? "localhost" : info.hostname;
  const std::string version = info.version.empty() ? "unknown" : info.version;
  json self = {{"host", host},
               {"version", version},
               {"platform", "linux " + info.release},
               {"deviceFamily", "Linux"},
               {"mode", "gateway"},
               {"reason", "self"},
               {"instanceId", "drawbridge-" + std::to_string(info.pid)},
               {"text", "Gateway: " + host + " · app drawbridge " + version +
                            " · mode gateway · reason self"},
               {"ts", ts}};
  if (info.release.empty()) self.erase("platform");
  json you = {{"host", caller.client_id.empty() ? "unknown" : caller.client_id},
              {"mode", "operator"},
              {"reason", "connect"},
              {"roles", {"operator"}},
              {"text", "Client: " + (caller.client_id.empty() ? "unknown" : caller.client_id) +
                           " · mode operator · reason connect"},
              {"ts", ts}};
  json scopes = json::array();
  for (const auto& s : caller.scopes) {
    if (!s.empty()) scopes.push_back(s);
  }
  you["scopes"] = std::move(scopes);
  if (!caller.conn_id.empty()) you["instanceId"] = caller.conn_id;
  return json::array({std::move(self), std::move(you)});
}

// OpenClaw's ChannelsStatusResult: per channel kind its accounts. drawbridge runs one channel
// per account ("telegram", "telegram:work"); the states are the live links' own, so a probe
// would tell nothing more and `probe` is accepted without one.
RpcOutcome OpsMethods::channels_status(const json& params) {
  Params p(params);
  std::string err;
  p.boolean("probe", err);
  if (err.empty()) p.integer("timeoutMs", 0, std::numeric_limits<std::int64_t>::max(), err);
  auto only = err.empty() ? p.string("channel", false, true, err) : std::nullopt;
  if (!err.empty()) return invalid(err);
  StatusReport status;
  try {
    status = control_.status();
  } catch (const std::exception& e) {
    return control_failed("channels.status", e);
  }
  json order = json::array(), labels = json::object(), channels = json::object(),
       accounts = json::object(), defaults = json::object();
  for (const auto& ch : status.channels) {
    auto [kind, account] = channel_kind_and_account(ch.id);
    if (only && *only != kind) continue;
    const auto& l = ch.link;
    const bool running = l.state != "stopped" && l.state != "failed";
    const bool connected = l.state == "connected";
    json entry = {{"accountId", account},
                  {"enabled", true},
                  {"configured", true},
                  {"running", running},
                  {"connected", connected},
                  {"healthState", l.state.empty() ? "unknown" : l.state},
                  {"lastError", l.last_error.empty() ? json(nullptr) : json(l.last_error)}};
    if (!accounts.contains(kind)) {
      order.push_back(kind);
      labels[kind] = channel_label(kind);
      accounts[kind] = json::array();
      defaults[kind] = "default";
      channels[kind] = {{"configured", true}, {"running", false}, {"connected", false}};
    }
    auto& summary = channels[kind];
    summary["running"] = summary["running"].get<bool>() || running;
    summary["connected"] = summary["connected"].get<bool>() || connected;
    if (account == "default") {
      summary["state"] = entry["healthState"];
      summary["agent"] = ch.agent;
      summary["ready"] = ch.ready;
      summary["lastError"] = entry["lastError"];
    }
    accounts[kind].push_back(std::move(entry));
  }
  return json{{"ts", now_ms()},
              {"channelOrder", std::move(order)},
              {"channelLabels", std::move(labels)},
              {"channels", std::move(channels)},
              {"channelAccounts", std::move(accounts)},
              {"channelDefaultAccountId", std::move(defaults)}};
}

}  // namespace drawbridge::server
