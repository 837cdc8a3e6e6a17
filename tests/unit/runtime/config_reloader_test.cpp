// ConfigReloader in simulated time: real files in a fresh folder, fake hooks standing for the
// root (hot actions, restart requests), a ManualExecutor for the watcher's debounce. A reload
// is driven by SIGHUP (reload()), by the watcher, or by config.patch/apply (config_write()).

#include "runtime/config_reloader.h"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include "config/document.h"
#include "core/manual_executor.h"

namespace drawbridge::runtime {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using nlohmann::json;

const std::string kTokenA(32, 'a');
const std::string kTokenB(32, 'b');
const std::string kTokenC(32, 'c');

std::string config_with(const std::string& token, int port = 18789) {
  return json{{"gateway", {{"port", port}, {"auth", {{"token", token}}}}}}.dump();
}

// What the root did when the reloader called it.
struct HotRun {
  config::Config next;
  core::ReloadPlan plan;
  std::function<void(const std::string&)> done;
};

class ConfigReloaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "drawbridge-reload-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    path_ = (dir_ / "config.json").string();
    write(config_with(kTokenA));
    auto loaded = config::load_config_text(path_, config_with(kTokenA));
    ASSERT_TRUE(loaded.parsed.config) << "the test's own config is invalid";
    StartedFrom from;
    from.text = config_with(kTokenA);
    reloader_ = std::make_unique<ConfigReloader>(io_, clock_, executor_, *loaded.parsed.config,
                                                 RunOptions{}, path_, from, hooks());
  }
  void TearDown() override {
    reloader_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  ConfigReloader::Hooks hooks() {
    ConfigReloader::Hooks h;
    h.state = [this] { return state_; };
    h.schedule_restart = [this](const core::RestartRequest& r) {
      restarts_.push_back(r);
      return server::RestartAnswer{true, "scheduled", 1, 0, {}};
    };
    h.cancel_config_restart = [this] {
      ++cancels_;
      return false;
    };
    h.run_hot_actions = [this](const config::Config& next, const core::ReloadPlan& plan,
                               std::function<void(const std::string&)> done) {
      hot_.push_back({next, plan, std::move(done)});
    };
    h.committed = [this] { ++committed_; };
    h.secrets_changed = [] {};
    h.notify_reloading = [this](const std::string&) { ++reloading_; };
    h.notify_ready = [this] { ++ready_; };
    return h;
  }

  void write(const std::string& text) {
    const int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
    ::close(fd);
  }

  static bool has_action(const core::ReloadPlan& plan, core::HotAction action) {
    for (const auto& a : plan.actions) {
      if (a.action == action) return true;
    }
    return false;
  }

  boost::asio::io_context io_;
  core::ManualClock clock_;
  core::ManualExecutor executor_{clock_};
  fs::path dir_;
  std::string path_;
  core::LifecycleState state_ = core::LifecycleState::running;
  std::vector<core::RestartRequest> restarts_;
  std::vector<HotRun> hot_;
  int cancels_ = 0;
  int committed_ = 0;
  int reloading_ = 0;
  int ready_ = 0;
  std::unique_ptr<ConfigReloader> reloader_;
};

