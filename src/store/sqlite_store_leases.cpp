// SqliteStore: leases and fencing. Placeholders only, so that the pg-store branch compiles:
// the SQLite driver's leases are written on main and replace this file at the merge.

#include <string>
#include <vector>

#include "store/sqlite_store.h"

namespace drawbridge::store {

Lease SqliteStore::claim_lease(const std::string&, const std::string&, std::int64_t, std::int64_t) {
  throw StoreError("claim_lease: not implemented");
}

std::vector<Lease> SqliteStore::renew_leases(const std::string&, std::int64_t, std::int64_t) {
  throw StoreError("renew_leases: not implemented");
}

bool SqliteStore::release_lease(const std::string&, const std::string&, std::int64_t,
                                std::int64_t) {
  throw StoreError("release_lease: not implemented");
}

std::vector<Lease> SqliteStore::list_leases(const std::string&) {
  throw StoreError("list_leases: not implemented");
}

bool SqliteStore::set_value_fenced(const std::string&, const std::string&, const std::string&,
                                   std::int64_t, std::int64_t) {
  throw StoreError("set_value_fenced: not implemented");
}

std::vector<Lease> SqliteStore::claim_sessions_with_work(const std::string&, std::int64_t,
                                                         std::size_t, std::int64_t) {
  throw StoreError("claim_sessions_with_work: not implemented");
}

}  // namespace drawbridge::store
