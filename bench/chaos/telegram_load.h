#pragma once

// The Telegram side of bench/chaos: private chats that each send text messages to the bot
// through the tests' fake Bot API (in this process), at a steady rate, and what came back.

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "fakes/telegram_fake.h"

namespace chaos {

struct TelegramMessage {
  std::string id;                // the text, "tg-<i>"
  double pushed_ms = 0;          // wall clock when it was queued at the fake
  std::vector<double> reply_ms;  // wall clock of each sendMessage that answered it
};

struct TelegramResult {
  std::vector<TelegramMessage> messages;
  std::int64_t other_replies = 0;  // sendMessages that answer no message of ours (notices)
  int max_concurrent_polls = 0;    // the fake's largest number of overlapping getUpdates
};

class TelegramLoad {
 public:
  TelegramLoad(drawbridge::testing::TelegramFake& fake, std::string token, int chats, double rate);
  ~TelegramLoad();
  void start();
  void stop_sending();
  // Waits until every message pushed has at least one reply, or the timeout.
  bool wait_answered(int timeout_ms);
  TelegramResult result() const;

 private:
  void run();

  drawbridge::testing::TelegramFake& fake_;
  std::string token_;
  int chats_;
  double rate_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  mutable std::mutex mu_;
  std::vector<TelegramMessage> pushed_;
};

}  // namespace chaos
