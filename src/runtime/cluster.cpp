#include "runtime/cluster.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <map>
#include <set>

namespace drawbridge::runtime {

namespace {
const std::string kReplicaPrefix = "replica:";
const std::string kChannelPrefix = "channel:";
const std::string kSessionPrefix = "session:";
}  // namespace

Cluster::Cluster(boost::asio::io_context& io, core::Clock& clock, core::Executor& executor,
                 store::Store& store, std::string replica_id, std::chrono::milliseconds ttl)
    : io_(io),
      clock_(clock),
      executor_(executor),
      replica_id_(std::move(replica_id)),
      keeper_(ttl),
      thread_(io, store) {}

Cluster::~Cluster() {
  *alive_ = false;
  if (timer_) executor_.cancel(*timer_);
}

void Cluster::start() {
  spdlog::info("cluster: replica {} (leases of {} ms)", replica_id_, keeper_.ttl().count());
  if (!keeper_.epoch(kReplicaPrefix + replica_id_)) {
    claim(kReplicaPrefix + replica_id_, [this](Grant g) {
      if (!g.held) {
        spdlog::error(
            "cluster: replica id {} is in use by a live replica: give each replica its "
            "own cluster.replicaId",
            replica_id_);
      }
    });
  }
  schedule_heartbeat();
}

void Cluster::adopt(const std::string& name, std::int64_t epoch, core::TimePoint sent,
                    std::function<void()> on_lost) {
  keeper_.granted(name, epoch, sent);
  on_lost_[name] = std::move(on_lost);
}

void Cluster::claim(const std::string& name, std::function<void(Grant)> done) {
  const auto sent = clock_.now();
  auto grant = std::make_shared<store::Lease>();
  const auto ttl_ms = keeper_.ttl().count();
  thread_.run({[grant, name, id = replica_id_, ttl_ms, now = clock_.wall_ms()](store::Store& s) {
                *grant = s.claim_lease(name, id, ttl_ms, now);
              }},
              [this, alive = alive_, grant, name, sent, done = std::move(done)](std::string error) {
                if (!*alive) return;
                Grant g;
                if (!error.empty()) {
                  g.error = error;
                } else {
                  g.held = grant->held;
                  g.epoch = grant->epoch;
                  g.holder = grant->holder;
                }
                if (g.held) {
                  keeper_.granted(name, g.epoch, sent);
                }
                done(std::move(g));
              });
}

void Cluster::claim_sessions(std::vector<std::string> sessions,
                             std::function<void(std::vector<Taken>)> done,
                             std::int64_t up_to_row, std::vector<std::string> not_channels) {
  const auto sent = clock_.now();
  auto taken = std::make_shared<std::vector<store::Lease>>();
  const auto ttl_ms = keeper_.ttl().count();
  const auto limit = sessions.empty() ? kClaimBatch : sessions.size();
  thread_.run({[taken, sessions = std::move(sessions), id = replica_id_, ttl_ms, limit,
                now = clock_.wall_ms(), up_to_row,
                not_channels = std::move(not_channels)](store::Store& s) {
                *taken = s.claim_sessions_with_work(id, ttl_ms, limit, now, sessions, up_to_row,
                                                    not_channels);
              }},
              [this, alive = alive_, taken, sent, done = std::move(done)](std::string error) {
                if (!*alive) return;
                if (!error.empty()) {
                  spdlog::warn("cluster: cannot claim sessions: {}", error);
                  return done({});
                }
                std::vector<Taken> out;
                for (const auto& l : *taken) {
                  keeper_.granted(l.name, l.epoch, sent);
                  auto key = l.name.substr(kSessionPrefix.size());
                  sessions_.insert(key);
                  if (!l.taken_from.empty()) {
                    spdlog::info("cluster: session {} taken from replica {} (it stopped "
                                 "renewing its leases)",
                                 key, l.taken_from);
                  }
                  out.push_back({std::move(key), !l.taken_from.empty()});
                }
                done(std::move(out));
              });
}

void Cluster::claim_session(const std::string& session,
                            std::function<void(bool held, std::string holder)> done) {
  claim(kSessionPrefix + session, [this, session, done = std::move(done)](Grant g) {
    if (g.held) sessions_.insert(session);
    done(g.held, g.held ? std::string() : g.holder);
  });
}

void Cluster::release_sessions(const std::vector<std::string>& sessions, bool announce) {
  std::vector<std::pair<std::string, std::int64_t>> given;
  for (const auto& session : sessions) {
    const auto name = kSessionPrefix + session;
    sessions_.erase(session);
    released_[session] = clock_.now();
    if (auto epoch = keeper_.epoch(name)) given.emplace_back(name, *epoch);
    keeper_.forget(name);
  }
  if (given.empty()) return;
  const auto channel = announce ? work_channel_ : std::string();
  thread_.run({[given, id = replica_id_, now = clock_.wall_ms(), channel](store::Store& s) {
                for (const auto& [name, epoch] : given) s.release_lease(name, id, epoch, now);
                // After the releases committed, on the same connection: a replica that hears
                // it finds them free.
                if (!channel.empty()) s.notify(channel, kSessionsFreed);
              }},
              [n = given.size()](std::string error) {
                if (!error.empty()) {
                  spdlog::warn("cluster: {} idle session(s) not given back ({}): the next "
                               "heartbeat finds them held here again",
                               n, error);
                }
              });
}

void Cluster::found_sessions(const std::vector<store::Lease>& renewed, core::TimePoint sent) {
  // A heartbeat sent before a release may still renew what was given back since.
  std::erase_if(released_, [&](const auto& r) { return r.second + keeper_.ttl() < sent; });
  std::vector<std::string> found;
  for (const auto& l : renewed) {
    if (l.name.rfind(kSessionPrefix, 0) != 0) continue;
    auto key = l.name.substr(kSessionPrefix.size());
    if (sessions_.count(key)) continue;
    if (auto r = released_.find(key); r != released_.end() && r->second >= sent) continue;
    keeper_.granted(l.name, l.epoch, sent);
    sessions_.insert(key);
    found.push_back(std::move(key));
  }
  if (found.empty()) return;
  spdlog::warn("cluster: {} session(s) held in the store and not known here: running them", found.size());
  if (on_found_) on_found_(std::move(found));
}

void Cluster::adopt_sessions(const std::vector<store::Lease>& leases, core::TimePoint sent) {
  for (const auto& l : leases) {
    if (l.holder != replica_id_ || l.name.rfind(kSessionPrefix, 0) != 0) continue;
    keeper_.granted(l.name, l.epoch, sent);
    sessions_.insert(l.name.substr(kSessionPrefix.size()));
  }
}

void Cluster::list(const std::string& prefix,
                   std::function<void(std::vector<store::Lease>)> done) {
  auto out = std::make_shared<std::vector<store::Lease>>();
  thread_.run({[out, prefix](store::Store& s) { *out = s.list_leases(prefix); }},
              [alive = alive_, out, done = std::move(done)](std::string error) {
                if (*alive && error.empty()) done(std::move(*out));
              });
}

std::chrono::milliseconds Cluster::remaining(const std::string& name) const {
  return keeper_.remaining(name, clock_.now());
}

void Cluster::release(const std::string& name) {
  const auto epoch = keeper_.epoch(name);
  keeper_.forget(name);
  if (!epoch) return;
  thread_.run({[name, id = replica_id_, epoch = *epoch, now = clock_.wall_ms()](store::Store& s) {
                s.release_lease(name, id, epoch, now);
              }},
              [name](std::string error) {
                if (!error.empty()) {
                  spdlog::warn("cluster: lease {} not released ({}): it expires instead", name,
                               error);
                }
              });
}

void Cluster::schedule_heartbeat() {
  timer_ = executor_.schedule(keeper_.heartbeat_interval(), [this, alive = alive_] {
    if (!*alive) return;
    timer_.reset();
    heartbeat();
  });
}

void Cluster::heartbeat() {
  if (beating_) return schedule_heartbeat();  // the last one is still out: the store is slow
  beating_ = true;
  const auto sent = clock_.now();
  auto renewed = std::make_shared<std::vector<store::Lease>>();
  thread_.run(
      {[renewed, id = replica_id_, ttl_ms = keeper_.ttl().count(),
        now = clock_.wall_ms()](store::Store& s) { *renewed = s.renew_leases(id, ttl_ms, now); }},
      [this, alive = alive_, renewed, sent](std::string error) {
        if (!*alive) return;
        beating_ = false;
        if (!error.empty()) {
          ++failed_heartbeats_;
          spdlog::warn("cluster: heartbeat failed ({} in a row): {}", failed_heartbeats_, error);
          return schedule_heartbeat();
        }
        failed_heartbeats_ = 0;
        ++heartbeats_;
        std::vector<core::LeaseKeeper::Held> held;
        for (const auto& l : *renewed) held.push_back({l.name, l.epoch});
        found_sessions(*renewed, sent);
        for (const auto& name : keeper_.renewed(held, sent)) {
          spdlog::warn("cluster: lease {} lost (another replica took it)", name);
          if (name.rfind(kSessionPrefix, 0) == 0) sessions_.erase(name.substr(kSessionPrefix.size()));
          if (auto it = on_lost_.find(name); it != on_lost_.end()) {
            auto fn = std::move(it->second);
            on_lost_.erase(it);
            executor_.post(std::move(fn));
          }
        }
        if (!keeper_.epoch(kReplicaPrefix + replica_id_)) {
          claim(kReplicaPrefix + replica_id_, [](Grant) {});
        }
        schedule_heartbeat();
      });
}

void release_on_exit(store::Store& store, const std::string& replica_id, std::int64_t now_ms,
                     const std::string& work_channel) {
  try {
    bool sessions = false;
    // Sessions first: the presence goes last, so no replica takes them as a dead one's.
    for (const auto& l : store.list_leases(kSessionPrefix)) {
      if (l.holder == replica_id) sessions = store.release_lease(l.name, replica_id, l.epoch, now_ms) || sessions;
    }
    if (sessions && !work_channel.empty()) store.notify(work_channel, kSessionsFreed);
    // A channel stops by releasing its account's lease; one that could not is released here.
    for (const auto& l : store.list_leases(kChannelPrefix)) {
      if (l.holder == replica_id) store.release_lease(l.name, replica_id, l.epoch, now_ms);
    }
    for (const auto& l : store.list_leases(kReplicaPrefix + replica_id)) {
      if (l.holder == replica_id && l.name == kReplicaPrefix + replica_id) {
        store.release_lease(l.name, replica_id, l.epoch, now_ms);
      }
    }
  } catch (const std::exception& e) {
    spdlog::warn("cluster: leases not released at exit ({}): they expire instead", e.what());
  }
}

std::string default_replica_id(int port) {
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') {
    return "replica:" + std::to_string(port);
  }
  return std::string(host) + ":" + std::to_string(port);
}

