// The OpenAI chat completions fake itself: wire format, keep-alive, scripted answers and its
// counters. Every test talks to it over loopback HTTP with a plain client whose every step is
// bounded, and waits on the fake's own condition variable (wait_for) instead of sleeping.

#include "fakes/openai_fake.h"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using drawbridge::testing::OpenAiFake;
using Script = OpenAiFake::Script;
using nlohmann::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr const char* kPath = "/v1/chat/completions";
constexpr auto npos = std::string::npos;

// An answer as far as it was read.
struct Response {
  int status = 0;                              // 0: no header read
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;                            // de-chunked
  std::vector<std::size_t> chunks;             // the sizes of its chunks, as the server framed it
  bool complete = false;
  beast::error_code ec;  // why the read stopped short
  json json_body() const { return json::parse(body, nullptr, false); }
};

// A plain keep-alive client for 127.0.0.1:port. Every step is bounded by a timeout:
// tcp_stream's expires_after only applies to asynchronous operations, so each one runs to
// completion on the client's own io_context.
class Client {
 public:
  explicit Client(std::uint16_t port) : port_(port), stream_(ioc_) {}

  // Sends a request, connecting first when needed; read_until() then reads the answer.
  bool send(http::verb verb, const std::string& target, const std::string& body = {},
            const std::string& api_key = {}) {
    response_ = Response{};
    beast::error_code ec;
    if (!connected_) {
      stream_.expires_after(5s);
      stream_.async_connect({net::ip::make_address("127.0.0.1"), port_},
                            [&](beast::error_code e) { ec = e; });
      run();
      connected_ = !ec;
    }
    http::request<http::string_body> req{verb, target, 11};
    req.set(http::field::host, "127.0.0.1");
    if (!api_key.empty()) req.set(http::field::authorization, "Bearer " + api_key);
    if (!body.empty()) req.set(http::field::content_type, "application/json");
    req.body() = body;
    req.prepare_payload();
    if (!ec) {
      stream_.expires_after(5s);
      http::async_write(stream_, req, [&](beast::error_code e, std::size_t) { ec = e; });
      run();
    }
    if (ec) {
      response_.ec = ec;
      close();
      return false;
    }
    parser_.emplace();
    parser_->on_chunk_header(on_chunk_);
    return true;
  }

  // Reads the answer until done(it) holds (checked once its header is read), it is complete,
  // the connection fails or the timeout passes (which closes the connection).
  Response read_until(const std::function<bool(const Response&)>& done,
                      std::chrono::milliseconds timeout = 5s) {
    const auto deadline = Clock::now() + timeout;
    while (parser_ && !response_.complete && !(parser_->is_header_done() && done(response_))) {
      beast::error_code ec = beast::error::timeout;
      if (Clock::now() < deadline) {
        stream_.expires_at(deadline);
        http::async_read_some(stream_, buffer_, *parser_,
                              [&](beast::error_code e, std::size_t) { ec = e; });
        run();
      }
      if (parser_->is_header_done() && response_.status == 0) {
        response_.status = parser_->get().result_int();
        for (const auto& f : parser_->get()) {
          response_.headers[lower(f.name_string())] = std::string(f.value());
        }
      }
      response_.body = parser_->get().body();
      response_.complete = parser_->is_done();
      if (ec) {
        response_.ec = ec;
        close();
      }
    }
    if (response_.complete && !parser_->get().keep_alive()) close();
    return response_;
  }

  Response call(http::verb verb, const std::string& target, const std::string& body = {},
                const std::string& api_key = {}) {
    if (!send(verb, target, body, api_key)) return response_;
    return read_until([](const Response&) { return false; });
  }

  void close() {
    beast::error_code ignored;
    stream_.socket().shutdown(net::ip::tcp::socket::shutdown_both, ignored);
    stream_.socket().close(ignored);
    buffer_.clear();
    parser_.reset();
    connected_ = false;
  }

 private:
  static std::string lower(beast::string_view s) {
    std::string out(s);
    for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
  }

