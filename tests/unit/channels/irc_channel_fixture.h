#pragma once

// The IrcChannel tests' fixture (irc_channel_test.cpp, irc_lease_test.cpp): a scripted server on
// a loopback socket of the test's own io_context; timers (flood control, the stop bound, the
// lease's) run on a ManualExecutor: the test moves time by hand; the sockets are real, each wait
// bounded.

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <optional>

#include "channels/irc/irc_channel.h"
#include "core/manual_executor.h"
#include "store/sqlite_store.h"
#include "unit/pipeline/fakes.h"

namespace drawbridge::channels::irc_test {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

class IrcChannelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = store::SqliteStore::open(":memory:");
    writer_ = std::make_unique<pipeline::InlineBatchRunner>(*store_);
    pipeline_ = std::make_unique<pipeline::Pipeline>(clock_, executor_, *store_, *writer_);
    options_.host = "127.0.0.1";
    options_.port = acceptor_.local_endpoint().port();
    options_.nick = "drawbot";
    options_.username = "drawbot";
    options_.channels = {"#ops"};
    options_.group_policy = "open";
    options_.dm_policy = "open";
  }
  void TearDown() override {
    if (channel_) channel_->stop([] {});
    executor_.run_ready();
  }

  void make_channel() {
    channel_ = std::make_unique<IrcChannel>("irc", options_, io_, executor_, clock_, *pipeline_);
    pipeline_->add_channel(channel_.get(), &agent_, 0);
  }

  // Runs the loop and the posted work until `pred` holds; false after 2 s of real time.
  template <typename Pred>
  bool spin(Pred pred) {
    const auto deadline = std::chrono::steady_clock::now() + 2s;
    while (!pred()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      io_.restart();
      io_.run_one_for(5ms);
      executor_.run_ready();
    }
    return true;
  }

  // Starts the channel and accepts its connection.
  void connect() {
    make_channel();
    bool accepted = false;
    acceptor_.async_accept(server_, [&](boost::system::error_code ec) { accepted = !ec; });
    channel_->start();
    ASSERT_TRUE(spin([&] { return accepted; }));
    read_more();
  }
  void read_more() {
    server_.async_read_some(asio::buffer(rbuf_), [this](boost::system::error_code ec,
                                                        std::size_t n) {
      if (ec) {
        server_eof_ = true;
        return;
      }
      pending_.append(rbuf_.data(), n);
      for (auto lf = pending_.find("\r\n"); lf != std::string::npos; lf = pending_.find("\r\n")) {
        received_.push_back(pending_.substr(0, lf));
        pending_.erase(0, lf + 2);
      }
      read_more();
    });
  }
  void say(const std::string& raw) { asio::write(server_, asio::buffer(raw)); }
  bool got(const std::string& line) {
    return spin(
        [&] { return std::find(received_.begin(), received_.end(), line) != received_.end(); });
  }
  std::size_t count_prefix(const std::string& prefix) const {
    return static_cast<std::size_t>(
        std::count_if(received_.begin(), received_.end(),
                      [&](const auto& l) { return l.rfind(prefix, 0) == 0; }));
  }
  // Connects and registers as `drawbot`, having joined #ops.
  void register_bot() {
    connect();
    ASSERT_TRUE(got("CAP LS 302"));
    ASSERT_TRUE(got("NICK drawbot"));
    ASSERT_TRUE(got("USER drawbot 0 * drawbridge"));
    say(":irc.test CAP * LS :multi-prefix\r\n");
    ASSERT_TRUE(got("CAP END"));
    EXPECT_FALSE(channel_->ready());
    say(":irc.test 001 drawbot :Welcome\r\n");
    ASSERT_TRUE(got("JOIN #ops"));
    EXPECT_TRUE(channel_->ready());
    say(":drawbot!~drawbot@127.0.0.1 JOIN #ops\r\n");
    executor_.advance(5000ms);  // the JOIN's token comes back
  }

  // The channel's release(): true once it answered (`handed` is what it gave).
  bool release(std::optional<IrcHandover>& handed) {
    bool called = false;
    channel_->release([&](std::optional<IrcHandover> h) {
      handed = std::move(h);
      called = true;
    });
    return spin([&] { return called; });
  }

  asio::io_context io_;
  tcp::acceptor acceptor_{io_, tcp::endpoint(asio::ip::address_v4::loopback(), 0)};
  tcp::socket server_{io_};
  std::array<char, 4096> rbuf_{};
  std::string pending_;
  std::vector<std::string> received_;
  bool server_eof_ = false;

  core::ManualClock clock_;
  core::ManualExecutor executor_{clock_};
  std::unique_ptr<store::SqliteStore> store_;
  std::unique_ptr<pipeline::InlineBatchRunner> writer_;
  std::unique_ptr<pipeline::Pipeline> pipeline_;
  testing::FakeAgent agent_;
  IrcOptions options_;
  std::unique_ptr<IrcChannel> channel_;
};

}  // namespace drawbridge::channels::irc_test
