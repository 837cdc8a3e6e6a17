#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "agents/openai/completion.h"
#include "agents/openai/request_body.h"
#include "agents/openai/sse_parser.h"

namespace drawbridge::agents::openai {
namespace {

using nlohmann::json;

std::vector<std::string> events_of(const std::vector<std::string>& pieces, SseParser& p) {
  std::vector<std::string> out;
  for (const auto& piece : pieces) {
    p.feed(piece, [&](std::string_view d) { out.emplace_back(d); });
  }
  return out;
}

TEST(SseParser, EventsEndAtABlankLineWhateverTheLineEndings) {
  SseParser p;
  EXPECT_EQ(events_of({"data: a\n\ndata: b\r\n\r\ndata: c\r\rdata: d\n"}, p),
            (std::vector<std::string>{"a", "b", "c"}))
      << "d has not ended";
  EXPECT_EQ(events_of({"\n"}, p), std::vector<std::string>{"d"});
}

TEST(SseParser, ACrLfCutBetweenItsTwoBytesIsOneLineEnd) {
  SseParser p;
  EXPECT_EQ(events_of({"data: a\r", "\n", "\r", "\n"}, p), std::vector<std::string>{"a"});
  EXPECT_EQ(events_of({"data: b\r", "\ndata: c\n\n"}, p), std::vector<std::string>{"b\nc"});
}

TEST(SseParser, EveryCutOfAStreamGivesTheSameEvents) {
  const std::string stream =
      ": keep-alive\n\ndata: {\"x\":\"h\xC3\xA9\"}\r\n\r\nevent: message\nid: 7\ndata:one\ndata: "
      "two\n\ndata: [DONE]\n\n";
  SseParser whole;
  const auto expected = events_of({stream}, whole);
  ASSERT_EQ(expected, (std::vector<std::string>{"{\"x\":\"h\xC3\xA9\"}", "one\ntwo", "[DONE]"}));
  for (std::size_t cut = 1; cut < stream.size(); ++cut) {
    for (std::size_t cut2 = cut; cut2 < stream.size(); cut2 += 7) {
      SseParser p;
      EXPECT_EQ(
          events_of({stream.substr(0, cut), stream.substr(cut, cut2 - cut), stream.substr(cut2)},
                    p),
          expected)
          << "cut at " << cut << " and " << cut2;
    }
  }
}

TEST(SseParser, ALineOrEventOverTheBoundBreaksTheStream) {
  SseParser p(16);
  EXPECT_FALSE(p.feed(std::string(17, 'x'), [](std::string_view) {}));
  EXPECT_TRUE(p.broken());
  EXPECT_FALSE(
      p.feed("data: a\n\n", [](std::string_view) { ADD_FAILURE() << "read after break"; }));
  SseParser q(16);
  EXPECT_TRUE(q.feed("data: 0123456789\n", [](std::string_view) {}));
  EXPECT_FALSE(q.feed("data: 0123456789\n", [](std::string_view) {})) << "two lines of one event";
}

TEST(StreamEvent, ChunksDoneErrorsAndGarbageAreToldApart) {
  auto c = read_stream_event(
      R"({"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]})");
  EXPECT_EQ(c.kind, StreamEvent::Kind::chunk);
  EXPECT_EQ(c.content, "hi");
  EXPECT_EQ(c.finish_reason, "");
  c = read_stream_event(R"({"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]})");
  EXPECT_EQ(c.finish_reason, "stop");
  EXPECT_EQ(read_stream_event(R"({"choices":[],"usage":{"total_tokens":3}})").kind,
            StreamEvent::Kind::chunk);
  EXPECT_EQ(read_stream_event("[DONE]").kind, StreamEvent::Kind::done);
  c = read_stream_event(R"({"error":{"message":"bad\nthing","type":"x"}})");
  EXPECT_EQ(c.kind, StreamEvent::Kind::error);
  EXPECT_EQ(c.error, "bad thing");
  EXPECT_EQ(read_stream_event("{not json").kind, StreamEvent::Kind::unreadable);
  EXPECT_EQ(read_stream_event(std::string(100000, '[')).kind, StreamEvent::Kind::unreadable);
}

TEST(ErrorSummary, TheEndpointsMessageWithItsCodeAndNeverTheKey) {
  EXPECT_EQ(
      error_summary(R"({"error":{"message":"Bad key sk-abcdef123456","code":"invalid_api_key"}})",
                    "sk-abcdef123456"),
      "Bad key *** (invalid_api_key)");
  EXPECT_EQ(error_summary("<html>502 Bad Gateway</html>", ""), "<html>502 Bad Gateway</html>");
  EXPECT_EQ(error_summary("", ""), "");
  EXPECT_EQ(error_summary(std::string(1000, 'a'), "").size(), 203u);
}

