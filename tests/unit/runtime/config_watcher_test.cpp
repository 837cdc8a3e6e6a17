#include "runtime/config_watcher.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

namespace drawbridge::runtime {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr auto kDeadline = 3s;

// A fresh folder per test, a real io_context, real files. The loop only runs inside
// run_for()/run_until(), so every file operation happens while no handler can run: the
// timing assertions below only depend on the order of the steps, not on the machine's speed.
class ConfigWatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "drawbridge-watch-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    path_ = (dir_ / "config.json").string();
  }
  void TearDown() override {
    watcher_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  static ConfigWatcher::Options fast() {
    ConfigWatcher::Options o;
    o.debounce = 20ms;
    o.retry_interval = 20ms;
    o.retries = 5;
    return o;
  }

  void watch(ConfigWatcher::Options options = fast()) {
    watcher_ = std::make_unique<ConfigWatcher>(
        io_, path_, [this](const WatchedFile& f) { calls_.push_back(f); });
    const auto error = watcher_->start(options);
    ASSERT_FALSE(error) << *error;
  }

  // Writes the whole file in place: open with O_TRUNC, write, close.
  static void write_file(const std::string& path, const std::string& text) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0) << path;
    ASSERT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
    ::close(fd);
  }

  void run_for(Clock::duration d) { io_.run_for(d); }

  // Runs the loop until `done` holds or the deadline passes; returns `done()`.
  template <typename Pred>
  bool run_until(Pred done, Clock::duration deadline = kDeadline) {
    const auto until = Clock::now() + deadline;
    while (!done() && Clock::now() < until) io_.run_for(5ms);
    return done();
  }
  bool run_until_called(std::size_t n = 1) {
    return run_until([&] { return calls_.size() >= n; });
  }

  boost::asio::io_context io_;
  // Keeps run_for() running for its whole duration even when nothing is pending.
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_ =
      boost::asio::make_work_guard(io_);
  fs::path dir_;
  std::string path_;
  std::vector<WatchedFile> calls_;
  std::unique_ptr<ConfigWatcher> watcher_;
};

TEST_F(ConfigWatcherTest, InPlaceWriteIsReportedOnceWithTheNewText) {
  write_file(path_, R"({"gateway": {"port": 1}})");
  watch();
  write_file(path_, R"({"gateway": {"port": 2}})");
  ASSERT_TRUE(run_until_called());
  run_for(100ms);
  ASSERT_EQ(calls_.size(), 1u);
  EXPECT_TRUE(calls_[0].exists);
  EXPECT_EQ(calls_[0].text, R"({"gateway": {"port": 2}})");
  EXPECT_EQ(calls_[0].error, "");
  EXPECT_GT(watcher_->events_seen(), 0u);
}

TEST_F(ConfigWatcherTest, JsonWithCommentsIsAccepted) {
  watch();
  const std::string text = "// the gateway\n{\"gateway\": {/* port */ \"port\": 3}}\n";
  write_file(path_, text);
  ASSERT_TRUE(run_until_called());
  EXPECT_EQ(calls_[0].text, text);
  EXPECT_EQ(calls_[0].error, "");
}

TEST_F(ConfigWatcherTest, RenameOverTheFileIsReportedOnce) {
  write_file(path_, R"({"v": 1})");
  watch();
  const std::string tmp = (dir_ / ".config.json.swp").string();
  write_file(tmp, R"({"v": 2})");
  ASSERT_EQ(::rename(tmp.c_str(), path_.c_str()), 0);
  ASSERT_TRUE(run_until_called());
  run_for(100ms);
  ASSERT_EQ(calls_.size(), 1u);
  EXPECT_TRUE(calls_[0].exists);
  EXPECT_EQ(calls_[0].text, R"({"v": 2})");
}

