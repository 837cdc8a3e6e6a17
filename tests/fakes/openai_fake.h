#pragma once

// A fake OpenAI-compatible chat completions server for tests
// (https://platform.openai.com/docs/api-reference/chat): the wire format of
// POST <prefix>/chat/completions (with "stream": true an SSE stream of chat.completion.chunk
// events ending in `data: [DONE]`, otherwise one chat.completion), GET <prefix>/models, the
// real error bodies and statuses (401 invalid_api_key, 404 model_not_found, 429 with
// Retry-After, ...) and keep-alive connections; plus scripted answers (awkward chunk
// boundaries, stalls, drops, slow streams) and counters. It serves on 127.0.0.1 (a
// kernel-chosen port) from its own thread.
//
// Every public member is thread-safe. Tests wait with wait_for() on a condition over the
// accessors; it is woken by every state change and request completion, so no test sleeps.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace drawbridge::testing {

class OpenAiFake {
 public:
  struct Options {
    std::string path_prefix = "/v1";
    std::string model = "fake-model";  // the one model served (set_model changes it)
    std::size_t max_body_bytes = 1024 * 1024;
    std::size_t max_connections = 512;  // more are closed as soon as accepted
  };

  // How a scripted answer ends once its pieces are written.
  enum class End {
    done,   // the body completes (a stream's finish_reason chunk, [DONE], the last chunk)
    stall,  // nothing more: the connection stays open until the client closes or the fake stops
    drop,   // the connection is closed (FIN) without the chunked body's terminating chunk
  };

  // How `gap` spaces a scripted answer's chunks in time.
  enum class Pace {
    after_write,  // each chunk a gap after the previous one's write completed (drifts late)
    steady,       // chunk n a fixed (n - 1) gaps after the answer began: a late write does not
                  // push the later ones back
    grid,         // each chunk at the next multiple of the gap on the steady clock: every
                  // stream with that gap writes at the same instants, as a server decoding a
                  // batch of streams one token each step
  };

  // One scripted answer to a POST .../chat/completions. The builders below cover the usual
  // cases; their fields can be changed afterwards to combine them (a drop cut into pieces, a
  // slow error, ...).
  struct Script {
    int status = 200;
    // For 200: the assistant's content, delta by delta. The request's "stream" decides the
    // shape: SSE (a role chunk, one chunk per delta, then with End::done the finish_reason
    // chunk and [DONE]) or one chat.completion carrying the deltas concatenated.
    std::vector<std::string> deltas;
    std::string finish_reason = "stop";
    // Written as the body instead of the generated one (error_reply's error object, malformed
    // events, SSE comments); JSON unless it is the 200 answer to a streaming request.
    std::optional<std::string> body;
    // Added to the fake's own response headers, replacing those of the same name.
    std::vector<std::pair<std::string, std::string>> headers;
    // 0: one HTTP chunk per SSE event. N: the whole body cut into N-byte chunks, blind to
    // UTF-8 characters and SSE lines, each written and flushed on its own. A non-streaming
    // body is chunked too then (and whenever End is not done).
    std::size_t piece_bytes = 0;
    std::chrono::milliseconds gap{0};  // before each chunk after the first (an asio timer)
    Pace pace = Pace::after_write;
    End end = End::done;

    static Script stream_reply(std::vector<std::string> deltas);
    static Script stream_in_pieces(std::vector<std::string> deltas, std::size_t piece_bytes,
                                   std::chrono::milliseconds gap = {});
    // {"error":{"message":...,"type":...,"param":null,"code":...}} (code null when empty),
    // with Retry-After: <seconds> when given.
    static Script error_reply(int status, std::string message, std::string type, std::string code,
                              std::optional<int> retry_after_s = std::nullopt);
    static Script stall_after_headers();
    static Script stall_after_deltas(std::vector<std::string> deltas);
    static Script drop_after_deltas(std::vector<std::string> deltas);
    static Script slow_stream(std::vector<std::string> deltas, std::chrono::milliseconds gap);
  };

  // A request the fake read completely (whatever it answered).
  struct Request {
    std::string method;
    std::string target;                          // as sent, query included
    std::map<std::string, std::string> headers;  // lower-case names; repeated ones joined ", "
    nlohmann::json body;                         // null when empty or not JSON
    std::size_t connection = 0;                  // its connection, in accept order from 0
    std::chrono::steady_clock::time_point received;
    int status = 0;       // of the answer
    bool stream = false;  // answered as an SSE stream
    // When the write carrying the first non-empty content delta completed (for a
    // non-streaming answer, its body); none without content or before it is written.
    std::optional<std::chrono::steady_clock::time_point> first_delta_written;
    // One entry per non-empty content delta, in order: just before the write carrying (the
    // end of) that delta was handed to the socket (asio writes at once when no write is
    // queued, so this is when the bytes reach the kernel). Several deltas in one write
    // share its time. Benchmarks compare it with when a client saw the delta.
    std::vector<std::chrono::steady_clock::time_point> deltas_sent;
  };

  // Binds 127.0.0.1:0 and starts serving; throws when it cannot bind.
  OpenAiFake();
  explicit OpenAiFake(Options options);
  // Stops promptly, whatever is in flight: every connection is closed (a stalled stream sees
  // EOF or a reset), the thread is joined.
  ~OpenAiFake();
  OpenAiFake(const OpenAiFake&) = delete;
  OpenAiFake& operator=(const OpenAiFake&) = delete;

  std::uint16_t port() const;
  std::string base_url() const;  // "http://127.0.0.1:<port><path_prefix>"

  // Requests must then carry "Authorization: Bearer <key>" (401 invalid_api_key otherwise);
  // empty (the default) checks nothing.
  void set_api_key(std::string key);
  // The model listed by /models; a chat completion naming another is 404 model_not_found.
  void set_model(std::string model);

  // Queues a scripted answer: each chat completion request takes the next one, in order. With
  // none queued it answers "echo: <the last user message's text>" in 3 deltas (split()).
  void push(Script script);
  std::size_t scripts_pending() const;

  // `text` cut into `parts` pieces of about as many code points each, never inside a UTF-8
  // character (how the default answer is split).
  static std::vector<std::string> split(std::string_view text, std::size_t parts);

  // Observations (copies).
  std::vector<Request> requests() const;
  std::size_t connections_accepted() const;  // over the fake's life (refused ones not counted)
  std::size_t open_connections() const;
  std::size_t requests_served() const;  // answers written to their end (End::done)
  // SSE answers begun and not ended (done, dropped, closed by the client): now, and the
  // largest number at the same instant.
  int active_streams() const;
  int max_active_streams() const;
  // SSE answers whose client closed the connection (or reset it) before they ended.
  std::size_t streams_cancelled_by_client() const;

  // Waits until pred() is true or the timeout passes; pred is evaluated (without any lock of
  // the fake held, so it may call the accessors) at once and after every change.
  bool wait_for(std::function<bool()> pred, std::chrono::milliseconds timeout) const;

  struct Impl;  // opaque; public only so that openai_fake.cpp's connections can name it

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace drawbridge::testing
