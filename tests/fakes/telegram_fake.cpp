#include "fakes/telegram_fake.h"

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <charconv>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>

namespace drawbridge::testing {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using net::ip::tcp;
using nlohmann::json;

namespace {

class Session;

struct Fault {
  int status = 0;
  std::string description;
  int retry_after = 0;
};

struct Bot {
  json user;
  std::int64_t next_update_id = 0;
  std::deque<json> updates;  // queued, not confirmed, by increasing update_id
  std::int64_t confirmed_offset = 0;
  std::map<std::int64_t, std::int64_t> last_message_id;  // per chat, both directions
  std::map<std::int64_t, std::string> chat_types;
  std::vector<TelegramFake::SentMessage> sent;
  std::vector<TelegramFake::ChatAction> actions;
  json commands = json::array();
  std::string webhook_url;
  std::string webhook_secret;
  std::map<std::string, std::deque<Fault>> faults;  // by lower-case method
  std::map<std::string, std::deque<std::chrono::milliseconds>> delays;
  std::set<std::int64_t> blocked;
  std::map<std::string, int> requests;
  int polls_in_flight = 0;
  int max_polls = 0;
  bool poll_waiting = false;
};

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

struct TelegramFake::Impl {
  explicit Impl(Options o) : options(o), acceptor(ioc) {}

  Bot& bot(const std::string& token) {  // mu held
    auto it = bots.find(token);
    if (it == bots.end()) throw std::invalid_argument("TelegramFake: unknown bot token " + token);
    return it->second;
  }
  const Bot& bot(const std::string& token) const { return const_cast<Impl*>(this)->bot(token); }
  void changed() {  // mu held
    ++generation;
    cv.notify_all();
  }
  void do_accept();
  void wake(const std::string& token);  // server thread

  const Options options;
  std::uint16_t port = 0;

  // Shared with the test thread, under mu.
  mutable std::mutex mu;
  mutable std::condition_variable cv;
  std::uint64_t generation = 0;
  std::map<std::string, Bot> bots;

  // Server thread only (and the destructor, after the thread ended). Declared before the
  // io_context: the sessions its destruction releases still use them.
  std::map<std::string, std::weak_ptr<Session>> waiting;  // the waiting getUpdates per token
  std::size_t connections = 0;

  net::io_context ioc;
  tcp::acceptor acceptor;
  std::thread thread;
};

namespace {

using Impl = TelegramFake::Impl;

struct Answer {
  http::status status = http::status::ok;
  json body;
};

Answer ok(json result) {
  return {http::status::ok, {{"ok", true}, {"result", std::move(result)}}};
}

Answer error(int code, const std::string& description, json parameters = nullptr) {
  json body{{"ok", false}, {"error_code", code}, {"description", description}};
  if (!parameters.is_null()) body["parameters"] = std::move(parameters);
  return {static_cast<http::status>(code), std::move(body)};
}

Answer bad_request(const std::string& what) {
  return error(400, "Bad Request: " + what);
}

const char* const kPollConflict =
    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is "
    "running";
const char* const kWebhookConflict =
    "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete "
    "the webhook first";

// The methods the fake knows, by their lower-case name (Bot API method names are
// case-insensitive).
const std::set<std::string>& known_methods() {
  static const std::set<std::string> methods{
      "getme",         "getupdates", "sendmessage",   "sendchataction", "setmycommands",
      "getmycommands", "setwebhook", "deletewebhook", "getwebhookinfo", "deletemycommands"};
  return methods;
}

// Decodes %XX and '+' in a query or form component.
std::string url_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out.push_back(' ');
    } else if (s[i] == '%' && i + 2 < s.size() &&
               std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
               std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out.push_back(static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16)));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

// Adds `a=1&b=2` to params as strings; typed parameters are converted where they are read.
void parse_form(std::string_view form, json& params) {
  while (!form.empty()) {
    auto amp = form.find('&');
    std::string_view kv = form.substr(0, amp);
    if (!kv.empty()) {
      auto eq = kv.find('=');
      params[url_decode(kv.substr(0, eq))] =
          eq == std::string_view::npos ? std::string() : url_decode(kv.substr(eq + 1));
    }
    if (amp == std::string_view::npos) break;
    form.remove_prefix(amp + 1);
  }
}

// Nesting depth of a JSON text, so that a deeply nested body is refused before it is parsed
// (parsing and destroying a tree are recursive).
bool nesting_within(std::string_view text, int max_depth) {
  int depth = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) return false;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return true;
}