  void run() {
    ioc_.restart();
    ioc_.run();
  }

  std::uint16_t port_;
  net::io_context ioc_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::response_parser<http::string_body>> parser_;
  Response response_;
  std::function<void(std::uint64_t, beast::string_view, beast::error_code&)> on_chunk_ =
      [this](std::uint64_t size, beast::string_view, beast::error_code&) {
        if (size > 0) response_.chunks.push_back(size);
      };
  bool connected_ = false;
};

std::string chat_body(const std::string& text, std::optional<bool> stream = true,
                      const std::string& model = "fake-model") {
  json body{
      {"model", model},
      {"messages",
       {{{"role", "system"}, {"content", "be brief"}}, {{"role", "user"}, {"content", text}}}}};
  if (stream) body["stream"] = *stream;
  return body.dump();
}

// The payloads of an SSE body's events: what follows "data: " in each "\n\n"-ended block.
std::vector<std::string> sse_data(const std::string& body) {
  std::vector<std::string> out;
  for (std::size_t at = 0, end; (end = body.find("\n\n", at)) != npos; at = end + 2) {
    std::string event = body.substr(at, end - at);
    out.push_back(event.rfind("data: ", 0) == 0 ? event.substr(6) : "<not data> " + event);
  }
  return out;
}

std::string streamed_content(const std::string& body) {
  std::string content;
  for (const auto& data : sse_data(body)) {
    json event = json::parse(data, nullptr, false);
    if (event.is_object() && !event["choices"].empty()) {
      content += event["choices"][0]["delta"].value("content", "");
    }
  }
  return content;
}

bool valid_utf8(const std::string& s) {
  for (std::size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    std::size_t len = c < 0x80           ? 1
                      : (c >> 5) == 0x6  ? 2
                      : (c >> 4) == 0xe  ? 3
                      : (c >> 3) == 0x1e ? 4
                                         : 0;
    if (len == 0 || i + len > s.size()) return false;
    for (std::size_t k = 1; k < len; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) return false;
    }
    i += len;
  }
  return true;
}

bool never(const Response&) {
  return false;
}

TEST(OpenAiFakeTest, TheDefaultAnswerStreamsTheEchoInThreeDeltasThenDone) {
  OpenAiFake fake;
  EXPECT_EQ(fake.base_url(), "http://127.0.0.1:" + std::to_string(fake.port()) + "/v1");
  Client client(fake.port());
  Response r = client.call(http::verb::post, kPath, chat_body("hello there"));
  ASSERT_TRUE(r.complete) << r.ec.message();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.headers["content-type"], "text/event-stream; charset=utf-8");
  EXPECT_EQ(r.headers["transfer-encoding"], "chunked");
  EXPECT_EQ(r.headers["connection"], "keep-alive");
  EXPECT_EQ(r.headers.count("content-length"), 0u);

  // The exact bytes, with the id and time the fake chose.
  auto events = sse_data(r.body);
  ASSERT_EQ(events.size(), 6u) << r.body;
  json first = json::parse(events[0], nullptr, false);
  ASSERT_TRUE(first.is_object()) << events[0];
  const std::string id = first["id"];
  EXPECT_EQ(id.rfind("chatcmpl-", 0), 0u);
  const std::string prefix = R"(data: {"id":")" + id +
                             R"(","object":"chat.completion.chunk","created":)" +
                             std::to_string(first["created"].get<std::int64_t>()) +
                             R"(,"model":"fake-model","choices":[{"index":0,"delta":)";
  const auto deltas = OpenAiFake::split("echo: hello there", 3);
  ASSERT_EQ(deltas.size(), 3u);
  std::string expected = prefix + R"({"role":"assistant","content":""},"finish_reason":null}]})";
  expected += "\n\n";
  for (const auto& d : deltas) {
    EXPECT_FALSE(d.empty());
    expected += prefix + R"({"content":")" + d + R"("},"finish_reason":null}]})" + "\n\n";
  }
  expected += prefix + R"({},"finish_reason":"stop"}]})" + "\n\ndata: [DONE]\n\n";
  EXPECT_EQ(r.body, expected);
  EXPECT_EQ(streamed_content(r.body), "echo: hello there");
  EXPECT_EQ(r.chunks.size(), 6u);  // one HTTP chunk per event

  ASSERT_TRUE(fake.wait_for([&] { return fake.requests_served() == 1; }, 5s));
  auto requests = fake.requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].method, "POST");
  EXPECT_EQ(requests[0].target, kPath);
  EXPECT_EQ(requests[0].headers["content-type"], "application/json");
  EXPECT_EQ(requests[0].body["messages"][1]["content"], "hello there");
  EXPECT_EQ(requests[0].status, 200);
  EXPECT_TRUE(requests[0].stream);
  ASSERT_TRUE(requests[0].first_delta_written.has_value());
  EXPECT_GE(*requests[0].first_delta_written, requests[0].received);
  EXPECT_EQ(fake.active_streams(), 0);
  EXPECT_EQ(fake.max_active_streams(), 1);
}

