#pragma once

// A blocking WebSocket client of the gateway's control protocol for the benches that drive a
// gateway from outside (drawbridge_restart_probe, drawbridge_chaos): connect handshake as an
// operator with the admin scope, requests and their responses, events kept aside, and a pump
// mode that keeps a read pending on a thread of its own. Boost.Beast and nlohmann_json only.

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace bench_ws {

using Clock = std::chrono::steady_clock;
using Millis = std::chrono::milliseconds;
using nlohmann::json;

class Ws {
 public:
  struct Frame {
    bool ok = false;  // a text frame was read
    std::string text;
    json msg;
    Clock::time_point at;  // when it was read
    int close_code = 0;    // the gateway closed (ok false)
    std::string error;
  };

  explicit Ws(int port, std::string client_id = "drawbridge-restart-probe",
              std::string client_mode = "test");
  Ws(const Ws&) = delete;
  Ws& operator=(const Ws&) = delete;
  ~Ws();

  // TCP connect, upgrade, connect.challenge, connect. Empty on success; else why (and
  // `retryable` says whether the gateway asked to come back).
  std::string open(const std::string& token, Millis timeout, bool& retryable);
  std::string open(const std::string& token, Millis timeout) {
    bool retryable = false;
    return open(token, timeout, retryable);
  }
  bool write(const std::string& text, Millis timeout);
  Frame read(Millis timeout);
  // Reads until the response `id`; events meanwhile go to events().
  std::optional<json> response(const std::string& id, Millis timeout);
  // `sent` and `answered`, when given, get the times its frame was written and its answer read.
  std::optional<json> request(const std::string& method, const json& params, Millis timeout,
                              Clock::time_point* sent = nullptr,
                              Clock::time_point* answered = nullptr);
  // Events read while waiting for a response are kept in events() (the default) or dropped.
  void keep_events(bool keep) { keep_events_ = keep; }

  std::vector<Frame>& events() { return events_; }
  // The payload of the last hello-ok (OpenClaw's carries server.bootId, new at each start).
  const json& hello() const { return hello_; }
  const std::string& last_error() const { return last_error_; }
  // From now on a read is always pending, on a thread of its own, so a close frame is answered
  // at once (a drain waits for every close handshake) however long the caller idles; every
  // frame, and at the end the failed read (ok false), goes to `on_frame` on that thread. Write
  // with post_write() only, one at a time; the blocking calls above are not to be used any more.
  void pump(std::function<void(Frame)> on_frame);
  void post_write(std::string text);
  bool closed() const { return closed_; }

 private:
  // Starts one asynchronous operation and runs the loop until it completes; the tcp_stream's
  // expiry bounds it (on expiry the operation completes with a timeout error).
  template <class Start>
  boost::beast::error_code run(Start start, Millis timeout);
  void read_loop();

  int port_;
  std::string client_id_, client_mode_;
  json hello_;
  boost::asio::io_context io_;
  boost::beast::websocket::stream<boost::beast::tcp_stream> ws_;
  boost::beast::flat_buffer buffer_;
  std::vector<Frame> events_;
  std::string last_error_;
  std::atomic<bool> closed_{false};
  std::function<void(Frame)> on_frame_;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_;
  std::thread pump_thread_;
  int next_id_ = 0;
  bool keep_events_ = true;
};

}  // namespace bench_ws
