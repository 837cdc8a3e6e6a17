#include "store/store.h"

#include "store/rows.h"

namespace drawbridge::store {

const char* to_string(InboxState s) {
  switch (s) {
    case InboxState::pending:
      return "pending";
    case InboxState::running:
      return "running";
    case InboxState::done:
      return "done";
    case InboxState::aborted:
      return "aborted";
    case InboxState::failed:
      return "failed";
  }
  return "unknown";
}

std::vector<OutboxRecord> Store::stage_reply_as_sent(std::int64_t inbound_id,
                                                     const std::vector<std::string>& parts,
                                                     std::int64_t now_ms) {
  auto rows = stage_reply(inbound_id, parts, now_ms);
  for (const auto& r : rows) {
    if (r.state == OutboxState::pending) mark_sent(r.id, now_ms);
  }
  return rows;
}

const char* to_string(OutboxState s) {
  switch (s) {
    case OutboxState::pending:
      return "pending";
    case OutboxState::sent:
      return "sent";
    case OutboxState::failed:
      return "failed";
    case OutboxState::stale:
      return "stale";
  }
  return "unknown";
}

std::string select_from(std::string_view columns, std::string_view rest) {
  std::string sql = "SELECT ";
  sql += columns;
  sql += ' ';
  sql += rest;
  return sql;
}

InboxState inbox_state_from(const std::string& s) {
  for (auto state : {InboxState::pending, InboxState::running, InboxState::done,
                     InboxState::aborted, InboxState::failed}) {
    if (s == to_string(state)) return state;
  }
  throw StoreError("inbox row has unknown state \"" + s + "\"");
}

OutboxState outbox_state_from(const std::string& s) {
  for (auto state :
       {OutboxState::pending, OutboxState::sent, OutboxState::failed, OutboxState::stale}) {
    if (s == to_string(state)) return state;
  }
  throw StoreError("outbox row has unknown state \"" + s + "\"");
}

bool is_closed(InboxState s) {
  return s == InboxState::done || s == InboxState::aborted || s == InboxState::failed;
}

}  // namespace drawbridge::store
