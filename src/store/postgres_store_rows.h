#pragma once

// Private to the PostgresStore sources (postgres_store*.cpp): the column lists, the row
// mapping and the few statements every part of the store shares. Not for other includers.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "store/pg.h"
#include "store/postgres_store.h"
#include "store/rows.h"

namespace drawbridge::store::postgres {

using pg::Connection;
using pg::Param;
using pg::Result;
using pg::Transaction;

inline constexpr std::string_view kInboxColumns =
    "id, channel, external_id, session_key, chat_id, sender, text, run_id, state, "
    "received_at_ms, merged_into";
inline constexpr std::string_view kOutboxColumns =
    "id, idem_key, inbound_id, part, final_part, channel, chat_id, session_key, run_id, text, "
    "state, created_at_ms, sent_at_ms";
inline constexpr std::string_view kTranscriptColumns =
    "id, session_key, role, text, run_id, inbound_id, created_at_ms, state";
inline constexpr std::string_view kLeaseColumns = "name, holder, epoch, expires_at_ms";

// The server's clock, ms since the epoch: leases compare on this one clock, whichever replica
// asks (store.h). clock_timestamp(), not now(): now() is the transaction's start, and a batch
// can be long.
inline constexpr std::string_view kServerNowMs =
    "(extract(epoch from clock_timestamp()) * 1000)::bigint";

InboxRecord read_inbox(const Result& r, int row);
OutboxRecord read_outbox(const Result& r, int row);
TranscriptEntry read_transcript(const Result& r, int row);
Lease read_lease(const Result& r, int row);
std::optional<std::int64_t> null_if_zero(std::int64_t id);
// LIMIT and OFFSET values: a size_t clamped to what bigint holds.
std::int64_t clamp_to_int64(std::size_t n);

// `for_update`: the row stays locked until the transaction ends, so a concurrent writer of the
// same row (another replica) waits instead of deciding on what it read before our commit.
std::optional<InboxRecord> find_inbox(Connection& c, std::int64_t id, bool for_update);
std::vector<OutboxRecord> outbox_for(Connection& c, std::int64_t inbound_id);
// The session row first (the transcript references it), then the entry (deferred: in a batch
// they go with the next statement that waits for an answer).
void append_transcript(Connection& c, const std::string& session_key, std::string_view role,
                       std::string_view text, const std::string& run_id, std::int64_t inbound_id,
                       std::int64_t now_ms);
// INSERT ... ON CONFLICT (idem_key) DO NOTHING: the new row's id, or 0 when the key is taken.
std::int64_t insert_outbox(Connection& c, const OutboxRecord& r, bool as_sent, std::int64_t now_ms);

}  // namespace drawbridge::store::postgres
