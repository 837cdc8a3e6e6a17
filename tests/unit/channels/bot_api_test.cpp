#include "channels/telegram/bot_api.h"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <chrono>
#include <optional>
#include <thread>

#include "fakes/telegram_fake.h"

// The Bot API client against the fake Bot API server on loopback: answers and errors as
// Telegram gives them, and a long poll that a stop aborts at once.

namespace drawbridge::channels::telegram {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
constexpr const char* kToken = "777:client-test";

struct BotApiTest : ::testing::Test {
  drawbridge::testing::TelegramFake fake;
  boost::asio::io_context io;
  void SetUp() override { fake.add_bot(kToken, 777, "client_test_bot"); }
  // Runs the loop until the call's answer came (bounded: 10 s of loop time).
  ApiResult call(BotApi& api, const std::string& method, const json& params,
                 std::chrono::milliseconds timeout = 5s) {
    std::optional<ApiResult> out;
    api.call(method, params, timeout, [&](ApiResult r) { out = std::move(r); });
    io.restart();
    io.run_for(10s);
    EXPECT_TRUE(out.has_value()) << method << " never answered";
    return out.value_or(ApiResult{});
  }
};

TEST_F(BotApiTest, AnswersAndTelegramErrorsAreReadAsTheyCome) {
  BotApi api(io, fake.base_url(), kToken);
  auto me = call(api, "getMe", json::object());
  ASSERT_TRUE(me.ok) << me.description;
  EXPECT_EQ(me.result.value("username", ""), "client_test_bot");

  fake.fail_next(kToken, "sendMessage", 429, "Too Many Requests: retry after 3", 3);
  auto limited = call(api, "sendMessage", {{"chat_id", 1}, {"text", "x"}});
  EXPECT_FALSE(limited.ok);
  EXPECT_EQ(limited.error_code, 429);
  EXPECT_EQ(limited.retry_after_s, 3);
  EXPECT_FALSE(limited.maybe_done);

  BotApi wrong(io, fake.base_url(), "778:unknown");
  auto unauthorized = call(wrong, "getMe", json::object());
  EXPECT_FALSE(unauthorized.ok);
  EXPECT_EQ(unauthorized.error_code, 401);
  EXPECT_EQ(api.in_flight(), 0u);
}

TEST_F(BotApiTest, CancellingALongPollEndsItAtOnceAndTheServerSeesItGo) {
  BotApi api(io, fake.base_url(), kToken);
  std::optional<ApiResult> out;
  api.call("getUpdates", {{"timeout", 30}}, 40s, [&](ApiResult r) { out = std::move(r); });
  // Once the fake holds the poll, another thread asks the loop to cancel it; the loop runs
  // until the call's answer is its last work (bounded: 10 s).
  std::thread canceller([&] {
    if (fake.wait_for([&] { return fake.poll_waiting(kToken); }, 5s)) {
      boost::asio::post(io, [&] { api.cancel_all(); });
    }
  });
  io.run_for(10s);
  canceller.join();
  ASSERT_TRUE(out.has_value());
  EXPECT_TRUE(out->cancelled);
  EXPECT_FALSE(out->ok);
  EXPECT_TRUE(fake.wait_for([&] { return fake.polls_in_flight(kToken) == 0; }, 5s))
      << "the fake still holds the poll: the connection was not closed";
  EXPECT_EQ(fake.max_concurrent_polls(kToken), 1);
}

TEST_F(BotApiTest, ANonBotApiAnswerAndANoServerAreErrorsNotCrashes) {
  BotApi api(io, fake.base_url(), kToken);
  auto bad = call(api, "sendMessage", {{"chat_id", 1}, {"text", ""}});  // 400 from the fake
  EXPECT_FALSE(bad.ok);
  EXPECT_EQ(bad.error_code, 400);
  EXPECT_NE(bad.description.find("message text is empty"), std::string::npos) << bad.description;

  BotApi nobody(io, "http://127.0.0.1:1", kToken);  // nothing listens on port 1
  auto refused = call(nobody, "getMe", json::object());
  EXPECT_FALSE(refused.ok);
  EXPECT_EQ(refused.http_status, 0);
  EXPECT_FALSE(refused.maybe_done) << "nothing was written";
  EXPECT_EQ(refused.description.find(kToken), std::string::npos) << refused.description;
}

TEST(BotApiRoot, OnlyHttpUrlsWithAHostAreTaken) {
  EXPECT_FALSE(BotApi::check_root("https://api.telegram.org"));
  EXPECT_FALSE(BotApi::check_root("http://127.0.0.1:8081"));
  EXPECT_FALSE(BotApi::check_root("http://[::1]:8081/base"));
  EXPECT_TRUE(BotApi::check_root("ftp://api.telegram.org"));
  EXPECT_TRUE(BotApi::check_root("https://"));
  EXPECT_TRUE(BotApi::check_root("https://user@host"));
  EXPECT_TRUE(BotApi::check_root("https://host/x?y"));
  EXPECT_TRUE(BotApi::check_root("https://ho st"));
}

}  // namespace
}  // namespace drawbridge::channels::telegram
