#include "config/config.h"

#include <cstdint>
#include <limits>
#include <string>

#include "config/schema.h"

namespace drawbridge::config {

namespace {

using nlohmann::json;

template <typename T>
json describe_field(const schema::Field<T>& field) {
  const auto& rule = field.rule;
  json out = {{"type", schema::type_name(rule.type)}};
  if (rule.type == schema::Type::kStringArray) out["items"] = "string";
  if (rule.type == schema::Type::kStringMap) out["values"] = "string";
  if (rule.type == schema::Type::kInteger || rule.type == schema::Type::kNumber) {
    if (rule.min != std::numeric_limits<std::int64_t>::min()) out["minimum"] = rule.min;
    if (rule.max != std::numeric_limits<std::int64_t>::max()) out["maximum"] = rule.max;
  }
  if (!rule.one_of.empty()) {
    json values = json::array();
    for (const auto v : rule.one_of) values.push_back(std::string(v));
    out["enum"] = values;
  }
  if (rule.accept != nullptr || !rule.expected.empty()) {
    out["expected"] = schema::expected_text(rule);
  }
  if (rule.required) out["required"] = true;
  if (field.get != nullptr && !rule.required) {
    json value = field.get(T{});
    // An empty member behind a non-empty key stands for "absent" (a generated token, the
    // default agent): "" would be a default that does not validate.
    if (!(rule.non_empty && value == "")) out["default"] = std::move(value);
  }
  out["help"] = std::string(field.help);
  return out;
}

}  // namespace

json describe_schema() {
  json out = json::object();
  for (const auto& field : schema::config_fields()) {
    out[std::string(field.path)] = describe_field(field);
  }
  out["channels"]["default"] = schema::default_channels();
  for (const auto& kind : schema::channel_kinds()) {
    const std::string prefix = "channels." + std::string(kind.id);
    out[prefix] = {
        {"type", "object"}, {"help", std::string(kind.help)}, {"additionalKeys", kind.open}};
    for (const auto& field : schema::channel_fields()) {
      if (!schema::applies_to(field.only, kind.id)) continue;
      out[prefix + "." + std::string(field.path)] = describe_field(field);
    }
  }

  out["agents"]["default"] = schema::default_agents();
  out["agents.default"] = {
      {"type", "string"},
      {"default", Config{}.default_agent},
      {"help",
       "Agent id answering channels that name none; absent: \"main\" if defined, else "
       "the first id in sorted order"}};
  out["agents.<id>"] = {{"type", "object"},
                        {"help", "An agent backend; <id> is 1 to 64 of A-Z, a-z, 0-9, _ and -"}};
  for (const auto& field : schema::agent_fields()) {
    json entry = describe_field(field);
    if (!field.only.empty()) {
      json types = json::array();
      for (const auto& type : schema::agent_types()) {
        if (schema::applies_to(field.only, type.id)) types.push_back(std::string(type.id));
      }
      entry["agentTypes"] = types;
    }
    out["agents.<id>." + std::string(field.path)] = entry;
  }
  json types = json::object();
  for (const auto& type : schema::agent_types())
    types[std::string(type.id)] = std::string(type.help);
  out["agents.<id>.type"]["typeHelp"] = types;
  return out;
}

}  // namespace drawbridge::config
