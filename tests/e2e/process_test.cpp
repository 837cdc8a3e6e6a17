// The `drawbridge` command: exit codes and the messages a user acts on.

#include <gtest/gtest.h>

#include "e2e/harness.h"

namespace drawbridge::e2e {
namespace {

// `drawbridge run` with `config_text` as its config file; it must exit on its own.
CliResult run_with_config(const TempDir& dir, const std::string& config_text,
                          fs::path data_dir = {}, int port = 0) {
  const fs::path cfg = dir.write("run.json", config_text);
  if (data_dir.empty()) data_dir = dir.path() / "data";
  return run_cli(dir,
                 {"--config", cfg.string(), "run", "--port",
                  std::to_string(port ? port : free_port()), "--data-dir", data_dir.string()},
                 5s);
}

// The documented form `drawbridge run --port P --data-dir D --config F` (--config after the
// subcommand) must be understood, not refused as a usage error.
TEST(Process, ConfigOptionAfterTheRunSubcommandIsAccepted) {
  TempDir dir;
  const fs::path cfg = dir.write("run.json", R"({"gateway": {"port": "abc"}})");
  auto r = run_cli(dir,
                   {"run", "--port", std::to_string(free_port()), "--data-dir",
                    (dir.path() / "data").string(), "--config", cfg.string()},
                   5s);
  // The config is read (and found invalid): 78, not 64 "arguments were not expected".
  EXPECT_TRUE(r.status.exited && r.status.code == 78) << r.status.describe() << "\n" << r.err;
  EXPECT_EQ(r.err.find("not expected"), std::string::npos) << r.err;
}

TEST(Process, InvalidConfigExits78NamingTheField) {
  TempDir dir;
  auto r = run_with_config(dir, R"({"gateway": {"port": "abc"}})");
  EXPECT_TRUE(r.status.exited && r.status.code == 78) << r.status.describe() << "\n" << r.err;
  EXPECT_NE(r.err.find("gateway.port: expected an integer"), std::string::npos)
      << "stderr:\n" << r.err << "\nstdout:\n" << r.out;
}

TEST(Process, UnknownConfigKeyExits78WithDidYouMean) {
  TempDir dir;
  auto r = run_with_config(dir, R"({"gateway": {"prot": 18789}})");
  EXPECT_TRUE(r.status.exited && r.status.code == 78) << r.status.describe() << "\n" << r.err;
  EXPECT_NE(r.err.find("prot"), std::string::npos) << "stderr:\n" << r.err << "\nstdout:\n"
                                                   << r.out;
  EXPECT_NE(r.err.find("did you mean \"port\""), std::string::npos)
      << "stderr:\n" << r.err << "\nstdout:\n" << r.out;
}

TEST(Process, PortAlreadyInUseExits1SayingSo) {
  TempDir dir;
  PortHolder taken;
  auto r = run_with_config(dir, "{}", {}, taken.port());
  EXPECT_TRUE(r.status.exited && r.status.code == 1) << r.status.describe() << "\n" << r.err;
  EXPECT_NE(r.err.find("cannot listen"), std::string::npos) << "stderr:\n" << r.err
                                                            << "\nstdout:\n" << r.out;
  EXPECT_NE(r.err.find("Address already in use"), std::string::npos)
      << "stderr:\n" << r.err << "\nstdout:\n" << r.out;
}

TEST(Process, UnwritableDataDirExits78NamingStoreDataDir) {
  TempDir dir;
  const fs::path file = dir.write("file", "not a folder");
  auto r = run_with_config(dir, "{}", file / "data");
  EXPECT_TRUE(r.status.exited && r.status.code == 78) << r.status.describe() << "\n" << r.err;
  EXPECT_NE(r.err.find("store.dataDir"), std::string::npos) << "stderr:\n" << r.err
                                                            << "\nstdout:\n" << r.out;
}

TEST(Process, VersionFlagExits0) {
  TempDir dir;
  auto r = run_cli(dir, {"--version"});
  EXPECT_TRUE(r.status.exited && r.status.code == 0) << r.status.describe();
  EXPECT_NE(r.out.find(std::string("drawbridge ") + DRAWBRIDGE_VERSION), std::string::npos)
      << r.out;
}

TEST(Process, UnknownSubcommandExits64) {
  TempDir dir;
  auto r = run_cli(dir, {"bogus"});
  EXPECT_TRUE(r.status.exited && r.status.code == 64) << r.status.describe() << "\n" << r.err;
  EXPECT_FALSE(r.err.empty());
}

TEST(Process, ConfigValidateListsEveryError) {
  TempDir dir;
  const fs::path bad = dir.write("bad.json", R"({
    // three problems
    "gateway": {"port": "abc", "bind": "nowhere"},
    "logging": {"level": "loud"}
  })");
  auto r = run_cli(dir, {"config", "validate", bad.string()});
  EXPECT_TRUE(r.status.exited && r.status.code == 78) << r.status.describe() << "\n" << r.err;
  EXPECT_NE(r.err.find("3 problem(s)"), std::string::npos) << r.err;
  for (const char* path : {"gateway.port:", "gateway.bind:", "logging.level:"}) {
    EXPECT_NE(r.err.find(path), std::string::npos) << path << " missing from:\n" << r.err;
  }
}

TEST(Process, ConfigValidateAcceptsAGoodFile) {
  TempDir dir;
  const fs::path good = dir.write("good.json", echo_config(10, 2).dump());
  auto r = run_cli(dir, {"config", "validate", good.string()});
  EXPECT_TRUE(r.status.exited && r.status.code == 0) << r.status.describe() << "\n" << r.err;
  EXPECT_NE(r.out.find("valid"), std::string::npos) << r.out;
}

TEST(Process, StatusOfARunningGatewayPrintsRunning) {
  TempDir dir;
  Gateway gw(dir, echo_config());
  gw.start();
  auto r = run_cli(dir, {"status", "--url", gw.url(), "--token", gw.token()});
  EXPECT_TRUE(r.status.exited && r.status.code == 0) << r.status.describe() << "\n" << r.err;
  EXPECT_NE(r.out.find("running"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("pid " + std::to_string(gw.pid())), std::string::npos) << r.out;
}

TEST(Process, StatusWithoutAGatewayExits1) {
  TempDir dir;
  auto r = run_cli(dir, {"status", "--url", "ws://127.0.0.1:" + std::to_string(free_port()),
                         "--token", "t"});
  EXPECT_TRUE(r.status.exited && r.status.code == 1) << r.status.describe() << "\n" << r.err;
  EXPECT_NE(r.err.find("cannot connect"), std::string::npos) << r.err;
}

TEST(Process, SendPrintsTheReply) {
  TempDir dir;
  Gateway gw(dir, echo_config());
  gw.start();
  auto r = run_cli(dir, {"send", "--url", gw.url(), "--token", gw.token(), "hello"});
  EXPECT_TRUE(r.status.exited && r.status.code == 0) << r.status.describe() << "\n" << r.err;
  EXPECT_EQ(r.out, "hello\n") << r.err;
}

TEST(Process, SendWithAWrongTokenExits1) {
  TempDir dir;
  Gateway gw(dir, echo_config());
  gw.start();
  auto r = run_cli(dir, {"send", "--url", gw.url(), "--token", "wrong", "hello"});
  EXPECT_TRUE(r.status.exited && r.status.code == 1) << r.status.describe() << "\n" << r.err;
  EXPECT_NE(r.err.find("token mismatch"), std::string::npos) << r.err;
}


// Two gateways on one data folder would both replay its inbox: the second must refuse.
TEST(Process, SecondGatewayOnTheSameDataFolderExits78NamingTheHolder) {
  TempDir dir;
  Gateway first(dir, json::object());
  first.start();
  auto r = run_with_config(dir, R"({"gateway": {"auth": {"token": "x"}}})", first.data_dir());
  EXPECT_TRUE(r.status.exited && r.status.code == 78) << r.status.describe() << "\n" << r.err;
  EXPECT_NE(r.err.find("pid " + std::to_string(first.pid())), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("is using the data folder"), std::string::npos) << r.err;
  EXPECT_TRUE(first.running());
  // The kernel drops the lock with its holder, also after a kill -9: no stale lock.
  first.kill9();
  Gateway second(dir, json::object(), first.data_dir());
  second.start();
  EXPECT_TRUE(second.running());
}

}  // namespace
}  // namespace drawbridge::e2e