TEST(OpenAiFakeTest, WithoutStreamTheAnswerIsOneChatCompletion) {
  OpenAiFake fake;
  Client client(fake.port());
  for (std::optional<bool> stream : {std::optional<bool>(false), std::optional<bool>()}) {
    Response r = client.call(http::verb::post, kPath, chat_body("hi", stream));
    ASSERT_TRUE(r.complete) << r.ec.message();
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.headers["content-type"], "application/json");
    EXPECT_EQ(r.headers["content-length"], std::to_string(r.body.size()));
    json body = r.json_body();
    EXPECT_EQ(body["object"], "chat.completion");
    EXPECT_EQ(body["model"], "fake-model");
    EXPECT_EQ(body["choices"], json::parse(R"([{"index":0,"message":{"role":"assistant",
        "content":"echo: hi"},"finish_reason":"stop"}])"));
    const json& usage = body["usage"];
    EXPECT_EQ(usage["total_tokens"],
              usage["prompt_tokens"].get<int>() + usage["completion_tokens"].get<int>());
    EXPECT_GT(usage["completion_tokens"].get<int>(), 0);
  }
}

TEST(OpenAiFakeTest, SplitNeverCutsAUtf8Character) {
  const std::string text = "echo: h\xc3\xa9llo \xf0\x9f\x99\x82 w\xc3\xb6rld";  // é, 🙂, ö
  auto parts = OpenAiFake::split(text, 3);
  ASSERT_EQ(parts.size(), 3u);
  std::string joined;
  for (const auto& p : parts) {
    EXPECT_TRUE(valid_utf8(p)) << p;
    EXPECT_GE(p.size(), 5u);  // 18 code points in 3 parts of 6
    joined += p;
  }
  EXPECT_EQ(joined, text);
  OpenAiFake fake;
  Client client(fake.port());
  Response r = client.call(http::verb::post, kPath, chat_body(text.substr(6)));
  EXPECT_EQ(streamed_content(r.body), text);
}

TEST(OpenAiFakeTest, TwoRequestsShareOneKeepAliveConnection) {
  OpenAiFake fake;
  Client client(fake.port());
  EXPECT_TRUE(client.call(http::verb::post, kPath, chat_body("one")).complete);
  EXPECT_TRUE(client.call(http::verb::post, kPath, chat_body("two", false)).complete);
  ASSERT_TRUE(fake.wait_for([&] { return fake.requests_served() == 2; }, 5s));
  EXPECT_EQ(fake.connections_accepted(), 1u);
  auto requests = fake.requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0].connection, requests[1].connection);
  // A second client is a second connection.
  Client other(fake.port());
  EXPECT_TRUE(other.call(http::verb::post, kPath, chat_body("three")).complete);
  EXPECT_EQ(fake.connections_accepted(), 2u);
  EXPECT_EQ(fake.requests().back().connection, 1u);
}

