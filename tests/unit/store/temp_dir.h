#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <string>
#include <system_error>

namespace drawbridge::store::test_support {

// A fresh folder under the system's temp folder, removed with everything in it.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "drawbridge-store-XXXXXX").string();
    EXPECT_NE(mkdtemp(pattern.data()), nullptr) << "mkdtemp failed";
    path = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

}  // namespace drawbridge::store::test_support
