// The Telegram Bot API fake itself: wire format, getUpdates semantics, scripted faults. Every
// test talks to it over loopback HTTP, as the Telegram channel will, and waits on the fake's
// own condition variable (wait_for) instead of sleeping.

#include "fakes/telegram_fake.h"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <future>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using drawbridge::testing::TelegramFake;
using nlohmann::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr const char* kToken = "123:abc";
constexpr std::int64_t kBotId = 123;

struct Reply {
  int status = 0;  // 0: no answer (error says why)
  json body;
  std::string error;
};

// A tiny synchronous keep-alive client for 127.0.0.1:port. Every call is bounded by its own
// timeout: tcp_stream's expires_after only applies to asynchronous operations, so each step
// is an async operation run to completion on the client's own io_context.
class Client {
 public:
  explicit Client(std::uint16_t port) : port_(port), stream_(ioc_) {}

  Reply call(http::verb verb, const std::string& target, const std::optional<json>& body,
             std::chrono::milliseconds timeout = 5s) {
    Reply reply;
    beast::error_code ec;
    if (!connected_) connect(timeout, ec);
    http::request<http::string_body> req{verb, target, 11};
    req.set(http::field::host, "127.0.0.1");
    if (body) {
      req.set(http::field::content_type, "application/json");
      req.body() = body->dump();
    }
    req.prepare_payload();
    http::response<http::string_body> res;
    if (!ec) {
      stream_.expires_after(timeout);
      http::async_write(stream_, req, [&](beast::error_code e, std::size_t) { ec = e; });
      run();
    }
    if (!ec) {
      http::async_read(stream_, buffer_, res, [&](beast::error_code e, std::size_t) { ec = e; });
      run();
    }
    if (ec) {
      reply.error = ec.message();
      close();
      return reply;
    }
    reply.status = res.result_int();
    reply.body = json::parse(res.body(), nullptr, false);
    if (!res.keep_alive()) close();
    return reply;
  }

  Reply post(const std::string& method, const json& params, const std::string& token = kToken,
             std::chrono::milliseconds timeout = 5s) {
    return call(http::verb::post, "/bot" + token + "/" + method, params, timeout);
  }

  // Sends a request without reading the answer (a poll the test then abandons).
  bool send_only(const std::string& method, const json& params) {
    beast::error_code ec;
    connect(5s, ec);
    if (ec) return false;
    http::request<http::string_body> req{http::verb::post,
                                         "/bot" + std::string(kToken) + "/" + method, 11};
    req.set(http::field::host, "127.0.0.1");
    req.set(http::field::content_type, "application/json");
    req.body() = params.dump();
    req.prepare_payload();
    http::async_write(stream_, req, [&](beast::error_code e, std::size_t) { ec = e; });
    run();
    return !ec;
  }

  void close() {
    beast::error_code ignored;
    stream_.socket().shutdown(net::ip::tcp::socket::shutdown_both, ignored);
    stream_.socket().close(ignored);
    buffer_.clear();
    connected_ = false;
  }

 private:
  void connect(std::chrono::milliseconds timeout, beast::error_code& ec) {
    stream_.expires_after(timeout);
    stream_.async_connect(net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), port_),
                          [&](beast::error_code e) { ec = e; });
    run();
    connected_ = !ec;
  }

  void run() {
    ioc_.restart();
    ioc_.run();
  }

  std::uint16_t port_;
  net::io_context ioc_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  bool connected_ = false;
};

// A getUpdates on its own thread and connection, for the long-poll scenarios.
std::future<Reply> poll_async(std::uint16_t port, json params,
                              std::chrono::milliseconds timeout = 30s) {
  return std::async(std::launch::async, [port, params = std::move(params), timeout] {
    Client client(port);
    return client.post("getUpdates", params, kToken, timeout);
  });
}

class TelegramFakeTest : public ::testing::Test {
 protected:
  TelegramFakeTest() { fake_->add_bot(kToken, kBotId, "drawbridge_test_bot"); }

