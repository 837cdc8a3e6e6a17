#include "runtime/store_open.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>

#include "store/postgres_store.h"
#include "store/sqlite_store.h"

namespace drawbridge::runtime {

namespace {

constexpr std::chrono::milliseconds kCheckpointInterval{25};

}  // namespace

std::string store_password(const config::StoreSettings& store) {
  if (store.password_env.empty()) return {};
  const char* value = std::getenv(store.password_env.c_str());
  if (value == nullptr) {
    throw std::runtime_error("store.passwordEnv names " + store.password_env +
                             ", which is not set in the gateway's environment");
  }
  return value;
}

OpenStores open_stores(const config::Config& cfg, const std::string& data_dir) {
  OpenStores out;
  if (cfg.store.driver == "postgres") {
    store::PostgresOptions options{cfg.store.url, store_password(cfg.store)};
    // A replica frozen inside a batch must not keep the lease row locked past its lease.
    options.idle_in_transaction_timeout_ms = std::max<std::int64_t>(cfg.cluster.lease_ms / 2, 100);
    out.where = "PostgreSQL (store.url)";
    out.writer = store::PostgresStore::open(options);
    out.reader = store::PostgresStore::open(options);
    out.leases = store::PostgresStore::open(options);
    return out;
  }
  const std::string db_path = (std::filesystem::path(data_dir) / "drawbridge.db").string();
  out.where = db_path;
  const auto durability =
      cfg.store.durability == "power" ? store::Durability::power : store::Durability::process;
  // Two connections: the store thread writes, the event loop reads (WAL lets both run).
  out.writer =
      store::SqliteStore::open(db_path, durability, store::WalCheckpointer::kBackstopPages);
  out.reader = store::SqliteStore::open(db_path, durability);
  // Checkpoints off the commit path (store/wal_checkpointer.h).
  out.checkpointer = std::make_unique<store::WalCheckpointer>(db_path, kCheckpointInterval);
  return out;
}

}  // namespace drawbridge::runtime
