#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "channels/account_lock.h"
#include "channels/telegram/bot_api.h"
#include "channels/telegram/telegram_options.h"
#include "core/clock.h"
#include "core/executor.h"
#include "core/token_bucket.h"
#include "pipeline/channel.h"
#include "pipeline/pipeline.h"

namespace drawbridge::channels {

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
  // Standby counts as ready: the bot is served, by the replica holding its lease.
  bool ready() const override { return ready_ || !standby_.empty(); }
  pipeline::ChannelHealth health() const override;
  std::string webhook_path() const override {
    return options_.webhook_url.empty() ? std::string() : options_.webhook_path;
  }
  void on_webhook(const std::string& secret_header, const std::string& body,
                  std::function<void(int, std::string)> respond) override;
  void send(const pipeline::OutboundPart& part,
            std::function<void(pipeline::SendStatus, std::string)> done) override;

  // For status and tests.
  std::int64_t offset() const { return offset_; }
  const std::string& last_error() const { return last_error_; }

 private:
  void connect();
  void poll();
  void on_updates(const telegram::ApiResult& r);
  void set_webhook();
  // Journals one update's message when it is admitted; false when nothing was handed over
  // (ignored), else `after(committed)` runs once its commit is done.
  bool take_update(const nlohmann::json& u, std::int64_t update_id,
                   std::function<void(bool committed)> after);
  void retry_later(std::chrono::milliseconds delay);
  void batch_done();
  void end_stop();
  bool allowed(const nlohmann::json& message, std::string& text, std::string& why) const;
  void do_send(const pipeline::OutboundPart& part, nlohmann::json params,
               std::function<void(pipeline::SendStatus, std::string)> done);
  void typing(const std::string& chat, bool on);
  bool take_lock();
  void error(std::string what);
  // The cluster-wide lease (telegram_lease.cpp): true when held with time for a poll; else
  // a claim is under way (poll() runs again when it is granted) or the channel waits.
  bool hold_lease();
  std::string lease_name() const;
  int poll_timeout_s() const;
  std::optional<pipeline::Pipeline::CursorFence> cursor_fence() const;
  void on_fenced(const std::string& error);
  void release_lease();

  std::string id_;
  TelegramOptions options_;
  core::Executor& executor_;
  core::Clock& clock_;
  pipeline::Pipeline& pipeline_;
  telegram::BotApi api_;
  bool running_ = false;
  // The stop has ended: a send now would outlive this object's Bot API client (destroyed with
  // it, its calls never answered), so it goes back to the reply delivery as `retry`, which
  // finds the channel's successor.
  bool stopped_ = false;
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
  std::string lock_error_;         // the lock is held elsewhere: the channel is `failed`
  std::int64_t lease_epoch_ = 0;   // the cluster lease held (0: none, or no leases)
  bool claiming_ = false;          // a claim of it is in flight
  std::string standby_;            // why another replica polls: the channel waits
  std::size_t saves_waiting_ = 0;  // offset saves not yet committed
  std::int64_t bot_user_id_ = 0;
  std::string webhook_secret_;
  bool webhook_set_ = false;
  bool webhook_deleted_ = false;  // polling found a webhook and removed it once
  std::uint64_t poll_call_ = 0;   // the getMe/getUpdates/setWebhook in flight (polling_)
  // Sends: a stop lets those in flight end (they are bounded by their timeout) so that every
  // `done` runs; those still waiting for a rate-limit slot are handed back as `retry`.
  std::size_t sends_in_flight_ = 0;
  struct Delayed {
    core::TimerId timer;
    std::function<void(pipeline::SendStatus, std::string)> done;
  };
  std::map<std::uint64_t, Delayed> delayed_;
  std::uint64_t delayed_next_ = 0;
  // Sending: about 30 messages a second per bot, a burst of 3 then one a second per chat, and
  // a chat (or the bot) that got 429 waits its retry_after.
  core::TokenBucket bot_bucket_;
  std::unordered_map<std::string, core::TokenBucket> chat_buckets_;
  std::unordered_map<std::string, core::TimePoint> paused_until_;  // by chat; "" = the bot
  // Chats with a turn running: a typing indicator every few seconds until its last part.
  struct Typing {
    std::optional<core::TimerId> timer;
    core::TimePoint until;
  };
  std::unordered_map<std::string, Typing> typing_;
  // The Telegram message each inbox row came from, for reply-to (the newest few thousand; a
  // reply after a process restart goes without).
  std::unordered_map<std::int64_t, std::int64_t> message_of_row_;
  std::vector<std::int64_t> row_order_;
  std::size_t row_next_ = 0;
  std::function<void()> stop_done_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace drawbridge::channels