  std::unique_ptr<TelegramFake> fake_ = std::make_unique<TelegramFake>();
  Client client_{fake_->port()};
};

TEST_F(TelegramFakeTest, GetMeAnswersTheBotUserForItsToken) {
  Reply r = client_.post("getMe", json::object());
  ASSERT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.body["ok"], true);
  EXPECT_EQ(r.body["result"]["id"], kBotId);
  EXPECT_EQ(r.body["result"]["is_bot"], true);
  EXPECT_EQ(r.body["result"]["username"], "drawbridge_test_bot");
  // Also as a GET without a body, on the same keep-alive connection.
  Reply again = client_.call(http::verb::get, "/bot" + std::string(kToken) + "/getMe", {});
  EXPECT_EQ(again.status, 200) << again.error;
  EXPECT_EQ(fake_->requests(kToken, "getMe"), 2);
}

TEST_F(TelegramFakeTest, UnknownTokenIs401AndUnknownMethodIs404) {
  Reply r = client_.post("getMe", json::object(), "999:wrong");
  EXPECT_EQ(r.status, 401) << r.error;
  EXPECT_EQ(r.body, json::parse(R"({"ok":false,"error_code":401,"description":"Unauthorized"})"));
  Reply m = client_.post("noSuchMethod", json::object());
  EXPECT_EQ(m.status, 404) << m.error;
  EXPECT_EQ(m.body, json::parse(R"({"ok":false,"error_code":404,"description":"Not Found"})"));
  Reply path = client_.call(http::verb::get, "/favicon.ico", {});
  EXPECT_EQ(path.status, 404) << path.error;
}

TEST_F(TelegramFakeTest, MalformedBodyIs400AndTheFakeServesOn) {
  Client raw(fake_->port());
  Reply r = raw.call(http::verb::post, "/bot" + std::string(kToken) + "/sendMessage",
                     json("not an object"));
  EXPECT_EQ(r.status, 400) << r.error;
  EXPECT_EQ(r.body["ok"], false);
  EXPECT_EQ(client_.post("getMe", json::object()).status, 200);
}

TEST_F(TelegramFakeTest, PushedMessageComesBackFromGetUpdates) {
  std::int64_t id = fake_->push_message(kToken, 42, 7, "hello");
  EXPECT_EQ(id, 100000);
  Reply r = client_.post("getUpdates", {{"timeout", 0}});
  ASSERT_EQ(r.status, 200) << r.error;
  ASSERT_EQ(r.body["result"].size(), 1u);
  const json& u = r.body["result"][0];
  EXPECT_EQ(u["update_id"], id);
  EXPECT_EQ(u["message"]["text"], "hello");
  EXPECT_EQ(u["message"]["chat"]["id"], 42);
  EXPECT_EQ(u["message"]["chat"]["type"], "private");
  EXPECT_EQ(u["message"]["from"]["id"], 7);
  EXPECT_EQ(u["message"]["from"]["first_name"], "u7");
  EXPECT_TRUE(u["message"]["message_id"].is_number_integer());
  // Parameters in the query string work as well as a JSON body.
  Reply q = client_.call(http::verb::get,
                         "/bot" + std::string(kToken) + "/getUpdates?offset=0&limit=5", {});
  ASSERT_EQ(q.status, 200) << q.error;
  EXPECT_EQ(q.body["result"].size(), 1u);
}

