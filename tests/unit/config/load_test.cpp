#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

#include "config/config.h"

namespace drawbridge::config {
namespace {

namespace fs = std::filesystem;

// Sets or clears a variable for one test and puts the old value back afterwards.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value == nullptr) {
      ::unsetenv(name);
    } else {
      ::setenv(name, value, 1);
    }
  }
  ~ScopedEnv() {
    if (old_) {
      ::setenv(name_.c_str(), old_->c_str(), 1);
    } else {
      ::unsetenv(name_.c_str());
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_;
  std::optional<std::string> old_;
};

class ConfigLoad : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "drawbridge-config-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  std::string write(const std::string& name, const std::string& text) {
    const fs::path p = dir_ / name;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
    return p.string();
  }

  fs::path dir_;
  // Each test starts from an environment without overrides.
  ScopedEnv token_{"DRAWBRIDGE_GATEWAY_TOKEN", nullptr};
  ScopedEnv openclaw_token_{"OPENCLAW_GATEWAY_TOKEN", nullptr};
  ScopedEnv port_{"DRAWBRIDGE_GATEWAY_PORT", nullptr};
  ScopedEnv openclaw_port_{"OPENCLAW_GATEWAY_PORT", nullptr};
  ScopedEnv data_dir_{"DRAWBRIDGE_DATA_DIR", nullptr};
};

TEST_F(ConfigLoad, EmptyPathGivesDefaults) {
  const auto result = load_config_file("");
  EXPECT_EQ(result.path, "");
  EXPECT_EQ(result.io_error, "");
  EXPECT_EQ(result.raw_text, "");
  ASSERT_TRUE(result.parsed.config);
  EXPECT_EQ(result.parsed.config->gateway.port, 18789);
  EXPECT_EQ(result.parsed.config->store.data_dir, (fs::current_path() / "data").string());
}

TEST_F(ConfigLoad, MissingFileIsAnIoError) {
  const std::string path = (dir_ / "nope.json").string();
  const auto result = load_config_file(path);
  EXPECT_EQ(result.io_error, "cannot read " + path + ": No such file or directory");
  EXPECT_FALSE(result.parsed.config);
  EXPECT_TRUE(result.parsed.errors.empty());
}

TEST_F(ConfigLoad, DirectoryIsAnIoError) {
  const auto result = load_config_file(dir_.string());
  EXPECT_EQ(result.io_error, "cannot read " + dir_.string() + ": Is a directory");
  EXPECT_FALSE(result.parsed.config);
}

TEST_F(ConfigLoad, ReadsTheFileAndKeepsItsText) {
  const std::string text = "// mine\n{\"gateway\": {\"port\": 4242}}\n";
  const std::string path = write("drawbridge.json", text);
  const auto result = load_config_file(path);
  EXPECT_EQ(result.io_error, "");
  EXPECT_EQ(result.path, path);
  EXPECT_EQ(result.raw_text, text);
  ASSERT_TRUE(result.parsed.config);
  EXPECT_EQ(result.parsed.config->gateway.port, 4242);
}

TEST_F(ConfigLoad, InvalidFileReportsItsErrors) {
  const std::string path = write("c.json", R"({"gateway": {"prot": 1}})");
  const auto result = load_config_file(path);
  EXPECT_FALSE(result.parsed.config);
  ASSERT_EQ(result.parsed.errors.size(), 1u);
  EXPECT_EQ(result.parsed.errors[0].path, "gateway.prot");
}

TEST_F(ConfigLoad, RelativeDataDirResolvesAgainstTheFilesFolder) {
  const std::string path = write("etc/drawbridge.json", R"({"store": {"dataDir": "../state"}})");
  const auto result = load_config_file(path);
  ASSERT_TRUE(result.parsed.config);
  EXPECT_EQ(result.parsed.config->store.data_dir, (dir_ / "state").string());
  const auto defaults = load_config_file(write("etc/empty.json", "{}"));
  ASSERT_TRUE(defaults.parsed.config);
  EXPECT_EQ(defaults.parsed.config->store.data_dir, (dir_ / "etc" / "data").string());
}

