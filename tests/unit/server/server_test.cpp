#include "unit/server/server_fixture.h"

#include <future>
#include <thread>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <gtest/gtest.h>

#include "core/manual_executor.h"
#include "server/client.h"
#include "store/sqlite_store.h"
#include "unit/pipeline/fakes.h"

namespace drawbridge::server {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using nlohmann::json;
using namespace std::chrono_literals;

using fakes::FakeControl;

TEST_F(ServerTest, DisconnectAllSendsShutdownAndClosesButKeepsAccepting) {
  auto client = connected();
  auto done = when_done([this](auto done) {
    server_->disconnect_all("gateway restarting", 1500,
                            beast::websocket::close_code::service_restart, "service restart",
                            std::move(done));
  });
  auto ev = client->next_event(5s);
  ASSERT_TRUE(ev);
  EXPECT_EQ((*ev)["event"], "shutdown");
  EXPECT_EQ((*ev)["payload"], json({{"reason", "gateway restarting"}, {"restartExpectedMs", 1500}}));
  EXPECT_THROW(client->next_event(5s), ClientError);
  EXPECT_EQ(client->close_code(), 1012);
  ASSERT_EQ(done.wait_for(5s), std::future_status::ready);
  EXPECT_EQ(on_io([this] { return server_->connection_count(); }), 0u);

  // The same acceptor serves the next client: nothing was refused.
  auto again = connected();
  EXPECT_EQ(again->request("health", json::object())["ok"], true);
}

TEST_F(ServerTest, CloseDuringDisconnectAllWaitsForTheSameConnections) {
  auto client = connected();
  auto first = when_done([this](auto done) {
    server_->disconnect_all("gateway restarting", 1500, 1012, "service restart", std::move(done));
  });
  auto second = when_done([this](auto done) {
    server_->close("gateway stopping", std::nullopt, 1012, "service restart", std::move(done));
  });
  auto ev = client->next_event(5s);
  ASSERT_TRUE(ev);
  EXPECT_EQ((*ev)["payload"]["reason"], "gateway restarting");
  // One shutdown event per connection, then the close.
  EXPECT_THROW(client->next_event(5s), ClientError);
  ASSERT_EQ(first.wait_for(5s), std::future_status::ready);
  ASSERT_EQ(second.wait_for(5s), std::future_status::ready);
}

class SlowCloseTest : public ServerTest {
 protected:
  // Beast's own close bound (real time) far away: only the teardown's timer can end it.
  void tune(ServerOptions& o) override { o.close_timeout_ms = 60000; }
};

TEST_F(SlowCloseTest, TeardownWaitsForAnUnansweredCloseAtMostAHundredMilliseconds) {
  auto silent = connected();  // never reads again: never answers the close frame
  auto done = when_done([this](auto done) {
    server_->disconnect_all("gateway restarting", 1500, 1012, "service restart", std::move(done));
  });
  on_io([this] { executor_.advance(99ms); });
  EXPECT_EQ(done.wait_for(0s), std::future_status::timeout) << "cut off before its bound";
  on_io([this] { executor_.advance(1ms); });
  ASSERT_EQ(done.wait_for(5s), std::future_status::ready);
  EXPECT_EQ(on_io([this] { return server_->connection_count(); }), 0u);
  // What it was sent before the cut is still readable: the shutdown event first.
  auto ev = silent->next_event(5s);
  ASSERT_TRUE(ev);
  EXPECT_EQ((*ev)["event"], "shutdown");
}

// A run that ends while every watcher of its session is gone (here: a restart's teardown) is
// handed, once, to the next connection that subscribes to the session. The messages go to the
// pipeline on the server's loop (their commit is work of the manual executor, run there), and
// chat.history subscribes: every step waits on an answer or an event, nothing on time.
TEST_F(ServerTest, TheEndOfARunThatFinishedWhileTheClientWasAwayComesWhenItSubscribesOnce) {
  auto accept = [this](const std::string& key, const std::string& text) {
    on_io([this, key, text] {
      pipeline_->accept(pipeline::InboundMessage{"local", key, "away", "", "tester", text, key},
                        [](pipeline::AcceptResult) {});
      executor_.run_ready();
    });
  };
  auto client = connected();
  client->request("chat.history", {{"sessionKey", "away"}});  // watches the session
  accept("k1", "hi");
  ASSERT_EQ(on_io([this] { return agent_.calls.size(); }), 1u);
  auto done = when_done([this](auto done) {
    server_->disconnect_all("gateway restarting", 1500, 1012, "service restart", std::move(done));
  });
  auto shutdown = client->next_event(5s);
  ASSERT_TRUE(shutdown);
  EXPECT_EQ((*shutdown)["event"], "shutdown");
  EXPECT_THROW(client->next_event(5s), ClientError);  // reads the close, answers it
  ASSERT_EQ(done.wait_for(5s), std::future_status::ready);

  // The turn ends while nobody watches the session.
  on_io([this] {
    agent_.complete(0, "hello");
    executor_.run_ready();
  });

  auto back = connected();
  back->request("chat.history", {{"sessionKey", "away"}});
  auto ev = back->next_event(5s);
  ASSERT_TRUE(ev) << "the missed final never came";
  EXPECT_EQ((*ev)["event"], "chat");
  EXPECT_EQ((*ev)["payload"]["runId"], "k1");
  EXPECT_EQ((*ev)["payload"]["state"], "final");
  EXPECT_EQ((*ev)["payload"]["message"]["content"][0]["text"], "hello");

  // Once: the next subscriber's first event is its own run's, not a copy of k1's.
  auto again = connected();
  again->request("chat.history", {{"sessionKey", "away"}});
  accept("k2", "next");
  on_io([this] {
    agent_.complete(1, "again");
    executor_.run_ready();
  });
  auto own = again->next_event(5s);
  ASSERT_TRUE(own);
  EXPECT_EQ((*own)["payload"]["runId"], "k2") << own->dump();
}

TEST_F(ServerTest, ConnectWhileNotAcceptingIsRetryableAndClosedWithTryAgainLater) {
  control_.set({.state = "restarting", .accepting_connections = false, .restart_expected_ms = 100});
  GatewayClient client("127.0.0.1", port());
  try {
    client.connect("tok", {"operator.admin"});
    FAIL() << "connect was served while not accepting";
  } catch (const ClientError& e) {
    EXPECT_EQ(e.code, "UNAVAILABLE");
    EXPECT_EQ(e.error["retryable"], true);
    EXPECT_EQ(e.error["retryAfterMs"], 250);  // the floor: 100 ms would make clients spin
    EXPECT_EQ(e.error["details"], json({{"reason", "gateway-restarting"}}));
  }
  EXPECT_THROW(client.next_event(5s), ClientError);
  EXPECT_EQ(client.close_code(), 1013);

  control_.set({.state = "running", .accepting_connections = true, .restart_expected_ms = 0});
  EXPECT_NO_THROW(connected());
}

TEST_F(ServerTest, ConnectWhileStoppingSaysSo) {
  control_.set({.state = "stopping", .accepting_connections = false, .restart_expected_ms = 0});
  GatewayClient client("127.0.0.1", port());
  try {
    client.connect("tok", {"operator.admin"});
    FAIL() << "connect was served while stopping";
  } catch (const ClientError& e) {
    EXPECT_EQ(e.code, "UNAVAILABLE");
    EXPECT_EQ(e.error["details"], json({{"reason", "gateway-stopping"}}));
  }
}

TEST_F(ServerTest, PostWhileNotAcceptingIs503WithRetryAfter) {
  control_.set({.state = "restarting", .accepting_connections = false, .restart_expected_ms = 2500});
  auto res = post_message(port(), "tok", {{"message", "hi"}, {"idempotencyKey", "k1"}});
  EXPECT_EQ(res.status, 503);
  EXPECT_EQ(res.retry_after, "3");
  EXPECT_EQ(res.body["reason"], "gateway-restarting");
  EXPECT_EQ(res.body["error"]["code"], "UNAVAILABLE");
  EXPECT_EQ(res.body["error"]["retryAfterMs"], 2500);
  EXPECT_EQ(store_->counts().inbox_total, 0);

  control_.set({.state = "restarting", .accepting_connections = false, .restart_expected_ms = 0});
  EXPECT_EQ(post_message(port(), "tok", {{"message", "hi"}}).retry_after, "1");
}

TEST_F(ServerTest, DisconnectAllEndsIdleKeepAliveSessions) {
  asio::io_context io;
  beast::tcp_stream stream(io);
  stream.connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"),
                                         static_cast<unsigned short>(port())));
  http::request<http::empty_body> req{http::verb::get, "/healthz", 11};
  req.set(http::field::host, "127.0.0.1");
  req.keep_alive(true);
  http::write(stream, req);
  beast::flat_buffer buffer;
  http::response<http::string_body> res;
  http::read(stream, buffer, res);
  ASSERT_TRUE(res.keep_alive());

  auto done = when_done([this](auto done) {
    server_->disconnect_all("gateway restarting", 1500, 1012, "service restart", std::move(done));
  });
  ASSERT_EQ(done.wait_for(5s), std::future_status::ready);
  char byte;
  boost::system::error_code ec;
  stream.socket().read_some(asio::buffer(&byte, 1), ec);
  EXPECT_EQ(ec, asio::error::eof);
}

