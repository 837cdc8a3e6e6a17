// IrcChannel: the account's cluster-wide lease (pipeline/account_leases.h). With replicas on
// one PostgreSQL, only the holder of "channel:irc:<nick>@<host>:<port>" keeps the connection:
// it claims the lease before it connects, a replica that finds it held stands by and asks
// again every leaseMs / 2, and a holder whose lease may have passed (its heartbeats failed, or
// it was paused) drops the connection without writing another byte. Without leases (SQLite)
// none of this runs. docs/DECISIONS.md "IRC under a lease".

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>

#include "channels/irc/irc_channel.h"
#include "channels/irc/irc_conn.h"

namespace drawbridge::channels {

std::string IrcChannel::lease_name() const {
  std::string host = options_.host;
  for (auto& ch : host) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return "channel:irc:" + irc::lower(options_.nick) + "@" + host + ":" +
         std::to_string(options_.port);
}

bool IrcChannel::lease_ok() const {
  auto* leases = pipeline_.account_leases();
  return leases == nullptr ||
         (lease_epoch_ != 0 && leases->remaining(lease_name()) > std::chrono::milliseconds(0));
}

bool IrcChannel::served_elsewhere() const {
  return pipeline_.account_leases() != nullptr && running_ && lease_epoch_ == 0;
}

bool IrcChannel::hold_lease(std::function<void()> then) {
  auto* leases = pipeline_.account_leases();
  if (leases == nullptr || lease_ok()) return true;
  if (claiming_) return false;
  claiming_ = true;
  leases->claim(lease_name(), [this, alive = alive_, leases,
                               then = std::move(then)](pipeline::AccountLeases::Grant g) {
    if (!*alive) return;
    claiming_ = false;
    if (!running_) {
      if (g.held) leases->release(lease_name());  // stopped meanwhile
      return;
    }
    if (!g.held) {
      lease_epoch_ = 0;
      state_ = pipeline::LinkState::standby;
      const std::string why =
          g.error.empty() ? "standby: " + options_.nick + " on " + options_.host +
                                " is connected by replica " + g.holder
                          : "lease: " + g.error;
      if (why != standby_) spdlog::info("channel {}: {}", id_, why);
      standby_ = why;
      if (adopted_ && conn_) {
        // Handed over by the last process, whose lease ran out meanwhile: not ours to use.
        conn_->close();
        conn_.reset();
        adopted_ = false;
      }
      lease_timer_ = executor_.schedule(
          std::max(leases->ttl() / 2, std::chrono::milliseconds(100)), [this, alive] {
            if (!*alive) return;
            lease_timer_.reset();
            connect();
          });
      return;
    }
    const bool taken = g.epoch != lease_epoch_;
    lease_epoch_ = g.epoch;
    standby_.clear();
    if (taken) {
      spdlog::info("channel {}: replica {} keeps the connection of {} on {} (lease epoch {})",
                   id_, leases->replica_id(), options_.nick, options_.host, g.epoch);
    }
    arm_lease_watch();
    then();
    // What waited for this connection (sessions of its chats) runs here now.
    if (taken) pipeline_.connection_taken();
  });
  return false;
}

void IrcChannel::arm_lease_watch() {
  auto* leases = pipeline_.account_leases();
  if (leases == nullptr || lease_watch_) return;
  lease_watch_ = executor_.schedule(
      std::max(leases->ttl() / 5, std::chrono::milliseconds(50)), [this, alive = alive_] {
        if (!*alive) return;
        lease_watch_.reset();
        if (!running_ || lease_epoch_ == 0) return;
        if (!lease_ok()) return lose_lease();
        arm_lease_watch();
      });
}

void IrcChannel::lose_lease() {
  auto* leases = pipeline_.account_leases();
  spdlog::warn("channel {}: the lease of {} on {} may have passed to another replica (its "
               "renewals failed, or this process was paused): dropping the connection",
               id_, options_.nick, options_.host);
  lease_epoch_ = 0;
  if (leases != nullptr) leases->release(lease_name());  // forgets it; the store may refuse
  // Closed without QUIT: nothing more is written under a lease that may be another's.
  fail_connection("the account's lease was lost");
}

void IrcChannel::release_lease() {
  auto* leases = pipeline_.account_leases();
  if (lease_watch_) {
    executor_.cancel(*lease_watch_);
    lease_watch_.reset();
  }
  if (lease_timer_) {
    executor_.cancel(*lease_timer_);
    lease_timer_.reset();
  }
  standby_.clear();
  if (leases == nullptr || lease_epoch_ == 0) return;
  leases->release(lease_name());
  lease_epoch_ = 0;
}

}  // namespace drawbridge::channels
