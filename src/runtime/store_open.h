#pragma once

#include <memory>
#include <string>

#include "config/config.h"
#include "store/store.h"
#include "store/wal_checkpointer.h"

namespace drawbridge::runtime {

// The store connections a gateway runs on, by store.driver: the store thread's writer, the
// event loop's reader, and (postgres) a third for the cluster's leases and heartbeats.
struct OpenStores {
  std::unique_ptr<store::Store> writer;
  std::unique_ptr<store::Store> reader;
  std::unique_ptr<store::Store> leases;                  // postgres only
  std::unique_ptr<store::WalCheckpointer> checkpointer;  // sqlite only
  std::string where;  // for logs: the database file, or "postgres" with host and dbname
};

// Throws store::StoreError (or std::runtime_error for a missing password variable) with a
// reason fit for the log: never the password.
OpenStores open_stores(const config::Config& cfg, const std::string& data_dir);

// The password store.passwordEnv names ("" when it names none). Throws std::runtime_error
// when the variable is named but not set.
std::string store_password(const config::StoreSettings& store);

}  // namespace drawbridge::runtime
