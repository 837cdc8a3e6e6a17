#include "runtime/replica.h"

#include <charconv>
#include <cstdio>

#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

namespace drawbridge::runtime {

Replica::Replica(boost::asio::io_context& io, core::Clock& clock, core::Executor& executor,
                 store::Store& leases, pipeline::Pipeline& pipeline, Settings settings,
                 Hooks hooks)
    : io_(io),
      clock_(clock),
      executor_(executor),
      leases_(leases),
      pipeline_(pipeline),
      settings_(std::move(settings)),
      hooks_(std::move(hooks)) {}

Replica::~Replica() {
  *alive_ = false;
  if (scan_timer_) executor_.cancel(*scan_timer_);
  if (peers_timer_) executor_.cancel(*peers_timer_);
  listener_.reset();  // joins its thread: nothing posts from it any more
  if (relay_) pipeline_.remove_listener(relay_.get());
  pipeline_.set_account_leases(nullptr);
  pipeline_.set_session_leases(nullptr);
  cluster_.reset();
}

pipeline::StoreOp Replica::fence() const {
  return [id = settings_.id, epoch = presence_epoch_, &clock = clock_](store::Store& s) {
    const auto now = clock.wall_ms();
    s.fence("cluster.fence." + id, std::to_string(now), "replica:" + id, epoch, now,
            "fenced: replica " + id +
                " is no longer live in the cluster (its presence lease ran out)");
  };
}

std::string notice_channel(const std::string& base, const std::string& scope) {
  // Notices are database-wide: a cluster on another schema of the same database must not hear
  // this one's. FNV-1a of the scope keeps the name short and within [a-z0-9_].
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : scope) {
    h ^= c;
    h *= 1099511628211ull;
  }
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  return base + "_" + hex;
}

std::optional<std::string> Replica::join() {
  const auto& id = settings_.id;
  cluster_ = std::make_unique<Cluster>(io_, clock_, executor_, leases_, id, settings_.ttl);
  const auto sent = clock_.now();
  const std::string presence = "replica:" + id;
  try {
    const auto scope = leases_.notice_scope();
    work_channel_ = notice_channel(pipeline::Pipeline::kWorkChannel, scope);
    events_channel_ = notice_channel(EventRelay::kEventsChannel, scope);
    // The presence first: while it lives, the sessions this replica holds are its own (no
    // other replica takes them), so the list read after it is complete.
    const auto mine = leases_.claim_lease(presence, id, settings_.ttl.count(), clock_.wall_ms());
    if (!mine.held) {
      return "cluster: replica id " + id + " is in use by a live replica (" + mine.holder +
             "): give each replica its own cluster.replicaId";
    }
    presence_epoch_ = mine.epoch;
    cluster_->adopt(presence, mine.epoch, sent, [this, alive = alive_] {
      if (*alive && hooks_.lost) hooks_.lost("its presence lease ran out (it was cut off or paused past it)");
    });
    cluster_->adopt_sessions(leases_.list_leases("session:"), sent);
  } catch (const std::exception& e) {
    return std::string("cluster: cannot join: ") + e.what();
  }
  pipeline_.set_work_channel(work_channel_);
  cluster_->set_work_channel(work_channel_);
  pipeline_.set_session_leases(cluster_.get());
  cluster_->on_sessions_found([this](std::vector<std::string> found) {
    std::vector<pipeline::SessionLeases::Taken> taken;
    for (auto& s : found) taken.push_back({std::move(s), false});
    pipeline_.take_over_sessions(std::move(taken));
  });
  relay_ = std::make_unique<EventRelay>(
      executor_, id,
      [this](std::vector<std::string> payloads) {
        pipeline_.write_along(
            [payloads = std::move(payloads), channel = events_channel_](store::Store& s) {
              s.notify_all(channel, payloads);
            });
      },
      [this](pipeline::ChatEvent ev) { pipeline_.publish(std::move(ev)); });
  pipeline_.add_listener(relay_.get());
  spdlog::info("cluster: replica {} joined (presence lease epoch {}): it runs the sessions it "
               "holds ({} now) and takes over those of a replica that stops or whose lease "
               "({} ms) runs out",
               id, presence_epoch_, cluster_->held_sessions().size(), settings_.ttl.count());
  pipeline_.set_account_leases(cluster_.get());
  cluster_->start();
  try {
    store::PgListener::Hooks h;
    h.on_notices = [this, alive = alive_](std::vector<store::PgListener::Notice> notices) {
      boost::asio::post(io_, [this, alive, notices = std::move(notices)]() mutable {
        if (*alive) on_notices(std::move(notices));
      });
    };
    h.on_connected = [this, alive = alive_] {
      // Notices sent while it was not listening are gone: look at the store instead.
      boost::asio::post(io_, [this, alive] {
        if (!*alive) return;
        say_hello();
        adopt_soon();
      });
    };
    listener_ = std::make_unique<store::PgListener>(
        settings_.conninfo, settings_.password,
        std::vector<std::string>{work_channel_, events_channel_},
        std::move(h));
  } catch (const std::exception& e) {
    return std::string("cluster: cannot listen for the other replicas: ") + e.what();
  }
  schedule_scan();
  watch_peers();
  return std::nullopt;
}