TEST_F(ConfigReloaderTest, AHotChangeRunsThePlanThroughTheHookAndCommitsWhenItIsDone) {
  write(config_with(kTokenB));
  reloader_->reload("SIGHUP");
  ASSERT_EQ(hot_.size(), 1u);
  EXPECT_EQ(hot_[0].plan.kind, core::ReloadKind::hot);
  EXPECT_TRUE(has_action(hot_[0].plan, core::HotAction::update_auth));
  EXPECT_EQ(hot_[0].next.gateway.auth_token, kTokenB);
  EXPECT_TRUE(restarts_.empty());
  EXPECT_EQ(reloading_, 1) << "systemd hears RELOADING=1 around SIGHUP";
  EXPECT_EQ(ready_, 1);
  // Not committed until the root says the actions are done.
  EXPECT_EQ(reloader_->running().gateway.auth_token, kTokenA);
  EXPECT_EQ(committed_, 0);
  EXPECT_EQ(reloader_->config_health()["reloading"], true);

  clock_.advance(7ms);  // the hot actions take 7 ms of (simulated) time
  hot_[0].done("");
  EXPECT_EQ(reloader_->running().gateway.auth_token, kTokenB);
  EXPECT_EQ(committed_, 1);
  EXPECT_EQ(cancels_, 1) << "a config restart scheduled before is no longer needed";
  EXPECT_EQ(reloader_->applied_hash(), config::content_hash(config_with(kTokenB)));
  const auto health = reloader_->config_health();
  EXPECT_EQ(health["reloading"], false);
  EXPECT_EQ(health["reloads"], 1);
  EXPECT_EQ(health["lastReload"]["kind"], "hot");
  EXPECT_EQ(health["lastReload"]["ok"], true);
  EXPECT_EQ(health["lastReload"]["source"], "SIGHUP");
  EXPECT_EQ(health["lastReload"]["durationMs"], 7.0);
  EXPECT_EQ(reloader_->config_get().pending, false);
}

TEST_F(ConfigReloaderTest, AFailedHotChangeIsNotCommittedAndAsksForARestartInstead) {
  write(config_with(kTokenB));
  reloader_->reload("SIGHUP");
  ASSERT_EQ(hot_.size(), 1u);
  hot_[0].done("channel local did not start");
  EXPECT_EQ(reloader_->running().gateway.auth_token, kTokenA);
  EXPECT_EQ(committed_, 0);
  ASSERT_EQ(restarts_.size(), 1u);
  EXPECT_EQ(restarts_[0].source, core::RestartSource::config);
  EXPECT_NE(restarts_[0].reason.find("hot reload failed: channel local did not start"),
            std::string::npos)
      << restarts_[0].reason;
  EXPECT_EQ(reloader_->config_health()["lastReload"]["ok"], false);
}

TEST_F(ConfigReloaderTest, ARestartClassChangeSchedulesARestartAndRunsNoHotAction) {
  write(config_with(kTokenA, 18790));
  reloader_->reload("SIGHUP");
  EXPECT_TRUE(hot_.empty());
  ASSERT_EQ(restarts_.size(), 1u);
  EXPECT_EQ(restarts_[0].source, core::RestartSource::config);
  EXPECT_NE(restarts_[0].reason.find("gateway.port"), std::string::npos) << restarts_[0].reason;
  // The running config is the next generation's business: it is not swapped here.
  EXPECT_EQ(reloader_->running().gateway.port, 18789);
  const auto health = reloader_->config_health();
  EXPECT_EQ(health["lastReload"]["kind"], "restart");
  EXPECT_EQ(health["reloading"], false);
}

TEST_F(ConfigReloaderTest, AnInvalidFileKeepsTheRunningConfigAndShowsPendingAndInvalid) {
  write(R"({"gateway": {"port": "not a port", "auth": {"token": ")" + kTokenB + R"("}}})");
  reloader_->reload("SIGHUP");
  EXPECT_TRUE(hot_.empty());
  EXPECT_TRUE(restarts_.empty());
  EXPECT_EQ(reloader_->running().gateway.auth_token, kTokenA);
  EXPECT_EQ(reloader_->applied_hash(), config::content_hash(config_with(kTokenA)));
  const auto health = reloader_->config_health();
  EXPECT_EQ(health["valid"], false);
  ASSERT_FALSE(health["errors"].empty());
  EXPECT_NE(health["errors"].dump().find("gateway.port"), std::string::npos) << health["errors"];
  const auto got = reloader_->config_get();
  EXPECT_EQ(got.pending, true) << "the file on disk is not the one applied";
  EXPECT_EQ(got.valid, false);

  // Not JSON at all: the same, with the parser's words.
  write(R"({"gateway": )");
  reloader_->reload("SIGHUP");
  EXPECT_TRUE(hot_.empty());
  EXPECT_EQ(reloader_->running().gateway.auth_token, kTokenA);
  EXPECT_NE(reloader_->config_health()["errors"].dump().find("parse error"), std::string::npos)
      << reloader_->config_health()["errors"];

  // Fixed: applied, and valid again.
  write(config_with(kTokenB));
  reloader_->reload("SIGHUP");
  ASSERT_EQ(hot_.size(), 1u);
  hot_[0].done("");
  EXPECT_EQ(reloader_->config_health()["valid"], true);
  EXPECT_EQ(reloader_->config_get().pending, false);
}