TEST_F(TelegramFakeTest, OffsetConfirmsAndDeletesOlderUpdates) {
  std::int64_t a = fake_->push_message(kToken, 42, 7, "one");
  std::int64_t b = fake_->push_message(kToken, 42, 7, "two");
  std::int64_t c = fake_->push_message(kToken, 42, 7, "three");
  EXPECT_EQ(b, a + 1);
  EXPECT_EQ(c, a + 2);
  EXPECT_EQ(fake_->pending_updates(kToken), 3u);

  Reply first = client_.post("getUpdates", {{"limit", 2}});
  ASSERT_EQ(first.status, 200) << first.error;
  ASSERT_EQ(first.body["result"].size(), 2u);
  EXPECT_EQ(first.body["result"][1]["update_id"], b);
  EXPECT_EQ(fake_->confirmed_offset(kToken), 0);

  Reply next = client_.post("getUpdates", {{"offset", b + 1}});
  ASSERT_EQ(next.status, 200) << next.error;
  ASSERT_EQ(next.body["result"].size(), 1u);
  EXPECT_EQ(next.body["result"][0]["update_id"], c);
  EXPECT_EQ(fake_->confirmed_offset(kToken), b + 1);
  EXPECT_EQ(fake_->pending_updates(kToken), 1u);

  // Without an offset the unconfirmed update is still there; past it, nothing is left.
  EXPECT_EQ(client_.post("getUpdates", json::object()).body["result"].size(), 1u);
  Reply done = client_.post("getUpdates", {{"offset", c + 1}});
  EXPECT_TRUE(done.body["result"].empty());
  EXPECT_EQ(fake_->pending_updates(kToken), 0u);
  EXPECT_EQ(fake_->confirmed_offset(kToken), c + 1);
}

TEST_F(TelegramFakeTest, LongPollReturnsAsSoonAsAnUpdateIsPushed) {
  const auto start = Clock::now();
  auto poll = poll_async(fake_->port(), {{"timeout", 20}});
  ASSERT_TRUE(fake_->wait_for([&] { return fake_->poll_waiting(kToken); }, 5s));
  std::int64_t id = fake_->push_message(kToken, 42, 7, "wake up");
  ASSERT_EQ(poll.wait_for(10s), std::future_status::ready);
  Reply r = poll.get();
  EXPECT_LT(Clock::now() - start, 10s);
  ASSERT_EQ(r.status, 200) << r.error;
  ASSERT_EQ(r.body["result"].size(), 1u);
  EXPECT_EQ(r.body["result"][0]["update_id"], id);
  EXPECT_EQ(fake_->max_concurrent_polls(kToken), 1);
}

TEST_F(TelegramFakeTest, LongPollTimesOutEmpty) {
  Reply r = client_.post("getUpdates", {{"timeout", 1}});
  ASSERT_EQ(r.status, 200) << r.error;
  EXPECT_TRUE(r.body["result"].empty());
}

TEST_F(TelegramFakeTest, SecondGetUpdatesEndsTheFirstWith409) {
  auto first = poll_async(fake_->port(), {{"timeout", 20}});
  ASSERT_TRUE(fake_->wait_for([&] { return fake_->poll_waiting(kToken); }, 5s));
  Reply second = client_.post("getUpdates", {{"timeout", 0}});
  EXPECT_EQ(second.status, 200) << second.error;
  ASSERT_EQ(first.wait_for(10s), std::future_status::ready);
  Reply r = first.get();
  EXPECT_EQ(r.status, 409) << r.error;
  EXPECT_EQ(r.body["error_code"], 409);
  EXPECT_EQ(r.body["description"],
            "Conflict: terminated by other getUpdates request; make sure that only one bot "
            "instance is running");
  EXPECT_EQ(fake_->max_concurrent_polls(kToken), 2);
  EXPECT_TRUE(fake_->wait_for([&] { return fake_->polls_in_flight(kToken) == 0; }, 5s));
}

TEST_F(TelegramFakeTest, SequentialPollsNeverOverlap) {
  fake_->push_message(kToken, 42, 7, "one");
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(client_.post("getUpdates", {{"timeout", 0}}).status, 200);
  }
  EXPECT_EQ(fake_->requests(kToken, "getUpdates"), 3);
  EXPECT_EQ(fake_->max_concurrent_polls(kToken), 1);
}