TEST_F(ConfigLoad, AbsoluteDataDirIsKept) {
  const std::string path = write("c.json", R"({"store": {"dataDir": "/srv/db"}})");
  EXPECT_EQ(load_config_file(path).parsed.config->store.data_dir, "/srv/db");
}

TEST_F(ConfigLoad, DataDirFromEnvironmentIsRelativeToTheCurrentDirectory) {
  const std::string path = write("etc/c.json", R"({"store": {"dataDir": "x"}})");
  ScopedEnv env("DRAWBRIDGE_DATA_DIR", "var/db");
  const auto result = load_config_file(path);
  ASSERT_TRUE(result.parsed.config);
  EXPECT_EQ(result.parsed.config->store.data_dir, (fs::current_path() / "var" / "db").string());
  EXPECT_EQ(result.parsed.config->raw["store"]["dataDir"], "x");
}

TEST_F(ConfigLoad, TokenFromEnvironment) {
  const std::string path = write("c.json", R"({"gateway": {"auth": {"token": "file"}}})");
  {
    ScopedEnv openclaw("OPENCLAW_GATEWAY_TOKEN", "from-openclaw");
    EXPECT_EQ(load_config_file(path).parsed.config->gateway.auth_token, "from-openclaw");
    ScopedEnv ours("DRAWBRIDGE_GATEWAY_TOKEN", "from-drawbridge");
    EXPECT_EQ(load_config_file(path).parsed.config->gateway.auth_token, "from-drawbridge");
  }
  EXPECT_EQ(load_config_file(path).parsed.config->gateway.auth_token, "file");
}

TEST_F(ConfigLoad, PortFromEnvironment) {
  ScopedEnv openclaw("OPENCLAW_GATEWAY_PORT", "7000");
  EXPECT_EQ(load_config_file("").parsed.config->gateway.port, 7000);
  ScopedEnv ours("DRAWBRIDGE_GATEWAY_PORT", "7001");
  const auto result = load_config_file(write("c.json", R"({"gateway": {"port": 1234}})"));
  EXPECT_EQ(result.parsed.config->gateway.port, 7001);
  EXPECT_EQ(result.parsed.config->raw["gateway"]["port"], 1234);
}

TEST_F(ConfigLoad, InvalidPortInEnvironmentIsAnError) {
  for (const char* bad : {"abc", "0", "65536", "80x", "-1", "123456"}) {
    ScopedEnv env("DRAWBRIDGE_GATEWAY_PORT", bad);
    const auto result = load_config_file("");
    EXPECT_FALSE(result.parsed.config) << bad;
    ASSERT_EQ(result.parsed.errors.size(), 1u) << bad;
    EXPECT_EQ(result.parsed.errors[0].to_string(),
              std::string("env.DRAWBRIDGE_GATEWAY_PORT: expected an integer in 1..65535, got \"") +
                  bad + "\"");
  }
}

TEST_F(ConfigLoad, InvalidOpenclawPortNamesTheOpenclawVariable) {
  ScopedEnv env("OPENCLAW_GATEWAY_PORT", "http");
  const auto result = load_config_file("");
  ASSERT_EQ(result.parsed.errors.size(), 1u);
  EXPECT_EQ(result.parsed.errors[0].path, "env.OPENCLAW_GATEWAY_PORT");
}

TEST_F(ConfigLoad, EnvironmentErrorsJoinTheFileErrors) {
  ScopedEnv env("DRAWBRIDGE_GATEWAY_PORT", "x");
  const auto result = load_config_file(write("c.json", R"({"logging": {"level": 1}})"));
  EXPECT_FALSE(result.parsed.config);
  ASSERT_EQ(result.parsed.errors.size(), 2u);
  EXPECT_EQ(result.parsed.errors[0].path, "logging.level");
  EXPECT_EQ(result.parsed.errors[1].path, "env.DRAWBRIDGE_GATEWAY_PORT");
}

}  // namespace
}  // namespace drawbridge::config