void Replica::say_hello() {
  pipeline_.write_along([channel = events_channel_, hello = EventRelay::hello(settings_.id)](
                            store::Store& s) { s.notify(channel, hello); });
}

void Replica::watch_peers() {
  cluster_->list("replica:", [this, alive = alive_](std::vector<store::Lease> leases) {
    if (!*alive) return;
    // Lease times are the database's clock; a margin of one lease time covers clocks apart.
    const auto horizon = clock_.wall_ms() - settings_.ttl.count();
    bool peers = false;
    for (const auto& l : leases) {
      peers = peers || (!l.holder.empty() && l.holder != settings_.id && l.expires_at_ms > horizon);
    }
    if (last_hello_ && clock_.now() - *last_hello_ < settings_.ttl) peers = true;
    relay_->set_peers(peers);
  });
  peers_timer_ = executor_.schedule(std::max(settings_.ttl / 3, std::chrono::milliseconds(100)),
                                    [this, alive = alive_] {
                                      if (!*alive) return;
                                      peers_timer_.reset();
                                      watch_peers();
                                    });
}

void Replica::on_notices(std::vector<store::PgListener::Notice> notices) {
  std::vector<std::int64_t> rows;
  bool freed = false;
  for (const auto& n : notices) {
    if (n.channel == work_channel_) {
      if (n.payload == kSessionsFreed) {
        freed = true;
        continue;
      }
      if (pipeline_.act_on_notice(n.payload)) continue;  // an abort or reset passed on
      std::int64_t id = 0;
      const auto* end = n.payload.data() + n.payload.size();
      auto [p, ec] = std::from_chars(n.payload.data(), end, id);
      if (ec == std::errc() && p == end && id > 0) rows.push_back(id);
    } else if (n.channel == events_channel_) {
      // A replica that says hello may not have its presence lease in the store yet.
      if (n.payload.rfind("hello ", 0) == 0 && n.payload != EventRelay::hello(settings_.id)) {
        last_hello_ = clock_.now();
      }
      relay_->on_notice(n.payload);
    }
  }
  if (freed) pipeline_.claim_free_sessions(true);  // a replica stopped and gave its sessions back
  if (rows.empty()) return;
  try {
    // The rows of sessions held here run; the others are their holders' (or claimed by the
    // replica that accepted them).
    pipeline_.adopt(rows);
  } catch (const std::exception& e) {
    spdlog::warn("cluster: cannot read the messages other replicas accepted: {}", e.what());
  }
}

void Replica::adopt_soon() {
  if (adopt_queued_) return;
  adopt_queued_ = true;
  executor_.post([this, alive = alive_] {
    if (!*alive) return;
    adopt_queued_ = false;
    adopt_now();
  });
}

void Replica::adopt_now() {
  pipeline_.claim_free_sessions();
  pipeline_.release_idle_sessions(kIdleSession, kIdleReleaseBatch);
  try {
    pipeline_.adopt_unfinished();
  } catch (const std::exception& e) {
    spdlog::warn("cluster: cannot read the messages other replicas accepted: {}", e.what());
  }
}

void Replica::schedule_scan() {
  // The backstop for a lost notice.
  const auto every = std::max(settings_.ttl / 2, std::chrono::milliseconds(100));
  scan_timer_ = executor_.schedule(every, [this, alive = alive_] {
    if (!*alive) return;
    scan_timer_.reset();
    adopt_now();
    schedule_scan();
  });
}

nlohmann::json Replica::status(store::Store& reader) const {
  auto out = cluster_json(*cluster_, reader);
  out["sessionsHeld"] = cluster_->held_sessions().size();
  if (relay_) {
    out["events"] = {{"sent", relay_->sent()},
                     {"received", relay_->received()},
                     {"refused", relay_->refused()}};
  }
  return out;
}

}  // namespace drawbridge::runtime