ClusterView cluster_view(store::Store& store) {
  ClusterView view;
  std::map<std::string, std::size_t> sessions;
  for (const auto& l : store.list_leases(kSessionPrefix)) {
    if (!l.holder.empty()) ++sessions[l.holder];
  }
  for (const auto& l : store.list_leases(kReplicaPrefix)) {
    if (l.holder.empty()) continue;
    view.replicas.push_back({l.holder, l.expires_at_ms, sessions[l.holder]});
  }
  for (const auto& l : store.list_leases(kChannelPrefix)) {
    view.accounts.push_back({l.name, l.holder, l.epoch, l.expires_at_ms});
  }
  return view;
}

}  // namespace drawbridge::runtime

namespace drawbridge::runtime {

nlohmann::json cluster_json(const Cluster& cluster, store::Store& store) {
  nlohmann::json out = {{"replicaId", cluster.replica_id()},
                        {"leaseMs", cluster.ttl().count()},
                        {"failedHeartbeats", cluster.failed_heartbeats()}};
  try {
    const auto view = cluster_view(store);
    nlohmann::json replicas = nlohmann::json::array();
    for (const auto& r : view.replicas) {
      replicas.push_back(
          {{"id", r.id}, {"expiresAtMs", r.expires_at_ms}, {"sessions", r.sessions}});
    }
    nlohmann::json accounts = nlohmann::json::array();
    for (const auto& a : view.accounts) {
      accounts.push_back(
          {{"name", a.name},
           {"holder", a.holder.empty() ? nlohmann::json() : nlohmann::json(a.holder)},
           {"epoch", a.epoch},
           {"expiresAtMs", a.expires_at_ms}});
    }
    out["replicas"] = std::move(replicas);
    out["accounts"] = std::move(accounts);
  } catch (const std::exception& e) {
    out["error"] = e.what();
  }
  return out;
}

}  // namespace drawbridge::runtime
