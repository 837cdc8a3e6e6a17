#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

#include "config/config.h"
#include "config/config_text.h"

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

TEST_F(ConfigLoad, AFifoIsRefusedAtOnceInsteadOfWaitingForAWriter) {
  const std::string fifo = (dir_ / "config.fifo").string();
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  std::string error;
  // Before: open() blocked until a writer came, forever in a test.
  EXPECT_FALSE(read_text_file(fifo, error));
  EXPECT_EQ(error, "cannot read " + fifo + ": not a regular file (a FIFO)");
  const auto result = load_config_file(fifo);
  EXPECT_EQ(result.io_error, error);
  EXPECT_FALSE(result.parsed.config);
}

TEST_F(ConfigLoad, ADeviceIsRefusedWithoutReadingIt) {
  std::string error;
  // Before: read until std::bad_alloc.
  EXPECT_FALSE(read_text_file("/dev/zero", error));
  EXPECT_EQ(error, "cannot read /dev/zero: not a regular file (a character device)");
}

TEST_F(ConfigLoad, ADirectoryIsRefused) {
  std::string error;
  EXPECT_FALSE(read_text_file(dir_.string(), error));
  EXPECT_EQ(error, "cannot read " + dir_.string() + ": Is a directory");
  const auto file = read_config_text_file(dir_.string());
  EXPECT_TRUE(file.exists);
  EXPECT_FALSE(read_config_text_file((dir_ / "nope").string()).exists);
}

TEST_F(ConfigLoad, AFileOverTheLimitIsRefusedNamingTheLimit) {
  const std::string big =
      write("big.json", "{\"meta\": {\"pad\": \"" + std::string(kMaxConfigBytes, ' ') + "\"}}");
  std::string error;
  EXPECT_FALSE(read_text_file(big, error));
  EXPECT_EQ(error, "cannot read " + big +
                       ": larger than the limit of 1 MiB (1048576 bytes) for config files");
  EXPECT_EQ(load_config_file(big).io_error, error);
  // Exactly at the limit is fine, and the limit is the caller's to choose.
  const std::string at_limit = write("limit.json", std::string(kMaxConfigBytes, ' '));
  EXPECT_TRUE(read_text_file(at_limit, error));
  EXPECT_FALSE(read_config_text_file(at_limit, 1000).text);
  EXPECT_EQ(read_config_text_file(at_limit, 1000).error,
            "cannot read " + at_limit + ": larger than the limit of 1000 bytes for config files");
}

TEST_F(ConfigLoad, AFileThatLiesAboutItsSizeIsCutAtTheLimit) {
  // Files under /proc say size 0 and have content: the limit holds for what is read.
  std::string error;
  const auto file = read_config_text_file("/proc/self/maps", 16);
  EXPECT_FALSE(file.text);
  EXPECT_NE(file.error.find("larger than the limit of 16 bytes"), std::string::npos) << file.error;
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

TEST_F(ConfigLoad, ControlUiRootResolvesAgainstTheFilesFolderAndEmptyStaysOff) {
  const auto relative = load_config_file(
      write("etc/ui.json", R"({"gateway": {"controlUi": {"root": "../share/control-ui"}}})"));
  ASSERT_TRUE(relative.parsed.config);
  EXPECT_EQ(relative.parsed.config->gateway.control_ui_root,
            (dir_ / "share" / "control-ui").string());
  EXPECT_EQ(relative.parsed.config->gateway.control_ui_assistant_name, "drawbridge");
  const auto absolute = load_config_file(write(
      "abs.json", R"({"gateway": {"controlUi": {"root": "/srv/ui", "assistantName": "B"}}})"));
  ASSERT_TRUE(absolute.parsed.config);
  EXPECT_EQ(absolute.parsed.config->gateway.control_ui_root, "/srv/ui");
  EXPECT_EQ(absolute.parsed.config->gateway.control_ui_assistant_name, "B");
  const auto off =
      load_config_file(write("off.json", R"({"gateway": {"controlUi": {"root": ""}}})"));
  ASSERT_TRUE(off.parsed.config);
  EXPECT_EQ(off.parsed.config->gateway.control_ui_root, "");
  const auto bad =
      load_config_file(write("bad.json", R"({"gateway": {"controlUi": {"root": 7}}})"));
  EXPECT_FALSE(bad.parsed.config);
  ASSERT_EQ(bad.parsed.errors.size(), 1u);
  EXPECT_EQ(bad.parsed.errors[0].path, "gateway.controlUi.root");
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
