// PostgresStore: leases and fencing. Every comparison with "now" is on the server's clock
// (kServerNowMs), so the replicas' clocks need not agree; the callers' now_ms is not used.
// A lease row with holder '' is free: never claimed (a placeholder) or released.

#include <algorithm>
#include <mutex>
#include <string>
#include <vector>

#include "store/postgres_store_rows.h"

namespace drawbridge::store {

using namespace postgres;

namespace {

std::string with_now(std::string_view before, std::string_view after) {
  std::string sql(before);
  sql += kServerNowMs;
  sql += after;
  return sql;
}

std::vector<Lease> read_leases(const Result& r) {
  std::vector<Lease> out;
  out.reserve(static_cast<std::size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) {
    out.push_back(read_lease(r, i));
    out.back().held = true;
  }
  std::sort(out.begin(), out.end(), [](const Lease& a, const Lease& b) { return a.name < b.name; });
  return out;
}

}  // namespace

// One statement decides: the upsert's WHERE takes the row only when it is free, expired or
// the holder's own, and a concurrent claimer of the same row waits for our commit and then
// sees the new holder (read committed re-checks the newest row version). The epoch stays
// only for the holder's own live lease.
Lease PostgresStore::claim_lease(const std::string& name, const std::string& holder,
                                 std::int64_t ttl_ms, std::int64_t /*now_ms*/) {
  if (holder.empty()) throw StoreError("claim_lease: a holder is required");
  static const std::string claim =
      with_now("WITH now AS (SELECT ",
               " AS ms) "
               "INSERT INTO leases AS l (name, holder, epoch, expires_at_ms) "
               "SELECT $1, $2, 1, now.ms + $3 FROM now "
               "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
               "epoch = CASE WHEN l.holder = excluded.holder AND l.expires_at_ms > "
               "excluded.expires_at_ms - $3 THEN l.epoch ELSE l.epoch + 1 END, "
               "expires_at_ms = excluded.expires_at_ms "
               "WHERE l.holder = '' OR l.holder = excluded.holder OR "
               "l.expires_at_ms <= excluded.expires_at_ms - $3 "
               "RETURNING name, holder, epoch, expires_at_ms");
  static const std::string current = select_from(kLeaseColumns, "FROM leases WHERE name = $1");
  std::lock_guard lock(mutex_);
  Connection& c = *conn_;
  // single: the claim commits on its own; the read after it only reports.
  Transaction tx(c, Transaction::Mode::single);
  const Result r = c.query(claim, name, holder, ttl_ms);
  Lease out;
  if (r.rows() > 0) {
    out = read_lease(r, 0);
    out.held = true;
  } else {
    // Another holder's live lease: say whose (a statement of its own sees the newest commit).
    const Result other = c.query(current, name);
    if (other.rows() == 0) throw StoreError("claim_lease: lease " + name + " vanished");
    out = read_lease(other, 0);
  }
  tx.commit();
  return out;
}

std::vector<Lease> PostgresStore::renew_leases(const std::string& holder, std::int64_t ttl_ms,
                                               std::int64_t /*now_ms*/) {
  if (holder.empty()) return {};
  // A presence lease is not brought back once expired (store.h): its sessions may be another
  // replica's by now.
  static const std::string sql =
      with_now("WITH now AS (SELECT ",
               " AS ms) UPDATE leases SET expires_at_ms = (SELECT ms FROM now) + $2 "
               "WHERE holder = $1 AND (expires_at_ms > (SELECT ms FROM now) OR "
               "NOT starts_with(name, 'replica:')) "
               "RETURNING name, holder, epoch, expires_at_ms");
  std::lock_guard lock(mutex_);
  Transaction tx(*conn_, Transaction::Mode::single);
  auto out = read_leases(conn_->query(sql, holder, ttl_ms));
  tx.commit();
  return out;
}

// Released: holder '' and expired now, epoch kept, so the next claim (anyone's, the old
// holder's too) takes epoch + 1 and the old holder's heartbeat no longer renews it.
bool PostgresStore::release_lease(const std::string& name, const std::string& holder,
                                  std::int64_t epoch, std::int64_t /*now_ms*/) {
  if (holder.empty()) return false;
  static const std::string sql = with_now("UPDATE leases SET holder = '', expires_at_ms = ",
                                          " WHERE name = $1 AND holder = $2 AND epoch = $3");
  std::lock_guard lock(mutex_);
  Transaction tx(*conn_, Transaction::Mode::single);
  const bool released = conn_->query(sql, name, holder, epoch).affected() > 0;
  tx.commit();
  return released;
}

// `held`: someone holds it now (a holder, not expired on the server's clock).
std::vector<Lease> PostgresStore::list_leases(const std::string& prefix) {
  static const std::string sql =
      with_now("SELECT name, holder, epoch, expires_at_ms, holder <> '' AND expires_at_ms > ",
               " FROM leases WHERE starts_with(name, $1) ORDER BY name");
  std::lock_guard lock(mutex_);
  Transaction tx(*conn_, Transaction::Mode::single);
  const Result r = conn_->query(sql, prefix);
  std::vector<Lease> out;
  out.reserve(static_cast<std::size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) {
    out.push_back(read_lease(r, i));
    out.back().held = r.boolean(i, 4);
  }
  tx.commit();
  return out;
}

// One statement conditioned on the lease row, which it locks (FOR SHARE) until the write
// commits: a claim that would change the epoch waits for it, so no write of an old epoch can
// land after a new holder took over. A refusal writes nothing and is no error.
namespace {
const std::string& fenced_write_sql() {
  static const std::string sql = with_now(
      "INSERT INTO kv (key, value) SELECT $1, $2 FROM leases "
      "WHERE name = $3 AND epoch = $4 AND holder <> '' AND expires_at_ms > ",
      " FOR SHARE ON CONFLICT (key) DO UPDATE SET value = excluded.value");
  return sql;
}
}  // namespace

bool PostgresStore::set_value_fenced(const std::string& key, const std::string& value,
                                     const std::string& lease_name, std::int64_t epoch,
                                     std::int64_t /*now_ms*/) {
  std::lock_guard lock(mutex_);
  Transaction tx(*conn_, Transaction::Mode::single);
  const bool written = conn_->query(fenced_write_sql(), key, value, lease_name, epoch).affected() > 0;
  tx.commit();
  return written;
}

// In a batch the fence travels with the batch's first statement that waits: the row it locks
// FOR SHARE is locked before anything after it runs (the server runs them in order), and its
// refusal fails the batch before the commit is sent.
void PostgresStore::fence(const std::string& key, const std::string& value,
                          const std::string& lease_name, std::int64_t epoch,
                          std::int64_t /*now_ms*/, const std::string& refusal) {
  std::lock_guard lock(mutex_);
  Transaction tx(*conn_, Transaction::Mode::single);
  conn_->defer(fenced_write_sql(), {key, value, lease_name, epoch}, [refusal](const Result& r) {
    if (r.affected() == 0) throw StoreError(refusal);
  });
  tx.commit();
}

// Three statements. First every session with unfinished rows gets a lease row (a free
// placeholder, holder ''), so that the others have rows to lock. Then the presence rows of the
// holders of expired session leases that are expired too are locked FOR UPDATE SKIP LOCKED:
// a batch such a replica still has in flight holds its row FOR SHARE (its fence), so its
// sessions are left for a later claim until it commits, and none of its batches can start
// meanwhile. Last the free sessions with work, and those of the dead holders just locked, are
// taken, oldest unfinished row first, FOR UPDATE SKIP LOCKED, so two replicas claiming at
// once never wait for each other nor take the same session (a row the other took and
// committed is re-checked and no longer free).
std::vector<Lease> PostgresStore::claim_sessions_with_work(const std::string& holder,
                                                           std::int64_t ttl_ms, std::size_t limit,
                                                           std::int64_t /*now_ms*/,
                                                           const std::vector<std::string>& only,
                                                           std::int64_t up_to_row,
    const std::vector<std::string>& not_channels) {
  if (holder.empty()) throw StoreError("claim_sessions_with_work: a holder is required");
  if (limit == 0) return {};
  static const std::string placeholders =
      "INSERT INTO leases (name) SELECT DISTINCT 'session:' || session_key FROM inbox "
      "WHERE state IN ('pending', 'running') AND (cardinality($1::text[]) = 0 OR "
      "session_key = ANY($1)) ON CONFLICT (name) DO NOTHING";
  static const std::string dead =
      with_now("WITH now AS (SELECT ",
               " AS ms) SELECT p.name FROM leases p WHERE starts_with(p.name, 'replica:') AND "
               "p.expires_at_ms <= (SELECT ms FROM now) AND p.name IN (SELECT 'replica:' || "
               "l.holder FROM leases l WHERE starts_with(l.name, 'session:') AND l.holder <> '' "
               "AND l.holder <> $1 AND l.expires_at_ms <= (SELECT ms FROM now)) "
               "FOR UPDATE OF p SKIP LOCKED");
  static const std::string claim = with_now(
      "WITH now AS (SELECT ",
      " AS ms), "
      "work AS (SELECT 'session:' || session_key AS name, min(id) AS oldest FROM inbox "
      "WHERE state IN ('pending', 'running') AND (cardinality($4::text[]) = 0 OR "
      "session_key = ANY($4)) GROUP BY session_key HAVING ($6::bigint = 0 OR min(id) <= $6) AND "
      "NOT bool_or(channel = ANY($7::text[]))), "
      "free AS (SELECT l.name, l.holder AS before, work.oldest FROM leases l "
      "JOIN work ON work.name = l.name WHERE l.holder = '' OR (l.holder <> $1 AND "
      "l.expires_at_ms <= (SELECT ms FROM now) AND NOT EXISTS (SELECT 1 FROM leases p WHERE "
      "p.name = 'replica:' || l.holder AND NOT (p.name = ANY($5::text[])))) "
      "ORDER BY work.oldest LIMIT $3 FOR UPDATE OF l SKIP LOCKED) "
      "UPDATE leases l SET holder = $1, epoch = l.epoch + 1, "
      "expires_at_ms = (SELECT ms FROM now) + $2 FROM free WHERE l.name = free.name "
      "RETURNING l.name, l.holder, l.epoch, l.expires_at_ms, free.oldest, free.before");
  std::lock_guard lock(mutex_);
  Connection& c = *conn_;
  const auto sessions = Param::text_array(only);
  {
    // Committed on its own outside a batch, so a concurrent claimer need not wait for ours.
    Transaction tx(c, Transaction::Mode::single);
    c.query(placeholders, sessions);
    tx.commit();
  }
  Transaction tx(c, Transaction::Mode::block);
  std::vector<std::string> locked;
  {
    const Result r = c.query(dead, holder);
    for (int i = 0; i < r.rows(); ++i) locked.push_back(r.text(i, 0));
  }
  const Result r = c.query(claim, holder, ttl_ms, clamp_to_int64(limit), sessions,
                           Param::text_array(locked), std::max<std::int64_t>(up_to_row, 0),
                           Param::text_array(not_channels));
  std::vector<std::pair<std::int64_t, Lease>> taken;
  for (int i = 0; i < r.rows(); ++i) {
    Lease l = read_lease(r, i);
    l.held = true;
    l.taken_from = r.text(i, 5);
    taken.emplace_back(r.int64(i, 4), std::move(l));
  }
  tx.commit();
  std::sort(taken.begin(), taken.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<Lease> out;
  out.reserve(taken.size());
  for (auto& t : taken) out.push_back(std::move(t.second));
  return out;
}

}  // namespace drawbridge::store