TEST(RetryAfter, SecondsMillisecondsAndHttpDates) {
  EXPECT_EQ(retry_after_ms("7", "", 0), 7000);
  EXPECT_EQ(retry_after_ms("1.5", "", 0), 1500);
  EXPECT_EQ(retry_after_ms("7", "250", 0), 250) << "retry-after-ms is the finer one";
  EXPECT_EQ(retry_after_ms("Wed, 21 Oct 2015 07:28:00 GMT", "", 1445412470), 10000);
  EXPECT_EQ(retry_after_ms("Wed, 21 Oct 2015 07:28:00 GMT", "", 1445412490), 0);
  EXPECT_EQ(retry_after_ms("soon", "", 0), std::nullopt);
  EXPECT_EQ(retry_after_ms("-3", "", 0), std::nullopt);
  EXPECT_EQ(retry_after_ms("", "", 0), std::nullopt);
}

pipeline::TurnRequest turn_with_history(int pairs) {
  pipeline::TurnRequest t;
  for (int i = 0; i < pairs; ++i) {
    t.history.push_back({"user", "q" + std::to_string(i)});
    t.history.push_back({"assistant", "a" + std::to_string(i)});
  }
  t.text = "now";
  t.history.push_back({"user", "now"});
  return t;
}

TEST(RequestBody, TheSystemPromptTheTrimmedHistoryAndTheMessage) {
  OpenAiSettings s;
  s.model = "gpt-x";
  s.system_prompt = "be brief";
  s.max_history_turns = 2;
  s.temperature = 0.5;
  s.params = {{"top_p", 0.9}, {"model", "other"}, {"stream", false}};
  const json body = request_body(s, turn_with_history(5));
  EXPECT_EQ(body["model"], "gpt-x") << "params cannot replace the model";
  EXPECT_EQ(body["stream"], true);
  EXPECT_EQ(body["top_p"], 0.9);
  EXPECT_EQ(body["temperature"], 0.5);
  std::vector<std::string> seen;
  for (const auto& m : body["messages"])
    seen.push_back(m["role"].get<std::string>() + ":" + m["content"].get<std::string>());
  EXPECT_EQ(seen, (std::vector<std::string>{"system:be brief", "user:q3", "assistant:a3", "user:q4",
                                            "assistant:a4", "user:now"}));
}

TEST(RequestBody, ATokenBudgetDropsTheOldestAndNeverTheMessageOrAnOrphanReply) {
  OpenAiSettings s;
  s.model = "m";
  s.max_history_tokens = 1;  // less than the message itself: the message alone
  json body = request_body(s, turn_with_history(3));
  ASSERT_EQ(body["messages"].size(), 1u);
  EXPECT_EQ(body["messages"][0]["content"], "now");
  s.max_history_tokens = 8;  // "now" and one more entry (4 each): the reply a2 only
  body = request_body(s, turn_with_history(3));
  ASSERT_EQ(body["messages"].size(), 1u) << body.dump() << ": a reply without its question";
  s.max_history_tokens = 12;  // q2 and a2 fit
  body = request_body(s, turn_with_history(3));
  ASSERT_EQ(body["messages"].size(), 3u) << body.dump();
  EXPECT_EQ(body["messages"][0]["content"], "q2");
  s.max_history_tokens = 0;
  s.max_history_turns = 0;
  body = request_body(s, turn_with_history(3));
  EXPECT_EQ(body["messages"].size(), 1u);
  pipeline::TurnRequest bare;
  bare.text = "alone";  // an agent run without history
  body = request_body(s, bare);
  ASSERT_EQ(body["messages"].size(), 1u);
  EXPECT_EQ(body["messages"][0]["content"], "alone");
}

TEST(RequestBody, TheKeyGoesAsABearerTokenOnlyWhenSet) {
  OpenAiSettings s;
  auto r = completion_request(s, json::object());
  for (const auto& [k, v] : r.headers) EXPECT_NE(k, "Authorization");
  s.api_key = "sk-1";
  r = completion_request(s, json::object());
  bool found = false;
  for (const auto& [k, v] : r.headers) found |= k == "Authorization" && v == "Bearer sk-1";
  EXPECT_TRUE(found);
  EXPECT_EQ(r.target, "/chat/completions");
}

}  // namespace
}  // namespace drawbridge::agents::openai