// An Integer parameter, given as a JSON number or (query, form) as a decimal string.
// nullopt when absent; `bad` when present and not an integer.
std::optional<std::int64_t> int_param(const json& params, const char* name, bool& bad) {
  auto it = params.find(name);
  if (it == params.end() || it->is_null()) return std::nullopt;
  if (it->is_number_integer()) return it->get<std::int64_t>();
  if (it->is_string()) {
    const auto& s = it->get_ref<const std::string&>();
    std::int64_t v = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec == std::errc() && end == s.data() + s.size() && !s.empty()) return v;
  }
  bad = true;
  return std::nullopt;
}

// A JSON-serialized parameter (arrays, objects): the value itself in a JSON body, its
// serialization in a query or form. Discarded when it does not parse.
json json_param(const json& params, const char* name) {
  auto it = params.find(name);
  if (it == params.end()) return nullptr;
  if (!it->is_string()) return *it;
  const auto& s = it->get_ref<const std::string&>();
  if (!nesting_within(s, 32)) return json::value_t::discarded;
  return json::parse(s, nullptr, false);
}

std::string string_param(const json& params, const char* name) {
  auto it = params.find(name);
  if (it == params.end() || it->is_null()) return {};
  return it->is_string() ? it->get<std::string>() : it->dump();
}

bool bool_param(const json& params, const char* name) {
  auto it = params.find(name);
  if (it == params.end()) return false;
  if (it->is_boolean()) return it->get<bool>();
  return it->is_string() && (*it == "true" || *it == "True" || *it == "1");
}

// Code points of a valid UTF-8 text (what the 4096 limit counts); nullopt when not UTF-8.
std::optional<std::size_t> utf8_length(std::string_view s) {
  std::size_t n = 0;
  for (std::size_t i = 0; i < s.size(); ++n) {
    auto c = static_cast<unsigned char>(s[i]);
    int len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
    if (len == 0 || i + len > s.size()) return std::nullopt;
    for (int k = 1; k < len; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) return std::nullopt;
    }
    i += len;
  }
  return n;
}

bool blank(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return std::isspace(static_cast<unsigned char>(c)); });
}

