#include "fakes/openai_fake.h"

#include <algorithm>
#include <array>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <thread>

#include "fakes/openai_fake_wire.h"

namespace drawbridge::testing {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using net::ip::tcp;
using nlohmann::json;
using ordered = nlohmann::ordered_json;  // the real API's key order on the wire
using Clock = std::chrono::steady_clock;
using Script = OpenAiFake::Script;
using End = OpenAiFake::End;
using namespace openai_wire;

struct OpenAiFake::Impl {
  explicit Impl(Options o)
      : options(std::move(o)), model(options.model), ioc(), acceptor(ioc), accept_retry(ioc) {}

  void changed() {  // mu held
    ++generation;
    cv.notify_all();
  }
  void do_accept();

  const Options options;
  std::uint16_t port = 0;

  // Shared with the test thread, under mu.
  mutable std::mutex mu;
  mutable std::condition_variable cv;
  std::uint64_t generation = 0;
  std::string api_key;
  std::string model;
  std::deque<Script> scripts;
  std::vector<Request> requests;
  std::size_t accepted = 0;
  std::size_t open = 0;
  std::size_t served = 0;
  int active_streams = 0;
  int max_active_streams = 0;
  std::size_t cancelled = 0;

  // Server thread only. Declared before the io_context: the sessions its destruction
  // releases still use the members above.
  std::uint64_t answers = 0;  // numbers the ids

  net::io_context ioc;
  tcp::acceptor acceptor;
  net::steady_timer accept_retry;
  std::thread thread;
};

namespace {

using Impl = OpenAiFake::Impl;

bool disconnected(beast::error_code ec) {
  return ec == http::error::end_of_stream || ec == http::error::partial_message ||
         ec == net::error::eof || ec == net::error::connection_reset ||
         ec == net::error::broken_pipe || ec == net::error::operation_aborted;
}

// One HTTP/1.1 connection: reads a request, answers it, repeats while keep-alive. While an
// answer is written the next request's header is already being read: that read is what sees
// the client close mid-stream (EOF or a reset); a request pipelined behind the answer waits
// for its end.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(Impl& impl, tcp::socket socket, std::size_t index)
      : impl_(impl), socket_(std::move(socket)), timer_(impl.ioc), index_(index) {}

  ~Session() {
    std::lock_guard lock(impl_.mu);
    if (streaming_) --impl_.active_streams;
    --impl_.open;
    impl_.changed();
  }

  void run() { read_header(); }

 private:
  void read_header() {
    parser_.emplace();
    parser_->header_limit(16 * 1024);
    parser_->body_limit(impl_.options.max_body_bytes);
    http::async_read_header(socket_, buffer_, *parser_,
                            beast::bind_front_handler(&Session::on_header, shared_from_this()));
  }

  void on_header(beast::error_code ec, std::size_t) {
    if (closed_) return;
    if (answering_) {
      if (ec && disconnected(ec)) return client_gone();
      deferred_ = ec;  // taken up when the answer ends
      return;
    }
    if (ec) return on_read_error(ec);
    http::async_read(socket_, buffer_, *parser_,
                     beast::bind_front_handler(&Session::on_body, shared_from_this()));
  }

  void on_body(beast::error_code ec, std::size_t) {
    if (closed_) return;
    if (ec) return on_read_error(ec);
    const auto& req = parser_->get();
    keep_alive_ = req.keep_alive();
    start(dispatch(req), true);
  }

  void on_read_error(beast::error_code ec) {
    if (disconnected(ec)) return close();
    // Malformed or oversized: answer it, then drop the connection.
    keep_alive_ = false;
    drain_ = true;
    if (ec == http::error::body_limit || ec == http::error::header_limit) {
      start(error(413,
                  "Request too large for openai-fake (limit " +
                      std::to_string(impl_.options.max_body_bytes) + " bytes)",
                  "invalid_request_error", ""),
            false);
    } else {
      start(error(400, "Malformed HTTP request: " + ec.message(), "invalid_request_error", ""),
            false);
    }
  }

  Out error(int status, const std::string& message, const std::string& type,
            const std::string& code, const char* param = nullptr) {
    Script s;
    s.status = status;
    s.body = error_body(message, type, code, param);
    return answer(s, Chat{});
  }

  Out answer(const Script& s, const Chat& c) {
    return build(s, c, keep_alive_, "req_fake" + std::to_string(++impl_.answers));
  }

