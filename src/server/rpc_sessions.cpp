#include "server/rpc_sessions.h"

#include <algorithm>
#include <set>

#include "server/rpc_errors.h"

namespace drawbridge::server {

namespace {

using nlohmann::json;

constexpr std::size_t kMaxLabel = 512;  // OpenClaw's SessionsPatchParams.label

// The model an agent answers with, as OpenClaw's pickers show it.
json model_choice(const AgentCatalog::Agent& a) {
  if (!a.model.empty()) {
    return {{"id", a.model}, {"name", a.model}, {"provider", a.type}, {"available", true}};
  }
  return {{"id", a.type},
          {"name", a.type + " (drawbridge " + a.type + " agent)"},
          {"provider", "drawbridge"},
          {"available", true}};
}

const AgentCatalog::Agent* find_agent(const AgentCatalog& c, const std::string& id) {
  for (const auto& a : c.agents) {
    if (a.id == id) return &a;
  }
  return nullptr;
}

RpcError no_session(const std::string& method, const std::string& key) {
  return invalid(method + ": no session \"" + key + "\"");
}

std::optional<std::string> key_param(const json& params, std::string& err, bool required) {
  Params p(params);
  auto key = p.string("key", required, true, err);
  if (err.empty() && key) {
    if (auto why = check_sizes(*key, "", "", "", 0, "params")) err = *why;
  }
  return err.empty() ? key : std::nullopt;
}

}  // namespace

void SessionMethods::install(RpcMethods& rpc) {
  // The session list's change events, from now on (sessions.changed).
  rpc.add("sessions.subscribe", scope::read, [](const Caller& c, const json&) -> RpcOutcome {
    if (c.subscribe_sessions) c.subscribe_sessions();
    return json{{"subscribed", true}};
  });
  rpc.add("sessions.list", scope::read, [this](const Caller&, const json& p) { return list(p); });
  rpc.add("sessions.describe", scope::read,
          [this](const Caller&, const json& p) { return describe(p); });
  rpc.add("sessions.create", scope::write,
          [this](const Caller&, const json& p) { return create(p); });
  rpc.add("sessions.reset", scope::write,
          [this](const Caller&, const json& p) { return reset(p); });
  rpc.add("sessions.patch", scope::write,
          [this](const Caller&, const json& p) { return patch(p); });
  rpc.add("agents.list", scope::read, [this](const Caller&, const json&) { return agents_list(); });
  rpc.add("agent.identity.get", scope::read,
          [this](const Caller&, const json& p) { return agent_identity(p); });
  rpc.add("models.list", scope::read, [this](const Caller&, const json&) { return models_list(); });
  rpc.add("commands.list", scope::read, [](const Caller&, const json&) -> RpcOutcome {
    // The chat commands the pipeline answers itself, in every channel.
    auto command = [](const char* name, const char* description, const char* category) {
      return json{{"name", name},    {"description", description}, {"source", "native"},
                  {"scope", "text"}, {"acceptsArgs", false},       {"category", category}};
    };
    return json{{"commands",
                 {command("stop", "Stop the reply being written in this session", "session"),
                  command("status", "Show the gateway's state", "status"),
                  command("restart", "Restart the gateway: drain, then carry on", "management")}}};
  });
}

json SessionMethods::row(const pipeline::SessionInfo& s, const AgentCatalog& catalog) const {
  json r = {{"key", s.session_key},
            {"sessionId", s.session_key},
            {"kind", "direct"},
            {"displayName", s.label.empty() ? s.session_key : s.label},
            {"agentId", catalog.default_agent},
            {"createdAt", s.created_at_ms},
            {"updatedAt", s.updated_at_ms},
            {"lastActivityAt", s.updated_at_ms}};
  if (!s.label.empty()) r["label"] = s.label;
  if (!s.last_text.empty()) r["lastMessagePreview"] = s.last_text;
  if (const auto* a = find_agent(catalog, catalog.default_agent)) {
    const json m = model_choice(*a);
    r["model"] = m["id"];
    r["modelProvider"] = m["provider"];
  }
  bool running = false;
  for (const auto& run : pipeline_.active_runs()) {
    if (run.session_key == s.session_key) {
      running = true;
      r["lastRunId"] = run.run_id;
    }
  }
  if (running) r["status"] = "running";
  return r;
}

RpcOutcome SessionMethods::list(const json& params) {
  Params p(params);
  std::string err;
  auto limit = p.integer("limit", 1, 1000, err);
  auto offset = err.empty() ? p.integer("offset", 0, 1'000'000, err) : std::nullopt;
  auto spawned_by = err.empty() ? p.string("spawnedBy", false, false, err) : std::nullopt;
  auto search = err.empty() ? p.string("search", false, false, err) : std::nullopt;
  if (!err.empty()) return invalid(err);
  const auto catalog = control_.agent_catalog();
  json rows = json::array();
  // drawbridge's agents start no sessions of their own: a list of those is empty.
  if (!spawned_by) {
    try {
      for (const auto& s : pipeline_.list_sessions(static_cast<std::size_t>(limit.value_or(100)),
                                                   static_cast<std::size_t>(offset.value_or(0)))) {
        if (search && !search->empty() && s.session_key.find(*search) == std::string::npos &&
            s.label.find(*search) == std::string::npos) {
          continue;
        }
        rows.push_back(row(s, catalog));
      }
    } catch (const std::exception& e) {
      return store_unavailable(e);
    }
  }
  json defaults = {{"contextTokens", nullptr}};
  if (const auto* a = find_agent(catalog, catalog.default_agent)) {
    const json m = model_choice(*a);
    defaults["model"] = m["id"];
    defaults["modelProvider"] = m["provider"];
  }
  const auto count = rows.size();
  return json{{"ts", pipeline_.clock().wall_ms()},
              {"path", ""},
              {"count", count},
              {"defaults", std::move(defaults)},
              {"sessions", std::move(rows)}};
}

RpcOutcome SessionMethods::describe(const json& params) {
  std::string err;
  auto key = key_param(params, err, true);
  if (!key) return invalid(err);
  try {
    auto s = pipeline_.session_summary(*key);
    if (!s) return json{{"session", nullptr}};
    return json{{"session", row(*s, control_.agent_catalog())}};
  } catch (const std::exception& e) {
    return store_unavailable(e);
  }
}

RpcOutcome SessionMethods::create(const json& params) {
  std::string err;
  auto key = key_param(params, err, false);
  Params p(params);
  auto label = err.empty() ? p.string("label", false, false, err) : std::nullopt;
  if (!err.empty()) return invalid(err);
  if (label && label->size() > kMaxLabel) {
    return invalid("params.label: longer than " + std::to_string(kMaxLabel) + " bytes");
  }
  if (!key) {
    return invalid("params.key: required (drawbridge names no sessions itself; pick a key)");
  }
  try {
    pipeline_.create_session(*key, label.value_or(""));
    auto s = pipeline_.session_summary(*key);
    json out = {{"ok", true}, {"key", *key}, {"sessionId", *key}};
    if (s) out["entry"] = row(*s, control_.agent_catalog());
    return out;
  } catch (const std::exception& e) {
    return store_unavailable(e);
  }
}

RpcOutcome SessionMethods::reset(const json& params) {
  std::string err;
  auto key = key_param(params, err, true);
  if (!key) return invalid(err);
  try {
    if (!pipeline_.reset_session(*key)) return no_session("sessions.reset", *key);
    return json{{"ok", true}, {"key", *key}, {"sessionId", *key}};
  } catch (const std::exception& e) {
    return store_unavailable(e);
  }
}

RpcOutcome SessionMethods::patch(const json& params) {
  std::string err;
  auto key = key_param(params, err, true);
  if (!key) return invalid(err);
  static const std::set<std::string, std::less<>> kIgnored = {"key", "agentId", "expectedSessionId",
                                                              "expectedLifecycleRevision"};
  std::optional<std::string> label;
  for (const auto& [name, value] : params.items()) {
    if (kIgnored.count(name) != 0) continue;
    if (name == "label") {
      if (value.is_null()) {
        label = "";
      } else if (value.is_string() && !value.get_ref<const std::string&>().empty() &&
                 value.get_ref<const std::string&>().size() <= kMaxLabel) {
        label = value.get<std::string>();
      } else {
        return invalid("params.label: expected a string of 1 to 512 bytes, or null");
      }
      continue;
    }
    // Model, thinking level, verbosity and the rest belong to the agent in drawbridge.
    return invalid("sessions.patch: drawbridge has no per-session \"" + name.substr(0, 64) +
                   "\"; set it on the agent in the config (agents.<id>)");
  }
  try {
    if (label && !pipeline_.label_session(*key, *label)) return no_session("sessions.patch", *key);
    auto s = pipeline_.session_summary(*key);
    if (!s) return no_session("sessions.patch", *key);
    return json{{"ok", true}, {"key", *key}, {"entry", row(*s, control_.agent_catalog())}};
  } catch (const std::exception& e) {
    return store_unavailable(e);
  }
}

RpcOutcome SessionMethods::agents_list() {
  const auto c = control_.agent_catalog();
  json agents = json::array();
  bool has_default = false;
  for (const auto& a : c.agents) {
    has_default = has_default || a.id == c.default_agent;
    // Every agent names its model (the dashboard's composer waits for one): an
    // OpenAI-compatible agent's model, else the agent type, as models.list lists them.
    json entry = {{"id", a.id},
                  {"name", a.id},
                  {"kind", "agent"},
                  {"model", {{"primary", model_choice(a)["id"]}}}};
    agents.push_back(std::move(entry));
  }
  const std::string default_id =
      has_default || c.agents.empty() ? c.default_agent : c.agents.front().id;
  if (agents.empty()) agents.push_back({{"id", default_id}, {"name", default_id}});
  return json{{"defaultId", default_id.empty() ? "main" : default_id},
              {"mainKey", "main"},
              {"scope", "per-sender"},
              {"agents", std::move(agents)}};
}

RpcOutcome SessionMethods::agent_identity(const json& params) {
  Params p(params);
  std::string err;
  auto agent_id = p.string("agentId", false, true, err);
  if (!err.empty()) return invalid(err);
  const auto c = control_.agent_catalog();
  std::string id = agent_id.value_or(c.default_agent);
  if (id.empty()) id = "main";
  // An id the config does not name (OpenClaw's "main" on a gateway whose default is another)
  // still gets a name: the picker shows it, and chat goes to the channel's agent anyway.
  return json{{"agentId", id},
              {"name", id},
              {"nameSource", find_agent(c, id) ? "config" : "default"},
              {"avatarStatus", "none"}};
}

RpcOutcome SessionMethods::models_list() {
  const auto c = control_.agent_catalog();
  json models = json::array();
  std::set<std::string> seen;
  for (const auto& a : c.agents) {
    json m = model_choice(a);
    if (seen.insert(m["id"].get<std::string>()).second) models.push_back(std::move(m));
  }
  return json{{"models", std::move(models)}};
}

}  // namespace drawbridge::server