// One HTTP/1.1 connection: reads a request (header first, so that a getUpdates counts as in
// flight from then on), answers it, possibly after a long poll or a scripted delay, repeats
// while keep-alive.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(Impl& impl, tcp::socket socket)
      : impl_(impl), stream_(std::move(socket)), poll_timer_(impl.ioc), delay_timer_(impl.ioc) {}

  ~Session() {
    end_poll_state();
    release_poll_count();
    --impl_.connections;
  }

  void run() { read_header(); }

  bool polling() const { return polling_; }

  // Ends the waiting poll with this answer (a conflict, or the updates that woke it).
  void finish_poll(Answer answer) {
    if (!polling_) return;
    end_poll_state();
    poll_timer_.cancel();
    beast::error_code ignored;
    stream_.socket().cancel(ignored);  // the close watch; nothing else is pending
    write(std::move(answer));
  }

  // Completes the waiting poll when there are updates for it now.
  void complete_if_ready() {
    if (!polling_) return;
    json result;
    {
      std::lock_guard lock(impl_.mu);
      result = collect(impl_.bot(token_));
    }
    if (!result.empty()) finish_poll(ok(std::move(result)));
  }

 private:
  void read_header() {
    parser_.emplace();
    parser_->header_limit(16 * 1024);
    parser_->body_limit(impl_.options.max_body_bytes);
    stream_.expires_after(std::chrono::seconds(60));
    http::async_read_header(stream_, buffer_, *parser_,
                            beast::bind_front_handler(&Session::on_header, shared_from_this()));
  }

  void on_header(beast::error_code ec, std::size_t) {
    if (ec) return on_read_error(ec);
    const auto& req = parser_->get();
    version_ = req.version();
    keep_alive_ = req.keep_alive();
    // /bot<token>/<method>[?query]
    std::string_view target = req.target();
    std::string_view path = target.substr(0, target.find('?'));
    token_.clear();
    method_.clear();
    if (path.substr(0, 4) == "/bot") {
      path.remove_prefix(4);
      auto slash = path.find('/');
      if (slash != std::string_view::npos && slash > 0) {
        token_ = std::string(path.substr(0, slash));
        method_ = lower(path.substr(slash + 1));
      }
    }
    if (method_ == "getupdates") {
      std::lock_guard lock(impl_.mu);
      auto it = impl_.bots.find(token_);
      if (it != impl_.bots.end()) {
        Bot& bot = it->second;
        counted_ = true;
        bot.max_polls = std::max(bot.max_polls, ++bot.polls_in_flight);
        impl_.changed();
      }
    }
    http::async_read(stream_, buffer_, *parser_,
                     beast::bind_front_handler(&Session::on_body, shared_from_this()));
  }

  void on_body(beast::error_code ec, std::size_t) {
    if (ec) return on_read_error(ec);
    Answer answer;
    try {
      auto a = dispatch(parser_->get());
      if (!a) return;  // a long poll waits
      answer = std::move(*a);
    } catch (const std::exception& e) {
      // One request's bug costs its own answer, never the fake.
      answer = error(500, std::string("Internal Server Error: ") + e.what());
    }
    write(std::move(answer));
  }

  void on_read_error(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
        ec == net::error::operation_aborted || ec == net::error::connection_reset ||
        ec == net::error::eof) {
      return close();
    }
    // Malformed or oversized: answer it, then drop the connection.
    keep_alive_ = false;
    if (ec == http::error::body_limit || ec == http::error::header_limit) {
      write(error(413, "Request Entity Too Large"));
    } else {
      write(bad_request("malformed HTTP request: " + ec.message()));
    }
  }

  // The answer, or nullopt when a long poll now waits.
  std::optional<Answer> dispatch(const http::request<http::string_body>& req) {
    if (token_.empty() || method_.empty()) return error(404, "Not Found");
    json params = json::object();
    std::string_view target = req.target();
    if (auto q = target.find('?'); q != std::string_view::npos) {
      parse_form(target.substr(q + 1), params);
    }
    if (!req.body().empty()) {
      const std::string type = lower(req[http::field::content_type]);
      if (type.rfind("application/json", 0) == 0) {
        if (!nesting_within(req.body(), 32)) return bad_request("can't parse JSON object");
        json body = json::parse(req.body(), nullptr, false);
        if (body.is_discarded() || !body.is_object()) {
          return bad_request("can't parse JSON object");
        }
        for (auto& [k, v] : body.items()) params[k] = v;
      } else if (type.rfind("application/x-www-form-urlencoded", 0) == 0) {
        parse_form(req.body(), params);
      } else {
        return bad_request("unsupported Content-Type for the fake: " + type);
      }
    }

    std::unique_lock lock(impl_.mu);
    auto it = impl_.bots.find(token_);
    if (it == impl_.bots.end()) return error(401, "Unauthorized");
    Bot& bot = it->second;
    if (!known_methods().count(method_)) return error(404, "Not Found");
    ++bot.requests[method_];
    impl_.changed();
    if (auto d = bot.delays.find(method_); d != bot.delays.end() && !d->second.empty()) {
      delay_ = d->second.front();
      d->second.pop_front();
    }
    if (auto f = bot.faults.find(method_); f != bot.faults.end() && !f->second.empty()) {
      Fault fault = f->second.front();
      f->second.pop_front();
      json parameters;
      if (fault.retry_after > 0) parameters = {{"retry_after", fault.retry_after}};
      return error(fault.status, fault.description, parameters);
    }

    if (method_ == "getme") return ok(bot.user);
    if (method_ == "getupdates") {
      lock.unlock();
      return get_updates(params);
    }
    if (method_ == "sendmessage") return send_message(bot, params);
    if (method_ == "sendchataction") {
      bool bad = false;
      auto chat = int_param(params, "chat_id", bad);
      if (bad) return bad_request("chat not found");
      if (!chat) return bad_request("chat_id is empty");
      std::string action = string_param(params, "action");
      if (action.empty()) return bad_request("wrong parameter action in request");
      bot.actions.push_back({*chat, action});
      impl_.changed();
      return ok(true);
    }
    if (method_ == "setmycommands") {
      json commands = json_param(params, "commands");
      if (!commands.is_array()) return bad_request("can't parse commands JSON object");
      bot.commands = std::move(commands);
      impl_.changed();
      return ok(true);
    }
    if (method_ == "getmycommands") return ok(bot.commands);
    if (method_ == "deletemycommands") {
      bot.commands = json::array();
      impl_.changed();
      return ok(true);
    }
    if (method_ == "setwebhook" || method_ == "deletewebhook") {
      // setWebhook with an empty url removes the webhook, as deleteWebhook does.
      const std::string url = method_ == "setwebhook" ? string_param(params, "url") : "";
      bot.webhook_url = url;
      bot.webhook_secret = url.empty() ? "" : string_param(params, "secret_token");
      if (bool_param(params, "drop_pending_updates")) bot.updates.clear();
      impl_.changed();
      lock.unlock();
      // A poll that waits when the webhook is set cannot go on (the real API ends it too).
      if (!url.empty()) end_waiting_poll(kWebhookConflict);
      Answer a = ok(true);
      a.body["description"] = url.empty() ? "Webhook was deleted" : "Webhook was set";
      return a;
    }
    if (method_ == "getwebhookinfo") {
      return ok({{"url", bot.webhook_url},
                 {"has_custom_certificate", false},
                 {"pending_update_count", bot.updates.size()}});
    }
    return error(404, "Not Found");
  }

  Answer send_message(Bot& bot, const json& params) {  // mu held
    bool bad = false;
    auto chat = int_param(params, "chat_id", bad);
    if (bad) return bad_request("chat not found");
    if (!chat) return bad_request("chat_id is empty");
    std::string text = string_param(params, "text");
    if (blank(text)) return bad_request("message text is empty");
    auto length = utf8_length(text);
    if (!length) return bad_request("text must be encoded in UTF-8");
    if (*length > 4096) return bad_request("message is too long");
    std::optional<std::int64_t> reply_to = int_param(params, "reply_to_message_id", bad);
    if (json rp = json_param(params, "reply_parameters"); rp.is_object()) {
      reply_to = int_param(rp, "message_id", bad);
    } else if (!rp.is_null()) {
      return bad_request("can't parse reply parameters JSON object");
    }
    if (bad) return bad_request("wrong parameter reply_to_message_id");
    if (bot.blocked.count(*chat)) return error(403, "Forbidden: bot was blocked by the user");

    TelegramFake::SentMessage m;
    m.chat_id = *chat;
    m.text = text;
    m.reply_to_message_id = reply_to;
    m.message_id = ++bot.last_message_id[*chat];
    m.time = std::chrono::system_clock::now();
    m.params = params;
    bot.sent.push_back(m);
    impl_.changed();

    auto type = bot.chat_types.find(*chat);
    json message{{"message_id", m.message_id},
                 {"from", bot.user},
                 {"chat",
                  {{"id", *chat},
                   {"type", type != bot.chat_types.end() ? type->second
                            : *chat > 0                  ? "private"
                                                         : "supergroup"}}},
                 {"date", unix_now()},
                 {"text", text}};
    return ok(std::move(message));
  }

  std::optional<Answer> get_updates(const json& params) {
    bool bad = false;
    std::int64_t offset = int_param(params, "offset", bad).value_or(0);
    std::int64_t limit =
        std::clamp<std::int64_t>(int_param(params, "limit", bad).value_or(100), 1, 100);
    std::int64_t timeout = std::max<std::int64_t>(0, int_param(params, "timeout", bad).value_or(0));
    if (bad) return bad_request("wrong parameter in getUpdates request");
    if (timeout > 24 * 3600) timeout = 24 * 3600;  // keeps the timer arithmetic finite

    // Only one getUpdates at a time per bot: the newer one wins.
    end_waiting_poll(kPollConflict);

    std::lock_guard lock(impl_.mu);
    Bot& bot = impl_.bot(token_);
    if (!bot.webhook_url.empty()) return error(409, kWebhookConflict);
    if (offset > 0) {
      // Confirms every update before `offset`.
      while (!bot.updates.empty() &&
             bot.updates.front()["update_id"].get<std::int64_t>() < offset) {
        bot.updates.pop_front();
      }
      bot.confirmed_offset = std::max(bot.confirmed_offset, offset);
    } else if (offset < 0) {
      // The last -offset updates; all before them are forgotten.
      while (static_cast<std::int64_t>(bot.updates.size()) > -offset) bot.updates.pop_front();
      if (!bot.updates.empty()) {
        bot.confirmed_offset =
            std::max(bot.confirmed_offset, bot.updates.front()["update_id"].get<std::int64_t>());
      }
    }
    impl_.changed();
    poll_offset_ = offset;
    poll_limit_ = static_cast<std::size_t>(limit);
    json result = collect(bot);
    if (!result.empty() || timeout == 0) return ok(std::move(result));

    polling_ = true;
    bot.poll_waiting = true;
    impl_.waiting[token_] = shared_from_this();
    impl_.changed();  // wakes a test waiting for poll_waiting()
    stream_.expires_never();  // the poll's own timer bounds it
    poll_timer_.expires_after(std::chrono::seconds(timeout));
    poll_timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (ec || !self->polling_) return;
      json result;
      {
        std::lock_guard lock(self->impl_.mu);
        result = self->collect(self->impl_.bot(self->token_));
      }
      self->finish_poll(ok(std::move(result)));
    });
    watch_close();
    return std::nullopt;
  }

  json collect(const Bot& bot) const {  // mu held
    json result = json::array();
    for (const auto& u : bot.updates) {
      if (result.size() >= poll_limit_) break;
      if (poll_offset_ > 0 && u["update_id"].get<std::int64_t>() < poll_offset_) continue;
      result.push_back(u);
    }
    return result;
  }

  // A client that gives up on its long poll closes the connection: the poll ends with it. The
  // socket becomes readable with nothing to read at EOF (or fails); data instead is a pipelined
  // request, which waits in the socket until the poll is answered.
  void watch_close() {
    stream_.socket().async_wait(
        tcp::socket::wait_read, [self = shared_from_this(), watch = watch_](beast::error_code ec) {
          if (watch != self->watch_ || !self->polling_) return;
          beast::error_code avail_ec;
          std::size_t available = ec ? 0 : self->stream_.socket().available(avail_ec);
          if (!ec && !avail_ec && available > 0) return;
          self->end_poll_state();
          self->poll_timer_.cancel();
          self->close();
        });
  }

  void end_waiting_poll(const char* description) {
    auto it = impl_.waiting.find(token_);
    if (it == impl_.waiting.end()) return;
    auto other = it->second.lock();
    impl_.waiting.erase(it);
    if (other && other.get() != this) other->finish_poll(error(409, description));
  }

  void end_poll_state() {
    if (!polling_) return;
    polling_ = false;
    ++watch_;
    if (auto it = impl_.waiting.find(token_);
        it != impl_.waiting.end() && (it->second.expired() || it->second.lock().get() == this)) {
      impl_.waiting.erase(it);
    }
    std::lock_guard lock(impl_.mu);
    if (auto it = impl_.bots.find(token_); it != impl_.bots.end()) it->second.poll_waiting = false;
    impl_.changed();
  }

  void release_poll_count() {
    if (!counted_) return;
    counted_ = false;
    std::lock_guard lock(impl_.mu);
    if (auto it = impl_.bots.find(token_); it != impl_.bots.end()) --it->second.polls_in_flight;
    impl_.changed();
  }

  void write(Answer answer) {
    auto res = std::make_shared<http::response<http::string_body>>(answer.status, version_);
    res->set(http::field::server, "telegram-fake");
    res->set(http::field::content_type, "application/json");
    res->keep_alive(keep_alive_);
    // Replaces invalid UTF-8 (a form parameter may carry any bytes) instead of throwing.
    res->body() = answer.body.dump(-1, ' ', false, json::error_handler_t::replace);
    res->prepare_payload();
    response_ = std::move(res);
    if (delay_.count() > 0) {
      delay_timer_.expires_after(delay_);
      delay_ = {};
      delay_timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
        if (!ec) self->do_write();
      });
      return;
    }
    do_write();
  }

  void do_write() {
    stream_.expires_after(std::chrono::seconds(30));
    http::async_write(stream_, *response_,
                      beast::bind_front_handler(&Session::on_write, shared_from_this()));
  }

  void on_write(beast::error_code ec, std::size_t) {
    response_.reset();
    release_poll_count();
    {
      std::lock_guard lock(impl_.mu);
      impl_.changed();  // a request completed
    }
    if (ec || !keep_alive_) return close();
    read_header();
  }

  void close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.socket().close(ignored);
    release_poll_count();
  }

  Impl& impl_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::shared_ptr<http::response<http::string_body>> response_;
  net::steady_timer poll_timer_;
  net::steady_timer delay_timer_;
  unsigned version_ = 11;
  bool keep_alive_ = true;
  std::string token_;     // of the current request
  std::string method_;    // lower case
  bool counted_ = false;  // in its bot's polls_in_flight
  bool polling_ = false;
  std::uint64_t watch_ = 0;  // invalidates a stale close watch
  std::int64_t poll_offset_ = 0;
  std::size_t poll_limit_ = 100;
  std::chrono::milliseconds delay_{0};
};

}  // namespace

