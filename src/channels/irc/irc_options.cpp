#include <set>
#include <string>

#include "channels/group_entry.h"
#include "channels/irc/irc_channel.h"
#include "channels/irc/irc_message.h"

namespace drawbridge::channels {

using nlohmann::json;

namespace {

// Keys of the channel object drawbridge reads; config/schema.cpp reads the first four.
const std::set<std::string>& known_keys() {
  static const std::set<std::string> keys = {
      "enabled",        "agent",       "maxMessageChars", "notices",       "host",
      "port",           "tls",         "tlsInsecure",     "nick",          "username",
      "realname",       "password",    "passwordEnv",     "channels",      "groupPolicy",
      "groups",         "dmPolicy",    "allowFrom",       "commandPrefix", "accounts",
      "defaultAccount", "historyLimit"};
  return keys;
}

bool has_line_break(const std::string& s) {
  return s.find_first_of(std::string("\r\n\0", 3)) != std::string::npos;
}

}  // namespace

std::optional<IrcOptions> IrcOptions::parse(
    const json& raw, std::string& error,
    const std::function<std::optional<std::string>(const std::string&)>& env) {
  IrcOptions o;
  const std::string at = "channels.irc.";
  if (!raw.is_object()) {
    error = "channels.irc: expected an object";
    return std::nullopt;
  }
  auto text = [&](const char* key, std::string& out) {
    if (!raw.contains(key)) return true;
    if (!raw[key].is_string()) {
      error = at + key + ": expected a string";
      return false;
    }
    out = raw[key].get<std::string>();
    if (has_line_break(out)) {
      error = at + key + ": must not contain a line break or NUL";
      return false;
    }
    return true;
  };
  auto flag = [&](const char* key, bool& out) {
    if (!raw.contains(key)) return true;
    if (!raw[key].is_boolean()) {
      error = at + key + ": expected true or false";
      return false;
    }
    out = raw[key].get<bool>();
    return true;
  };
  std::string password_env;
  if (!text("host", o.host) || !text("nick", o.nick) || !text("username", o.username) ||
      !text("realname", o.realname) || !text("password", o.password) ||
      !text("passwordEnv", password_env) || !text("groupPolicy", o.group_policy) ||
      !text("dmPolicy", o.dm_policy) || !text("commandPrefix", o.command_prefix) ||
      !flag("tls", o.tls) || !flag("tlsInsecure", o.tls_insecure)) {
    return std::nullopt;
  }
  if (o.host.empty() || o.host.find(' ') != std::string::npos) {
    error = at + "host: expected the server's host name";
    return std::nullopt;
  }
  o.port = o.tls ? 6697 : 6667;
  if (raw.contains("port")) {
    const auto& v = raw["port"];
    if (!v.is_number_integer() || v.get<std::int64_t>() < 1 || v.get<std::int64_t>() > 65535) {
      error = at + "port: expected an integer in 1..65535";
      return std::nullopt;
    }
    o.port = v.get<int>();
  }
  if (!irc::is_valid_nick(o.nick) || o.nick.size() > 30) {
    error = at +
            "nick: expected a nick (1 to 30 letters, digits or -[]\\`^{}|_, not starting "
            "with a digit or -)";
    return std::nullopt;
  }
  if (o.username.empty()) o.username = o.nick;
  if (o.username.find_first_of(" @") != std::string::npos) {
    error = at + "username: must not contain a space or @";
    return std::nullopt;
  }
  if (o.realname.empty()) o.realname = "drawbridge";
  if (o.password.empty() && !password_env.empty()) {
    auto v = env(password_env);
    if (!v || v->empty()) {
      error = at + "passwordEnv: the variable " + password_env + " is not set";
      return std::nullopt;
    }
    if (has_line_break(*v)) {
      error = at + "passwordEnv: the variable " + password_env +
              " holds a line break or NUL";  // never the value
      return std::nullopt;
    }
    o.password = *v;
  }
  if (raw.contains("channels")) {
    const auto& v = raw["channels"];
    if (!v.is_array()) {
      error = at + "channels: expected an array of channel names such as \"#ops\"";
      return std::nullopt;
    }
    for (std::size_t i = 0; i < v.size(); ++i) {
      if (!v[i].is_string() || !irc::is_channel_name(v[i].get<std::string>())) {
        error = at + "channels[" + std::to_string(i) +
                "]: expected a channel name such as \"#ops\" (no spaces or commas)";
        return std::nullopt;
      }
      o.channels.push_back(v[i].get<std::string>());
    }
  }
  if (o.group_policy != "open" && o.group_policy != "allowlist" && o.group_policy != "disabled") {
    error = at + "groupPolicy: expected one of \"open\", \"allowlist\", \"disabled\"";
    return std::nullopt;
  }
  if (o.dm_policy == "pairing") {
    o.dm_policy = "allowlist";  // pairing codes are not implemented: only allowFrom is answered
  } else if (o.dm_policy != "open" && o.dm_policy != "allowlist" && o.dm_policy != "disabled") {
    error = at + "dmPolicy: expected one of \"pairing\", \"allowlist\", \"open\", \"disabled\"";
    return std::nullopt;
  }
  if (raw.contains("groups")) {
    const auto& v = raw["groups"];
    if (!v.is_object()) {
      error = at + "groups: expected an object keyed by channel name";
      return std::nullopt;
    }
    for (const auto& [name, g] : v.items()) {
      const std::string key = at + "groups." + name;
      if (name != "*" && !irc::is_channel_name(name)) {
        error = key + ": expected a channel name such as \"#ops\" (or \"*\")";
        return std::nullopt;
      }
      auto group = parse_group_entry(g, key, error, o.warnings);
      if (!group) return std::nullopt;
      o.groups[irc::lower(name)] = {group->require_mention};
    }
  }
  if (raw.contains("allowFrom")) {
    const auto& v = raw["allowFrom"];
    if (!v.is_array()) {
      error = at + "allowFrom: expected an array of nicks";
      return std::nullopt;
    }
    for (std::size_t i = 0; i < v.size(); ++i) {
      std::string s = v[i].is_string() ? v[i].get<std::string>() : std::string();
      if (s.rfind("irc:", 0) == 0) s = s.substr(4);  // OpenClaw's prefixed form
      if (s.empty() || s.find(' ') != std::string::npos || has_line_break(s)) {
        error = at + "allowFrom[" + std::to_string(i) + "]: expected a nick (or nick!user@host)";
        return std::nullopt;
      }
      o.allow_from.insert(irc::lower(s));
    }
  }
  for (const auto& [k, v] : raw.items()) {
    if (!known_keys().count(k)) {
      o.warnings.push_back(at + k + ": not supported by drawbridge yet; ignored");
    }
  }
  return o;
}

}  // namespace drawbridge::channels
