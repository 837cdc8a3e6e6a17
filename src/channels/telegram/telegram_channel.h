#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>

#include "channels/account_lock.h"
#include "channels/telegram/bot_api.h"
#include "core/clock.h"
#include "core/executor.h"
#include "pipeline/channel.h"
#include "pipeline/pipeline.h"

namespace drawbridge::channels {

// What `channels.telegram` says, with OpenClaw's keys (docs/DECISIONS.md "Telegram").
struct TelegramOptions {
  std::string token;  // from botToken, botTokenEnv, tokenFile or TELEGRAM_BOT_TOKEN
  std::string api_root = "https://api.telegram.org";
  std::string dm_policy = "allowlist";  // "open" | "allowlist" | "disabled"
  std::set<std::string> allow_from;     // Telegram user ids (as text)
  int poll_timeout_s = 30;              // getUpdates long poll
  int max_message_chars = 4096;         // Telegram's limit for one message
  int conflict_fail_after_s = 30;       // 409s for this long: the channel shows `conflict`

  // The bot's id: the digits before the token's ':' (public, unlike the token).
  std::string bot_id() const { return token.substr(0, token.find(':')); }

  // Reads `raw` (the channel's object); an error names the key. `env` looks up variables.
  static std::optional<TelegramOptions> parse(
      const nlohmann::json& raw, std::string& error,
      const std::function<std::optional<std::string>(const std::string&)>& env);
};

// A Telegram bot by long polling (getUpdates). Each update is accepted into the inbox under
// its update_id (so a batch Telegram delivers again is not answered twice) before the next
// poll confirms it to Telegram with `offset`: an update is confirmed only once it is durable,
// and one that is not is delivered again after a crash or a failed commit. One getUpdates is
// in flight at a time; stop() aborts it and reports done once it has ended.
class TelegramChannel final : public pipeline::Channel {
 public:
  TelegramChannel(std::string id, TelegramOptions options, boost::asio::io_context& io,
                  core::Executor& executor, pipeline::Pipeline& pipeline);
  ~TelegramChannel() override;

  const std::string& id() const override { return id_; }
  void start() override;
  void stop(std::function<void()> done) override;
  bool ready() const override { return ready_; }
  pipeline::ChannelHealth health() const override;
  void send(const pipeline::OutboundPart& part,
            std::function<void(pipeline::SendStatus, std::string)> done) override;

  // For status and tests.
  std::int64_t offset() const { return offset_; }
  const std::string& last_error() const { return last_error_; }

 private:
  void connect();
  void poll();
  void on_updates(const telegram::ApiResult& r);
  void retry_later(std::chrono::milliseconds delay);
  void batch_done();
  void end_stop();
  bool allowed(const nlohmann::json& message, std::string& why) const;
  bool take_lock();
  void error(std::string what);

  std::string id_;
  TelegramOptions options_;
  core::Executor& executor_;
  core::Clock& clock_;
  pipeline::Pipeline& pipeline_;
  telegram::BotApi api_;
  bool running_ = false;
  bool ready_ = false;
  bool polling_ = false;           // a getMe or getUpdates is in flight
  bool connected_ = false;         // getMe answered
  std::int64_t offset_ = 0;        // the next update_id wanted; confirms everything below
  std::int64_t batch_next_ = 0;    // offset once the current batch is committed
  std::size_t batch_waiting_ = 0;  // accepts of the current batch not yet committed
  bool batch_failed_ = false;
  std::optional<core::TimerId> retry_timer_;
  std::chrono::milliseconds backoff_{0};
  std::string last_error_;
  std::int64_t last_error_at_ms_ = 0;
  std::uint64_t errors_ = 0;
  std::string username_;
  bool bad_token_ = false;  // getMe said 401/404
  std::unique_ptr<AccountLock> lock_;
  std::string lock_error_;       // the lock is held elsewhere: the channel is `failed`
  std::size_t saves_waiting_ = 0;  // offset saves not yet committed
  std::function<void()> stop_done_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace drawbridge::channels