void TelegramFake::Impl::do_accept() {
  acceptor.async_accept([this](beast::error_code ec, tcp::socket socket) {
    if (ec == net::error::operation_aborted) return;
    if (!ec) {
      if (connections >= options.max_connections) {
        beast::error_code ignored;
        socket.close(ignored);
      } else {
        ++connections;
        std::make_shared<Session>(*this, std::move(socket))->run();
      }
    }
    do_accept();
  });
}

void TelegramFake::Impl::wake(const std::string& token) {
  auto it = waiting.find(token);
  if (it == waiting.end()) return;
  if (auto session = it->second.lock()) session->complete_if_ready();
}

TelegramFake::TelegramFake() : TelegramFake(Options{}) {}

TelegramFake::TelegramFake(Options options) : impl_(std::make_unique<Impl>(options)) {
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
        std::fprintf(stderr, "TelegramFake: %s\n", e.what());  // and serve on
      }
    }
  });
}

TelegramFake::~TelegramFake() {
  impl_->ioc.stop();
  impl_->thread.join();
  // The pending handlers, and with them every session and its socket, go with the io_context
  // (impl_'s destruction): a client waiting on a long poll sees its connection close.
}

std::uint16_t TelegramFake::port() const {
  return impl_->port;
}

std::string TelegramFake::base_url() const {
  return "http://127.0.0.1:" + std::to_string(impl_->port);
}

