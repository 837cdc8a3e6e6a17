#pragma once

// The real control-plane server in-process, for the fuzz targets: a server::Server on
// 127.0.0.1:0 with the tests' FakeControl and a real Pipeline (in-memory SQLite, the tests'
// fake channel and agent, simulated time), as tests/unit/server/server_test.cpp builds one.
// Server and client share ONE io_context on the fuzzer's thread: no threads, so an exception
// or a sanitizer report in a server handler surfaces in LLVMFuzzerTestOneInput's stack.
//
// A fresh server is made for every input (and torn down after it), so a crash reproduces from
// its input alone.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <spdlog/spdlog.h>

#include "core/clock.h"
#include "core/manual_executor.h"
#include "pipeline/batch_runner.h"
#include "pipeline/pipeline.h"
#include "server/server.h"
#include "store/sqlite_store.h"
#include "unit/pipeline/fakes.h"
#include "unit/server/fake_control.h"

namespace drawbridge::fuzz {

inline constexpr const char* kToken = "fuzz-token-0123456789abcdef";

// How long one input may wait for an answer or a close before the harness calls it a hang
// (FUZZ_IO_TIMEOUT_MS, default 5000: generous, the machine may be loaded).
inline std::chrono::milliseconds io_timeout() {
  static const auto ms = [] {
    const char* s = std::getenv("FUZZ_IO_TIMEOUT_MS");
    return std::chrono::milliseconds(s && *s ? std::atoi(s) : 5000);
  }();
  return ms;
}

// Quiet logs unless FUZZ_LOG is set (e.g. FUZZ_LOG=debug when reproducing a crash).
inline void init_logging() {
  const char* level = std::getenv("FUZZ_LOG");
  spdlog::set_level(level && *level ? spdlog::level::from_str(level) : spdlog::level::off);
}

// Prints why and aborts: libFuzzer reports it as a crash and saves the input.
[[noreturn]] inline void fail(const char* what) {
  std::fprintf(stderr, "fuzz harness: %s\n", what);
  std::fflush(stderr);
  std::abort();
}

class InProcessServer {
 public:
  InProcessServer() {
    store_ = store::SqliteStore::open(":memory:");
    writer_ = std::make_unique<pipeline::InlineBatchRunner>(*store_);
    pipeline_ = std::make_unique<pipeline::Pipeline>(clock_, executor_, *store_, *writer_);
    pipeline_->add_channel(&channel_, &agent_, 0);
    server::ServerOptions options;
    options.port = 0;
    options.token = kToken;
    options.version = "fuzz";
    server_ = std::make_unique<server::Server>(io_, clock_, executor_, control_, *pipeline_,
                                               options);
    if (auto err = server_->listen()) fail(err->c_str());
    server_->start();
  }

  ~InProcessServer() {
    // Closed through the server's own path and driven to the end, so no handler that refers
    // to the server outlives it; the io_context goes last and drops the handlers still queued
    // without running them. A client that does not answer the close is cut off by the server's
    // close bound, a timer of the simulated executor: moved past it when the clients are slow.
    bool closed = false;
    server_->close("fuzz input done", std::nullopt, 1000, "", [&closed] { closed = true; });
    if (!run_until([&] { return closed; }, std::chrono::milliseconds(500))) {
      executor_.advance(std::chrono::milliseconds(2000));
      run_until([&] { return closed; }, std::chrono::seconds(3));
    }
    server_.reset();
    pipeline_.reset();
  }

  InProcessServer(const InProcessServer&) = delete;
  InProcessServer& operator=(const InProcessServer&) = delete;

  boost::asio::io_context& io() { return io_; }
  server::Server& server() { return *server_; }
  boost::asio::ip::tcp::endpoint endpoint() const {
    return {boost::asio::ip::make_address("127.0.0.1"),
            static_cast<unsigned short>(server_->port())};
  }

  // Runs the event loop, and the work the pipeline posted to its (simulated) executor, until
  // `done()` or `timeout`; returns done(). Simulated time does not move here.
  template <typename Pred>
  bool run_until(Pred done, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
      executor_.run_ready();
      if (done()) break;
      if (io_.stopped()) io_.restart();
      const auto now = std::chrono::steady_clock::now();
      if (now >= deadline) return false;
      io_.run_one_until(std::min(deadline, now + std::chrono::milliseconds(5)));
    }
    return true;
  }

  // Lets simulated time pass (debounce, followups) and finishes every agent turn started,
  // then runs what that queued on the loop.
  void settle_pipeline() {
    executor_.advance(std::chrono::seconds(10));
    agent_.complete_all_open();
    executor_.run_ready();
    if (io_.stopped()) io_.restart();
    io_.poll();
  }

 private:
  // Declaration order is destruction order reversed: the io_context outlives everything.
  boost::asio::io_context io_;
  core::ManualClock clock_;
  core::ManualExecutor executor_{clock_};
  std::unique_ptr<store::SqliteStore> store_;
  std::unique_ptr<pipeline::InlineBatchRunner> writer_;
  testing::FakeAgent agent_;
  testing::FakeChannel channel_;
  server::fakes::FakeControl control_;
  std::unique_ptr<pipeline::Pipeline> pipeline_;
  std::unique_ptr<server::Server> server_;
};

}  // namespace drawbridge::fuzz
