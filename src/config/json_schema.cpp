#include "config/json_schema.h"

#include <cctype>
#include <limits>
#include <vector>

#include "config/config.h"
#include "config/document.h"
#include "config/schema.h"

namespace drawbridge::config {

namespace {

using nlohmann::json;

std::string_view last_segment(std::string_view path) {
  const auto dot = path.rfind('.');
  return dot == std::string_view::npos ? path : path.substr(dot + 1);
}

std::string_view first_segment(std::string_view path) {
  return path.substr(0, path.find('.'));
}

// The JSON Schema of one rule's value (not the custom sections, built below).
json value_schema(const schema::Rule& rule) {
  constexpr auto lowest = std::numeric_limits<std::int64_t>::min();
  constexpr auto highest = std::numeric_limits<std::int64_t>::max();
  json out = {{"type", schema::type_name(rule.type)}};
  switch (rule.type) {
    case schema::Type::kInteger:
    case schema::Type::kNumber:
      if (rule.min != lowest) out["minimum"] = rule.min;
      if (rule.max != highest) out["maximum"] = rule.max;
      break;
    case schema::Type::kString:
      if (rule.non_empty) out["minLength"] = 1;
      if (!rule.one_of.empty()) {
        json values = json::array();
        for (const auto v : rule.one_of) values.push_back(std::string(v));
        // A rule that accepts more than its list (an IP literal for gateway.bind) offers the
        // list as examples: an enum would forbid the rest.
        out[rule.accept != nullptr ? "examples" : "enum"] = std::move(values);
      }
      break;
    case schema::Type::kStringArray:
      out["items"] = {{"type", "string"}, {"minLength", 1}};
      if (rule.non_empty) out["minItems"] = 1;
      break;
    case schema::Type::kStringMap:
      out["additionalProperties"] = {{"type", "string"}};
      break;
    case schema::Type::kSection:
      out["properties"] = json::object();
      out["additionalProperties"] = false;
      break;
    case schema::Type::kFreeObject:
    case schema::Type::kCustom:
      out["additionalProperties"] = true;
      break;
    case schema::Type::kBoolean:
      break;
  }
  return out;
}

template <typename T>
json field_schema(const schema::Field<T>& field, std::string help) {
  json out = value_schema(field.rule);
  out["title"] = field_label(last_segment(field.path));
  out["description"] = std::move(help);
  if (field.get != nullptr && !field.rule.required) {
    json value = field.get(T{});
    // An empty member behind a non-empty key stands for "absent" (a generated token).
    if (!value.is_null() && !(field.rule.non_empty && value == "")) {
      out["default"] = std::move(value);
    }
  }
  return out;
}

// " Applies to: exec, openai." for a row that only some kinds have.
template <typename Kinds>
std::string applies_text(std::string_view only, const Kinds& kinds) {
  if (only.empty()) return "";
  std::string out;
  for (const auto& k : kinds) {
    if (schema::applies_to(only, k.id)) out += (out.empty() ? "" : ", ") + std::string(k.id);
  }
  return " Applies to: " + out + ".";
}

class Builder {
 public:
  SchemaDocument build() {
    doc_.schema = {{"$schema", "http://json-schema.org/draft-07/schema#"},
                   {"title", "drawbridge config"},
                   {"type", "object"},
                   {"properties", json::object()},
                   {"additionalProperties", false}};
    doc_.ui_hints = json::object();
    for (const auto& field : schema::config_fields()) {
      if (field.path == "channels") {
        place(field.path, channels_schema(std::string(field.help)), false);
      } else if (field.path == "agents") {
        place(field.path, agents_schema(std::string(field.help)), false);
      } else {
        place(field.path, field_schema(field, std::string(field.help)), field.rule.required);
      }
      // Bookkeeping keys come last in the form, folded away.
      const bool bookkeeping = field.path == "$schema" || field.path == "meta";
      hint(std::string(field.path), std::string(field.help), bookkeeping);
    }
    return std::move(doc_);
  }

 private:
  // Puts `node` at the dotted `path` of the schema; the sections on the way exist already
  // (the table lists a section before its keys).
  void place(std::string_view path, json node, bool required) {
    json* parent = &doc_.schema;
    while (true) {
      const auto dot = path.find('.');
      const std::string key(path.substr(0, dot));
      if (dot == std::string_view::npos) {
        (*parent)["properties"][key] = std::move(node);
        if (required) (*parent)["required"].push_back(key);
        return;
      }
      parent = &(*parent)["properties"][key];
      path.remove_prefix(dot + 1);
    }
  }

  // OpenClaw's hint for one dotted path ("*" stands for any key of a map).
  void hint(const std::string& path, std::string help, bool advanced = false) {
    json h = {{"label", field_label(last_segment(path))},
              {"help", std::move(help)},
              {"group", field_label(first_segment(path))},
              {"order", order_ += 10}};
    const auto key = last_segment(path);
    if (is_secret_key(key) || path.rfind("agents.*.env", 0) == 0) h["sensitive"] = true;
    if (advanced) h["advanced"] = true;
    doc_.ui_hints[path] = std::move(h);
  }

