// TelegramChannel, the sending side: sendMessage under the rate limits, reply-to, the typing
// indicator. Receiving (polls, webhooks, updates) is telegram_channel.cpp.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <utility>

#include "channels/telegram/telegram_channel.h"

namespace drawbridge::channels {

using nlohmann::json;
using namespace std::chrono_literals;

namespace {

constexpr auto kSendTimeout = 30s;
constexpr auto kTypingAfter = 1000ms;  // a turn this long shows "typing..."
constexpr auto kTypingEvery = 4500ms;  // Telegram shows it for 5 s
constexpr auto kTypingAtMost = 300s;
constexpr std::size_t kChatBucketsKept = 4096;

}  // namespace

void TelegramChannel::typing(const std::string& chat, bool on) {
  auto it = typing_.find(chat);
  if (!on) {
    if (it == typing_.end()) return;
    if (it->second.timer) executor_.cancel(*it->second.timer);
    typing_.erase(it);
    return;
  }
  if (!running_) return;
  if (it != typing_.end()) {
    it->second.until = clock_.now() + kTypingAtMost;  // another message: the turn goes on
    return;
  }
  auto& t = typing_[chat];
  t.until = clock_.now() + kTypingAtMost;
  // Shown once a turn takes a while (an instant reply needs none), then kept up.
  auto step = std::make_shared<std::function<void()>>();
  *step = [this, alive = alive_, chat, weak = std::weak_ptr<std::function<void()>>(step)] {
    if (!*alive) return;
    auto it = typing_.find(chat);
    if (it == typing_.end()) return;
    it->second.timer.reset();
    if (!running_ || clock_.now() >= it->second.until) {
      typing_.erase(it);
      return;
    }
    json chat_id = chat;
    try {
      chat_id = std::stoll(chat);
    } catch (const std::exception&) {
    }
    api_.call("sendChatAction", {{"chat_id", chat_id}, {"action", "typing"}},
              std::chrono::seconds(10), [](telegram::ApiResult) {});
    if (auto next = weak.lock()) {
      it->second.timer = executor_.schedule(kTypingEvery, [next] { (*next)(); });
    }
  };
  t.timer = executor_.schedule(kTypingAfter, [step] { (*step)(); });
}

void TelegramChannel::send(const pipeline::OutboundPart& part,
                           std::function<void(pipeline::SendStatus, std::string)> done) {
  if (stopped_) {
    // Between a reload's stop and its successor's start the route may still name this one.
    executor_.post([done = std::move(done)] {
      done(pipeline::SendStatus::retry, "the channel stopped before sending");
    });
    return;
  }
  // A numeric chat id goes as a number (Telegram takes both; "@name" only as text).
  json chat_id = part.chat_id;
  const std::size_t sign = !part.chat_id.empty() && part.chat_id[0] == '-' ? 1 : 0;
  if (part.chat_id.size() > sign && part.chat_id.size() < 20 &&
      std::all_of(part.chat_id.begin() + static_cast<std::ptrdiff_t>(sign), part.chat_id.end(),
                  [](unsigned char c) { return std::isdigit(c); })) {
    chat_id = std::stoll(part.chat_id);
  }
  json params = {{"chat_id", chat_id}, {"text", part.text}};
  if (options_.reply_to_mode == "all" || (options_.reply_to_mode == "first" && part.part == 0)) {
    if (auto m = message_of_row_.find(part.inbound_id); m != message_of_row_.end()) {
      // Sent even when that message was deleted meanwhile.
      params["reply_parameters"] = {{"message_id", m->second},
                                    {"allow_sending_without_reply", true}};
    }
  }
  // Rate limits: a slot of the bot's and of the chat's bucket, after any 429 pause.
  const auto now = clock_.now();
  if (chat_buckets_.size() > kChatBucketsKept) {
    std::erase_if(chat_buckets_, [now](auto& kv) { return kv.second.idle(now); });
  }
  core::Duration wait{0};
  if (options_.bot_per_second > 0) wait = bot_bucket_.take(now);
  if (options_.chat_per_second > 0) {
    auto bucket =
        chat_buckets_.try_emplace(part.chat_id, options_.chat_burst, options_.chat_per_second)
            .first;
    wait = std::max(wait, bucket->second.take(now));
  }
  for (const auto* key : {&part.chat_id, static_cast<const std::string*>(nullptr)}) {
    auto p = paused_until_.find(key ? *key : std::string());
    if (p == paused_until_.end()) continue;
    if (p->second <= now) {
      paused_until_.erase(p);
    } else {
      wait = std::max(wait, std::chrono::duration_cast<core::Duration>(p->second - now));
    }
  }
  if (wait <= core::Duration{0} || !running_) {
    return do_send(part, std::move(params), std::move(done));
  }
  const auto n = ++delayed_next_;
  auto timer = executor_.schedule(
      wait, [this, alive = alive_, n, part, params = std::move(params)]() mutable {
        if (!*alive) return;
        auto it = delayed_.find(n);
        if (it == delayed_.end()) return;
        auto d = std::move(it->second.done);
        delayed_.erase(it);
        do_send(part, std::move(params), std::move(d));
      });
  delayed_[n] = Delayed{timer, std::move(done)};
}

void TelegramChannel::do_send(const pipeline::OutboundPart& part, json params,
                              std::function<void(pipeline::SendStatus, std::string)> done) {
  if (part.final_part) typing(part.chat_id, false);
  ++sends_in_flight_;
  api_.call(
      "sendMessage", params, kSendTimeout,
      [this, alive = alive_, chat = part.chat_id, done = std::move(done)](telegram::ApiResult r) {
        using pipeline::SendStatus;
        if (*alive) {
          --sends_in_flight_;
          // A stop waits for its sends: the last one ends it (after `done`, below).
          if (!running_ && stop_done_)
            executor_.post([this, alive] {
              if (*alive) end_stop();
            });
        }
        if (r.ok) return done(SendStatus::sent, {});
        const std::string why =
            (r.error_code ? std::to_string(r.error_code) + " " : std::string()) + r.description;
        if (r.maybe_done && r.http_status == 0) {
          // Written, never answered: it may have been delivered. Not sent twice.
          return done(SendStatus::failed, why + " (may have been delivered)");
        }
        if (r.error_code == 429) {
          // This chat waits as long as Telegram asks before its next message.
          const int after = std::clamp(r.retry_after_s.value_or(1), 1, 3600);
          if (*alive) paused_until_[chat] = clock_.now() + std::chrono::seconds(after);
          return done(SendStatus::retry, why);
        }
        // Cancelled before it was written, 5xx, no connection: not delivered, try again.
        if (r.cancelled || r.error_code >= 500 || r.http_status == 0) {
          return done(SendStatus::retry, why);
        }
        done(SendStatus::failed, why);  // 400 too long, 403 blocked: not retried
      });
}

}  // namespace drawbridge::channels
