#include "config/diff.h"

#include <algorithm>
#include <string_view>
#include <utility>

#include "config/schema.h"

namespace drawbridge::config {

namespace {

using nlohmann::json;

std::string join(const std::string& prefix, const std::string& key) {
  return prefix.empty() ? key : prefix + "." + key;
}

void diff_into(const json& before, const json& after, const std::string& at,
               std::vector<std::string>& out) {
  if (before == after) return;
  if (!before.is_object() || !after.is_object()) {
    out.push_back(at);
    return;
  }
  for (const auto& [key, value] : before.items()) {
    const auto other = after.find(key);
    if (other == after.end()) {
      out.push_back(join(at, key));
    } else {
      diff_into(value, *other, join(at, key), out);
    }
  }
  for (const auto& [key, value] : after.items()) {
    if (!before.contains(key)) out.push_back(join(at, key));
  }
}

// Walks `object` along the dotted `path`, creating objects on the way. Only schema row paths
// are split here: channel and agent ids are used as single keys by the callers.
void set_at(json& object, std::string_view path, json value) {
  json* node = &object;
  while (true) {
    const auto dot = path.find('.');
    json& child = (*node)[std::string(path.substr(0, dot))];
    if (dot == std::string_view::npos) {
      child = std::move(value);
      return;
    }
    node = &child;
    path.remove_prefix(dot + 1);
  }
}

bool is_open_channel(const std::string& id) {
  const auto kinds = schema::channel_kinds();
  const auto kind =
      std::find_if(kinds.begin(), kinds.end(), [&](const schema::Kind& k) { return k.id == id; });
  return kind != kinds.end() && kind->open;
}

json effective_channel(const ChannelSettings& channel) {
  json out = json::object();
  const auto rows = schema::channel_fields();
  for (const auto& row : rows) {
    if (!schema::applies_to(row.only, channel.id) || row.get == nullptr) continue;
    set_at(out, row.path, row.get(channel));
  }
  if (!is_open_channel(channel.id) || !channel.raw.is_object()) return out;
  for (auto it = channel.raw.begin(); it != channel.raw.end(); ++it) {
    const std::string& key = it.key();
    const bool has_row = std::any_of(rows.begin(), rows.end(), [&](const auto& row) {
      return schema::applies_to(row.only, channel.id) && row.path == key;
    });
    // Keys of adapters not written yet: the running channel reads them from raw.
    if (!has_row) out[key] = *it;
  }
  return out;
}

json effective_agent(const AgentSettings& agent) {
  json out = json::object();
  for (const auto& row : schema::agent_fields()) {
    if (!schema::applies_to(row.only, agent.type) || row.get == nullptr) continue;
    set_at(out, row.path, row.get(agent));
  }
  return out;
}

}  // namespace

std::vector<std::string> diff_paths(const json& before, const json& after) {
  std::vector<std::string> out;
  diff_into(before, after, "", out);
  std::sort(out.begin(), out.end());
  return out;
}

json effective_json(const Config& config) {
  json out = json::object();
  for (const auto& row : schema::config_fields()) {
    if (row.get == nullptr || row.path == "$schema" || row.path == "meta") continue;
    set_at(out, row.path, row.get(config));
  }
  json& channels = out["channels"] = json::object();
  for (const auto& [id, channel] : config.channels) channels[id] = effective_channel(channel);
  json& agents = out["agents"] = json::object();
  for (const auto& [id, agent] : config.agents) agents[id] = effective_agent(agent);
  agents["default"] = config.default_agent;
  return out;
}

}  // namespace drawbridge::config