TEST_F(ConfigReloaderTest, AChangeDuringAReloadWaitsForItThenRunsInOrder) {
  write(config_with(kTokenB));
  reloader_->reload("SIGHUP");
  ASSERT_EQ(hot_.size(), 1u);
  // The first reload's hot actions are still running when the file changes again.
  write(config_with(kTokenC));
  reloader_->reload("SIGHUP");
  EXPECT_EQ(hot_.size(), 1u) << "a second reload ran while the first was under way";
  EXPECT_EQ(reloader_->config_health()["reloading"], true);

  hot_[0].done("");
  EXPECT_EQ(reloader_->running().gateway.auth_token, kTokenB);
  ASSERT_EQ(hot_.size(), 2u) << "the waiting change starts once the first is done";
  EXPECT_EQ(hot_[1].next.gateway.auth_token, kTokenC);
  EXPECT_EQ(reloader_->config_health()["reloading"], true);
  hot_[1].done("");
  EXPECT_EQ(reloader_->running().gateway.auth_token, kTokenC);
  EXPECT_EQ(committed_, 2);
  EXPECT_EQ(reloader_->config_health()["reloading"], false);
  EXPECT_EQ(reloader_->config_health()["reloads"], 2);
}

TEST_F(ConfigReloaderTest, AnRpcWriteDuringAReloadIsAnsweredWhenItsOwnChangeIsApplied) {
  write(config_with(kTokenB));
  reloader_->reload("SIGHUP");
  ASSERT_EQ(hot_.size(), 1u);
  std::vector<server::ConfigWriteResult> answers;
  server::ConfigWrite w;
  w.raw = json{{"gateway", {{"auth", {{"token", kTokenC}}}}}}.dump();
  w.base_hash = config::content_hash(config_with(kTokenB));
  reloader_->config_write(w, [&](server::ConfigWriteResult r) { answers.push_back(std::move(r)); });
  EXPECT_TRUE(answers.empty()) << "answered before its change ran";
  EXPECT_EQ(hot_.size(), 1u);

  hot_[0].done("");
  ASSERT_EQ(hot_.size(), 2u);
  EXPECT_EQ(hot_[1].next.gateway.auth_token, kTokenC);
  EXPECT_TRUE(answers.empty());
  hot_[1].done("");
  ASSERT_EQ(answers.size(), 1u);
  const auto* ok = std::get_if<server::ConfigWriteDone>(&answers[0]);
  ASSERT_NE(ok, nullptr) << "the write was refused";
  EXPECT_TRUE(ok->written);
  EXPECT_TRUE(ok->plan.applied);
  EXPECT_EQ(reloader_->running().gateway.auth_token, kTokenC);
}

TEST_F(ConfigReloaderTest, WhileRestartingAChangeIsLeftToTheNextGeneration) {
  state_ = core::LifecycleState::draining;
  write(config_with(kTokenB));
  reloader_->reload("SIGHUP");
  EXPECT_TRUE(hot_.empty());
  EXPECT_TRUE(restarts_.empty());
  EXPECT_EQ(reloading_, 0) << "RELOADING=1 is for a running gateway";
  EXPECT_EQ(reloader_->running().gateway.auth_token, kTokenA);
}

