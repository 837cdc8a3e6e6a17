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

#include "core/manual_executor.h"

namespace drawbridge::runtime {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Waiting FOR an inotify event (it fails the test when the event does not come).
constexpr auto kDeadline = 3s;

// A fresh folder per test, real files and a real io_context for the inotify descriptor; the
// debounce and retry timers run on a ManualExecutor, so time only moves when a test advances
// it. inotify queues an event in the writing syscall, before it returns; the tests wait for
// the watcher to have read it (bounded, failing on the deadline) and then drain the loop, so
// every "nothing happened" below is about simulated time, never a real wait.
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
        io_, executor_, path_, [this](const WatchedFile& f) { calls_.push_back(f); });
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

  // Runs every handler that is ready (the inotify reads of events already queued), without
  // waiting for anything.
  void drain_loop() {
    io_.restart();
    while (io_.poll() > 0) {
    }
  }

  // Runs the loop until `done` holds or the real-time deadline passes; returns `done()`.
  template <typename Pred>
  bool run_until(Pred done, Clock::duration deadline = kDeadline) {
    const auto until = Clock::now() + deadline;
    io_.restart();
    while (!done() && Clock::now() < until) io_.run_one_for(5ms);
    return done();
  }

  // Waits until the watcher has read an event for the file that it had not seen at `before`,
  // then reads whatever else is queued.
  bool saw_event_since(std::uint64_t before) {
    const bool seen = run_until([&] { return watcher_->events_seen() > before; });
    drain_loop();
    return seen;
  }

  // `step()` changes the file; returns once the watcher has read the event(s) it caused.
  template <typename Step>
  ::testing::AssertionResult changed(Step step) {
    const auto before = watcher_->events_seen();
    step();
    if (saw_event_since(before)) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "no inotify event within " << kDeadline.count()
                                         << " s";
  }
  ::testing::AssertionResult wrote(const std::string& text) {
    return changed([&] { write_file(path_, text); });
  }

  // Simulated time.
  void advance(core::Duration d) { executor_.advance(d); }

  boost::asio::io_context io_;
  // Keeps run_one_for() waiting when nothing is pending.
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_ =
      boost::asio::make_work_guard(io_);
  core::ManualClock clock_;
  core::ManualExecutor executor_{clock_};
  fs::path dir_;
  std::string path_;
  std::vector<WatchedFile> calls_;
  std::unique_ptr<ConfigWatcher> watcher_;
};

TEST_F(ConfigWatcherTest, InPlaceWriteIsReportedOnceAfterTheDebounceWithTheNewText) {
  write_file(path_, R"({"gateway": {"port": 1}})");
  watch();
  ASSERT_TRUE(wrote(R"({"gateway": {"port": 2}})"));
  EXPECT_TRUE(watcher_->read_pending());
  advance(19ms);
  EXPECT_TRUE(calls_.empty()) << "before the 20 ms debounce";
  advance(1ms);
  ASSERT_EQ(calls_.size(), 1u);
  EXPECT_TRUE(calls_[0].exists);
  EXPECT_EQ(calls_[0].text, R"({"gateway": {"port": 2}})");
  EXPECT_EQ(calls_[0].error, "");
  EXPECT_GT(watcher_->events_seen(), 0u);
  EXPECT_FALSE(watcher_->read_pending());
  EXPECT_EQ(watcher_->reads(), 1u);
  advance(10s);
  drain_loop();
  EXPECT_EQ(calls_.size(), 1u);
  EXPECT_EQ(executor_.pending_timers(), 0u);
}

TEST_F(ConfigWatcherTest, JsonWithCommentsIsAccepted) {
  watch();
  const std::string text = "// the gateway\n{\"gateway\": {/* port */ \"port\": 3}}\n";
  ASSERT_TRUE(wrote(text));
  advance(20ms);
  ASSERT_EQ(calls_.size(), 1u);
  EXPECT_EQ(calls_[0].text, text);
  EXPECT_EQ(calls_[0].error, "");
}