TEST_F(ConfigWatcherTest, DeleteThenRecreateIsReportedAsTheRecreatedFile) {
  write_file(path_, R"({"v": 1})");
  watch();
  ASSERT_EQ(::unlink(path_.c_str()), 0);
  // Past the debounce: the watcher has found the file missing and is retrying.
  run_for(30ms);
  EXPECT_TRUE(calls_.empty());
  write_file(path_, R"({"v": 2})");
  ASSERT_TRUE(run_until_called());
  run_for(100ms);
  ASSERT_EQ(calls_.size(), 1u);
  EXPECT_TRUE(calls_[0].exists);
  EXPECT_EQ(calls_[0].text, R"({"v": 2})");
  EXPECT_EQ(calls_[0].error, "");
}

TEST_F(ConfigWatcherTest, BurstOfWritesIsReportedOnceWithTheLastContent) {
  write_file(path_, R"({"n": -1})");
  // Writes are 2 ms of loop apart; a debounce well above that keeps a loaded machine from
  // splitting the burst.
  auto options = fast();
  options.debounce = 150ms;
  watch(options);
  for (int i = 0; i < 10; ++i) {
    write_file(path_, "{\"n\": " + std::to_string(i) + "}");
    run_for(2ms);
  }
  ASSERT_TRUE(run_until_called());
  run_for(100ms);
  ASSERT_EQ(calls_.size(), 1u);
  EXPECT_EQ(calls_[0].text, R"({"n": 9})");
  EXPECT_GE(watcher_->events_seen(), 10u);
}

TEST_F(ConfigWatcherTest, WritesToOtherFilesInTheFolderAreIgnored) {
  write_file(path_, R"({"v": 1})");
  watch();
  const std::string other = (dir_ / "other.json").string();
  write_file(other, R"({"v": 2})");
  const std::string tmp = (dir_ / "other.tmp").string();
  write_file(tmp, R"({"v": 3})");
  ASSERT_EQ(::rename(tmp.c_str(), other.c_str()), 0);
  ASSERT_EQ(::unlink(other.c_str()), 0);
  run_for(150ms);
  EXPECT_TRUE(calls_.empty());
  EXPECT_EQ(watcher_->events_seen(), 0u);
}

