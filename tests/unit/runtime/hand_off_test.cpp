// HandOff with a real successor process (a shell standing for the new binary) and its ready
// deadline in simulated time: the fallback to an in-process restart comes exactly
// HandOff::kReadyTimeout after the start, not a millisecond before.

#include "runtime/hand_off.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include "agents/child_process.h"
#include "config/config.h"
#include "core/manual_executor.h"

namespace drawbridge::runtime {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using nlohmann::json;

bool process_gone(pid_t pid) { return ::kill(pid, 0) != 0 && errno == ESRCH; }

class HandOffTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "drawbridge-handoff-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    HandOff::Hooks h;
    h.release_lock = [this] { ++lock_released_; };
    h.listen_fd = [] { return -1; };  // no socket to hand over in this test
    h.handed_over = [this](pid_t pid, const std::string& why) {
      handed_over_ = pid;
      why_ = why;
    };
    h.failed = [this](const std::string& why) {
      failed_ = why;
      failed_at_ = clock_.now();
    };
    hand_off_ = std::make_unique<HandOff>(io_, clock_, executor_, dir_.string(), h);
  }
  void TearDown() override {
    hand_off_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // An update to "a new binary": a shell running `script`; it gets the ready pipe as fd 4.
  HandOff::Successor update(const std::string& script) {
    HandOff::Successor s;
    s.binary = "/bin/sh";
    s.argv = {"sh", "-c", script};
    s.data_dir = dir_.string();
    s.update = true;
    return s;
  }

  json sentinel() {
    std::string error;
    auto text = config::read_text_file((dir_ / "update.json").string(), error);
    if (!text) return nullptr;
    return json::parse(*text, nullptr, false);
  }

  // Reads what the successor's pipe has for us now, without waiting.
  void drain_loop() {
    io_.restart();
    while (io_.poll() > 0) {
    }
  }

  boost::asio::io_context io_;
  core::ManualClock clock_;
  core::ManualExecutor executor_{clock_};
  fs::path dir_;
  int lock_released_ = 0;
  std::optional<pid_t> handed_over_;
  std::string why_;
  std::optional<std::string> failed_;
  core::TimePoint failed_at_{};
  std::unique_ptr<HandOff> hand_off_;
};

TEST_F(HandOffTest, AnUpdateWhoseSuccessorNeverBecomesReadyFallsBackAtExactlyTheDeadline) {
  // The successor writes its pid into a FIFO: which process to check on afterwards.
  const auto pid_fifo = dir_ / "successor.pid";
  ASSERT_EQ(::mkfifo(pid_fifo.c_str(), 0600), 0);
  const int fifo = ::open(pid_fifo.c_str(), O_RDONLY | O_NONBLOCK);
  ASSERT_GE(fifo, 0);
  const auto start = clock_.now();
  hand_off_->start(update("echo $$ > '" + pid_fifo.string() + "'; exec sleep 600"));
  EXPECT_EQ(lock_released_, 1) << "the lock goes before the successor starts";
  EXPECT_EQ(sentinel()["outcome"], "handed-over") << "written before the successor starts";
  // Waits FOR the successor's pid (an event on the FIFO), failing after 5 s.
  std::optional<std::string> pid_text = std::string();
  for (;;) {
    pollfd p{fifo, POLLIN, 0};
    if (::poll(&p, 1, 5000) <= 0) break;
    char buf[32];
    const ssize_t n = ::read(fifo, buf, sizeof buf);
    if (n <= 0) break;
    pid_text->append(buf, static_cast<std::size_t>(n));
    if (pid_text->ends_with('\n')) break;
  }
  ::close(fifo);
  const pid_t pid = std::stoi(*pid_text);

  drain_loop();
  executor_.advance(HandOff::kReadyTimeout - 1ms);
  drain_loop();
  EXPECT_FALSE(failed_) << "fell back before the deadline: " << *failed_;
  EXPECT_FALSE(handed_over_);

  executor_.advance(1ms);
  ASSERT_TRUE(failed_) << "no fallback at the deadline";
  EXPECT_EQ(*failed_, "no READY from the successor within 10000 ms");
  EXPECT_EQ(failed_at_ - start, HandOff::kReadyTimeout);
  EXPECT_FALSE(handed_over_);
  // The sentinel tells the next start what happened; the successor is gone (killed, reaped).
  const auto s = sentinel();
  EXPECT_EQ(s["outcome"], "failed");
  EXPECT_EQ(s["binary"], "/bin/sh");
  EXPECT_TRUE(process_gone(pid)) << "successor " << pid << " survived the fallback";
  drain_loop();
  EXPECT_EQ(executor_.pending_timers(), 0u);
}

TEST_F(HandOffTest, AnUpdateWhoseSuccessorReportsReadyHandsOverAndCancelsTheDeadline) {
  hand_off_->start(update("echo \"READY $$\" >&4; exec sleep 600"));
  // Waiting FOR the successor's line (a real process), failing after 5 s; no simulated time
  // passes, so the deadline cannot be what ends the wait.
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work(
      io_.get_executor());
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!handed_over_ && !failed_ && std::chrono::steady_clock::now() < deadline) {
    io_.run_one_for(5ms);
  }
  ASSERT_TRUE(handed_over_) << (failed_ ? *failed_ : "no answer within 5 s");
  EXPECT_EQ(why_, "READY " + std::to_string(*handed_over_));
  EXPECT_EQ(executor_.pending_timers(), 0u) << "the deadline outlived the hand-off";
  executor_.advance(HandOff::kReadyTimeout * 2);
  EXPECT_FALSE(failed_);
  // The successor is the test's to end (the gateway would exit and leave it serving).
  agents::kill_and_reap(*handed_over_);
}

TEST_F(HandOffTest, ASuccessorThatExitsFallsBackAtOnceWithoutWaitingForTheDeadline) {
  hand_off_->start(update("exit 3"));
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work(
      io_.get_executor());
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!failed_ && std::chrono::steady_clock::now() < deadline) io_.run_one_for(5ms);
  ASSERT_TRUE(failed_) << "no fallback within 5 s";
  EXPECT_EQ(*failed_, "the successor exited or closed its ready pipe before it was ready");
  EXPECT_EQ(failed_at_, core::TimePoint{}) << "simulated time did not move";
  EXPECT_EQ(executor_.pending_timers(), 0u);
  EXPECT_EQ(sentinel()["outcome"], "failed");
}

}  // namespace
}  // namespace drawbridge::runtime
