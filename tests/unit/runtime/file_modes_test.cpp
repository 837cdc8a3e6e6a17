#include "runtime/file_modes.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace drawbridge::runtime {
namespace {

namespace fs = std::filesystem;

mode_t mode_of(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(::lstat(p.c_str(), &st), 0) << p;
  return st.st_mode & 07777;
}

class FileModes : public ::testing::Test {
 protected:
  void SetUp() override {
    saved_ = ::umask(022);
    std::string pattern = (fs::temp_directory_path() / "drawbridge-modes-XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override {
    ::umask(saved_);
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  void touch(const fs::path& p, mode_t mode) {
    std::ofstream(p) << "x";
    ::chmod(p.c_str(), mode);
  }
  mode_t saved_ = 022;
  fs::path dir_;
};

TEST_F(FileModes, PrivateFolderAndFileUnderUmask022) {
  const fs::path data = dir_ / "a" / "b" / "data";
  ASSERT_FALSE(make_private_dir(data.string()));
  EXPECT_EQ(mode_of(dir_ / "a"), 0700u);
  EXPECT_EQ(mode_of(dir_ / "a" / "b"), 0700u);
  EXPECT_EQ(mode_of(data), 0700u);
  ASSERT_FALSE(make_private_dir(data.string())) << "an existing folder is fine";
  ASSERT_FALSE(write_private_file((data / "bundle.json").string(), "{}\n"));
  EXPECT_EQ(mode_of(data / "bundle.json"), 0600u);
  EXPECT_TRUE(write_private_file((data / "bundle.json").string(), "{}\n"))
      << "an existing file is never overwritten";
}

TEST_F(FileModes, MakePrivateDirSaysWhyItCannot) {
  touch(dir_ / "file", 0600);
  auto err = make_private_dir((dir_ / "file" / "data").string());
  ASSERT_TRUE(err);
  EXPECT_NE(err->find("cannot create"), std::string::npos) << *err;
}

TEST_F(FileModes, TightenTakesGroupAndOtherAccessFromWhatTheGatewayKeeps) {
  const fs::path data = dir_ / "data";
  fs::create_directories(data / "diagnostics");
  ::chmod(data.c_str(), 0755);
  ::chmod((data / "diagnostics").c_str(), 0775);
  for (const char* name : {"drawbridge.db", "drawbridge.db-wal", "drawbridge.db-shm",
                           "gateway.token", "gateway.lock", "update.json"}) {
    touch(data / name, 0644);
  }
  touch(data / "diagnostics" / "watchdog-1.json", 0644);
  touch(data / "notes.txt", 0644);  // not the gateway's: left alone
  touch(dir_ / "drawbridge.json", 0644);
  touch(dir_ / "drawbridge.json.last-good", 0644);
  touch(dir_ / "elsewhere", 0644);
  fs::create_symlink(dir_ / "elsewhere", data / "update.json.link");
  touch(data / "already-private", 0600);

  const auto changed = tighten_private_files(data.string(), (dir_ / "drawbridge.json").string());
  EXPECT_EQ(mode_of(data), 0700u);
  EXPECT_EQ(mode_of(data / "diagnostics"), 0700u);
  EXPECT_EQ(mode_of(data / "diagnostics" / "watchdog-1.json"), 0600u);
  for (const char* name : {"drawbridge.db", "drawbridge.db-wal", "drawbridge.db-shm",
                           "gateway.token", "gateway.lock", "update.json"}) {
    EXPECT_EQ(mode_of(data / name), 0600u) << name;
  }
  EXPECT_EQ(mode_of(dir_ / "drawbridge.json.last-good"), 0600u);
  EXPECT_EQ(mode_of(dir_ / "drawbridge.json"), 0644u) << "the config keeps its own mode";
  EXPECT_EQ(mode_of(data / "notes.txt"), 0644u);
  EXPECT_EQ(mode_of(dir_ / "elsewhere"), 0644u);
  EXPECT_EQ(changed.size(), 10u);
  ASSERT_FALSE(changed.empty());
  EXPECT_NE(changed.front().find("0755 -> 0700"), std::string::npos) << changed.front();

  EXPECT_TRUE(tighten_private_files(data.string(), (dir_ / "drawbridge.json").string()).empty())
      << "nothing left to change";
}

TEST_F(FileModes, RestrictUmaskRemembersTheOneTheProcessStartedWith) {
  const mode_t started = restrict_umask();
  const mode_t now = ::umask(077);
  EXPECT_EQ(now, 077u);
  EXPECT_EQ(started_umask(), static_cast<int>(started));
  ::umask(022);
  EXPECT_EQ(restrict_umask(), started) << "the first one is kept";
}

}  // namespace
}  // namespace drawbridge::runtime