TEST_F(TelegramFakeTest, ClientClosingAWaitingPollEndsIt) {
  Client abandoning(fake_->port());
  ASSERT_TRUE(abandoning.send_only("getUpdates", {{"timeout", 20}}));
  ASSERT_TRUE(fake_->wait_for([&] { return fake_->poll_waiting(kToken); }, 5s));
  EXPECT_EQ(fake_->polls_in_flight(kToken), 1);
  abandoning.close();
  EXPECT_TRUE(fake_->wait_for(
      [&] { return !fake_->poll_waiting(kToken) && fake_->polls_in_flight(kToken) == 0; }, 5s));
}

TEST_F(TelegramFakeTest, WebhookMakesGetUpdates409UntilDeleted) {
  fake_->push_message(kToken, 42, 7, "queued");
  Reply set = client_.post("setWebhook",
                           {{"url", "https://example.test/hook"}, {"secret_token", "s3cret"}});
  ASSERT_EQ(set.status, 200) << set.error;
  EXPECT_EQ(set.body["result"], true);
  EXPECT_EQ(fake_->webhook_url(kToken), "https://example.test/hook");

  Reply info = client_.post("getWebhookInfo", json::object());
  EXPECT_EQ(info.body["result"]["url"], "https://example.test/hook");
  EXPECT_EQ(info.body["result"]["pending_update_count"], 1);

  Reply refused = client_.post("getUpdates", json::object());
  EXPECT_EQ(refused.status, 409);
  EXPECT_EQ(refused.body["description"],
            "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to "
            "delete the webhook first");

  EXPECT_EQ(client_.post("deleteWebhook", json::object()).body["result"], true);
  EXPECT_EQ(fake_->webhook_url(kToken), "");
  Reply r = client_.post("getUpdates", json::object());
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body["result"].size(), 1u);
}

TEST_F(TelegramFakeTest, SendMessageRecordsAndReturnsTheMessage) {
  Reply r = client_.post("sendMessage", {{"chat_id", 42},
                                         {"text", "hi there"},
                                         {"parse_mode", "MarkdownV2"},
                                         {"reply_parameters", {{"message_id", 5}}}});
  ASSERT_EQ(r.status, 200) << r.error;
  const json& m = r.body["result"];
  EXPECT_EQ(m["chat"]["id"], 42);
  EXPECT_EQ(m["text"], "hi there");
  EXPECT_EQ(m["from"]["id"], kBotId);
  Reply second = client_.post("sendMessage", {{"chat_id", 42}, {"text", "again"}});
  EXPECT_EQ(second.body["result"]["message_id"], m["message_id"].get<std::int64_t>() + 1);

  auto sent = fake_->sent(kToken);
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(sent[0].chat_id, 42);
  EXPECT_EQ(sent[0].text, "hi there");
  EXPECT_EQ(sent[0].message_id, m["message_id"]);
  EXPECT_EQ(sent[0].reply_to_message_id.value_or(-1), 5);
  EXPECT_EQ(sent[0].params["parse_mode"], "MarkdownV2");
  EXPECT_FALSE(sent[1].reply_to_message_id.has_value());
}

TEST_F(TelegramFakeTest, SendMessageLimitsCountCodePoints) {
  // 4096 two-byte characters are 8192 bytes but within the limit; one more is not.
  std::string at_limit;
  for (int i = 0; i < 4096; ++i) at_limit += "\xc3\xa9";  // é
  EXPECT_EQ(client_.post("sendMessage", {{"chat_id", 42}, {"text", at_limit}}).status, 200);
  Reply r = client_.post("sendMessage", {{"chat_id", 42}, {"text", at_limit + "\xf0\x9f\x99\x82"}});
  EXPECT_EQ(r.status, 400) << r.error;
  EXPECT_EQ(r.body["description"], "Bad Request: message is too long");
  Reply empty = client_.post("sendMessage", {{"chat_id", 42}, {"text", ""}});
  EXPECT_EQ(empty.status, 400);
  EXPECT_EQ(empty.body["description"], "Bad Request: message text is empty");
  EXPECT_EQ(fake_->sent(kToken).size(), 1u);
}