TEST_F(ConfigWatcherTest, HalfWrittenFileIsReportedOnceComplete) {
  write_file(path_, R"({"gateway": {}})");
  watch();
  const int fd = ::open(path_.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  const std::string head = "{\"gateway\": ";
  const std::string tail = "{\"port\": 7}}";
  ASSERT_EQ(::write(fd, head.data(), head.size()), static_cast<ssize_t>(head.size()));
  // Past the debounce with the file still open: the watcher reads half a file and retries.
  run_for(30ms);
  EXPECT_TRUE(calls_.empty());
  ASSERT_EQ(::write(fd, tail.data(), tail.size()), static_cast<ssize_t>(tail.size()));
  ASSERT_TRUE(run_until_called());
  run_for(100ms);
  ::close(fd);
  ASSERT_EQ(calls_.size(), 1u);
  EXPECT_TRUE(calls_[0].exists);
  EXPECT_EQ(calls_[0].text, head + tail);
  EXPECT_EQ(calls_[0].error, "");
}

TEST_F(ConfigWatcherTest, EmptyFileCountsAsHalfWritten) {
  write_file(path_, R"({"v": 1})");
  watch();
  write_file(path_, "");
  run_for(30ms);
  EXPECT_TRUE(calls_.empty());
  write_file(path_, R"({"v": 2})");
  ASSERT_TRUE(run_until_called());
  run_for(100ms);
  ASSERT_EQ(calls_.size(), 1u);
  EXPECT_EQ(calls_[0].text, R"({"v": 2})");
}

TEST_F(ConfigWatcherTest, FileThatStaysMissingIsReportedAfterTheRetries) {
  write_file(path_, R"({"v": 1})");
  auto options = fast();
  options.retries = 3;
  watch(options);
  const auto t0 = Clock::now();
  ASSERT_EQ(::unlink(path_.c_str()), 0);
  ASSERT_TRUE(run_until_called());
  const auto elapsed = Clock::now() - t0;
  run_for(100ms);
  ASSERT_EQ(calls_.size(), 1u);
  EXPECT_FALSE(calls_[0].exists);
  EXPECT_EQ(calls_[0].text, "");
  EXPECT_EQ(calls_[0].error, "missing");
  // One debounce, then one read per retry interval.
  EXPECT_GE(elapsed, options.debounce + options.retries * options.retry_interval);
}

TEST_F(ConfigWatcherTest, FileThatStaysInvalidIsReportedWithTheParseError) {
  write_file(path_, R"({"v": 1})");
  auto options = fast();
  options.retries = 2;
  watch(options);
  write_file(path_, R"({"v": )");
  ASSERT_TRUE(run_until_called());
  ASSERT_EQ(calls_.size(), 1u);
  EXPECT_TRUE(calls_[0].exists);
  EXPECT_EQ(calls_[0].text, "");
  EXPECT_NE(calls_[0].error.find("parse error"), std::string::npos) << calls_[0].error;
}

TEST_F(ConfigWatcherTest, AFifoInPlaceOfTheFileIsReportedNotWaitedOn) {
  write_file(path_, R"({"v": 1})");
  auto options = fast();
  options.retries = 1;
  watch(options);
  ASSERT_EQ(::unlink(path_.c_str()), 0);
  // Before: the read blocked the event loop in open() until some writer came.
  ASSERT_EQ(::mkfifo(path_.c_str(), 0600), 0);
  ASSERT_TRUE(run_until([&] { return !calls_.empty() && calls_.back().exists; }));
  EXPECT_EQ(calls_.back().text, "");
  EXPECT_EQ(calls_.back().error, "cannot read " + path_ + ": not a regular file (a FIFO)");
}

TEST_F(ConfigWatcherTest, AFileOverTheSizeLimitIsReportedWithTheLimit) {
  write_file(path_, R"({"v": 1})");
  auto options = fast();
  options.retries = 1;
  watch(options);
  write_file(path_, "{\"pad\": \"" + std::string(2 * 1024 * 1024, 'x') + "\"}");
  ASSERT_TRUE(run_until_called());
  EXPECT_TRUE(calls_[0].exists);
  EXPECT_EQ(calls_[0].text, "");
  EXPECT_NE(calls_[0].error.find("larger than the limit of 1 MiB"), std::string::npos)
      << calls_[0].error;
}

TEST_F(ConfigWatcherTest, JsonOverADepthLimitIsHandedOverForValidationToReport) {
  write_file(path_, R"({"v": 1})");
  watch();
  // Complete and final: waiting will not fix it, and the validation names where it is.
  const std::string deep =
      "{\"meta\":" + std::string(100'000, '[') + std::string(100'000, ']') + "}";
  write_file(path_, deep);
  ASSERT_TRUE(run_until_called());
  EXPECT_EQ(calls_[0].error, "");
  EXPECT_EQ(calls_[0].text, deep);
}

TEST_F(ConfigWatcherTest, AnEventDuringTheRetriesStartsThemAfresh) {
  write_file(path_, R"({"v": 1})");
  auto options = fast();
  options.retries = 2;
  watch(options);
  write_file(path_, "{");
  // Debounce and one retry spent: 20 + 20 ms, one retry left.
  run_for(50ms);
  EXPECT_TRUE(calls_.empty());
  write_file(path_, "{\"v\"");
  // Without the reset the last retry would run out here, at about 20 ms.
  run_for(30ms);
  EXPECT_TRUE(calls_.empty());
  write_file(path_, R"({"v": 2})");
  ASSERT_TRUE(run_until_called());
  ASSERT_EQ(calls_.size(), 1u);
  EXPECT_EQ(calls_[0].text, R"({"v": 2})");
}

TEST_F(ConfigWatcherTest, StopThenWriteCallsNothing) {
  write_file(path_, R"({"v": 1})");
  watch();
  watcher_->stop();
  write_file(path_, R"({"v": 2})");
  run_for(150ms);
  EXPECT_TRUE(calls_.empty());
}

// The debounce is 100 ms here (not 20): the loop runs in 5 ms slices, and on a loaded machine
// a slice can overrun 20 ms, letting the debounce fire before the test can stop the watcher.
// 300 ms later nothing was called; without the stop the call would come at 100 ms.
ConfigWatcher::Options slow_debounce() {
  ConfigWatcher::Options o;
  o.debounce = 100ms;
  o.retry_interval = 20ms;
  o.retries = 5;
  return o;
}

TEST_F(ConfigWatcherTest, StopDuringTheDebounceCallsNothing) {
  write_file(path_, R"({"v": 1})");
  watch(slow_debounce());
  write_file(path_, R"({"v": 2})");
  ASSERT_TRUE(run_until([&] { return watcher_->read_pending(); }));
  watcher_->stop();
  EXPECT_FALSE(watcher_->read_pending());
  run_for(300ms);
  EXPECT_TRUE(calls_.empty());
}

TEST_F(ConfigWatcherTest, DestructionDuringTheDebounceCallsNothing) {
  write_file(path_, R"({"v": 1})");
  watch(slow_debounce());
  write_file(path_, R"({"v": 2})");
  ASSERT_TRUE(run_until([&] { return watcher_->read_pending(); }));
  watcher_.reset();
  write_file(path_, R"({"v": 3})");
  run_for(300ms);
  EXPECT_TRUE(calls_.empty());
}

TEST_F(ConfigWatcherTest, TheCallbackMayDestroyTheWatcher) {
  write_file(path_, R"({"v": 1})");
  int called = 0;
  watcher_ = std::make_unique<ConfigWatcher>(io_, path_, [&](const WatchedFile&) {
    ++called;
    watcher_.reset();
  });
  ASSERT_FALSE(watcher_->start(fast()));
  write_file(path_, R"({"v": 2})");
  ASSERT_TRUE(run_until([&] { return called > 0; }));
  EXPECT_EQ(watcher_, nullptr);
  write_file(path_, R"({"v": 3})");
  run_for(100ms);
  EXPECT_EQ(called, 1);
}

TEST_F(ConfigWatcherTest, StartAgainAfterStopWatchesAgain) {
  write_file(path_, R"({"v": 1})");
  watch();
  watcher_->stop();
  write_file(path_, R"({"v": 2})");
  run_for(50ms);
  EXPECT_TRUE(calls_.empty());
  ASSERT_FALSE(watcher_->start(fast()));
  EXPECT_EQ(watcher_->events_seen(), 0u);
  write_file(path_, R"({"v": 3})");
  ASSERT_TRUE(run_until_called());
  run_for(100ms);
  ASSERT_EQ(calls_.size(), 1u);
  EXPECT_EQ(calls_[0].text, R"({"v": 3})");
}

TEST_F(ConfigWatcherTest, SetDebounceAppliesToLaterEvents) {
  write_file(path_, R"({"v": 1})");
  watch();
  watcher_->set_debounce(300ms);
  const auto t0 = Clock::now();
  write_file(path_, R"({"v": 2})");
  ASSERT_TRUE(run_until_called());
  EXPECT_GE(Clock::now() - t0, 300ms);
  EXPECT_EQ(calls_[0].text, R"({"v": 2})");
}

TEST_F(ConfigWatcherTest, StartOnAMissingFolderReturnsAnError) {
  ConfigWatcher watcher(io_, (dir_ / "nope" / "config.json").string(),
                        [&](const WatchedFile& f) { calls_.push_back(f); });
  const auto error = watcher.start(fast());
  ASSERT_TRUE(error);
  EXPECT_NE(error->find((dir_ / "nope").string()), std::string::npos) << *error;
  EXPECT_NE(error->find("No such file or directory"), std::string::npos) << *error;
}

}  // namespace
}  // namespace drawbridge::runtime
