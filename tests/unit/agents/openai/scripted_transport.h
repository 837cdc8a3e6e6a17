#pragma once

#include <memory>
#include <string>
#include <vector>

#include "agents/openai/transport.h"

namespace drawbridge::agents::openai {

// An HttpTransport whose answers the test writes: every send() is kept with its callbacks, and
// the test plays the endpoint's side (head, body pieces, end) when it wants, as the loop would.
class ScriptedTransport final : public HttpTransport {
 public:
  struct Sent {
    HttpRequest request;
    ExchangeCallbacks callbacks;
    bool cancelled = false;
    bool destroyed = false;
  };

  std::unique_ptr<HttpExchange> send(HttpRequest request, ExchangeCallbacks callbacks) override {
    sent.push_back(std::make_shared<Sent>(Sent{std::move(request), std::move(callbacks)}));
    return std::make_unique<Exchange>(sent.back());
  }
  std::string endpoint() const override { return "http://fake:1"; }

  Sent& last() { return *sent.back(); }
  void head(int status, std::map<std::string, std::string> headers = {}) {
    if (headers.empty() && status == 200) headers["content-type"] = "text/event-stream";
    auto& s = last();
    if (!s.cancelled && !s.destroyed) s.callbacks.on_head(HttpHead{status, std::move(headers)});
  }
  void body(const std::string& bytes) {
    auto& s = last();
    if (!s.cancelled && !s.destroyed) s.callbacks.on_body(bytes);
  }
  void end(const std::string& error = "") {
    auto& s = last();
    if (!s.cancelled && !s.destroyed) s.callbacks.on_end(error);
  }
  // A chunk event with `content`, as OpenAI sends it.
  static std::string chunk(const std::string& content, const std::string& finish = "") {
    std::string out = R"(data: {"object":"chat.completion.chunk","choices":[{"index":0,"delta":{)";
    if (!content.empty()) out += R"("content":")" + content + "\"";
    out += "},\"finish_reason\":";
    out += finish.empty() ? "null" : "\"" + finish + "\"";
    out += "}]}\n\n";
    return out;
  }

  std::vector<std::shared_ptr<Sent>> sent;

 private:
  class Exchange final : public HttpExchange {
   public:
    explicit Exchange(std::shared_ptr<Sent> s) : s_(std::move(s)) {}
    ~Exchange() override { s_->destroyed = true; }
    void cancel() override { s_->cancelled = true; }

   private:
    std::shared_ptr<Sent> s_;
  };
};

}  // namespace drawbridge::agents::openai
