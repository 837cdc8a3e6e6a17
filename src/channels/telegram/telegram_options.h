#pragma once

#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace drawbridge::channels {

namespace telegram {
// A Telegram id (a number or a string) as text; empty for anything else.
std::string id_text(const nlohmann::json& v);
}  // namespace telegram

// What `channels.telegram` says, with OpenClaw's keys (docs/DECISIONS.md "Telegram").
struct TelegramOptions {
  std::string token;  // from botToken, botTokenEnv, tokenFile or TELEGRAM_BOT_TOKEN
  std::string api_root = "https://api.telegram.org";
  std::string dm_policy = "allowlist";  // "open" | "allowlist" | "disabled"
  std::set<std::string> allow_from;     // Telegram user ids (as text)
  // Group chats: "open" (any group), "allowlist" (those in `groups`, or all with "*"),
  // "disabled". In a group the bot answers when mentioned (@name, a reply to it, a command)
  // unless the group's requireMention is false.
  std::string group_policy = "allowlist";
  struct Group {
    bool require_mention = true;
  };
  std::map<std::string, Group> groups;     // by chat id (as text) or "*"
  std::set<std::string> group_allow_from;  // empty: anyone in an admitted group
  std::string reply_to_mode = "first";     // "off" | "first" | "all" parts reply
  std::vector<std::string> warnings;       // keys accepted and not honoured, one each
  // sendRate: Telegram's advice is about 30 messages a second per bot and one a second per
  // chat (a short burst passes). 0: no limit (a local Bot API server, a benchmark's fake).
  double bot_per_second = 30;
  double chat_per_second = 1;
  int chat_burst = 3;
  int poll_timeout_s = 30;                                              // getUpdates long poll
  nlohmann::json allowed_updates = nlohmann::json::array({"message"});  // allowedUpdates
  int max_message_chars = 4096;    // Telegram's limit for one message
  int conflict_fail_after_s = 30;  // 409s for this long: the channel shows `conflict`
  // Webhook mode (webhookUrl set): setWebhook with a secret token, updates POSTed to
  // webhookPath on the gateway's own port (behind the reverse proxy that webhookUrl names).
  std::string webhook_url;
  std::string webhook_secret;  // webhookSecret / webhookSecretEnv; empty: generated per start
  std::string webhook_path;    // default: webhookUrl's path, else "/telegram-webhook"

  // The bot's id: the digits before the token's ':' (public, unlike the token).
  std::string bot_id() const { return token.substr(0, token.find(':')); }

  // Reads `raw` (the channel's object); an error names the key. `env` looks up variables.
  static std::optional<TelegramOptions> parse(
      const nlohmann::json& raw, std::string& error,
      const std::function<std::optional<std::string>(const std::string&)>& env);
};

}  // namespace drawbridge::channels
