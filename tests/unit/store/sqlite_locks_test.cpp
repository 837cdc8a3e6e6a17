// The store's POSIX locks across processes: a re-exec successor, its predecessor and the CLI all
// open the same database, and one that closes its last connection deletes the -wal and -shm
// files when it can lock the database EXCLUSIVE, i.e. when no other process holds a SHARED
// lock. A connection of this process must keep holding its lock whatever else this process
// opens (a descriptor closed on the file drops every lock the process holds on it).

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "store/sqlite_store.h"

namespace drawbridge::store {
namespace {

namespace fs = std::filesystem;

NewInbound message(const std::string& id) {
  NewInbound m;
  m.channel = "local";
  m.external_id = id;
  m.chat_id = "alice";
  m.session_key = "local:alice";
  m.text = "message " + id;
  return m;
}

// Another process (the sqlite3 command-line shell, a separate program: a fork of this one would
// share this process's SQLite state) opens the database, counts the inbox rows and closes it
// (SQLite's last-connection close: checkpoint, and delete the -wal when it gets the EXCLUSIVE
// lock). The count, or -1.
constexpr const char* kShell = "/usr/bin/sqlite3";

int count_in_another_process(const std::string& path) {
  int out[2];
  if (::pipe(out) != 0) return -1;
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out[1], 1);
    ::close(out[0]);
    ::execl(kShell, kShell, path.c_str(), "SELECT count(*) FROM inbox;",
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(out[1]);
  std::string text;
  char buf[64];
  for (ssize_t n; (n = ::read(out[0], buf, sizeof buf)) > 0;)
    text.append(buf, static_cast<std::size_t>(n));
  ::close(out[0]);
  int status = 0;
  if (pid < 0 || ::waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
      WEXITSTATUS(status) != 0 || text.empty()) {
    return -1;
  }
  return std::stoi(text);
}

TEST(SqliteLocks, AnotherProcessClosingTheDatabaseNeverDeletesTheWalThisProcessWrites) {
  if (::access(kShell, X_OK) != 0) GTEST_SKIP() << kShell << " is not installed (package sqlite3)";
  std::string pattern = (fs::temp_directory_path() / "drawbridge-locks-XXXXXX").string();
  ASSERT_NE(mkdtemp(pattern.data()), nullptr);
  const fs::path dir = pattern;
  const std::string path = (dir / "drawbridge.db").string();
  {
    // As the gateway does: a writer, then more connections to the same file.
    auto writer = SqliteStore::open(path);
    auto reader = SqliteStore::open(path);
    writer->insert_inbound(message("m1"), 1);
    ASSERT_EQ(reader->unfinished_inbound().size(), 1u);
    ASSERT_TRUE(fs::exists(dir / "drawbridge.db-wal"));

    // Another process comes and goes (the predecessor of a re-exec exiting, a CLI command).
    EXPECT_EQ(count_in_another_process(path), 1);
    EXPECT_TRUE(fs::exists(dir / "drawbridge.db-wal"))
        << "another process deleted the WAL this process writes to";

    // What this process commits from now on must reach whoever opens the database next (after
    // a kill -9 of this process, the next start). With the WAL deleted it went to an unlinked
    // file and was lost.
    writer->insert_inbound(message("m2"), 2);
    EXPECT_EQ(count_in_another_process(path), 2);
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
}

}  // namespace
}  // namespace drawbridge::store
