#pragma once

// A fake Telegram Bot API server for tests (https://core.telegram.org/bots/api): the wire
// format (`/bot<token>/<method>`, JSON or query/form parameters, `{"ok":...}` answers with the
// real error codes and descriptions) and the semantics a channel depends on (getUpdates offsets
// and long polls, the 409 of a second poller, webhooks, message length limits), plus scripted
// faults and counters. It serves on 127.0.0.1 (a kernel-chosen port) from its own thread.
//
// Every public member is thread-safe. Tests wait with wait_for() on a condition over the
// accessors; it is woken by every state change and request completion, so no test sleeps.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace drawbridge::testing {

class TelegramFake {
 public:
  struct Options {
    std::int64_t first_update_id = 100000;  // of every bot's first update
    std::size_t max_body_bytes = 1024 * 1024;
    std::size_t max_connections = 64;  // more are closed as soon as accepted
  };

  // A sendMessage the fake accepted.
  struct SentMessage {
    std::int64_t chat_id = 0;
    std::string text;
    std::optional<std::int64_t> reply_to_message_id;  // reply_to_message_id or reply_parameters
    std::int64_t message_id = 0;
    std::chrono::system_clock::time_point time;
    nlohmann::json params;  // every parameter as received (parse_mode, ...)
  };

  struct ChatAction {
    std::int64_t chat_id = 0;
    std::string action;
  };

  // Binds 127.0.0.1:0 and starts serving; throws when it cannot bind.
  TelegramFake();
  explicit TelegramFake(Options options);
  // Stops promptly, whatever is in flight: every connection is closed (a waiting long poll
  // sees EOF or a reset), the thread is joined.
  ~TelegramFake();
  TelegramFake(const TelegramFake&) = delete;
  TelegramFake& operator=(const TelegramFake&) = delete;

  std::uint16_t port() const;
  std::string base_url() const;  // "http://127.0.0.1:<port>"

  // Registers a bot. Every member below that takes a token throws std::invalid_argument for a
  // token that was not added (a test bug); the server answers 401 to it.
  void add_bot(const std::string& token, std::int64_t bot_user_id, const std::string& username);

  // Queues an inbound text message as an update, wakes a waiting getUpdates, returns the
  // update_id.
  std::int64_t push_message(const std::string& token, std::int64_t chat_id,
                            std::int64_t from_user_id, const std::string& text,
                            const std::string& chat_type = "private");

  // The next `count` calls of `method` (case-insensitive, as in the Bot API) answer this error
  // instead; "parameters":{"retry_after":N} when retry_after_seconds > 0. Queued in order.
  void fail_next(const std::string& token, const std::string& method, int http_status,
                 const std::string& description, int retry_after_seconds = 0, int count = 1);
  // sendMessage to a blocked chat answers 403 "Forbidden: bot was blocked by the user".
  void block_chat(const std::string& token, std::int64_t chat_id);
  void unblock_chat(const std::string& token, std::int64_t chat_id);
  // The next answer of `method` is written `delay` after it is ready (the call itself takes
  // effect at once, as a slow network would have it). Queued in order.
  void delay_next(const std::string& token, const std::string& method,
                  std::chrono::milliseconds delay);

  // Observations (copies).
  std::vector<SentMessage> sent(const std::string& token) const;
  std::vector<ChatAction> chat_actions(const std::string& token) const;
  nlohmann::json my_commands(const std::string& token) const;  // last setMyCommands, or []
  std::string webhook_url(const std::string& token) const;     // empty when none
  int requests(const std::string& token, const std::string& method) const;  // answered or not
  std::int64_t confirmed_offset(const std::string& token) const;  // 0 before any confirmation
  std::size_t pending_updates(const std::string& token) const;    // queued, not confirmed
  // getUpdates requests in flight (headers read, response not written, connection open): now
  // and the largest number ever at the same instant. A correct client keeps the latter at 1.
  int polls_in_flight(const std::string& token) const;
  int max_concurrent_polls(const std::string& token) const;
  bool poll_waiting(const std::string& token) const;  // a getUpdates waits for updates now

  // Waits until pred() is true or the timeout passes; pred is evaluated (without any lock of
  // the fake held, so it may call the accessors) at once and after every change.
  bool wait_for(std::function<bool()> pred, std::chrono::milliseconds timeout) const;

  struct Impl;  // opaque; public only so that telegram_fake.cpp's connections can name it

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace drawbridge::testing