TEST(OpenAiFakeTest, AnErrorReplyCarriesRetryAfterAndScriptsAreTakenInOrder) {
  OpenAiFake fake;
  fake.push(Script::error_reply(429, "Rate limit reached for requests", "requests",
                                "rate_limit_exceeded", 7));
  fake.push(Script::error_reply(500, "The server had an error", "server_error", ""));
  fake.push(Script::stream_reply({"scripted"}));
  EXPECT_EQ(fake.scripts_pending(), 3u);
  Client client(fake.port());
  Response limited = client.call(http::verb::post, kPath, chat_body("hi"));
  EXPECT_EQ(limited.status, 429) << limited.ec.message();
  EXPECT_EQ(limited.headers["retry-after"], "7");
  EXPECT_EQ(limited.headers["content-type"], "application/json");
  EXPECT_EQ(limited.body,
            R"({"error":{"message":"Rate limit reached for requests","type":"requests",)"
            R"("param":null,"code":"rate_limit_exceeded"}})");
  Response failed = client.call(http::verb::post, kPath, chat_body("hi"));
  EXPECT_EQ(failed.status, 500);
  EXPECT_EQ(failed.headers.count("retry-after"), 0u);
  EXPECT_EQ(failed.json_body()["error"]["code"], nullptr);
  EXPECT_EQ(streamed_content(client.call(http::verb::post, kPath, chat_body("hi")).body),
            "scripted");
  EXPECT_EQ(streamed_content(client.call(http::verb::post, kPath, chat_body("hi")).body),
            "echo: hi");
  EXPECT_EQ(fake.scripts_pending(), 0u);
  EXPECT_EQ(fake.connections_accepted(), 1u);  // errors keep the connection
}

TEST(OpenAiFakeTest, ADropClosesTheConnectionWithoutTheLastChunk) {
  OpenAiFake fake;
  fake.push(Script::drop_after_deltas({"par", "tial"}));
  Client client(fake.port());
  Response r = client.call(http::verb::post, kPath, chat_body("hi"));
  EXPECT_FALSE(r.complete);
  EXPECT_EQ(r.ec, http::error::partial_message) << r.ec.message();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(sse_data(r.body).size(), 3u) << r.body;  // the role chunk and the two deltas
  EXPECT_EQ(streamed_content(r.body), "partial");
  EXPECT_EQ(r.body.find("[DONE]"), npos);
  EXPECT_EQ(r.body.find("finish_reason\":\"stop"), npos);
  ASSERT_TRUE(fake.wait_for([&] { return fake.open_connections() == 0; }, 5s));
  EXPECT_EQ(fake.active_streams(), 0);
  EXPECT_EQ(fake.streams_cancelled_by_client(), 0u);  // the fake ended it
  EXPECT_EQ(fake.requests_served(), 0u);
}

TEST(OpenAiFakeTest, AStallKeepsTheStreamOpenUntilTheClientCloses) {
  OpenAiFake fake;
  fake.push(Script::stall_after_deltas({"thinking"}));
  fake.push(Script::stall_after_headers());
  Client client(fake.port());
  ASSERT_TRUE(client.send(http::verb::post, kPath, chat_body("hi")));
  Response r = client.read_until([](const Response& r) { return r.body.find("thinking") != npos; });
  ASSERT_NE(r.body.find("thinking"), npos) << r.ec.message();
  EXPECT_EQ(fake.active_streams(), 1);
  // Nothing more comes and the fake does not close: the read ends by the client's timeout
  // (not by EOF), and that closes the client's side.
  r = client.read_until(never, 300ms);
  EXPECT_EQ(r.ec, beast::error::timeout) << r.ec.message();
  EXPECT_EQ(r.body.find("[DONE]"), npos);
  ASSERT_TRUE(fake.wait_for(
      [&] { return fake.streams_cancelled_by_client() == 1 && fake.open_connections() == 0; }, 5s));
  EXPECT_EQ(fake.active_streams(), 0);

  // Stalled right after the headers: the status arrives, no event does.
  Client second(fake.port());
  ASSERT_TRUE(second.send(http::verb::post, kPath, chat_body("hi")));
  r = second.read_until([](const Response&) { return true; });
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.headers["content-type"], "text/event-stream; charset=utf-8");
  EXPECT_TRUE(r.body.empty());
  ASSERT_TRUE(fake.wait_for([&] { return fake.active_streams() == 1; }, 5s));
  second.close();
  ASSERT_TRUE(fake.wait_for([&] { return fake.streams_cancelled_by_client() == 2; }, 5s));
  EXPECT_EQ(fake.active_streams(), 0);
  EXPECT_EQ(fake.requests_served(), 0u);
}

