#pragma once

// A real PostgreSQL for tests, reached over a Unix socket only (never TCP).
//
// Which server: when DRAWBRIDGE_TEST_PG_DIR names a folder where tests/pg/pg-test-server.sh
// started one (ctest's fixture "pg": its socket and a `port` file), that one, shared by the
// whole ctest run. Otherwise one started for this process on first use (initdb and pg_ctl from
// /usr/lib/postgresql/<version>/bin, in a mkdtemp folder, as the `postgres` user when run as
// root, fsync off), stopped (pg_ctl stop -m immediate) and removed when the process exits, or
// dies: a watcher process waits for the end of a pipe that only this process holds open.
//
// When PostgreSQL is not installed, the functions return nothing and say why, and the tests
// skip with that reason. When it is and the server cannot be started or reached, they throw
// std::runtime_error: a failure, not a skip.

#include <cstdint>
#include <optional>
#include <string>

namespace drawbridge::testing {

// A libpq conninfo of a fresh, empty schema of its own (`options='-c search_path=<schema>'`,
// user postgres) on the test server, created now. Nothing and `why` when PostgreSQL is not
// installed.
std::optional<std::string> fresh_pg_schema(std::string* why);

// A login role with a password on the test server, which may log in with that password only
// (pg_hba: scram-sha-256 for members of drawbridge_password_login), owning a fresh schema.
struct PgPasswordRole {
  std::string conninfo;  // user=<role>, search_path=<its schema>, no password
  std::string password;
};
std::optional<PgPasswordRole> pg_password_role(std::string* why);

// Runs `sql` (no parameters: test set-up only) on a connection of its own and returns the first
// column of the first row, "" when there is none. Throws std::runtime_error with PostgreSQL's
// message.
std::string pg_query(const std::string& conninfo, const std::string& sql);

// The server's clock in ms since the epoch, as PostgresStore's leases read it.
std::int64_t pg_server_now_ms(const std::string& conninfo);

}  // namespace drawbridge::testing