  Out dispatch(const http::request<http::string_body>& req) {
    OpenAiFake::Request r;
    r.method = std::string(req.method_string());
    r.target = std::string(req.target());
    for (const auto& f : req) {
      auto& value = r.headers[lower(std::string(f.name_string()))];
      value += (value.empty() ? "" : ", ") + std::string(f.value());
    }
    if (nesting_within(req.body(), 64)) {
      r.body = json::parse(req.body(), nullptr, false);
      if (r.body.is_discarded()) r.body = nullptr;
    }
    r.connection = index_;
    r.received = Clock::now();
    Out out;
    try {
      out = route(req, r.body);
    } catch (const std::exception& e) {
      // One request's bug costs its own answer, never the fake.
      out = error(500, std::string("openai-fake: ") + e.what(), "server_error", "server_error");
    }
    r.status = out.status;
    r.stream = out.stream;
    std::lock_guard lock(impl_.mu);
    record_ = impl_.requests.size();
    impl_.requests.push_back(std::move(r));
    impl_.changed();
    return out;
  }

  Out route(const http::request<http::string_body>& req, const json& body) {
    const std::string target(req.target());
    const std::string path = target.substr(0, target.find('?'));
    const std::string& prefix = impl_.options.path_prefix;
    std::string key, model;
    {
      std::lock_guard lock(impl_.mu);
      key = impl_.api_key;
      model = impl_.model;
    }
    if (!key.empty()) {
      const std::string auth(req[http::field::authorization]);
      if (auth.empty()) {
        return error(401,
                     "You didn't provide an API key. You need to provide your API key in an "
                     "Authorization header using Bearer auth (i.e. Authorization: Bearer "
                     "YOUR_KEY).",
                     "invalid_request_error", "invalid_api_key");
      }
      if (auth != "Bearer " + key) {
        std::string given = auth.rfind("Bearer ", 0) == 0 ? auth.substr(7) : auth;
        if (given.size() > 8) given = given.substr(0, 3) + "***" + given.substr(given.size() - 4);
        return error(401,
                     "Incorrect API key provided: " + given +
                         ". You can find your API key at "
                         "https://platform.openai.com/account/api-keys.",
                     "invalid_request_error", "invalid_api_key");
      }
    }
    const bool get = req.method() == http::verb::get;
    const ordered listed{
        {"id", model}, {"object", "model"}, {"created", 1700000000}, {"owned_by", "fake"}};
    if (get && path == prefix + "/models") {
      return json_answer(ordered{{"object", "list"}, {"data", ordered::array({listed})}});
    }
    if (get && path.rfind(prefix + "/models/", 0) == 0) {
      const std::string id = path.substr(prefix.size() + 8);
      if (id == model) return json_answer(listed);
      return error(404, "The model `" + id + "` does not exist or you do not have access to it.",
                   "invalid_request_error", "model_not_found");
    }
    if (req.method() == http::verb::post && path == prefix + "/chat/completions") {
      return chat(body, model);
    }
    return error(404, "Invalid URL (" + std::string(req.method_string()) + " " + path + ")",
                 "invalid_request_error", "");
  }

  Out json_answer(const ordered& body) {
    Script s;
    s.body = dump(body);
    return answer(s, Chat{});
  }

  Out chat(const json& body, const std::string& model) {
    if (!body.is_object()) {
      return error(400,
                   "We could not parse the JSON body of your request. (HINT: This likely means "
                   "you aren't using your HTTP library correctly. The OpenAI API expects a JSON "
                   "payload, but what was sent was not valid JSON.)",
                   "invalid_request_error", "");
    }
    auto m = body.find("model");
    if (m == body.end() || !m->is_string()) {
      return error(400, "you must provide a model parameter", "invalid_request_error", "");
    }
    if (*m != model) {
      return error(404,
                   "The model `" + m->get<std::string>() +
                       "` does not exist or you do not have access to it.",
                   "invalid_request_error", "model_not_found");
    }
    auto messages = body.find("messages");
    if (messages == body.end() || !messages->is_array()) {
      return error(400, "Missing required parameter: 'messages'.", "invalid_request_error",
                   "missing_required_parameter", "messages");
    }
    if (messages->empty()) {
      return error(400,
                   "Invalid 'messages': empty array. Expected an array with minimum length 1, "
                   "but got an empty array instead.",
                   "invalid_request_error", "empty_array", "messages");
    }
    Chat c;
    c.model = *m;
    c.created = unix_now();
    c.id = "chatcmpl-fake" + std::to_string(impl_.answers + 1);
    auto stream = body.find("stream");
    c.stream = stream != body.end() && stream->is_boolean() && stream->get<bool>();
    auto options = body.find("stream_options");
    c.include_usage = options != body.end() && options->is_object() &&
                      options->value("include_usage", json(false)) == json(true);
    std::string last_user;
    for (const auto& message : *messages) {
      if (!message.is_object() || !message.contains("content")) continue;
      std::string text = content_text(message["content"]);
      c.prompt_bytes += text.size();
      if (message.value("role", json()) == "user") last_user = std::move(text);
    }

    std::optional<Script> script;
    {
      std::lock_guard lock(impl_.mu);
      if (!impl_.scripts.empty()) {
        script = std::move(impl_.scripts.front());
        impl_.scripts.pop_front();
        impl_.changed();
      }
    }
    if (!script) script = Script::stream_reply(OpenAiFake::split("echo: " + last_user, 3));
    return answer(*script, c);
  }