TEST(OpenAiFakeTest, AStreamIsCutIntoPiecesOfNBytes) {
  OpenAiFake fake;
  const std::vector<std::string> deltas{"h\xc3\xa9h\xc3\xa9", "\xf0\x9f\x99\x82\xf0\x9f\x99\x82",
                                        "\xc3\xbc\xc3\xbc\xc3\xbc"};
  fake.push(Script::stream_in_pieces(deltas, 7));
  Client client(fake.port());
  Response r = client.call(http::verb::post, kPath, chat_body("hi"));
  ASSERT_TRUE(r.complete) << r.ec.message();
  ASSERT_FALSE(r.chunks.empty());
  std::size_t total = 0;
  bool inside_a_character = false, inside_a_line = false;
  for (std::size_t i = 0; i < r.chunks.size(); ++i) {
    if (i + 1 < r.chunks.size()) {
      EXPECT_EQ(r.chunks[i], 7u) << "chunk " << i;
    } else {
      EXPECT_LE(r.chunks[i], 7u);
    }
    total += r.chunks[i];
    if (total < r.body.size()) {
      inside_a_character |= (static_cast<unsigned char>(r.body[total]) & 0xc0) == 0x80;
      inside_a_line |= r.body[total - 1] != '\n';
    }
  }
  EXPECT_EQ(total, r.body.size());
  EXPECT_TRUE(inside_a_character);
  EXPECT_TRUE(inside_a_line);
  // Reassembled, it is the ordinary stream.
  auto events = sse_data(r.body);
  ASSERT_EQ(events.size(), 6u);
  EXPECT_EQ(events.back(), "[DONE]");
  EXPECT_EQ(streamed_content(r.body), deltas[0] + deltas[1] + deltas[2]);

  // With a gap, the pieces are spread over at least (pieces - 1) gaps.
  fake.push(Script::stream_in_pieces({"slow"}, 64, 20ms));
  const auto start = Clock::now();
  Response slow = client.call(http::verb::post, kPath, chat_body("hi"));
  ASSERT_TRUE(slow.complete) << slow.ec.message();
  ASSERT_GE(slow.chunks.size(), 3u);
  EXPECT_GE(Clock::now() - start, (slow.chunks.size() - 1) * 20ms);
  EXPECT_EQ(streamed_content(slow.body), "slow");
}

TEST(OpenAiFakeTest, ASlowStreamSpacesItsEventsByTheGap) {
  OpenAiFake fake;
  fake.push(Script::slow_stream({"a", "b", "c"}, 50ms));
  Client client(fake.port());
  const auto start = Clock::now();
  Response r = client.call(http::verb::post, kPath, chat_body("hi"));
  ASSERT_TRUE(r.complete) << r.ec.message();
  // Role chunk at once; a, b, c and the finish each after a gap.
  EXPECT_GE(Clock::now() - start, 200ms);
  EXPECT_EQ(streamed_content(r.body), "abc");
  ASSERT_TRUE(fake.wait_for([&] { return fake.requests_served() == 1; }, 5s));
  auto request = fake.requests().at(0);
  ASSERT_TRUE(request.first_delta_written.has_value());
  EXPECT_GE(*request.first_delta_written - request.received, 50ms);
  // One send time per delta, a gap apart, the first just before its write completed.
  ASSERT_EQ(request.deltas_sent.size(), 3u);
  EXPECT_LE(request.deltas_sent[0], *request.first_delta_written);
  EXPECT_GE(request.deltas_sent[2] - request.deltas_sent[1], 50ms);
}