TEST_F(ServerTest, RelistenMovesToTheNewPortAndFreesTheOld) {
  const int old_port = port();
  // A port that is free now: bound and released by the test.
  int new_port = 0;
  {
    asio::io_context io;
    asio::ip::tcp::acceptor probe(io, {asio::ip::make_address("127.0.0.1"), 0});
    new_port = probe.local_endpoint().port();
  }
  auto err = on_io([&] { return server_->relisten("127.0.0.1", new_port); });
  ASSERT_FALSE(err) << *err;
  EXPECT_EQ(port(), new_port);
  EXPECT_FALSE(accepts_connections("127.0.0.1", old_port, 2s));
  GatewayClient client("127.0.0.1", new_port);
  EXPECT_EQ(client.connect("tok", {"operator.read"})["type"], "hello-ok");
}

TEST_F(ServerTest, RelistenThatFailsKeepsTheOldAddress) {
  const int old_port = port();
  asio::io_context io;
  asio::ip::tcp::acceptor taken(io, {asio::ip::make_address("127.0.0.1"), 0});
  const int taken_port = taken.local_endpoint().port();
  auto err = on_io([&] { return server_->relisten("127.0.0.1", taken_port); });
  ASSERT_TRUE(err);
  EXPECT_EQ(*err, "cannot listen on 127.0.0.1:" + std::to_string(taken_port) +
                      ": Address already in use (another gateway may be running: try "
                      "`drawbridge status`, or set gateway.port)");
  EXPECT_EQ(port(), old_port);
  EXPECT_NO_THROW(connected());

  err = on_io([&] { return server_->relisten("localhost", old_port); });
  ASSERT_TRUE(err);
  EXPECT_EQ(*err, "gateway.bind: \"localhost\" is not an IP address");
  EXPECT_NO_THROW(connected());
}