  // Writes `out`; with `watch`, the next request's header is read meanwhile.
  void start(Out out, bool watch) {
    out_ = std::move(out);
    next_ = 0;
    content_next_ = 0;
    began_ = Clock::now();
    answering_ = true;
    if (out_.stream) {
      std::lock_guard lock(impl_.mu);
      streaming_ = true;
      impl_.max_active_streams = std::max(impl_.max_active_streams, ++impl_.active_streams);
      impl_.changed();
    }
    if (watch) read_header();
    write();
  }

  void write() {
    const auto& content = out_.content_writes;
    if (record_ != npos && content_next_ < content.size() && content[content_next_] == next_) {
      const auto now = Clock::now();
      std::lock_guard lock(impl_.mu);
      auto& sent = impl_.requests[record_].deltas_sent;
      for (; content_next_ < content.size() && content[content_next_] == next_; ++content_next_) {
        sent.push_back(now);
      }
    }
    net::async_write(socket_, net::buffer(out_.writes[next_]),
                     beast::bind_front_handler(&Session::on_write, shared_from_this()));
  }

  void on_write(beast::error_code ec, std::size_t) {
    if (closed_) return;
    if (ec) return client_gone();
    if (next_ == out_.first_content && record_ != npos) {
      std::lock_guard lock(impl_.mu);
      impl_.requests[record_].first_delta_written = Clock::now();
      impl_.changed();
    }
    if (++next_ == out_.writes.size()) return finish();
    if (next_ < 2 || out_.gap.count() <= 0) return write();
    if (out_.pace == OpenAiFake::Pace::after_write) {
      timer_.expires_after(out_.gap);
    } else if (out_.pace == OpenAiFake::Pace::steady) {
      timer_.expires_at(began_ + out_.gap * static_cast<int>(next_ - 1));
    } else {
      const auto gap = std::chrono::duration_cast<Clock::duration>(out_.gap);
      timer_.expires_at(Clock::time_point((Clock::now().time_since_epoch() / gap + 1) * gap));
    }
    timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (!ec && !self->closed_) self->write();
    });
  }

  void finish() {
    if (out_.end == End::stall) {
      // Holds the session (the header read may have ended, on a pipelined request) until the
      // client closes or the fake stops.
      timer_.expires_at(Clock::time_point::max());
      timer_.async_wait([self = shared_from_this()](beast::error_code) {});
      return;
    }
    end_answer(out_.end == End::done, false);
    if (out_.end == End::drop) return close();
    if (!keep_alive_) return drain_ ? drain_then_close() : close();
    if (deferred_) {
      auto ec = *deferred_;
      deferred_.reset();
      on_header(ec, 0);
    }
  }

  // The client closed (or reset) the connection while an answer was being written.
  void client_gone() {
    end_answer(false, streaming_);
    close();
  }

  void end_answer(bool served, bool cancelled) {
    answering_ = false;
    record_ = npos;
    std::lock_guard lock(impl_.mu);
    if (streaming_) --impl_.active_streams;
    streaming_ = false;
    if (served) ++impl_.served;
    if (cancelled) ++impl_.cancelled;
    impl_.changed();
  }

  // After a read error the client may still be sending: closing with unread data resets the
  // connection, and the reset can destroy the error answer on its way. So the fake stops
  // sending and discards what comes until the client closes, for at most a second.
  void drain_then_close() {
    beast::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_send, ignored);
    timer_.expires_after(std::chrono::seconds(1));
    timer_.async_wait([self = shared_from_this()](beast::error_code) { self->close(); });
    drain();
  }

  void drain() {
    socket_.async_read_some(net::buffer(scratch_),
                            [self = shared_from_this()](beast::error_code ec, std::size_t) {
                              if (ec || self->closed_) return self->close();
                              self->drain();
                            });
  }

  void close() {
    if (closed_) return;
    closed_ = true;
    beast::error_code ignored;
    timer_.cancel();
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
  }

  Impl& impl_;
  tcp::socket socket_;
  net::steady_timer timer_;  // gaps between chunks; a stall's hold
  const std::size_t index_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  Out out_;
  std::size_t next_ = 0;          // the write in flight or next
  std::size_t content_next_ = 0;  // the first of out_.content_writes not yet stamped
  std::size_t record_ = npos;     // the answered request in impl_.requests
  Clock::time_point began_;       // of the answer's writes (Pace::steady)
  bool keep_alive_ = true;        // of the request being answered
  bool answering_ = false;        // from the first write until the answer ends
  bool streaming_ = false;        // counted in active_streams
  bool closed_ = false;
  bool drain_ = false;  // close by drain_then_close()
  std::array<char, 4096> scratch_;
  std::optional<beast::error_code> deferred_;  // a header read while answering
};

}  // namespace