TEST(OpenAiFakeTest, AWrongOrMissingApiKeyIs401) {
  OpenAiFake fake;
  fake.set_api_key("sk-test-0123456789");
  Client client(fake.port());
  Response wrong = client.call(http::verb::post, kPath, chat_body("hi"), "sk-wrong-99998888");
  EXPECT_EQ(wrong.status, 401) << wrong.ec.message();
  EXPECT_EQ(wrong.body,
            R"({"error":{"message":"Incorrect API key provided: sk-***8888. You can find your )"
            R"(API key at https://platform.openai.com/account/api-keys.",)"
            R"("type":"invalid_request_error","param":null,"code":"invalid_api_key"}})");
  Response missing = client.call(http::verb::post, kPath, chat_body("hi"));
  EXPECT_EQ(missing.status, 401);
  EXPECT_EQ(missing.json_body()["error"]["code"], "invalid_api_key");
  EXPECT_EQ(client.call(http::verb::get, "/v1/models").status, 401);
  Response right = client.call(http::verb::post, kPath, chat_body("hi"), "sk-test-0123456789");
  EXPECT_EQ(right.status, 200);
  EXPECT_EQ(fake.requests().back().headers["authorization"], "Bearer sk-test-0123456789");
  EXPECT_EQ(fake.connections_accepted(), 1u);
}

TEST(OpenAiFakeTest, ModelsListsTheOneModelAndAnyOtherIs404) {
  OpenAiFake fake;
  fake.set_model("gpt-test");
  Client client(fake.port());
  Response models = client.call(http::verb::get, "/v1/models");
  EXPECT_EQ(models.status, 200) << models.ec.message();
  EXPECT_EQ(models.body,
            R"({"object":"list","data":[{"id":"gpt-test","object":"model","created":1700000000,)"
            R"("owned_by":"fake"}]})");
  EXPECT_EQ(client.call(http::verb::get, "/v1/models/gpt-test").json_body()["id"], "gpt-test");
  Response unknown = client.call(http::verb::post, kPath, chat_body("hi", true, "fake-model"));
  EXPECT_EQ(unknown.status, 404);
  EXPECT_EQ(unknown.body,
            R"({"error":{"message":"The model `fake-model` does not exist or you do not have )"
            R"(access to it.","type":"invalid_request_error","param":null,)"
            R"("code":"model_not_found"}})");
  EXPECT_EQ(client.call(http::verb::post, kPath, chat_body("hi", true, "gpt-test")).status, 200);
}

TEST(OpenAiFakeTest, ABadRequestIs400AndTheConnectionServesOn) {
  OpenAiFake fake;
  fake.push(Script::stream_reply({"kept for the valid request"}));
  Client client(fake.port());
  Response bad = client.call(http::verb::post, kPath, "{not json");
  EXPECT_EQ(bad.status, 400) << bad.ec.message();
  json error = bad.json_body()["error"];
  EXPECT_EQ(error["type"], "invalid_request_error");
  EXPECT_EQ(error["param"], nullptr);
  EXPECT_EQ(error["code"], nullptr);
  EXPECT_NE(error["message"].get<std::string>().find("could not parse the JSON body"), npos);
  Response no_messages = client.call(http::verb::post, kPath, R"({"model":"fake-model"})");
  EXPECT_EQ(no_messages.status, 400);
  EXPECT_EQ(no_messages.json_body()["error"]["param"], "messages");
  Response path = client.call(http::verb::get, "/v1/nothing");
  EXPECT_EQ(path.status, 404);
  EXPECT_EQ(path.json_body()["error"]["message"], "Invalid URL (GET /v1/nothing)");
  // Invalid requests took no script.
  EXPECT_EQ(streamed_content(client.call(http::verb::post, kPath, chat_body("hi")).body),
            "kept for the valid request");
  EXPECT_EQ(fake.connections_accepted(), 1u);
  EXPECT_TRUE(fake.requests().at(0).body.is_null());
}