TEST_F(ConfigWatcherTest, RenameOverTheFileIsReportedOnce) {
  write_file(path_, R"({"v": 1})");
  watch();
  const std::string tmp = (dir_ / ".config.json.swp").string();
  write_file(tmp, R"({"v": 2})");
  ASSERT_TRUE(changed([&] { ASSERT_EQ(::rename(tmp.c_str(), path_.c_str()), 0); }));
  advance(10s);
  ASSERT_EQ(calls_.size(), 1u);
  EXPECT_TRUE(calls_[0].exists);
  EXPECT_EQ(calls_[0].text, R"({"v": 2})");
}

TEST_F(ConfigWatcherTest, DeleteThenRecreateIsReportedAsTheRecreatedFile) {
  write_file(path_, R"({"v": 1})");
  watch();
  ASSERT_TRUE(changed([&] { ASSERT_EQ(::unlink(path_.c_str()), 0); }));
  // Past the debounce: the watcher has found the file missing and is retrying.
  advance(30ms);
  EXPECT_TRUE(calls_.empty());
  EXPECT_TRUE(watcher_->read_pending());
  ASSERT_TRUE(wrote(R"({"v": 2})"));
  advance(10s);
  ASSERT_EQ(calls_.size(), 1u);
  EXPECT_TRUE(calls_[0].exists);
  EXPECT_EQ(calls_[0].text, R"({"v": 2})");
  EXPECT_EQ(calls_[0].error, "");
}

TEST_F(ConfigWatcherTest, BurstOfWritesIsReportedOnceWithTheLastContent) {
  write_file(path_, R"({"n": -1})");
  watch();
  // 10 writes 15 ms apart: 135 ms in all, each within the 20 ms debounce of the one before.
  for (int i = 0; i < 10; ++i) {
    if (i > 0) advance(15ms);
    ASSERT_TRUE(wrote("{\"n\": " + std::to_string(i) + "}")) << i;
  }
  EXPECT_TRUE(calls_.empty());
  advance(19ms);
  EXPECT_TRUE(calls_.empty());
  advance(1ms);
  ASSERT_EQ(calls_.size(), 1u);
  EXPECT_EQ(calls_[0].text, R"({"n": 9})");
  EXPECT_GE(watcher_->events_seen(), 10u);
  advance(10s);
  EXPECT_EQ(calls_.size(), 1u);
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
  // A marker in the same queue after them: `touch` on the file is one IN_ATTRIB. Once it is
  // read, everything before it was read too; only the marker counts.
  ASSERT_TRUE(changed([&] { ASSERT_EQ(::utimensat(AT_FDCWD, path_.c_str(), nullptr, 0), 0); }));
  EXPECT_EQ(watcher_->events_seen(), 1u);
  advance(20ms);
  ASSERT_EQ(calls_.size(), 1u);
  EXPECT_EQ(calls_[0].text, R"({"v": 1})");
}

