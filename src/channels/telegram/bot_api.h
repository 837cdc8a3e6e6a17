#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace drawbridge::channels::telegram {

// What a Bot API call answered. `ok` with `result`; otherwise the error, as Telegram gave it
// (`error_code`, `description`, `parameters.retry_after`) or as the transport saw it.
struct ApiResult {
  bool ok = false;
  nlohmann::json result;
  int http_status = 0;  // 0: no HTTP answer (connect failed, timeout, cancelled, bad body)
  int error_code = 0;   // Telegram's error_code (usually the HTTP status)
  std::string description;
  std::optional<int> retry_after_s;  // 429: wait this long before the next call
  bool cancelled = false;
  // The request was written and no answer came (timeout, connection lost): Telegram may have
  // carried it out. A send in this state is not retried blindly.
  bool maybe_done = false;
};

// A client of the Telegram Bot API (https://core.telegram.org/bots/api) on the event loop:
// POST <root>/bot<token>/<method> with a JSON body, one connection per call (a long poll holds
// its own), https with the system's CA store and host name check, or http (tests, a local Bot
// API server). The token is part of every URL: nothing here logs a URL.
class BotApi {
 public:
  // `root`: "https://api.telegram.org" (default) or another Bot API server, no trailing path.
  BotApi(boost::asio::io_context& io, std::string root, std::string token);
  ~BotApi();
  BotApi(const BotApi&) = delete;
  BotApi& operator=(const BotApi&) = delete;

  // An error text when `root` is not an http(s) URL this client can call.
  static std::optional<std::string> check_root(const std::string& root);

  // Calls `method`; `done` runs once on the event loop thread, also when cancelled. `timeout`
  // bounds the whole call (connect, TLS, request, answer).
  // Returns the call's id (for cancel()).
  std::uint64_t call(const std::string& method, const nlohmann::json& params,
                     std::chrono::milliseconds timeout, std::function<void(ApiResult)> done);
  // Ends one call in flight now (its `done` gets `cancelled`); nothing when it has ended.
  void cancel(std::uint64_t id);
  // Ends every call in flight now (their `done` gets `cancelled`).
  void cancel_all();
  std::size_t in_flight() const { return calls_.size(); }

 private:
  struct Call;
  friend struct Call;
  void finished(std::uint64_t id);

  boost::asio::io_context& io_;
  bool tls_ = true;
  std::string host_;
  std::string port_;
  std::string path_prefix_;  // "/bot<token>/"
  std::string token_;
  std::uint64_t next_id_ = 0;
  std::map<std::uint64_t, std::shared_ptr<Call>> calls_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace drawbridge::channels::telegram