TEST_F(ServerTest, RelistenToAnotherAddressOnTheSamePort) {
  const int p = port();
  // Linux refuses 0.0.0.0:P while 127.0.0.1:P listens: the old acceptor has to go first.
  auto err = on_io([&] { return server_->relisten("0.0.0.0", p); });
  ASSERT_FALSE(err) << *err;
  EXPECT_EQ(port(), p);
  EXPECT_NO_THROW(connected());
}

TEST_F(ServerTest, SetTokenAppliesToTheNextConnect) {
  on_io([this] { server_->set_token("new-token"); });
  try {
    connected("tok");
    FAIL() << "the old token was accepted";
  } catch (const ClientError& e) {
    EXPECT_EQ(e.code, "INVALID_REQUEST");
    EXPECT_EQ(e.error["details"]["code"], "AUTH_TOKEN_MISMATCH");
  }
  EXPECT_NO_THROW(connected("new-token"));
}

TEST_F(ServerTest, CloseStopsAcceptingAndSendsShutdownWithoutRestartExpected) {
  auto client = connected();
  const int p = port();
  auto done = when_done([this](auto done) {
    server_->close("gateway stopping", std::nullopt,
                   beast::websocket::close_code::service_restart, "service restart",
                   std::move(done));
  });
  auto ev = client->next_event(5s);
  ASSERT_TRUE(ev);
  EXPECT_EQ((*ev)["payload"], json({{"reason", "gateway stopping"}}));
  EXPECT_THROW(client->next_event(5s), ClientError);
  EXPECT_EQ(client->close_code(), 1012);
  ASSERT_EQ(done.wait_for(5s), std::future_status::ready);
  EXPECT_FALSE(accepts_connections("127.0.0.1", p, 2s));
}

}  // namespace
}  // namespace drawbridge::server