void TelegramFake::add_bot(const std::string& token, std::int64_t bot_user_id,
                           const std::string& username) {
  std::lock_guard lock(impl_->mu);
  Bot& bot = impl_->bots[token];
  bot.user = {{"id", bot_user_id},
              {"is_bot", true},
              {"first_name", username},
              {"username", username},
              {"can_join_groups", true},
              {"can_read_all_group_messages", false},
              {"supports_inline_queries", false}};
  bot.next_update_id = impl_->options.first_update_id;
  impl_->changed();
}

std::int64_t TelegramFake::push_message(const std::string& token, std::int64_t chat_id,
                                        std::int64_t from_user_id, const std::string& text,
                                        const std::string& chat_type) {
  std::int64_t id = 0;
  {
    std::lock_guard lock(impl_->mu);
    Bot& bot = impl_->bot(token);
    id = bot.next_update_id++;
    bot.chat_types[chat_id] = chat_type;
    json message{{"message_id", ++bot.last_message_id[chat_id]},
                 {"from",
                  {{"id", from_user_id},
                   {"is_bot", false},
                   {"first_name", "u" + std::to_string(from_user_id)}}},
                 {"chat", {{"id", chat_id}, {"type", chat_type}}},
                 {"date", unix_now()},
                 {"text", text}};
    bot.updates.push_back({{"update_id", id}, {"message", std::move(message)}});
    impl_->changed();
  }
  net::post(impl_->ioc, [impl = impl_.get(), token] { impl->wake(token); });
  return id;
}