TEST(OpenAiFakeTest, IncludeUsageAddsAUsageChunkBeforeDone) {
  OpenAiFake fake;
  Client client(fake.port());
  json body = json::parse(chat_body("hi"));
  body["stream_options"] = {{"include_usage", true}};
  Response r = client.call(http::verb::post, kPath, body.dump());
  auto events = sse_data(r.body);
  ASSERT_EQ(events.size(), 7u) << r.body;
  json usage = json::parse(events[5]);
  EXPECT_EQ(usage["choices"], json::array());
  EXPECT_GT(usage["usage"]["total_tokens"].get<int>(), 0);
  EXPECT_EQ(events[6], "[DONE]");
}

TEST(OpenAiFakeTest, ItBoundsTheBodySizeAndTheConnections) {
  OpenAiFake::Options options;
  options.max_body_bytes = 1024;
  options.max_connections = 2;
  OpenAiFake fake(options);
  Client a(fake.port()), b(fake.port()), c(fake.port());
  EXPECT_TRUE(a.call(http::verb::post, kPath, chat_body("a")).complete);
  EXPECT_TRUE(b.call(http::verb::post, kPath, chat_body("b")).complete);
  Response refused = c.call(http::verb::post, kPath, chat_body("c"));
  EXPECT_EQ(refused.status, 0);
  EXPECT_TRUE(refused.ec) << "the third connection was served";
  EXPECT_EQ(fake.connections_accepted(), 2u);

  Response large = a.call(http::verb::post, kPath, chat_body(std::string(2000, 'x')));
  EXPECT_EQ(large.status, 413) << large.ec.message();
  EXPECT_EQ(large.headers["connection"], "close");
  EXPECT_EQ(large.json_body()["error"]["type"], "invalid_request_error");
  ASSERT_TRUE(fake.wait_for([&] { return fake.open_connections() == 1; }, 5s));
  Client d(fake.port());  // a's place is free again
  EXPECT_TRUE(d.call(http::verb::post, kPath, chat_body("d")).complete);
}

TEST(OpenAiFakeTest, ItServes256ConcurrentStreams) {
  OpenAiFake fake;
  constexpr int kStreams = 256;
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < kStreams; ++i) {
    fake.push(Script::stall_after_deltas({"s" + std::to_string(i)}));
    clients.push_back(std::make_unique<Client>(fake.port()));
    ASSERT_TRUE(clients.back()->send(http::verb::post, kPath, chat_body("hi")));
    const std::string mine = "\"s" + std::to_string(i) + "\"";
    Response r =
        clients.back()->read_until([&](const Response& r) { return r.body.find(mine) != npos; });
    ASSERT_NE(r.body.find(mine), npos) << i << ": " << r.ec.message();
  }
  EXPECT_EQ(fake.active_streams(), kStreams);
  EXPECT_EQ(fake.max_active_streams(), kStreams);
  clients.clear();
  ASSERT_TRUE(fake.wait_for(
      [&] { return fake.open_connections() == 0 && fake.active_streams() == 0; }, 10s));
  EXPECT_EQ(fake.streams_cancelled_by_client(), static_cast<std::size_t>(kStreams));
}

TEST(OpenAiFakeTest, DestroyingTheFakeEndsAStalledStreamPromptly) {
  auto fake = std::make_unique<OpenAiFake>();
  fake->push(Script::stall_after_deltas({"forever"}));
  Client client(fake->port());
  ASSERT_TRUE(client.send(http::verb::post, kPath, chat_body("hi")));
  Response r = client.read_until([](const Response& r) { return !r.body.empty(); });
  ASSERT_FALSE(r.body.empty()) << r.ec.message();
  const auto start = Clock::now();
  fake.reset();
  EXPECT_LT(Clock::now() - start, 5s);
  r = client.read_until(never, 5s);
  EXPECT_FALSE(r.complete);
  EXPECT_TRUE(r.ec == http::error::partial_message || r.ec == net::error::connection_reset)
      << r.ec.message();
}

}  // namespace