void OpenAiFake::Impl::do_accept() {
  acceptor.async_accept([this](beast::error_code ec, tcp::socket socket) {
    if (ec == net::error::operation_aborted) return;
    if (ec) {
      // Out of descriptors, say: retry shortly instead of spinning.
      accept_retry.expires_after(std::chrono::milliseconds(10));
      accept_retry.async_wait([this](beast::error_code e) {
        if (!e) do_accept();
      });
      return;
    }
    std::size_t index = 0;
    bool full = false;
    {
      std::lock_guard lock(mu);
      full = open >= options.max_connections;
      if (!full) {
        index = accepted++;
        ++open;
        changed();
      }
    }
    beast::error_code ignored;
    if (full) {
      socket.close(ignored);
    } else {
      socket.set_option(tcp::no_delay(true), ignored);  // each chunk leaves as it is written
      std::make_shared<Session>(*this, std::move(socket), index)->run();
    }
    do_accept();
  });
}

OpenAiFake::OpenAiFake() : OpenAiFake(Options{}) {}

OpenAiFake::OpenAiFake(Options options) : impl_(std::make_unique<Impl>(std::move(options))) {
  tcp::endpoint endpoint(net::ip::make_address("127.0.0.1"), 0);
  impl_->acceptor.open(endpoint.protocol());
  impl_->acceptor.set_option(net::socket_base::reuse_address(true));
  impl_->acceptor.bind(endpoint);
  impl_->acceptor.listen(net::socket_base::max_listen_connections);
  impl_->port = impl_->acceptor.local_endpoint().port();
  impl_->do_accept();
  impl_->thread = std::thread([impl = impl_.get()] {
    for (;;) {
      try {
        impl->ioc.run();
        return;
      } catch (const std::exception& e) {
        std::fprintf(stderr, "OpenAiFake: %s\n", e.what());  // and serve on
      }
    }
  });
}

OpenAiFake::~OpenAiFake() {
  impl_->ioc.stop();
  impl_->thread.join();
  // The pending handlers, and with them every session and its socket, go with the io_context
  // (impl_'s destruction): a client on a stalled stream sees its connection close.
}

std::uint16_t OpenAiFake::port() const {
  return impl_->port;
}

std::string OpenAiFake::base_url() const {
  return "http://127.0.0.1:" + std::to_string(impl_->port) + impl_->options.path_prefix;
}

void OpenAiFake::set_api_key(std::string key) {
  std::lock_guard lock(impl_->mu);
  impl_->api_key = std::move(key);
  impl_->changed();
}

void OpenAiFake::set_model(std::string model) {
  std::lock_guard lock(impl_->mu);
  impl_->model = std::move(model);
  impl_->changed();
}

void OpenAiFake::push(Script script) {
  std::lock_guard lock(impl_->mu);
  impl_->scripts.push_back(std::move(script));
  impl_->changed();
}

std::size_t OpenAiFake::scripts_pending() const {
  std::lock_guard lock(impl_->mu);
  return impl_->scripts.size();
}

std::vector<OpenAiFake::Request> OpenAiFake::requests() const {
  std::lock_guard lock(impl_->mu);
  return impl_->requests;
}

std::size_t OpenAiFake::connections_accepted() const {
  std::lock_guard lock(impl_->mu);
  return impl_->accepted;
}

std::size_t OpenAiFake::open_connections() const {
  std::lock_guard lock(impl_->mu);
  return impl_->open;
}

std::size_t OpenAiFake::requests_served() const {
  std::lock_guard lock(impl_->mu);
  return impl_->served;
}

int OpenAiFake::active_streams() const {
  std::lock_guard lock(impl_->mu);
  return impl_->active_streams;
}

int OpenAiFake::max_active_streams() const {
  std::lock_guard lock(impl_->mu);
  return impl_->max_active_streams;
}

std::size_t OpenAiFake::streams_cancelled_by_client() const {
  std::lock_guard lock(impl_->mu);
  return impl_->cancelled;
}

bool OpenAiFake::wait_for(std::function<bool()> pred, std::chrono::milliseconds timeout) const {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::unique_lock lock(impl_->mu);
  for (;;) {
    const auto seen = impl_->generation;
    lock.unlock();
    if (pred()) return true;
    lock.lock();
    if (!impl_->cv.wait_until(lock, deadline, [&] { return impl_->generation != seen; })) {
      lock.unlock();
      return pred();
    }
  }
}

}  // namespace drawbridge::testing