void TelegramFake::fail_next(const std::string& token, const std::string& method, int http_status,
                             const std::string& description, int retry_after_seconds, int count) {
  std::lock_guard lock(impl_->mu);
  auto& faults = impl_->bot(token).faults[lower(method)];
  for (int i = 0; i < count; ++i) faults.push_back({http_status, description, retry_after_seconds});
}

void TelegramFake::block_chat(const std::string& token, std::int64_t chat_id) {
  std::lock_guard lock(impl_->mu);
  impl_->bot(token).blocked.insert(chat_id);
}

void TelegramFake::unblock_chat(const std::string& token, std::int64_t chat_id) {
  std::lock_guard lock(impl_->mu);
  impl_->bot(token).blocked.erase(chat_id);
}

void TelegramFake::delay_next(const std::string& token, const std::string& method,
                              std::chrono::milliseconds delay) {
  std::lock_guard lock(impl_->mu);
  impl_->bot(token).delays[lower(method)].push_back(delay);
}

std::vector<TelegramFake::SentMessage> TelegramFake::sent(const std::string& token) const {
  std::lock_guard lock(impl_->mu);
  return impl_->bot(token).sent;
}

std::vector<TelegramFake::ChatAction> TelegramFake::chat_actions(const std::string& token) const {
  std::lock_guard lock(impl_->mu);
  return impl_->bot(token).actions;
}

