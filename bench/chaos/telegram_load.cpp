// See telegram_load.h.

#include "chaos/telegram_load.h"

#include <chrono>
#include <map>

namespace chaos {

namespace {

double epoch_ms(std::chrono::system_clock::time_point t) {
  return std::chrono::duration<double, std::milli>(t.time_since_epoch()).count();
}

constexpr std::int64_t kFirstChat = 5000000;

}  // namespace

TelegramLoad::TelegramLoad(drawbridge::testing::TelegramFake& fake, std::string token, int chats,
                           double rate)
    : fake_(fake), token_(std::move(token)), chats_(chats > 0 ? chats : 1), rate_(rate) {}

TelegramLoad::~TelegramLoad() {
  stop_sending();
}

void TelegramLoad::start() {
  if (rate_ > 0) thread_ = std::thread([this] { run(); });
}

void TelegramLoad::stop_sending() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

void TelegramLoad::run() {
  // Open loop: message i is due at t0 + i / rate.
  const auto t0 = std::chrono::steady_clock::now();
  for (std::int64_t i = 0; !stop_; ++i) {
    const auto due = t0 + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                              std::chrono::duration<double>(static_cast<double>(i) / rate_));
    std::this_thread::sleep_until(due);
    if (stop_) break;
    const std::int64_t chat = kFirstChat + i % chats_;
    TelegramMessage m;
    m.id = "tg-" + std::to_string(i);
    m.pushed_ms = epoch_ms(std::chrono::system_clock::now());
    fake_.push_message(token_, chat, chat, m.id);
    std::lock_guard lock(mu_);
    pushed_.push_back(std::move(m));
  }
}

bool TelegramLoad::wait_answered(int timeout_ms) {
  return fake_.wait_for(
      [this] {
        const auto r = result();
        for (const auto& m : r.messages) {
          if (m.reply_ms.empty()) return false;
        }
        return true;
      },
      std::chrono::milliseconds(timeout_ms));
}

TelegramResult TelegramLoad::result() const {
  TelegramResult r;
  {
    std::lock_guard lock(mu_);
    r.messages = pushed_;
  }
  std::map<std::string, std::size_t> index;
  for (std::size_t i = 0; i < r.messages.size(); ++i) index[r.messages[i].id] = i;
  for (const auto& s : fake_.sent(token_)) {
    // The echo agent answers the text, after the prefix a hot patch may have set ("~").
    std::string text = s.text;
    if (!text.empty() && text.front() == '~') text.erase(0, 1);
    auto it = index.find(text);
    if (it == index.end()) {
      ++r.other_replies;
      continue;
    }
    r.messages[it->second].reply_ms.push_back(epoch_ms(s.time));
  }
  r.max_concurrent_polls = fake_.max_concurrent_polls(token_);
  return r;
}

}  // namespace chaos
