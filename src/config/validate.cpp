#include "config/config.h"

#include <algorithm>
#include <cctype>
#include <exception>
#include <set>

#include "config/check.h"
#include "config/config_text.h"
#include "config/schema.h"

namespace drawbridge::config {

namespace {

using check::Errors;
using check::Location;
using nlohmann::json;

std::vector<std::string_view> ids_of(std::span<const schema::Kind> kinds) {
  std::vector<std::string_view> ids;
  for (const auto& kind : kinds) ids.push_back(kind.id);
  return ids;
}

bool valid_agent_id(const std::string& id) {
  if (id.empty() || id.size() > 64) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
  });
}

std::string unknown_agent(const std::string& id, const std::set<std::string>& defined) {
  std::string out = "unknown agent " + check::show(json(id)) + "; defined: ";
  bool first = true;
  for (const auto& d : defined) {
    out += (first ? "" : ", ") + d;
    first = false;
  }
  return out;
}

void check_channels(const json& channels, const Location& at, Errors& errors, Config& config) {
  if (!channels.is_object()) {
    errors.add(at, "expected an object, got " + check::show_at(channels, at));
    return;
  }
  const auto kinds = schema::channel_kinds();
  const auto known = ids_of(kinds);
  for (const auto& [id, value] : channels.items()) {
    const auto kind =
        std::find_if(kinds.begin(), kinds.end(),
                     [&id = id](const schema::Kind& k) { return k.id == id; });  // clang-14
    if (kind == kinds.end()) {
      errors.add(at.key(id), check::unknown_message("channel", id, "", known, "known"));
      continue;
    }
    ChannelSettings channel;
    channel.id = id;
    channel.raw = value;
    check::check_fields(value, "", schema::channel_fields(), id, kind->open,
                        " in channel " + check::show(json(id)), at.key(id), errors, channel);
    config.channels[id] = std::move(channel);
  }
}

// Returns the agent ids defined, valid or not, so that references to them are not reported
// a second time as unknown.
std::set<std::string> check_agents(const json& agents, const Location& at, Errors& errors,
                                   Config& config) {
  std::set<std::string> defined;
  if (!agents.is_object()) {
    errors.add(at, "expected an object, got " + check::show_at(agents, at));
    return defined;
  }
  const auto types = ids_of(schema::agent_types());
  // "type" is checked first: it decides which other rows apply.
  const auto rows = schema::agent_fields();
  const auto& type_row =
      *std::find_if(rows.begin(), rows.end(), [](const auto& row) { return row.path == "type"; });
  for (const auto& [id, value] : agents.items()) {
    if (id == "default") continue;
    if (!valid_agent_id(id)) {
      errors.add(at.key(id), "invalid agent id " + check::show(json(id)) +
                                 ": use 1 to 64 of A-Z, a-z, 0-9, \"_\", \"-\"");
      continue;
    }
    defined.insert(id);
    if (!value.is_object()) {
      errors.add(at.key(id), "expected an object, got " + check::show_at(value, at.key(id)));
      continue;
    }
    const auto type = value.find("type");
    if (type == value.end()) {
      errors.add(at.key(id).key("type"),
                 "missing required key; expected " + schema::expected_text(type_row.rule));
      continue;
    }
    if (!check::check_value(type_row.rule, *type, at.key(id).key("type"), errors)) continue;
    AgentSettings agent;
    agent.id = id;
    agent.raw = value;
    const auto& type_name = type->get_ref<const std::string&>();
    check::check_fields(value, "", schema::agent_fields(), type_name, false,
                        " for type " + check::show(*type), at.key(id), errors, agent);
    config.agents[id] = std::move(agent);
  }
  if (defined.empty()) {
    errors.add(at, "no agents defined; add one, e.g. \"main\": {\"type\": \"echo\"}");
    return defined;
  }
  const auto default_id = agents.find("default");
  if (default_id == agents.end()) {
    config.default_agent = defined.contains("main") ? "main" : *defined.begin();
  } else if (!default_id->is_string()) {
    errors.add(at.key("default"),
               "expected a string, got " + check::show_at(*default_id, at.key("default")));
  } else if (!defined.contains(default_id->get<std::string>())) {
    errors.add(at.key("default"), unknown_agent(default_id->get<std::string>(), defined));
  } else {
    config.default_agent = default_id->get<std::string>();
  }
  return defined;
}

