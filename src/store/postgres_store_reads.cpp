// PostgresStore: reads for the control plane and the turns (transcript, counts).

#include <algorithm>
#include <limits>
#include <mutex>

#include "store/postgres_store_rows.h"

namespace drawbridge::store {

using namespace postgres;

std::vector<TranscriptEntry> PostgresStore::transcript(const std::string& session_key,
                                                       std::size_t limit) {
  // A reset session (session_meta.history_from) starts its transcript after the reset.
  static const std::string sql =
      select_from(kTranscriptColumns,
                  "FROM transcript WHERE session_key = $1 AND id > coalesce((SELECT history_from "
                  "FROM session_meta WHERE session_key = $1), 0) ORDER BY id DESC LIMIT $2");
  std::lock_guard lock(mutex_);
  Transaction tx(*conn_, Transaction::Mode::single);
  const Result r = conn_->query(sql, session_key, clamp_to_int64(limit));
  std::vector<TranscriptEntry> entries;
  entries.reserve(static_cast<std::size_t>(r.rows()));
  for (int i = r.rows() - 1; i >= 0; --i) entries.push_back(read_transcript(r, i));
  tx.commit();
  return entries;  // the query reads newest first
}

// The byte bound is applied by the server, so that only the entries of the page travel and
// are held here (a libpq result is held whole): a running total of the text sizes, newest
// first, keeps an entry while the page stays within `limit` entries and `max_bytes` (the
// newest always), exactly where SqliteStore's loop stops. The first entry left out comes
// without its text, only to say that there is more.
Store::TranscriptPage PostgresStore::transcript_page(const std::string& session_key,
                                                     std::size_t limit, std::size_t max_bytes,
                                                     std::int64_t before_id) {
  static const std::string sql =
      "WITH page AS ("
      "SELECT id, session_key, role, text, run_id, inbound_id, created_at_ms, state, "
      "row_number() OVER w AS n, sum(octet_length(text)) OVER w AS total "
      "FROM transcript WHERE session_key = $1 AND id < $2 AND id > coalesce((SELECT "
      "history_from FROM session_meta WHERE session_key = $1), 0) "
      "WINDOW w AS (ORDER BY id DESC ROWS UNBOUNDED PRECEDING) ORDER BY id DESC LIMIT $3), "
      "marked AS (SELECT *, n <= $4 AND (n = 1 OR total <= $5) AS keep FROM page) "
      "SELECT id, session_key, role, CASE WHEN keep THEN text ELSE '' END, run_id, inbound_id, "
      "created_at_ms, state, keep FROM marked "
      "WHERE keep OR n = (SELECT min(n) FROM marked WHERE NOT keep) ORDER BY id DESC";
  TranscriptPage page;
  if (limit == 0) return page;
  constexpr auto kMax = std::numeric_limits<std::int64_t>::max();
  // One row more than asked tells whether older entries remain.
  const std::int64_t bound = std::min<std::int64_t>(clamp_to_int64(limit), kMax - 1) + 1;
  const std::int64_t before = before_id > 0 ? before_id : kMax;
  std::lock_guard lock(mutex_);
  Transaction tx(*conn_, Transaction::Mode::single);
  const Result r =
      conn_->query(sql, session_key, before, bound, bound - 1, clamp_to_int64(max_bytes));
  for (int i = r.rows() - 1; i >= 0; --i) {
    if (r.boolean(i, 8)) {
      page.entries.push_back(read_transcript(r, i));
    } else {
      page.more = true;
    }
  }
  tx.commit();
  return page;
}

StoreCounts PostgresStore::counts() {
  std::lock_guard lock(mutex_);
  Transaction tx(*conn_, Transaction::Mode::single);
  const Result r = conn_->query(
      "SELECT (SELECT count(*) FROM inbox), "
      "(SELECT count(*) FROM inbox WHERE state IN ('pending', 'running')), "
      "(SELECT count(*) FROM outbox WHERE state = 'pending'), "
      "(SELECT count(*) FROM outbox WHERE state = 'sent'), "
      "(SELECT count(*) FROM outbox WHERE state = 'stale'), "
      "(SELECT count(*) FROM sessions), "
      "(SELECT count(*) FROM sessions WHERE state = 'suspended')");
  StoreCounts n;
  if (r.rows() > 0) {
    n.inbox_total = r.int64(0, 0);
    n.inbox_unfinished = r.int64(0, 1);
    n.outbox_pending = r.int64(0, 2);
    n.outbox_sent = r.int64(0, 3);
    n.outbox_stale = r.int64(0, 4);
    n.sessions = r.int64(0, 5);
    n.sessions_suspended = r.int64(0, 6);
  }
  tx.commit();
  return n;
}

}  // namespace drawbridge::store
