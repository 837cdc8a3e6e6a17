#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <string>

#include "store/sqlite_store.h"

namespace drawbridge::store {
namespace {

namespace fs = std::filesystem;

mode_t mode_of(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
  return st.st_mode & 07777;
}

// The umask a user shell usually has, for the test's duration.
class Umask022 {
 public:
  Umask022() : saved_(::umask(022)) {}
  ~Umask022() { ::umask(saved_); }

 private:
  mode_t saved_;
};

TEST(SqliteFileModes, DatabaseAndItsWalAndShmAre0600UnderUmask022) {
  std::string pattern = (fs::temp_directory_path() / "drawbridge-modes-XXXXXX").string();
  ASSERT_NE(mkdtemp(pattern.data()), nullptr);
  const fs::path dir = pattern;
  {
    Umask022 loose;
    auto store = SqliteStore::open((dir / "drawbridge.db").string());
    NewInbound m;
    m.channel = "local";
    m.external_id = "e1";
    m.chat_id = "alice";
    m.session_key = "local:alice";
    m.text = "a private transcript";
    store->insert_inbound(m, 1);  // a write: the -wal and -shm exist from here
    for (const char* name : {"drawbridge.db", "drawbridge.db-wal", "drawbridge.db-shm"}) {
      ASSERT_TRUE(fs::exists(dir / name)) << name;
      EXPECT_EQ(mode_of(dir / name), 0600u) << name;
    }
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
}

TEST(SqliteFileModes, AnExistingDatabaseKeepsItsMode) {
  std::string pattern = (fs::temp_directory_path() / "drawbridge-modes-XXXXXX").string();
  ASSERT_NE(mkdtemp(pattern.data()), nullptr);
  const fs::path dir = pattern;
  { SqliteStore::open((dir / "drawbridge.db").string()); }
  ::chmod((dir / "drawbridge.db").c_str(), 0640);
  { SqliteStore::open((dir / "drawbridge.db").string()); }
  EXPECT_EQ(mode_of(dir / "drawbridge.db"), 0640u)
      << "the gateway tightens it at start, not the store";
  std::error_code ec;
  fs::remove_all(dir, ec);
}

}  // namespace
}  // namespace drawbridge::store