TEST_F(TelegramFakeTest, BlockedChatIs403UntilUnblocked) {
  fake_->block_chat(kToken, 42);
  Reply r = client_.post("sendMessage", {{"chat_id", 42}, {"text", "hi"}});
  EXPECT_EQ(r.status, 403) << r.error;
  EXPECT_EQ(r.body["description"], "Forbidden: bot was blocked by the user");
  EXPECT_EQ(client_.post("sendMessage", {{"chat_id", 43}, {"text", "hi"}}).status, 200);
  fake_->unblock_chat(kToken, 42);
  EXPECT_EQ(client_.post("sendMessage", {{"chat_id", 42}, {"text", "hi"}}).status, 200);
  EXPECT_EQ(fake_->sent(kToken).size(), 2u);
}

TEST_F(TelegramFakeTest, FailNextAnswersScriptedErrorsInOrder) {
  fake_->fail_next(kToken, "sendMessage", 429, "Too Many Requests: retry after 3", 3);
  fake_->fail_next(kToken, "sendMessage", 502, "Bad Gateway");
  Reply limited = client_.post("sendMessage", {{"chat_id", 42}, {"text", "hi"}});
  EXPECT_EQ(limited.status, 429) << limited.error;
  EXPECT_EQ(limited.body, json::parse(R"({"ok":false,"error_code":429,
      "description":"Too Many Requests: retry after 3","parameters":{"retry_after":3}})"));
  Reply gateway = client_.post("sendMessage", {{"chat_id", 42}, {"text", "hi"}});
  EXPECT_EQ(gateway.status, 502);
  EXPECT_FALSE(gateway.body.contains("parameters"));
  EXPECT_EQ(client_.post("sendMessage", {{"chat_id", 42}, {"text", "hi"}}).status, 200);
  EXPECT_EQ(fake_->sent(kToken).size(), 1u);
  EXPECT_EQ(fake_->requests(kToken, "sendMessage"), 3);
}

TEST_F(TelegramFakeTest, DelayNextHoldsTheAnswerPastAClientTimeout) {
  fake_->delay_next(kToken, "getMe", 3s);
  Reply late = client_.post("getMe", json::object(), kToken, 200ms);
  EXPECT_EQ(late.status, 0);  // the client gave up first
  EXPECT_FALSE(late.error.empty());
  EXPECT_EQ(client_.post("getMe", json::object()).status, 200);  // only the next one waited
}

TEST_F(TelegramFakeTest, ChatActionsAndCommandsAreRecorded) {
  EXPECT_EQ(client_.post("sendChatAction", {{"chat_id", 42}, {"action", "typing"}}).body["result"],
            true);
  json commands = json::array({{{"command", "start"}, {"description", "Start"}}});
  EXPECT_EQ(client_.post("setMyCommands", {{"commands", commands}}).body["result"], true);
  auto actions = fake_->chat_actions(kToken);
  ASSERT_EQ(actions.size(), 1u);
  EXPECT_EQ(actions[0].chat_id, 42);
  EXPECT_EQ(actions[0].action, "typing");
  EXPECT_EQ(fake_->my_commands(kToken), commands);
}

TEST_F(TelegramFakeTest, DestroyingTheFakeEndsAWaitingPollPromptly) {
  auto poll = poll_async(fake_->port(), {{"timeout", 20}});
  ASSERT_TRUE(fake_->wait_for([&] { return fake_->poll_waiting(kToken); }, 5s));
  const auto start = Clock::now();
  fake_.reset();
  EXPECT_LT(Clock::now() - start, 5s);
  ASSERT_EQ(poll.wait_for(5s), std::future_status::ready);
  Reply r = poll.get();
  EXPECT_EQ(r.status, 0);  // EOF or reset, no answer
  EXPECT_FALSE(r.error.empty());
}

}  // namespace
