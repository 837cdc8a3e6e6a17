#include "channels/telegram/telegram_channel.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "channels/telegram/telegram_options.h"
#include "core/manual_executor.h"
#include "fakes/telegram_fake.h"
#include "pipeline/batch_runner.h"
#include "pipeline/pipeline.h"
#include "store/sqlite_store.h"
#include "unit/channels/scripted_leases.h"
#include "unit/pipeline/fakes.h"

namespace drawbridge::channels {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using pipeline::SendStatus;

// One TelegramChannel against the fake Bot API, in this process: what a stopped channel does
// with a reply part that still reaches it (a reload's window between the old channel's stop
// and its successor's route).
class TelegramChannelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = store::SqliteStore::open(":memory:");
    writer_ = std::make_unique<pipeline::InlineBatchRunner>(*store_);
    pipeline_ = std::make_unique<pipeline::Pipeline>(clock_, executor_, *store_, *writer_);
    // A bot of this test alone: the machine-wide poll lock is per bot.
    token_ = std::to_string(700000000 + ::getpid() % 100000000) + ":unit-test-token";
    fake_.add_bot(token_, std::stoll(token_.substr(0, token_.find(':'))), "unit_bot");
    std::string error;
    auto options =
        TelegramOptions::parse(json{{"botToken", token_},
                                    {"apiRoot", fake_.base_url()},
                                    {"dmPolicy", "open"},
                                    {"pollTimeoutSeconds", 1},
                                    {"sendRate", {{"botPerSecond", 0}, {"chatPerSecond", 0}}}},
                               error, [](const std::string&) { return std::nullopt; });
    ASSERT_TRUE(options) << error;
    channel_ = std::make_unique<TelegramChannel>("telegram", std::move(*options), io_, executor_,
                                                 *pipeline_);
    pipeline_->add_channel(channel_.get(), &agent_, 0);
  }

  template <typename Pred>
  bool spin(Pred pred) {
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (!pred()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      io_.restart();
      io_.run_one_for(5ms);
      executor_.run_ready();
    }
    return true;
  }

  testing::TelegramFake fake_;
  std::string token_;
  core::ManualClock clock_;
  core::ManualExecutor executor_{clock_};
  boost::asio::io_context io_;
  std::unique_ptr<store::SqliteStore> store_;
  std::unique_ptr<pipeline::InlineBatchRunner> writer_;
  std::unique_ptr<pipeline::Pipeline> pipeline_;
  testing::FakeAgent agent_;
  std::unique_ptr<TelegramChannel> channel_;
};

using testing::ScriptedLeases;


TEST_F(TelegramChannelTest, WithoutItsClusterLeaseTheBotIsNotPolledAndTheChannelStandsBy) {
  ScriptedLeases leases;
  pipeline_->set_account_leases(&leases);
  channel_->start();
  ASSERT_TRUE(spin([&] { return leases.claims >= 1; }));
  EXPECT_EQ(channel_->health().state, pipeline::LinkState::standby);
  EXPECT_NE(channel_->health().detail.find("replica-b"), std::string::npos);
  EXPECT_TRUE(channel_->ready());  // the bot is served, by the holder
  EXPECT_EQ(fake_.requests(token_, "getUpdates"), 0);
  // It asks again every half lease; once granted, it polls.
  leases.grant = true;
  executor_.advance(1500ms);
  ASSERT_TRUE(spin([&] { return fake_.poll_waiting(token_); }));
  EXPECT_EQ(leases.claims, 2);
  EXPECT_NE(channel_->health().state, pipeline::LinkState::standby);
  // A stop gives the lease up at once: another replica need not wait for it to expire.
  bool stopped = false;
  channel_->stop([&] { stopped = true; });
  ASSERT_TRUE(spin([&] { return stopped; }));
  ASSERT_EQ(leases.released.size(), 1u);
  EXPECT_EQ(leases.released[0], "channel:telegram:" + token_.substr(0, token_.find(':')));
  pipeline_->set_account_leases(nullptr);
}

TEST_F(TelegramChannelTest, ASendAfterTheStopEndedGoesBackAsRetryAndIsNotSent) {
  channel_->start();
  ASSERT_TRUE(spin([&] { return fake_.poll_waiting(token_); }));
  bool stopped = false;
  channel_->stop([&] { stopped = true; });
  ASSERT_TRUE(spin([&] { return stopped; }));

  pipeline::OutboundPart part;
  part.chat_id = "42";
  part.text = "late reply";
  part.final_part = true;
  std::optional<SendStatus> status;
  channel_->send(part, [&](SendStatus s, std::string) { status = s; });
  EXPECT_FALSE(status) << "answered from inside send()";
  ASSERT_TRUE(spin([&] { return status.has_value(); })) << "the part was left without an answer";
  EXPECT_EQ(*status, SendStatus::retry);
  channel_.reset();  // nothing of it outlives the channel
  io_.restart();
  io_.run_for(50ms);
  EXPECT_TRUE(fake_.sent(token_).empty()) << "a stopped channel sent it";
}

TEST_F(TelegramChannelTest, ASendDuringTheStopIsSentAndTheStopWaitsForIt) {
  channel_->start();
  ASSERT_TRUE(spin([&] { return fake_.poll_waiting(token_); }));
  fake_.delay_next(token_, "sendMessage", 200ms);
  pipeline::OutboundPart part;
  part.chat_id = "42";
  part.text = "in flight";
  part.final_part = true;
  std::optional<SendStatus> status;
  channel_->send(part, [&](SendStatus s, std::string) { status = s; });
  bool stopped = false;
  channel_->stop([&] { stopped = true; });
  ASSERT_TRUE(spin([&] { return stopped; }));
  ASSERT_TRUE(status.has_value()) << "the stop ended before its send";
  EXPECT_EQ(*status, SendStatus::sent);
  EXPECT_EQ(fake_.sent(token_).size(), 1u);
}

}  // namespace
}  // namespace drawbridge::channels
