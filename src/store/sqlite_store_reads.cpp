// SqliteStore: reads for the control plane and the turns (transcript, counts).

#include <algorithm>
#include <limits>
#include <mutex>

#include "store/sqlite_store_impl.h"

namespace drawbridge::store {

std::vector<TranscriptEntry> SqliteStore::transcript(const std::string& session_key,
                                                     std::size_t limit) {
  Impl& s = *impl_;
  std::lock_guard lock(s.mutex);
  const auto bound = static_cast<std::int64_t>(
      std::min<std::size_t>(limit, std::numeric_limits<std::int64_t>::max()));
  Transaction tx(*s.db, Transaction::Mode::read);
  std::vector<TranscriptEntry> entries;
  {
    Cursor c = s.transcript_tail.query(session_key, bound);
    while (c.next()) entries.push_back(read_transcript(c));
  }
  tx.commit();
  std::reverse(entries.begin(), entries.end());  // the query reads newest first
  return entries;
}

Store::TranscriptPage SqliteStore::transcript_page(const std::string& session_key,
                                                  std::size_t limit, std::size_t max_bytes,
                                                  std::int64_t before_id) {
  Impl& s = *impl_;
  std::lock_guard lock(s.mutex);
  TranscriptPage page;
  if (limit == 0) return page;
  // One row more than asked tells whether older entries remain.
  const auto bound = static_cast<std::int64_t>(
      std::min<std::size_t>(limit, std::numeric_limits<std::int64_t>::max() - 1) + 1);
  const std::int64_t before = before_id > 0 ? before_id : std::numeric_limits<std::int64_t>::max();
  Transaction tx(*s.db, Transaction::Mode::read);
  {
    Cursor c = s.transcript_before.query(session_key, before, bound);
    std::size_t bytes = 0;
    while (c.next()) {
      TranscriptEntry e = read_transcript(c);
      if (page.entries.size() == limit ||
          (!page.entries.empty() && bytes + e.text.size() > max_bytes)) {
        page.more = true;
        break;
      }
      bytes += e.text.size();
      page.entries.push_back(std::move(e));
    }
  }
  tx.commit();
  std::reverse(page.entries.begin(), page.entries.end());
  return page;
}

StoreCounts SqliteStore::counts() {
  Impl& s = *impl_;
  std::lock_guard lock(s.mutex);
  Transaction tx(*s.db, Transaction::Mode::read);
  StoreCounts n;
  {
    Cursor c = s.counts.query();
    if (c.next()) {
      n.inbox_total = c.int64(0);
      n.inbox_unfinished = c.int64(1);
      n.outbox_pending = c.int64(2);
      n.outbox_sent = c.int64(3);
      n.outbox_stale = c.int64(4);
      n.sessions = c.int64(5);
      n.sessions_suspended = c.int64(6);
    }
  }
  tx.commit();
  return n;
}

}  // namespace drawbridge::store
