#include "channels/telegram/telegram_options.h"

#include <fstream>
#include <set>

#include "channels/group_entry.h"
#include "channels/telegram/bot_api.h"

namespace drawbridge::channels {

using nlohmann::json;

namespace telegram {

std::string id_text(const json& v) {
  if (v.is_number_integer()) return std::to_string(v.get<std::int64_t>());
  if (v.is_string()) return v.get<std::string>();
  return {};
}

}  // namespace telegram

namespace {

using telegram::id_text;
constexpr std::size_t kMaxTokenBytes = 256;

// The keys of channels.telegram this build reads (the rest: one warning each).
const std::set<std::string>& known_keys() {
  static const std::set<std::string> keys = {
      "enabled",     "agent",       "maxMessageChars",    "notices",
      "botToken",    "botTokenEnv", "tokenFile",          "apiRoot",
      "dmPolicy",    "allowFrom",   "pollTimeoutSeconds", "conflictFailAfterSeconds",
      "groupPolicy", "groups",      "groupAllowFrom",     "replyToMode",
      "sendRate",    "webhookUrl",  "webhookSecret",      "webhookSecretEnv",
      "webhookPath", "accounts",    "defaultAccount",     "allowedUpdates",
      "historyLimit"};
  return keys;
}

// A bot token is "<digits>:<letters, digits, - and _>"; anything else is refused rather than
// put into a URL.
bool plausible_token(const std::string& t) {
  const auto colon = t.find(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 >= t.size()) return false;
  if (t.size() > kMaxTokenBytes) return false;
  for (std::size_t i = 0; i < t.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(t[i]);
    if (i < colon && !std::isdigit(c)) return false;
    if (i > colon && !std::isalnum(c) && c != '-' && c != '_') return false;
  }
  return true;
}

}  // namespace

std::optional<TelegramOptions> TelegramOptions::parse(
    const json& raw, std::string& error,
    const std::function<std::optional<std::string>(const std::string&)>& env) {
  TelegramOptions o;
  auto text = [&](const char* key, std::string& out) {
    if (!raw.contains(key)) return true;
    if (!raw[key].is_string()) {
      error = std::string("channels.telegram.") + key + ": expected a string";
      return false;
    }
    out = raw[key].get<std::string>();
    return true;
  };
  std::string token, token_env, token_file;
  if (!text("botToken", token) || !text("botTokenEnv", token_env) ||
      !text("tokenFile", token_file) || !text("apiRoot", o.api_root) ||
      !text("dmPolicy", o.dm_policy)) {
    return std::nullopt;
  }
  if (token.empty() && !token_env.empty()) {
    auto v = env(token_env);
    if (!v || v->empty()) {
      error = "channels.telegram.botTokenEnv: the variable " + token_env + " is not set";
      return std::nullopt;
    }
    token = *v;
  }
  if (token.empty() && !token_file.empty()) {
    std::ifstream in(token_file, std::ios::binary);
    if (!in) {
      error = "channels.telegram.tokenFile: cannot read " + token_file;
      return std::nullopt;
    }
    std::string content(kMaxTokenBytes + 2, '\0');
    in.read(content.data(), static_cast<std::streamsize>(content.size()));
    content.resize(static_cast<std::size_t>(in.gcount()));
    while (!content.empty() && std::isspace(static_cast<unsigned char>(content.back()))) {
      content.pop_back();
    }
    token = content;
  }
  if (token.empty()) {
    if (auto v = env("TELEGRAM_BOT_TOKEN")) token = *v;
  }
  if (token.empty()) {
    error =
        "channels.telegram: no bot token (botToken, botTokenEnv, tokenFile or "
        "TELEGRAM_BOT_TOKEN)";
    return std::nullopt;
  }
  if (!plausible_token(token)) {
    // The value is a secret: say what is wrong with it, never what it is.
    error = "channels.telegram: the bot token is not of the form <digits>:<letters and digits>";
    return std::nullopt;
  }
  o.token = token;
  if (auto e = telegram::BotApi::check_root(o.api_root)) {
    error = "channels.telegram.apiRoot: " + *e;
    return std::nullopt;
  }
  if (o.dm_policy == "pairing") {
    o.dm_policy = "allowlist";  // pairing codes are not implemented: only allowFrom is answered
  } else if (o.dm_policy != "open" && o.dm_policy != "allowlist" && o.dm_policy != "disabled") {
    error =
        "channels.telegram.dmPolicy: expected one of \"pairing\", \"allowlist\", \"open\", "
        "\"disabled\"";
    return std::nullopt;
  }
  if (raw.contains("allowFrom")) {
    if (!raw["allowFrom"].is_array()) {
      error = "channels.telegram.allowFrom: expected an array of user ids";
      return std::nullopt;
    }
    for (const auto& v : raw["allowFrom"]) {
      auto s = id_text(v);
      if (s.rfind("telegram:", 0) == 0) s = s.substr(9);  // OpenClaw's prefixed form
      if (s.empty()) {
        error = "channels.telegram.allowFrom: expected user ids (numbers or strings)";
        return std::nullopt;
      }
      o.allow_from.insert(s);
    }
  }
  if (raw.contains("pollTimeoutSeconds")) {
    const auto& v = raw["pollTimeoutSeconds"];
    if (!v.is_number_integer() || v.get<std::int64_t>() < 1 || v.get<std::int64_t>() > 50) {
      error = "channels.telegram.pollTimeoutSeconds: expected an integer in 1..50";
      return std::nullopt;
    }
    o.poll_timeout_s = v.get<int>();
  }
  if (!text("groupPolicy", o.group_policy) || !text("replyToMode", o.reply_to_mode)) {
    return std::nullopt;
  }
  if (o.group_policy != "open" && o.group_policy != "allowlist" && o.group_policy != "disabled") {
    error = "channels.telegram.groupPolicy: expected one of \"open\", \"allowlist\", \"disabled\"";
    return std::nullopt;
  }
  if (o.reply_to_mode != "off" && o.reply_to_mode != "first" && o.reply_to_mode != "all") {
    error = "channels.telegram.replyToMode: expected one of \"off\", \"first\", \"all\"";
    return std::nullopt;
  }
  if (raw.contains("groups")) {
    const auto& v = raw["groups"];
    if (!v.is_object()) {
      error = "channels.telegram.groups: expected an object keyed by chat id (or \"*\")";
      return std::nullopt;
    }
    for (const auto& [chat, g] : v.items()) {
      const std::string key = "channels.telegram.groups." + chat;
      const bool numeric = !chat.empty() && chat.size() < 24 &&
                           chat.find_first_not_of("-0123456789") == std::string::npos;
      if (chat != "*" && !numeric) {
        error = key + ": expected a chat id such as \"-1001234567890\" (or \"*\")";
        return std::nullopt;
      }
      auto group = parse_group_entry(g, key, error, o.warnings);
      if (!group) return std::nullopt;
      o.groups[chat] = {group->require_mention};
    }
  }
  if (raw.contains("groupAllowFrom")) {
    if (!raw["groupAllowFrom"].is_array()) {
      error = "channels.telegram.groupAllowFrom: expected an array of user ids";
      return std::nullopt;
    }
    for (const auto& v : raw["groupAllowFrom"]) {
      auto s = id_text(v);
      if (s.rfind("telegram:", 0) == 0) s = s.substr(9);
      if (s.empty()) {
        error = "channels.telegram.groupAllowFrom: expected user ids (numbers or strings)";
        return std::nullopt;
      }
      o.group_allow_from.insert(s);
    }
  }
  if (raw.contains("sendRate")) {
    const auto& v = raw["sendRate"];
    if (!v.is_object()) {
      error =
          "channels.telegram.sendRate: expected an object (botPerSecond, chatPerSecond, chatBurst)";
      return std::nullopt;
    }
    auto number = [&](const char* key, double lo, double hi, double& out) {
      if (!v.contains(key)) return true;
      if (!v[key].is_number() || v[key].get<double>() < lo || v[key].get<double>() > hi) {
        error = std::string("channels.telegram.sendRate.") + key + ": expected a number in " +
                std::to_string(static_cast<int>(lo)) + ".." + std::to_string(static_cast<int>(hi));
        return false;
      }
      out = v[key].get<double>();
      return true;
    };
    double burst = o.chat_burst;
    if (!number("botPerSecond", 0, 100000, o.bot_per_second) ||
        !number("chatPerSecond", 0, 100000, o.chat_per_second) ||
        !number("chatBurst", 1, 1000, burst)) {
      return std::nullopt;
    }
    o.chat_burst = static_cast<int>(burst);
    for (const auto& [k, x] : v.items()) {
      if (k != "botPerSecond" && k != "chatPerSecond" && k != "chatBurst") {
        o.warnings.push_back("channels.telegram.sendRate." + k + ": unknown; ignored");
      }
    }
  }
  for (const auto& [k, v] : raw.items()) {
    if (!known_keys().count(k)) {
      o.warnings.push_back("channels.telegram." + k + ": not supported by drawbridge yet; ignored");
    }
  }
  if (raw.contains("allowedUpdates")) {
    const auto& v = raw["allowedUpdates"];
    bool ok = v.is_array() && v.size() <= 32;
    for (const auto& t : ok ? v : json::array()) {
      ok = ok && t.is_string() && !t.get<std::string>().empty() &&
           t.get<std::string>().size() <= 64 &&
           t.get<std::string>().find_first_not_of("abcdefghijklmnopqrstuvwxyz_") ==
               std::string::npos;
    }
    if (!ok) {
      error =
          "channels.telegram.allowedUpdates: expected an array of update types such as "
          "\"message\", \"edited_message\"";
      return std::nullopt;
    }
    // Only messages are answered; other types are asked for (and confirmed) but not journaled.
    o.allowed_updates = v;
  }
  std::string secret_env;
  if (!text("webhookUrl", o.webhook_url) || !text("webhookSecret", o.webhook_secret) ||
      !text("webhookSecretEnv", secret_env) || !text("webhookPath", o.webhook_path)) {
    return std::nullopt;
  }
  if (o.webhook_secret.empty() && !secret_env.empty()) {
    auto v = env(secret_env);
    if (!v || v->empty()) {
      error = "channels.telegram.webhookSecretEnv: the variable " + secret_env + " is not set";
      return std::nullopt;
    }
    o.webhook_secret = *v;
  }
  if (!o.webhook_url.empty()) {
    const auto scheme = o.webhook_url.find("://");
    if (o.webhook_url.size() > 2048 ||
        (o.webhook_url.rfind("https://", 0) != 0 && o.webhook_url.rfind("http://", 0) != 0) ||
        o.webhook_url.find_first_of(" \t\r\n") != std::string::npos) {
      error = "channels.telegram.webhookUrl: expected an https:// URL Telegram can reach";
      return std::nullopt;
    }
    if (o.webhook_path.empty()) {
      const auto slash = o.webhook_url.find('/', scheme + 3);
      o.webhook_path = slash == std::string::npos ? "" : o.webhook_url.substr(slash);
      o.webhook_path = o.webhook_path.substr(0, o.webhook_path.find('?'));
      if (o.webhook_path.empty() || o.webhook_path == "/") o.webhook_path = "/telegram-webhook";
    }
    const bool path_ok =
        o.webhook_path.size() > 1 && o.webhook_path.size() <= 256 && o.webhook_path[0] == '/' &&
        o.webhook_path.find_first_not_of(
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/_.-") ==
            std::string::npos &&
        o.webhook_path.rfind("/v1/", 0) != 0 && o.webhook_path != "/healthz" &&
        o.webhook_path != "/readyz" && o.webhook_path != "/metrics";
    if (!path_ok) {
      error =
          "channels.telegram.webhookPath: expected a path such as \"/telegram-webhook\" (letters, "
          "digits, / _ . -; not /v1/..., /healthz, /readyz, /metrics)";
      return std::nullopt;
    }
    if (!o.webhook_secret.empty() &&
        (o.webhook_secret.size() > 256 ||
         o.webhook_secret.find_first_not_of(
             "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") !=
             std::string::npos)) {
      // The value is a secret: not quoted.
      error =
          "channels.telegram.webhookSecret: expected 1-256 characters of A-Z, a-z, 0-9, _ and -";
      return std::nullopt;
    }
  }
  if (raw.contains("conflictFailAfterSeconds")) {
    const auto& v = raw["conflictFailAfterSeconds"];
    if (!v.is_number_integer() || v.get<std::int64_t>() < 0 || v.get<std::int64_t>() > 86400) {
      error = "channels.telegram.conflictFailAfterSeconds: expected an integer in 0..86400";
      return std::nullopt;
    }
    o.conflict_fail_after_s = v.get<int>();
  }
  return o;
}

}  // namespace drawbridge::channels
