#pragma once

#include <array>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <functional>
#include <memory>
#include <string>

#include "openai_bench_support.h"

namespace openai_bench {

// The measurement's floor: one streaming chat completion read straight from the fake (no
// gateway), on a fresh connection, with the same stamping as WsClient: each "t<k> " delta's
// receipt as its read completes. Ends at EOF (it asks for Connection: close).
class DirectStream : public std::enable_shared_from_this<DirectStream> {
 public:
  using Done = std::function<void(DirectStream&)>;
  DirectStream(boost::asio::io_context& io, std::string tag);
  // POSTs {model, messages: [user: "<tag> stream please"], stream: true} with the bearer key.
  void start(const boost::asio::ip::tcp::endpoint& fake, const std::string& path,
             const std::string& api_key, Done ended);
  Turn& turn() { return turn_; }

 private:
  void read();
  void scan(Clock::time_point at);
  void end(std::string state, std::string error);

  boost::asio::ip::tcp::socket socket_;
  std::string request_;
  std::string seen_;
  std::size_t scanned_ = 0;
  std::array<char, 16384> buf_{};
  Turn turn_;
  Done ended_;
};

}  // namespace openai_bench
