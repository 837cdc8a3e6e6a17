#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace drawbridge::agents::openai {

struct HttpRequest {
  std::string method = "POST";
  std::string
      target;  // under the base URL: "/chat/completions" is POSTed to <baseUrl>/chat/completions
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

struct HttpHead {
  int status = 0;
  std::map<std::string, std::string> headers;  // names in lower case
};

// One request and its answer. The callbacks run on the event loop thread, never inside
// HttpTransport::send(): on_head once, then on_body for each piece of the body as it arrives
// (transfer coding removed), then on_end once: "" when the body is complete, else what went
// wrong ("connect: timed out", "connection lost"). Nothing is called back after cancel() or
// after the exchange is destroyed.
struct ExchangeCallbacks {
  std::function<void(const HttpHead&)> on_head;
  std::function<void(std::string_view)> on_body;
  std::function<void(const std::string& error)> on_end;
};

class HttpExchange {
 public:
  virtual ~HttpExchange() = default;
  // Ends the exchange now: the connection is closed (a stream the endpoint is still writing
  // stops costing it anything), nothing more is called back.
  virtual void cancel() = 0;
};

// The endpoint's HTTP client, behind an interface so that a turn's timing and retries are
// tested in simulated time with a scripted transport, and over real HTTP against a fake server.
class HttpTransport {
 public:
  virtual ~HttpTransport() = default;
  virtual std::unique_ptr<HttpExchange> send(HttpRequest request, ExchangeCallbacks callbacks) = 0;
  // "https://api.openai.com:443": where requests go, for messages and status.
  virtual std::string endpoint() const = 0;
};

}  // namespace drawbridge::agents::openai