TEST_F(ConfigWatcherTest, HalfWrittenFileIsReportedOnceComplete) {
  write_file(path_, R"({"gateway": {}})");
  watch();
  const int fd = ::open(path_.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  const std::string head = "{\"gateway\": ";
  const std::string tail = "{\"port\": 7}}";
  ASSERT_TRUE(changed([&] {
    ASSERT_EQ(::write(fd, head.data(), head.size()), static_cast<ssize_t>(head.size()));
  }));
  // Past the debounce with the file still open: the watcher reads half a file and retries.
  advance(30ms);
  EXPECT_TRUE(calls_.empty());
  EXPECT_TRUE(watcher_->read_pending());
  ASSERT_TRUE(changed([&] {
    ASSERT_EQ(::write(fd, tail.data(), tail.size()), static_cast<ssize_t>(tail.size()));
    ::close(fd);
  }));
  advance(19ms);
  EXPECT_TRUE(calls_.empty()) << "the event restarted the debounce";
  advance(1ms);
  ASSERT_EQ(calls_.size(), 1u);
  EXPECT_TRUE(calls_[0].exists);
  EXPECT_EQ(calls_[0].text, head + tail);
  EXPECT_EQ(calls_[0].error, "");
  advance(10s);
  EXPECT_EQ(calls_.size(), 1u);
}

TEST_F(ConfigWatcherTest, EmptyFileCountsAsHalfWritten) {
  write_file(path_, R"({"v": 1})");
  watch();
  ASSERT_TRUE(wrote(""));
  advance(30ms);
  EXPECT_TRUE(calls_.empty());
  ASSERT_TRUE(wrote(R"({"v": 2})"));
  advance(10s);
  ASSERT_EQ(calls_.size(), 1u);
  EXPECT_EQ(calls_[0].text, R"({"v": 2})");
}

TEST_F(ConfigWatcherTest, FileThatStaysMissingIsReportedAfterTheRetries) {
  write_file(path_, R"({"v": 1})");
  auto options = fast();
  options.retries = 3;
  watch(options);
  ASSERT_TRUE(changed([&] { ASSERT_EQ(::unlink(path_.c_str()), 0); }));
  // One debounce, then one read per retry interval: 20 + 3 * 20 ms.
  advance(79ms);
  EXPECT_TRUE(calls_.empty());
  advance(1ms);
  ASSERT_EQ(calls_.size(), 1u);
  EXPECT_FALSE(calls_[0].exists);
  EXPECT_EQ(calls_[0].text, "");
  EXPECT_EQ(calls_[0].error, "missing");
  advance(10s);
  EXPECT_EQ(calls_.size(), 1u);
  EXPECT_FALSE(watcher_->read_pending());
}

TEST_F(ConfigWatcherTest, FileThatStaysInvalidIsReportedWithTheParseError) {
  write_file(path_, R"({"v": 1})");
  auto options = fast();
  options.retries = 2;
  watch(options);
  ASSERT_TRUE(wrote(R"({"v": )"));
  advance(59ms);
  EXPECT_TRUE(calls_.empty());
  advance(1ms);
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
  ASSERT_TRUE(changed([&] { ASSERT_EQ(::unlink(path_.c_str()), 0); }));
  // Before: the read blocked the event loop in open() until some writer came.
  ASSERT_TRUE(changed([&] { ASSERT_EQ(::mkfifo(path_.c_str(), 0600), 0); }));
  advance(40ms);
  ASSERT_EQ(calls_.size(), 1u);
  EXPECT_TRUE(calls_.back().exists);
  EXPECT_EQ(calls_.back().text, "");
  EXPECT_EQ(calls_.back().error, "cannot read " + path_ + ": not a regular file (a FIFO)");
}

TEST_F(ConfigWatcherTest, AFileOverTheSizeLimitIsReportedWithTheLimit) {
  write_file(path_, R"({"v": 1})");
  auto options = fast();
  options.retries = 1;
  watch(options);
  ASSERT_TRUE(wrote("{\"pad\": \"" + std::string(2 * 1024 * 1024, 'x') + "\"}"));
  advance(40ms);
  ASSERT_EQ(calls_.size(), 1u);
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
  ASSERT_TRUE(wrote(deep));
  advance(20ms);
  ASSERT_EQ(calls_.size(), 1u);
  EXPECT_EQ(calls_[0].error, "");
  EXPECT_EQ(calls_[0].text, deep);
}

TEST_F(ConfigWatcherTest, AnEventDuringTheRetriesStartsThemAfresh) {
  write_file(path_, R"({"v": 1})");
  auto options = fast();
  options.retries = 2;
  watch(options);
  ASSERT_TRUE(wrote("{"));
  // Reads at 20 and 40 ms found half a file: the retries are spent, the last read is due at
  // 60 ms, and reports the error.
  advance(40ms);
  EXPECT_TRUE(calls_.empty());
  ASSERT_TRUE(wrote("{\"v\""));
  // Without the reset the last retry would run out 20 ms from here; with it, 20 + 2 * 20.
  advance(59ms);
  EXPECT_TRUE(calls_.empty());
  advance(1ms);
  ASSERT_EQ(calls_.size(), 1u);
  EXPECT_NE(calls_[0].error, "");
  ASSERT_TRUE(wrote(R"({"v": 2})"));
  advance(20ms);
  ASSERT_EQ(calls_.size(), 2u);
  EXPECT_EQ(calls_[1].text, R"({"v": 2})");
}

TEST_F(ConfigWatcherTest, StopThenWriteCallsNothing) {
  write_file(path_, R"({"v": 1})");
  watch();
  watcher_->stop();
  write_file(path_, R"({"v": 2})");
  drain_loop();
  advance(10s);
  EXPECT_TRUE(calls_.empty());
  EXPECT_EQ(watcher_->events_seen(), 0u);
  EXPECT_EQ(executor_.pending_timers(), 0u);
}

TEST_F(ConfigWatcherTest, StopDuringTheDebounceCallsNothing) {
  write_file(path_, R"({"v": 1})");
  watch();
  ASSERT_TRUE(wrote(R"({"v": 2})"));
  ASSERT_TRUE(watcher_->read_pending());
  advance(19ms);
  watcher_->stop();
  EXPECT_FALSE(watcher_->read_pending());
  EXPECT_EQ(executor_.pending_timers(), 0u) << "the debounce timer is cancelled";
  advance(10s);
  drain_loop();
  EXPECT_TRUE(calls_.empty());
}

TEST_F(ConfigWatcherTest, StopDuringTheRetriesCallsNothing) {
  write_file(path_, R"({"v": 1})");
  watch();
  ASSERT_TRUE(wrote("{"));
  advance(30ms);  // the debounce read half a file; a retry is armed
  ASSERT_TRUE(watcher_->read_pending());
  watcher_->stop();
  EXPECT_EQ(executor_.pending_timers(), 0u);
  advance(10s);
  EXPECT_TRUE(calls_.empty());
}

TEST_F(ConfigWatcherTest, DestructionDuringTheDebounceCallsNothing) {
  write_file(path_, R"({"v": 1})");
  watch();
  ASSERT_TRUE(wrote(R"({"v": 2})"));
  ASSERT_TRUE(watcher_->read_pending());
  advance(19ms);
  watcher_.reset();
  EXPECT_EQ(executor_.pending_timers(), 0u);
  write_file(path_, R"({"v": 3})");
  drain_loop();
  advance(10s);
  EXPECT_TRUE(calls_.empty());
}

TEST_F(ConfigWatcherTest, TheCallbackMayDestroyTheWatcher) {
  write_file(path_, R"({"v": 1})");
  int called = 0;
  watcher_ = std::make_unique<ConfigWatcher>(io_, executor_, path_, [&](const WatchedFile&) {
    ++called;
    watcher_.reset();
  });
  ASSERT_FALSE(watcher_->start(fast()));
  ASSERT_TRUE(wrote(R"({"v": 2})"));
  advance(20ms);
  EXPECT_EQ(called, 1);
  EXPECT_EQ(watcher_, nullptr);
  write_file(path_, R"({"v": 3})");
  drain_loop();
  advance(10s);
  EXPECT_EQ(called, 1);
}

TEST_F(ConfigWatcherTest, StartAgainAfterStopWatchesAgain) {
  write_file(path_, R"({"v": 1})");
  watch();
  watcher_->stop();
  write_file(path_, R"({"v": 2})");
  drain_loop();
  advance(50ms);
  EXPECT_TRUE(calls_.empty());
  ASSERT_FALSE(watcher_->start(fast()));
  EXPECT_EQ(watcher_->events_seen(), 0u);
  ASSERT_TRUE(wrote(R"({"v": 3})"));
  advance(10s);
  ASSERT_EQ(calls_.size(), 1u);
  EXPECT_EQ(calls_[0].text, R"({"v": 3})");
}

TEST_F(ConfigWatcherTest, SetDebounceAppliesToLaterEvents) {
  write_file(path_, R"({"v": 1})");
  watch();
  watcher_->set_debounce(300ms);
  ASSERT_TRUE(wrote(R"({"v": 2})"));
  advance(299ms);
  EXPECT_TRUE(calls_.empty());
  advance(1ms);
  ASSERT_EQ(calls_.size(), 1u);
  EXPECT_EQ(calls_[0].text, R"({"v": 2})");
}

TEST_F(ConfigWatcherTest, StartOnAMissingFolderReturnsAnError) {
  ConfigWatcher watcher(io_, executor_, (dir_ / "nope" / "config.json").string(),
                        [&](const WatchedFile& f) { calls_.push_back(f); });
  const auto error = watcher.start(fast());
  ASSERT_TRUE(error);
  EXPECT_NE(error->find((dir_ / "nope").string()), std::string::npos) << *error;
  EXPECT_NE(error->find("No such file or directory"), std::string::npos) << *error;
}

}  // namespace
}  // namespace drawbridge::runtime
