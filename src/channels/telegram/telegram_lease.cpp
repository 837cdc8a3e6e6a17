// TelegramChannel: the account's cluster-wide lease (pipeline/account_leases.h). With replicas
// on one PostgreSQL, only the holder polls the bot, each getUpdates ends (Telegram's own
// `timeout`) before the lease could pass to another replica, and the offset is saved fenced
// by the lease's epoch. Without leases (SQLite) none of this runs.

#include <spdlog/spdlog.h>

#include <algorithm>

#include "channels/telegram/telegram_channel.h"

namespace drawbridge::channels {

namespace {
// A poll needs at least this much of the lease left: its timeout is what is left minus the
// slack (rounded down to whole seconds, as Telegram takes them), and never below one second.
constexpr std::chrono::milliseconds kPollSlack{500};
constexpr std::chrono::milliseconds kMinPollWindow{1500};
}  // namespace

std::string TelegramChannel::lease_name() const {
  return "channel:telegram:" + options_.bot_id();
}

bool TelegramChannel::hold_lease() {
  auto* leases = pipeline_.account_leases();
  // A webhook bot polls nothing: any replica may take Telegram's POSTs.
  if (leases == nullptr || !options_.webhook_url.empty()) return true;
  if (lease_epoch_ != 0 && leases->remaining(lease_name()) >= kMinPollWindow) return true;
  if (claiming_) return false;
  claiming_ = true;
  leases->claim(lease_name(), [this, alive = alive_, leases](pipeline::AccountLeases::Grant g) {
    if (!*alive) return;
    claiming_ = false;
    if (!running_) return end_stop();
    if (!g.held) {
      if (lease_epoch_ != 0) {
        spdlog::warn("channel {}: lost the lease of bot {} to replica {}: not polling", id_,
                     options_.bot_id(), g.holder.empty() ? "?" : g.holder);
      }
      lease_epoch_ = 0;
      ready_ = false;
      standby_ = g.error.empty()
                     ? "standby: bot " + options_.bot_id() + " is polled by replica " + g.holder
                     : "lease: " + g.error;
      return retry_later(std::max(leases->ttl() / 2, std::chrono::milliseconds(100)));
    }
    if (g.epoch != lease_epoch_) {
      // Taken (first, or over from another replica): its offset is the store's now.
      if (auto saved = pipeline_.load_cursor("telegram." + options_.bot_id())) {
        try {
          offset_ = std::max<std::int64_t>(offset_, std::stoll(*saved));
        } catch (const std::exception&) {
        }
      }
      spdlog::info("channel {}: replica {} polls bot {} (lease epoch {})", id_,
                   leases->replica_id(), options_.bot_id(), g.epoch);
      // What the last holder took in runs before what this one polls (arrival order): the
      // sessions this replica holds run it now rather than when its notice comes.
      try {
        pipeline_.adopt_unfinished();
      } catch (const std::exception& e) {
        spdlog::warn("channel {}: cannot read what the last poller accepted: {}", id_, e.what());
      }
    }
    lease_epoch_ = g.epoch;
    standby_.clear();
    poll();
  });
  return false;
}

int TelegramChannel::poll_timeout_s() const {
  auto* leases = pipeline_.account_leases();
  if (leases == nullptr) return options_.poll_timeout_s;
  const auto left = leases->remaining(lease_name()) - kPollSlack;
  const auto secs = std::chrono::duration_cast<std::chrono::seconds>(left).count();
  return static_cast<int>(std::clamp<std::int64_t>(secs, 0, options_.poll_timeout_s));
}

std::optional<pipeline::Pipeline::CursorFence> TelegramChannel::cursor_fence() const {
  if (pipeline_.account_leases() == nullptr || lease_epoch_ == 0) return std::nullopt;
  return pipeline::Pipeline::CursorFence{lease_name(), lease_epoch_};
}

void TelegramChannel::on_fenced(const std::string& error) {
  spdlog::warn("channel {}: {}: another replica polls bot {} now", id_, error, options_.bot_id());
  lease_epoch_ = 0;
}

void TelegramChannel::release_lease() {
  auto* leases = pipeline_.account_leases();
  if (leases == nullptr || lease_epoch_ == 0) return;
  leases->release(lease_name());
  lease_epoch_ = 0;
}

}  // namespace drawbridge::channels
