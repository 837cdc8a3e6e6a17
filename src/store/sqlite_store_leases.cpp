// SqliteStore: leases and the fenced write (store.h, "Leases and fencing"). With SQLite one
// gateway holds every lease; the rules are the same as PostgreSQL's so the pipeline and the
// channels run one code path whatever the driver. Time is the caller's `now_ms`.

#include <algorithm>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "store/sqlite_store_impl.h"

namespace drawbridge::store {

namespace {

constexpr std::string_view kLeaseColumns = "name, holder, epoch, expires_at_ms";

Lease read_lease(const Cursor& c) {
  Lease l;
  l.name = c.text(0);
  l.holder = c.text(1);
  l.epoch = c.int64(2);
  l.expires_at_ms = c.int64(3);
  return l;
}

std::optional<Lease> find_lease(Database& db, const std::string& name) {
  Statement st = db.prepare(select_from(kLeaseColumns, "FROM leases WHERE name = ?"));
  Cursor c = st.query(name);
  if (!c.next()) return std::nullopt;
  return read_lease(c);
}

void check_ttl(const char* caller, std::int64_t ttl_ms) {
  if (ttl_ms <= 0) throw StoreError(std::string(caller) + ": the lease time must be positive");
}

// claim_lease inside the caller's transaction.
Lease claim(Database& db, const std::string& name, const std::string& holder, std::int64_t ttl_ms,
            std::int64_t now_ms) {
  if (name.empty() || holder.empty()) {
    throw StoreError("claim_lease: a lease needs a name and a holder");
  }
  const std::int64_t until = now_ms + ttl_ms;
  auto current = find_lease(db, name);
  if (!current) {
    Statement ins =
        db.prepare("INSERT INTO leases (name, holder, epoch, expires_at_ms) VALUES (?, ?, 1, ?)");
    ins.execute(name, holder, until);
    return Lease{name, holder, 1, until, true};
  }
  const bool live = !current->holder.empty() && current->expires_at_ms > now_ms;
  if (live && current->holder != holder) return *current;  // held = false
  const std::int64_t epoch = live ? current->epoch : current->epoch + 1;
  Statement upd =
      db.prepare("UPDATE leases SET holder = ?, epoch = ?, expires_at_ms = ? WHERE name = ?");
  upd.execute(holder, epoch, until, name);
  return Lease{name, holder, epoch, until, true};
}

}  // namespace

Lease SqliteStore::claim_lease(const std::string& name, const std::string& holder,
                               std::int64_t ttl_ms, std::int64_t now_ms) {
  check_ttl("claim_lease", ttl_ms);
  Impl& s = *impl_;
  std::lock_guard lock(s.mutex);
  Transaction tx(*s.db, Transaction::Mode::write);
  Lease out = claim(*s.db, name, holder, ttl_ms, now_ms);
  tx.commit();
  return out;
}

std::vector<Lease> SqliteStore::renew_leases(const std::string& holder, std::int64_t ttl_ms,
                                             std::int64_t now_ms) {
  check_ttl("renew_leases", ttl_ms);
  Impl& s = *impl_;
  std::lock_guard lock(s.mutex);
  Transaction tx(*s.db, Transaction::Mode::write);
  std::vector<Lease> out;
  {
    Statement st = s.db->prepare(
        "UPDATE leases SET expires_at_ms = ?1 WHERE holder = ?2 AND holder <> '' AND "
        "(expires_at_ms > ?3 OR substr(name, 1, 8) <> 'replica:') RETURNING " +
        std::string(kLeaseColumns));
    Cursor c = st.query(now_ms + ttl_ms, holder, now_ms);
    while (c.next()) {
      out.push_back(read_lease(c));
      out.back().held = true;
    }
  }
  tx.commit();
  return out;
}

bool SqliteStore::release_lease(const std::string& name, const std::string& holder,
                                std::int64_t epoch, std::int64_t now_ms) {
  Impl& s = *impl_;
  std::lock_guard lock(s.mutex);
  Transaction tx(*s.db, Transaction::Mode::write);
  // Released: nobody holds it and it has expired, so the next claim takes a new epoch and a
  // heartbeat of the old holder cannot revive it.
  Statement st = s.db->prepare(
      "UPDATE leases SET holder = '', expires_at_ms = min(expires_at_ms, ?) "
      "WHERE name = ? AND holder = ? AND epoch = ? AND holder <> ''");
  const bool released = st.execute(now_ms, name, holder, epoch) > 0;
  tx.commit();
  return released;
}

std::vector<Lease> SqliteStore::list_leases(const std::string& prefix) {
  Impl& s = *impl_;
  std::lock_guard lock(s.mutex);
  Transaction tx(*s.db, Transaction::Mode::read);
  std::vector<Lease> out;
  {
    Statement st = s.db->prepare(select_from(
        kLeaseColumns, "FROM leases WHERE substr(name, 1, length(?1)) = ?1 ORDER BY name"));
    Cursor c = st.query(prefix);
    while (c.next()) out.push_back(read_lease(c));
  }
  tx.commit();
  return out;
}

bool SqliteStore::set_value_fenced(const std::string& key, const std::string& value,
                                   const std::string& lease_name, std::int64_t epoch,
                                   std::int64_t now_ms) {
  Impl& s = *impl_;
  std::lock_guard lock(s.mutex);
  Transaction tx(*s.db, Transaction::Mode::write);
  Statement st = s.db->prepare(
      "INSERT INTO kv (key, value) SELECT ?1, ?2 WHERE EXISTS (SELECT 1 FROM leases WHERE "
      "name = ?3 AND epoch = ?4 AND holder <> '' AND expires_at_ms > ?5) "
      "ON CONFLICT (key) DO UPDATE SET value = excluded.value");
  const bool written = st.execute(key, value, lease_name, epoch, now_ms) > 0;
  tx.commit();
  return written;
}

std::vector<Lease> SqliteStore::claim_sessions_with_work(const std::string& holder,
                                                         std::int64_t ttl_ms, std::size_t limit,
                                                         std::int64_t now_ms,
                                                         const std::vector<std::string>& only,
                                                         std::int64_t up_to_row,
    const std::vector<std::string>& not_channels) {
  check_ttl("claim_sessions_with_work", ttl_ms);
  Impl& s = *impl_;
  std::lock_guard lock(s.mutex);
  Transaction tx(*s.db, Transaction::Mode::write);
  // Free, released, or expired with its holder's presence expired or missing (store.h).
  struct Candidate {
    std::int64_t oldest;
    std::string key, before;  // the holder before
  };
  std::vector<Candidate> sessions;
  {
    Statement st = s.db->prepare(
        "SELECT i.session_key, coalesce(l.holder, ''), min(i.id) FROM inbox i LEFT JOIN leases l ON "
        "l.name = 'session:' || i.session_key WHERE i.state IN ('pending', 'running') AND "
        "(?3 IS NULL OR i.session_key = ?3) AND (l.name IS NULL OR l.holder = '' OR "
        "(l.holder <> ?4 AND l.expires_at_ms <= ?1 AND NOT EXISTS (SELECT 1 FROM leases p "
        "WHERE p.name = 'replica:' || l.holder AND p.expires_at_ms > ?1))) "
        "GROUP BY i.session_key HAVING (?5 <= 0 OR min(i.id) <= ?5) AND "
        "NOT max(i.channel IN (SELECT value FROM json_each(?6))) ORDER BY min(i.id) LIMIT ?2");
    const auto cap = static_cast<std::int64_t>(std::min<std::size_t>(limit, 1u << 20));
    // Sessions with a row of these channels are left to the replica that holds the channel's
    // connection (a JSON array: SQLite binds no arrays).
    const std::string skip = nlohmann::json(not_channels).dump();
    auto collect = [&](Cursor c) {
      while (c.next()) sessions.push_back({c.int64(2), c.text(0), c.text(1)});
    };
    if (only.empty()) {
      collect(st.query(now_ms, cap, nullptr, holder, up_to_row, skip));
    } else {
      for (const auto& key : only) {
        if (sessions.size() >= limit) break;
        collect(st.query(now_ms, cap, key, holder, up_to_row, skip));
      }
    }
  }
  std::sort(sessions.begin(), sessions.end(),
            [](const Candidate& a, const Candidate& b) { return a.oldest < b.oldest; });
  if (sessions.size() > limit) sessions.resize(limit);
  std::vector<Lease> out;
  for (const auto& c : sessions) {
    Lease l = claim(*s.db, "session:" + c.key, holder, ttl_ms, now_ms);
    if (!l.held) continue;
    l.taken_from = c.before;
    out.push_back(std::move(l));
  }
  tx.commit();
  return out;
}

}  // namespace drawbridge::store