  json channels_schema(std::string help) {
    json out = {{"type", "object"},
                {"title", "Channels"},
                {"description", std::move(help)},
                {"properties", json::object()},
                {"additionalProperties", false},
                {"default", schema::default_channels()}};
    for (const auto& kind : schema::channel_kinds()) {
      const std::string prefix = "channels." + std::string(kind.id);
      json node = {{"type", "object"},
                   {"title", field_label(kind.id)},
                   {"description", std::string(kind.help)},
                   {"properties", json::object()},
                   {"additionalProperties", kind.open}};
      hint(prefix, std::string(kind.help));
      for (const auto& field : schema::channel_fields()) {
        if (!schema::applies_to(field.only, kind.id)) continue;
        set_nested(node, field.path, field_schema(field, std::string(field.help)));
        hint(prefix + "." + std::string(field.path), std::string(field.help));
      }
      for (auto secrets = kind.secrets; !secrets.empty();) {
        const auto key = std::string(secrets.substr(0, secrets.find(' ')));
        const std::string text = "A secret; config.get shows it as " + std::string(kRedacted);
        node["properties"][key] = {
            {"type", "string"}, {"title", field_label(key)}, {"description", text}};
        hint(prefix + "." + key, text);
        const auto space = secrets.find(' ');
        secrets = space == std::string_view::npos ? std::string_view{} : secrets.substr(space + 1);
      }
      out["properties"][std::string(kind.id)] = std::move(node);
    }
    return out;
  }

  // A channel's section rows ("notices.enabled") inside the kind's object; the section comes
  // first in the table.
  static void set_nested(json& node, std::string_view path, json value) {
    json* at = &node;
    for (auto dot = path.find('.'); dot != std::string_view::npos; dot = path.find('.')) {
      at = &(*at)["properties"][std::string(path.substr(0, dot))];
      path.remove_prefix(dot + 1);
    }
    (*at)["properties"][std::string(path)] = std::move(value);
  }

  json agents_schema(std::string help) {
    const auto types = schema::agent_types();
    json agent = {{"type", "object"},
                  {"title", "Agent"},
                  {"description", "An agent backend; its id is 1 to 64 of A-Z, a-z, 0-9, _ and -"},
                  {"properties", json::object()},
                  {"required", json::array()},
                  {"additionalProperties", false}};
    const std::string default_help =
        "Agent id answering channels that name none; absent: \"main\" if defined, else the "
        "first id in sorted order";
    hint("agents.default", default_help);
    hint("agents.*", agent["description"].get<std::string>());
    for (const auto& field : schema::agent_fields()) {
      const std::string text = std::string(field.help) + applies_text(field.only, types);
      agent["properties"][std::string(field.path)] = field_schema(field, text);
      if (field.rule.required && field.only.empty()) {
        agent["required"].push_back(std::string(field.path));
      } else if (field.rule.required) {
        // Required of some types only (command of exec): if type is T, then required.
        for (const auto& type : types) {
          if (!schema::applies_to(field.only, type.id)) continue;
          agent["allOf"].push_back({{"if",
                                     {{"properties", {{"type", {{"const", std::string(type.id)}}}}},
                                      {"required", {"type"}}}},
                                    {"then", {{"required", {std::string(field.path)}}}}});
        }
      }
      hint("agents.*." + std::string(field.path), text);
    }
    if (agent["properties"].contains("env")) hint("agents.*.env.*", "An environment variable");
    return {{"type", "object"},
            {"title", "Agents"},
            {"description", std::move(help)},
            {"properties",
             {{"default",
               {{"type", "string"},
                {"title", "Default agent"},
                {"description", default_help},
                {"default", Config{}.default_agent}}}}},
            {"additionalProperties", std::move(agent)},
            {"default", schema::default_agents()}};
  }

  SchemaDocument doc_;
  int order_ = 0;
};

}  // namespace

std::string field_label(std::string_view key) {
  if (key.empty() || key.front() == '$' || key == "*") return std::string(key);
  std::vector<std::string> words(1);
  for (const char c : key) {
    if (std::isupper(static_cast<unsigned char>(c)) && !words.back().empty()) words.emplace_back();
    words.back() += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  std::string out;
  for (std::size_t i = 0; i < words.size(); ++i) {
    std::string w = words[i];
    if (w == "url" || w == "api" || w == "ui" || w == "irc" || w == "id" || w == "ttl") {
      for (auto& c : w) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    } else if (w == "ms" && i > 0) {
      w = "(ms)";
    } else if (i == 0) {
      w[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(w[0])));
    }
    out += (i == 0 ? "" : " ") + w;
  }
  return out;
}

const SchemaDocument& json_schema() {
  static const SchemaDocument doc = Builder().build();
  return doc;
}

}  // namespace drawbridge::config
