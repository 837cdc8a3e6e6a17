#pragma once

// A session's transcript read over the control protocol (`chat.history`), as any client of
// either gateway reads it, and which message of the load generator each entry belongs to.
// Used by drawbridge_loadgen (--verify-ws, and after a reconnect) against drawbridge and
// against OpenClaw. Boost.Beast (through bench/ws_rpc) and nlohmann_json only.
//
// The two gateways page and label entries differently; both are read here:
//  - pages come newest first, each in order; the next (older) page is asked with `before` =
//    the answer's `nextBefore` (drawbridge) or `offset` = its `nextOffset` (OpenClaw), while
//    `hasMore` is true. An entry is kept once (by its `__openclaw.id`), so an entry appended
//    between two pages, which shifts OpenClaw's offsets, is not counted twice;
//  - a user entry carries its message's idempotency key as `__openclaw.runId` (drawbridge) or
//    as `__openclaw.idempotencyKey` "<key>:user" (OpenClaw);
//  - a reply carries the run id `__openclaw.runId`: the message's key when the message started
//    its own run (both), a fresh id when OpenClaw queued the message as a follow-up turn. A reply
//    whose run id is no message's belongs to the closest user entry before it (its position),
//    as OpenClaw's transcript orders a session's turns; lifecycle notices ("notice:...") never.

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ws_rpc.h"

namespace bench_history {

struct Entry {
  std::string id;  // __openclaw.id (empty when absent)
  std::string role;
  std::string run_id;    // __openclaw.runId
  std::string idem_key;  // __openclaw.idempotencyKey
};

Entry parse_entry(const nlohmann::json& e);

struct Attribution {
  std::string key;           // the message it belongs to; empty: none of ours
  bool by_position = false;  // a reply matched by its place after a user entry
};

// One per entry, in order. `known` tells whether a string is one of our messages' keys.
std::vector<Attribution> attribute(const std::vector<Entry>& entries,
                                   const std::function<bool(const std::string&)>& known);

struct Transcript {
  std::vector<Entry> entries;  // oldest first, each once
  int pages = 0;
  bool truncated = false;  // hasMore without a way to the next page: read what there was
  std::string error;       // non-empty: the transcript could not be read whole
};

// Reads every page of `session` on `ws` (already open). Each request waits at most `timeout`.
Transcript read(bench_ws::Ws& ws, const std::string& session, bench_ws::Millis timeout);

}  // namespace bench_history