bool valid_env_name(const std::string& name) {
  if (name.empty() || name.size() > 128 || std::isdigit(static_cast<unsigned char>(name[0]))) {
    return false;
  }
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
  });
}

// A password written into store.url: the keyword form (password=...) or a URI's user:pass@.
bool url_has_password(const std::string& url) {
  std::string lower(url.size(), ' ');
  std::transform(url.begin(), url.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (lower.find("password") != std::string::npos) return true;
  for (const char* scheme : {"postgresql://", "postgres://"}) {
    if (lower.rfind(scheme, 0) != 0) continue;
    const auto rest = lower.substr(std::char_traits<char>::length(scheme));
    const auto at = rest.find('@');
    const auto end = rest.find_first_of("/?");
    if (at == std::string::npos || (end != std::string::npos && at > end)) return false;
    return rest.substr(0, at).find(':') != std::string::npos;
  }
  return false;
}

// store.* and cluster.* values that only make sense together.
void check_store(const Config& config, const Location& root, Errors& errors) {
  const auto store = root.key("store");
  if (config.store.driver == "postgres" && config.store.url.empty()) {
    errors.add(store.key("url"),
               "store.driver \"postgres\" needs a libpq connection string here, e.g. "
               "\"host=/run/postgresql dbname=drawbridge\"");
  }
  if (url_has_password(config.store.url)) {
    errors.add(store.key("url"),
               "holds a password: config files get copied and shown; put the password in an "
               "environment variable and name it in store.passwordEnv");
  }
  if (!config.store.password_env.empty() && !valid_env_name(config.store.password_env)) {
    errors.add(store.key("passwordEnv"),
               "not an environment variable name ([A-Za-z_][A-Za-z0-9_]*, at most 128)");
  }
  const auto& id = config.cluster.replica_id;
  const bool id_ok = id.size() <= 128 && std::all_of(id.begin(), id.end(), [](char c) {
                       return std::isalnum(static_cast<unsigned char>(c)) || c == '.' ||
                              c == '_' || c == '-' || c == ':';
                     });
  if (!id_ok) {
    errors.add(root.key("cluster").key("replicaId"),
               "letters, digits, '.', '_', '-' and ':' only, at most 128");
  }
}

ParseResult validate(const json& doc) {
  ParseResult result;
  Errors errors;
  if (!doc.is_object()) {
    errors.add({}, "expected an object, got " + check::show_at(doc, {}));
    result.errors = errors.take();
    return result;
  }
  Config config;
  config.raw = doc;
  const Location root;
  check::check_fields(doc, "", schema::config_fields(), "", false, "", root, errors, config);

  const auto channels = doc.find("channels");
  check_channels(channels == doc.end() ? schema::default_channels() : *channels,
                 root.key("channels"), errors, config);
  const auto agents = doc.find("agents");
  const auto defined = check_agents(agents == doc.end() ? schema::default_agents() : *agents,
                                    root.key("agents"), errors, config);
  if (!defined.empty()) {
    for (const auto& [id, channel] : config.channels) {
      if (!channel.agent.empty() && !defined.contains(channel.agent)) {
        errors.add(root.key("channels").key(id).key("agent"),
                   unknown_agent(channel.agent, defined));
      }
    }
  }

  check_store(config, root, errors);

  result.errors = errors.take();
  if (result.errors.empty()) result.config = std::move(config);
  return result;
}

ParseResult internal_error(const std::exception& e) {
  ParseResult result;
  result.errors.push_back({"", "", std::string("internal error while validating: ") + e.what()});
  return result;
}

}  // namespace

ParseResult validate_config(const json& doc) {
  try {
    return validate(doc);
  } catch (const std::exception& e) {
    return internal_error(e);
  }
}

ParseResult parse_config(const std::string& text) {
  JsonParseResult parsed;
  try {
    parsed = parse_config_json(text);
  } catch (const std::exception& e) {
    return internal_error(e);
  }
  if (!parsed.ok()) {
    // Where and why, never the text around it: the file may hold secrets.
    const JsonParseError& e = *parsed.error;
    ParseResult result;
    std::string message = e.message;
    if (e.kind == JsonErrorKind::syntax) {
      message = (message.starts_with("line ") ? "invalid JSON at " : "invalid JSON: ") + message;
    }
    result.errors.push_back({e.pointer, e.path, std::move(message)});
    return result;
  }
  return validate_config(parsed.value);
}

}  // namespace drawbridge::config
