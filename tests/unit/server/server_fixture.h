#pragma once

// The server on its own event-loop thread with a FakeControl and a real pipeline on an
// in-memory store, for the server tests.

#include <future>
#include <thread>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <gtest/gtest.h>

#include "core/manual_executor.h"
#include "server/client.h"
#include "server/server.h"
#include "store/sqlite_store.h"
#include "unit/pipeline/fakes.h"
#include "unit/server/fake_control.h"

namespace drawbridge::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using nlohmann::json;
using namespace std::chrono_literals;

using fakes::FakeControl;

struct HttpAnswer {
  int status = 0;
  std::string retry_after;
  json body;
};

inline HttpAnswer post_message(int port, const std::string& token, const json& body) {
  asio::io_context io;
  beast::tcp_stream stream(io);
  stream.connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"),
                                         static_cast<unsigned short>(port)));
  http::request<http::string_body> req{http::verb::post, "/v1/messages", 11};
  req.set(http::field::host, "127.0.0.1");
  req.set(http::field::authorization, "Bearer " + token);
  req.set(http::field::content_type, "application/json");
  req.body() = body.dump();
  req.prepare_payload();
  http::write(stream, req);
  beast::flat_buffer buffer;
  http::response<http::string_body> res;
  http::read(stream, buffer, res);
  return {static_cast<int>(res.result_int()), std::string(res[http::field::retry_after]),
          json::parse(res.body(), nullptr, false)};
}

// The server on its own event-loop thread, as in the gateway; the test talks to it over
// loopback with the blocking client and runs server calls on that thread through on_io().
class ServerTest : public ::testing::Test {
 protected:
  // Options of the server under test, before it is built.
  virtual void tune(ServerOptions&) {}

  void SetUp() override {
    store_ = store::SqliteStore::open(":memory:");
    writer_ = std::make_unique<pipeline::InlineBatchRunner>(*store_);
    pipeline_ = std::make_unique<pipeline::Pipeline>(clock_, executor_, *store_, *writer_);
    pipeline_->add_channel(&channel_, &agent_, 0);
    ServerOptions options;
    options.port = 0;
    options.token = "tok";
    tune(options);
    server_ = std::make_unique<Server>(io_, clock_, executor_, control_, *pipeline_, options);
    auto err = server_->listen();
    ASSERT_FALSE(err) << *err;
    server_->start();
    thread_ = std::thread([this] { io_.run(); });
  }

  void TearDown() override {
    if (thread_.joinable()) {
      on_io([this] { server_->close("test over", std::nullopt, 1000, "", [] {}); });
      work_.reset();
      io_.stop();
      thread_.join();
    }
    server_.reset();
  }

  template <typename F>
  auto on_io(F f) -> decltype(f()) {
    // Shared with the handler: the waiting thread wakes inside task() (set_value) and must not
    // destroy the task while the server's thread is still returning from it.
    auto task = std::make_shared<std::packaged_task<decltype(f())()>>(std::move(f));
    auto result = task->get_future();
    asio::post(io_, [task] { (*task)(); });
    return result.get();
  }

  // Runs `start(done)` on the server's thread; the future is ready when `done` ran.
  template <typename F>
  std::future<void> when_done(F start) {
    auto promise = std::make_shared<std::promise<void>>();
    auto future = promise->get_future();
    on_io([&] { start([promise] { promise->set_value(); }); });
    return future;
  }

  std::unique_ptr<GatewayClient> connected(const std::string& token = "tok") {
    auto c = std::make_unique<GatewayClient>("127.0.0.1", port());
    c->connect(token, {"operator.admin"});
    return c;
  }

  int port() {
    return on_io([this] { return server_->port(); });
  }

  asio::io_context io_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_{
      asio::make_work_guard(io_)};
  core::ManualClock clock_;
  core::ManualExecutor executor_{clock_};
  std::unique_ptr<store::SqliteStore> store_;
  std::unique_ptr<pipeline::InlineBatchRunner> writer_;
  testing::FakeAgent agent_;
  testing::FakeChannel channel_;
  FakeControl control_;
  std::unique_ptr<pipeline::Pipeline> pipeline_;
  std::unique_ptr<Server> server_;
  std::thread thread_;
};

}  // namespace drawbridge::server