// The watcher's path: a real inotify event, then the debounce in simulated time.
TEST_F(ConfigReloaderTest, AWatchedEditIsAppliedExactlyOneDebounceAfterTheEvent) {
  reloader_->start_watcher();
  ASSERT_EQ(reloader_->config_health()["watching"], true);
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work(
      io_.get_executor());
  write(config_with(kTokenB));
  // Waiting FOR the event (inotify queued it before write() returned), failing after 3 s.
  const auto deadline = std::chrono::steady_clock::now() + 3s;
  while (reloader_->config_health()["watcher"]["events"].get<int>() == 0 &&
         std::chrono::steady_clock::now() < deadline) {
    io_.run_one_for(5ms);
  }
  ASSERT_GT(reloader_->config_health()["watcher"]["events"].get<int>(), 0) << "no event in 3 s";
  io_.restart();
  while (io_.poll() > 0) {
  }
  // gateway.reload.debounceMs is 300 by default.
  executor_.advance(299ms);
  EXPECT_TRUE(hot_.empty()) << "applied before the debounce";
  EXPECT_EQ(reloader_->config_health()["watcher"]["pending"], true);
  executor_.advance(1ms);
  ASSERT_EQ(hot_.size(), 1u);
  EXPECT_EQ(hot_[0].next.gateway.auth_token, kTokenB);
  hot_[0].done("");
  EXPECT_EQ(reloader_->config_health()["lastReload"]["source"], "file watcher");
  EXPECT_EQ(reloader_->running().gateway.auth_token, kTokenB);
}

TEST_F(ConfigReloaderTest, ConfigGetShowsTheFileAsWrittenWithItsSecretsRedacted) {
  write(json{{"gateway", {{"auth", {{"token", kTokenB}}}}}, {"logging", {{"level", "warn"}}}}
            .dump());
  const auto snap = reloader_->config_get();
  EXPECT_EQ(snap.source_config, (json{{"gateway", {{"auth", {{"token", std::string(config::kRedacted)}}}}},
                                      {"logging", {{"level", "warn"}}}}));
  // The effective config has every default; the file's copy has only what the file says.
  EXPECT_TRUE(snap.config.contains("store"));
  EXPECT_FALSE(snap.source_config.contains("store"));
  write("{ not json");
  EXPECT_TRUE(reloader_->config_get().source_config.is_null());
}

TEST_F(ConfigReloaderTest, AWriteWithAPlaceholderForASecretTheFileLacksLeavesItOut) {
  write(R"({"logging": {"level": "info"}})");
  const auto snap = reloader_->config_get();
  // A form that took the token from the effective config (where it is the running one,
  // redacted) and the rest from the file.
  ASSERT_EQ(snap.config["gateway"]["auth"]["token"], std::string(config::kRedacted));
  json doc = snap.source_config;
  doc["gateway"]["auth"]["token"] = snap.config["gateway"]["auth"]["token"];
  doc["logging"]["level"] = "warn";
  server::ConfigWrite w;
  w.whole = true;
  w.raw = doc.dump();
  w.base_hash = config::content_hash(R"({"logging": {"level": "info"}})");
  std::vector<server::ConfigWriteResult> answers;
  reloader_->config_write(w, [&](server::ConfigWriteResult r) { answers.push_back(std::move(r)); });
  for (auto& h : hot_) h.done("");
  ASSERT_EQ(answers.size(), 1u);
  const auto* ok = std::get_if<server::ConfigWriteDone>(&answers[0]);
  ASSERT_NE(ok, nullptr) << std::get<server::ConfigWriteError>(answers[0]).message;
  EXPECT_EQ(ok->dropped_placeholders, std::vector<std::string>{"gateway.auth.token"});
  std::string err;
  const auto text = config::read_text_file(path_, err);
  ASSERT_TRUE(text);
  EXPECT_EQ(text->find(config::kRedacted), std::string::npos) << *text;
  EXPECT_EQ(json::parse(*text)["logging"]["level"], "warn");
}

}  // namespace
}  // namespace drawbridge::runtime