json TelegramFake::my_commands(const std::string& token) const {
  std::lock_guard lock(impl_->mu);
  return impl_->bot(token).commands;
}

std::string TelegramFake::webhook_url(const std::string& token) const {
  std::lock_guard lock(impl_->mu);
  return impl_->bot(token).webhook_url;
}

int TelegramFake::requests(const std::string& token, const std::string& method) const {
  std::lock_guard lock(impl_->mu);
  const auto& requests = impl_->bot(token).requests;
  auto it = requests.find(lower(method));
  return it == requests.end() ? 0 : it->second;
}

std::int64_t TelegramFake::confirmed_offset(const std::string& token) const {
  std::lock_guard lock(impl_->mu);
  return impl_->bot(token).confirmed_offset;
}

std::size_t TelegramFake::pending_updates(const std::string& token) const {
  std::lock_guard lock(impl_->mu);
  return impl_->bot(token).updates.size();
}

int TelegramFake::polls_in_flight(const std::string& token) const {
  std::lock_guard lock(impl_->mu);
  return impl_->bot(token).polls_in_flight;
}

int TelegramFake::max_concurrent_polls(const std::string& token) const {
  std::lock_guard lock(impl_->mu);
  return impl_->bot(token).max_polls;
}

bool TelegramFake::poll_waiting(const std::string& token) const {
  std::lock_guard lock(impl_->mu);
  return impl_->bot(token).poll_waiting;
}

bool TelegramFake::wait_for(std::function<bool()> pred, std::chrono::milliseconds timeout) const {
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
