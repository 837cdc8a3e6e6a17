#pragma once

// Private to the store drivers (sqlite_store*.cpp, postgres_store*.cpp): what both read and
// write the same way. Not for other includers.

#include <string>
#include <string_view>

#include "store/store.h"

namespace drawbridge::store {

// "SELECT <columns> <rest>".
std::string select_from(std::string_view columns, std::string_view rest);
// The states as stored; an unknown one throws StoreError.
InboxState inbox_state_from(const std::string& s);
OutboxState outbox_state_from(const std::string& s);
// done, aborted or failed: the row's turn is over.
bool is_closed(InboxState s);

}  // namespace drawbridge::store
