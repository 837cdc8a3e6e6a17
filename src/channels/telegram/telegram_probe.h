#pragma once

// One test of a Telegram bot token for `drawbridge channels probe`, without a gateway: getMe.
// Never getUpdates (it would end a running bot's long poll with 409) and no account lock: getMe
// is harmless next to a running bot.

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <functional>
#include <string>

namespace drawbridge::channels::telegram {

struct ProbeResult {
  bool ok = false;
  // ok: "ok, bot @name (id N)"; else what failed ("the token was refused (401 Unauthorized)",
  // "connect: Connection refused"). Never the token: BotApi's errors do not show the URL.
  std::string message;
  std::string username;  // ok: the bot's username, without '@'
  std::string bot_id;    // ok: the bot's user id
};

// Calls getMe on `api_root` with `token`; `done` runs once, on the io thread, at the latest
// `timeout` after the call.
void probe(boost::asio::io_context& io, const std::string& api_root, const std::string& token,
           std::chrono::milliseconds timeout, std::function<void(ProbeResult)> done);

}  // namespace drawbridge::channels::telegram
