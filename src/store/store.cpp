#include "store/store.h"

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

}  // namespace drawbridge::store
