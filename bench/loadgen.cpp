// drawbridge_loadgen: an asynchronous WebSocket load generator for the drawbridge control
// protocol (OpenClaw gateway protocol v4 subset).
//
// Opens --connections WebSocket connections (one chat session each), does the connect
// handshake on every one, then sends `chat.send` requests either closed-loop (each connection
// keeps --inflight requests outstanding and sends the next one when a final chat event
// arrives) or open-loop at --rate messages/s. The latency of a message is the time from
// writing its chat.send (open loop: from its scheduled send time, so a stalled gateway is not
// hidden by coordinated omission) to the arrival of the `chat` event with state "final" for
// its runId.
//
// Everything runs on one io_context thread; the tool reports its own CPU use so a reader can
// tell whether it was the bottleneck. Exit status: 0 ok, 1 lost or duplicated finals, 3 other
// errors (error responses, error/aborted runs, dropped connections) (1 and 3 not with
// --allow-loss), 2 nothing could be sent (cannot connect / handshake refused), 64 usage.

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <deque>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <CLI/CLI.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <nlohmann/json.hpp>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

namespace {

struct Options {
  std::string url = "ws://127.0.0.1:18789";
  std::string token;
  int connections = 100;
  std::int64_t messages = 0;  // measured messages; 0: use duration
  double duration_s = 0;      // measured window; 0 and messages 0: 10 s
  double rate = 0;            // msgs/s over all connections; 0: closed loop
  int inflight = 1;           // closed loop: outstanding requests per connection
  double warmup_s = 2;
  double grace_s = 5;
  double connect_timeout_s = 15;
  int message_bytes = 32;
  bool allow_loss = false;
  bool full_parse = false;
  int server_pid = 0;
  std::string json_out;
  std::string session_prefix = "bench";
  std::int64_t max_outstanding = 200000;  // open loop: bound on unanswered messages
};

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

double cpu_seconds_self() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
         (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// utime + stime of another process, in seconds; negative when it cannot be read.
double cpu_seconds_of(int pid) {
  if (pid <= 0) return -1;
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return -1;
  auto close = line.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream rest(line.substr(close + 2));
  std::string field;
  // Fields after the command name start at field 3 (state); utime is 14, stime 15.
  unsigned long long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// Time on CPU and time waiting on a run queue (seconds) of a thread, from
// /proc/<pid>/schedstat (the main thread of a process); negative when unavailable.
std::pair<double, double> schedstat_of(const std::string& pid) {
  std::ifstream in("/proc/" + pid + "/schedstat");
  unsigned long long run = 0, wait = 0;
  if (!(in >> run >> wait)) return {-1, -1};
  return {run / 1e9, wait / 1e9};
}

// Busy and total jiffies of the whole machine (all CPUs), from /proc/stat.
std::pair<double, double> machine_jiffies() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  unsigned long long v[10] = {};
  in >> cpu;
  for (auto& x : v) in >> x;
  const double idle = static_cast<double>(v[3] + v[4]);
  double total = 0;
  for (int i = 0; i < 8; ++i) total += static_cast<double>(v[i]);
  return {total - idle, total};
}

// The string value of the first `"key":"` at or after `from`, when it holds no escapes.
std::optional<std::string_view> string_after(std::string_view s, std::string_view pattern,
                                             std::size_t from = 0) {
  auto p = s.find(pattern, from);
  if (p == std::string_view::npos) return std::nullopt;
  p += pattern.size();
  auto e = s.find('"', p);
  if (e == std::string_view::npos) return std::nullopt;
  auto v = s.substr(p, e - p);
  if (v.find('\\') != std::string_view::npos) return std::nullopt;
  return v;
}

// What the load generator needs from one server frame.
struct Frame {
  enum class Kind { other, response, chat_event, malformed } kind = Kind::other;
  std::string id;      // response: request id
  bool ok = false;     // response
  std::string status;  // response: payload.status
  std::string run_id;  // response payload.runId / chat event payload.runId
  std::string state;   // chat event: delta / final / error / aborted
  std::string error;   // response error message / chat errorMessage
};

Frame parse_full(std::string_view text) {
  Frame f;
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    f.kind = Frame::Kind::malformed;
    return f;
  }
  const std::string type = j.value("type", "");
  if (type == "res") {
    f.kind = Frame::Kind::response;
    f.id = j.value("id", "");
    f.ok = j.value("ok", false);
    if (f.ok && j.contains("payload") && j["payload"].is_object()) {
      f.status = j["payload"].value("status", "");
      f.run_id = j["payload"].value("runId", "");
    } else if (!f.ok && j.contains("error") && j["error"].is_object()) {
      f.error = j["error"].value("code", "") + ": " + j["error"].value("message", "");
    }
  } else if (type == "event" && j.value("event", "") == "chat" && j.contains("payload") &&
             j["payload"].is_object()) {
    f.kind = Frame::Kind::chat_event;
    const auto& p = j["payload"];
    f.run_id = p.value("runId", "");
    f.state = p.value("state", "");
    f.error = p.value("errorMessage", "");
  }
  return f;
}

// A scan of the frame relying on how the gateway serializes (nlohmann::json, keys sorted:
// `{"event":..,"payload":..,"seq":..,"type":"event"}` and `{"id":..,"ok":..,"payload":..,
// "type":"res"}`) and on the load generator's message text holding no JSON syntax. Falls
// back to a full parse for anything it does not recognise.
Frame parse_fast(std::string_view text) {
  if (text.starts_with(R"({"event":"chat",)")) {
    Frame f;
    f.kind = Frame::Kind::chat_event;
    auto state = string_after(text, R"("state":")");
    // payload.runId: the last "runId" (a final's message.__openclaw.runId comes first, same value).
    auto rp = text.rfind(R"("runId":")");
    auto run = rp == std::string_view::npos ? std::nullopt : string_after(text, R"("runId":")", rp);
    if (!state || !run) return parse_full(text);
    f.state = *state;
    f.run_id = *run;
    if (f.state == "error" || f.state == "aborted") return parse_full(text);
    return f;
  }
  if (text.starts_with(R"({"event":)")) return Frame{};  // tick, health, ...
  if (text.starts_with(R"({"id":")")) {
    auto id = string_after(text, R"({"id":")");
    if (!id) return parse_full(text);
    if (text.find(R"(,"ok":true,)") == std::string_view::npos) return parse_full(text);
    Frame f;
    f.kind = Frame::Kind::response;
    f.ok = true;
    f.id = *id;
    if (auto s = string_after(text, R"("status":")")) f.status = *s;
    if (auto r = string_after(text, R"("runId":")")) f.run_id = *r;
    return f;
  }
  return parse_full(text);
}

struct Message {
  Clock::time_point sent;  // open loop: scheduled time
  std::uint32_t conn = 0;
  std::uint8_t finals = 0;
  bool acked = false;
  bool measured = false;
};

class LoadGen;

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  enum class State { connecting, handshaking, ready, dead };

  Connection(LoadGen& lg, asio::io_context& io, int index)
      : lg_(lg), ws_(io), index_(index) {}

  void start(const tcp::resolver::results_type& endpoints);
  void send_text(std::string text);
  void close();

  State state = State::connecting;
  int outstanding = 0;  // closed loop: chat.send requests without a final yet
  std::string session;
  int index() const { return index_; }

 private:
  void do_read();
  void on_read(beast::error_code ec, std::size_t);
  void do_write();
  void fail(const std::string& what, beast::error_code ec);

  LoadGen& lg_;
  websocket::stream<beast::tcp_stream> ws_;
  beast::flat_buffer buffer_;
  std::deque<std::string> queue_;
  bool writing_ = false;
  int index_;
};

class LoadGen {
 public:
  explicit LoadGen(Options o) : opt_(std::move(o)), tick_(io_), signals_(io_, SIGINT, SIGTERM) {}

  int run();

  // Called by connections.
  void on_ready(Connection& c);
  void on_setup_failed(Connection& c, const std::string& why);
  void on_dead(Connection& c, const std::string& why);
  void on_frame(Connection& c, std::string_view text);
  std::string connect_frame() const;
  const Options& opt() const { return opt_; }
  std::string host, port;

 private:
  enum class Phase { connecting, warmup, measuring, draining, done };

  void start_load();
  void send_chat(Connection& c, Clock::time_point stamp);
  void on_tick();
  void schedule_tick();
  bool sending() const { return phase_ == Phase::warmup || phase_ == Phase::measuring; }
  void enter_measuring(Clock::time_point now);
  void stop_sending(Clock::time_point now);
  void finish();
  json report() const;
  void print_human(const json& r) const;
  Connection* next_ready_connection();

  Options opt_;
  asio::io_context io_;
  asio::steady_timer tick_;
  asio::signal_set signals_;
  std::vector<std::shared_ptr<Connection>> conns_;
  std::unordered_map<std::string, Message> messages_;
  std::string tag_;
  std::string text_;
  Phase phase_ = Phase::connecting;
  int ready_ = 0, setup_failed_ = 0;
  std::string first_setup_error_;
  std::size_t rr_ = 0;
  std::uint64_t seq_ = 0;
  Clock::time_point t_connect_start_, t_start_, t_measure_, t_stop_, t_done_, t_last_final_;
  double cpu_at_measure_ = 0, cpu_at_stop_ = 0;
  double srv_cpu_at_measure_ = -1, srv_cpu_at_stop_ = -1;
  std::pair<double, double> srv_sched_measure_{-1, -1}, srv_sched_stop_{-1, -1};
  std::pair<double, double> lg_sched_measure_{-1, -1}, lg_sched_stop_{-1, -1};
  std::pair<double, double> machine_measure_{0, 0}, machine_stop_{0, 0};
  std::string loadavg_at_start_;
  double connect_s_ = 0;
  // counters
  std::int64_t sent_ = 0, acked_ = 0, queued_acks_ = 0, finals_ = 0, errors_ = 0,
               duplicates_ = 0, unknown_finals_ = 0, deltas_ = 0, dead_conns_ = 0;
  std::int64_t measured_sent_ = 0, measured_finals_ = 0, window_finals_ = 0, skipped_ = 0;
  std::int64_t outstanding_total_ = 0;
  std::vector<double> latencies_ms_;
  std::vector<std::string> error_samples_;
  bool interrupted_ = false;
  void note_error(const std::string& e) {
    ++errors_;
    if (error_samples_.size() < 5) error_samples_.push_back(e);
  }
};

// ---- Connection ------------------------------------------------------------------------

void Connection::start(const tcp::resolver::results_type& endpoints) {
  auto self = shared_from_this();
  beast::get_lowest_layer(ws_).expires_after(
      std::chrono::milliseconds(static_cast<int>(lg_.opt().connect_timeout_s * 1000)));
  beast::get_lowest_layer(ws_).async_connect(
      endpoints, [self](beast::error_code ec, const tcp::endpoint&) {
        if (ec) return self->fail("connect", ec);
        beast::error_code ignored;
        beast::get_lowest_layer(self->ws_).socket().set_option(tcp::no_delay(true), ignored);
        self->state = State::handshaking;
        self->ws_.async_handshake(
            self->lg_.host + ":" + self->lg_.port, "/", [self](beast::error_code ec) {
              if (ec) return self->fail("websocket handshake", ec);
              beast::get_lowest_layer(self->ws_).expires_never();
              self->ws_.read_message_max(16 * 1024 * 1024);
              self->ws_.text(true);
              // The challenge arrives first; connect may be sent right away.
              self->send_text(self->lg_.connect_frame());
              self->do_read();
            });
      });
}

void Connection::send_text(std::string text) {
  if (state == State::dead) return;
  queue_.push_back(std::move(text));
  if (!writing_) do_write();
}

void Connection::do_write() {
  if (queue_.empty()) {
    writing_ = false;
    return;
  }
  writing_ = true;
  ws_.async_write(asio::buffer(queue_.front()),
                  [self = shared_from_this()](beast::error_code ec, std::size_t) {
                    if (ec) return self->fail("write", ec);
                    self->queue_.pop_front();
                    self->do_write();
                  });
}

void Connection::do_read() {
  ws_.async_read(buffer_, beast::bind_front_handler(&Connection::on_read, shared_from_this()));
}

void Connection::on_read(beast::error_code ec, std::size_t) {
  if (ec) return fail("read", ec);
  auto data = buffer_.cdata();
  std::string_view text(static_cast<const char*>(data.data()), data.size());
  lg_.on_frame(*this, text);
  buffer_.consume(buffer_.size());
  if (state != State::dead) do_read();
}

void Connection::fail(const std::string& what, beast::error_code ec) {
  if (state == State::dead) return;
  const bool setup = state != State::ready;
  state = State::dead;
  std::string why = what + ": " + ec.message();
  if (ec == websocket::error::closed) {
    why += " (close code " + std::to_string(ws_.reason().code) + " " +
           std::string(ws_.reason().reason.c_str()) + ")";
  }
  if (setup) lg_.on_setup_failed(*this, why);
  else lg_.on_dead(*this, why);
}

void Connection::close() {
  if (state == State::dead) return;
  state = State::dead;
  beast::error_code ignored;
  beast::get_lowest_layer(ws_).socket().shutdown(tcp::socket::shutdown_both, ignored);
  beast::get_lowest_layer(ws_).socket().close(ignored);
}

// ---- LoadGen -----------------------------------------------------------------------------

std::string LoadGen::connect_frame() const {
  json f = {{"type", "req"},
            {"id", "connect"},
            {"method", "connect"},
            {"params",
             {{"minProtocol", 4},
              {"maxProtocol", 4},
              {"client",
               {{"id", "drawbridge-loadgen"},
                {"version", "1"},
                {"platform", "linux"},
                {"mode", "test"}}},
              {"role", "operator"},
              {"scopes", {"operator.admin"}},
              {"auth", {{"token", opt_.token}}}}}};
  return f.dump();
}

int LoadGen::run() {
  // URL: ws://host:port[/path]
  std::string rest = opt_.url;
  if (rest.starts_with("ws://")) rest = rest.substr(5);
  else {
    std::cerr << "--url: only ws:// URLs are supported\n";
    return 64;
  }
  if (auto slash = rest.find('/'); slash != std::string::npos) rest = rest.substr(0, slash);
  auto colon = rest.rfind(':');
  if (colon == std::string::npos) {
    host = rest;
    port = "80";
  } else {
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
  }
  tcp::resolver resolver(io_);
  beast::error_code ec;
  auto endpoints = resolver.resolve(host, port, ec);
  if (ec) {
    std::cerr << "cannot resolve " << host << ":" << port << ": " << ec.message() << "\n";
    return 2;
  }

  std::random_device rd;
  char tagbuf[32];
  std::snprintf(tagbuf, sizeof tagbuf, "%08x", static_cast<unsigned>(rd()));
  tag_ = tagbuf;
  text_.clear();
  const std::string filler = "the quick brown fox jumps over the lazy dog ";
  while (static_cast<int>(text_.size()) < opt_.message_bytes) text_ += filler;
  text_.resize(static_cast<std::size_t>(std::max(1, opt_.message_bytes)));
  if (text_.back() == ' ') text_.back() = '.';

  signals_.async_wait([this](beast::error_code ec, int) {
    if (ec) return;
    interrupted_ = true;
    std::cerr << "interrupted: reporting what was measured so far\n";
    if (phase_ == Phase::connecting) {
      finish();
    } else {
      stop_sending(Clock::now());
    }
  });

  t_connect_start_ = Clock::now();
  conns_.reserve(static_cast<std::size_t>(opt_.connections));
  for (int i = 0; i < opt_.connections; ++i) {
    auto c = std::make_shared<Connection>(*this, io_, i);
    c->session = opt_.session_prefix + "-" + tag_ + "-" + std::to_string(i);
    conns_.push_back(c);
    c->start(endpoints);
  }
  io_.run();

  json r = report();
  print_human(r);
  std::cout << r.dump() << std::endl;
  if (!opt_.json_out.empty()) {
    std::ofstream out(opt_.json_out);
    out << r.dump(2) << "\n";
  }
  if (ready_ == 0 || sent_ == 0) return 2;
  if (!opt_.allow_loss && (r["lost"].get<std::int64_t>() > 0 || duplicates_ > 0)) return 1;
  if (errors_ > 0 && !opt_.allow_loss) return 3;
  return 0;
}

void LoadGen::on_ready(Connection& c) {
  c.state = Connection::State::ready;
  ++ready_;
  if (ready_ + setup_failed_ == opt_.connections) start_load();
}

void LoadGen::on_setup_failed(Connection& c, const std::string& why) {
  ++setup_failed_;
  if (first_setup_error_.empty()) first_setup_error_ = why;
  note_error("connection " + std::to_string(c.index()) + " setup: " + why);
  if (phase_ == Phase::connecting && ready_ + setup_failed_ == opt_.connections) start_load();
}

void LoadGen::on_dead(Connection& c, const std::string& why) {
  ++dead_conns_;
  note_error("connection " + std::to_string(c.index()) + " lost: " + why);
  // Its outstanding messages stay in messages_ and are counted as lost at the end.
  outstanding_total_ -= c.outstanding;
  c.outstanding = 0;
}

void LoadGen::start_load() {
  if (phase_ != Phase::connecting) return;
  connect_s_ = seconds_between(t_connect_start_, Clock::now());
  if (ready_ == 0) {
    std::cerr << "no connection could be set up: " << first_setup_error_ << "\n";
    phase_ = Phase::done;
    finish();
    return;
  }
  if (setup_failed_ > 0) {
    std::cerr << setup_failed_ << " connection(s) failed to set up (first: " << first_setup_error_
              << "); continuing with " << ready_ << "\n";
  }
  t_start_ = Clock::now();
  phase_ = Phase::warmup;
  if (opt_.warmup_s <= 0) enter_measuring(t_start_);
  if (opt_.rate <= 0) {
    for (auto& c : conns_) {
      if (c->state != Connection::State::ready) continue;
      for (int k = 0; k < opt_.inflight; ++k) send_chat(*c, Clock::now());
    }
  }
  schedule_tick();
}

Connection* LoadGen::next_ready_connection() {
  for (std::size_t n = 0; n < conns_.size(); ++n) {
    auto& c = conns_[rr_++ % conns_.size()];
    if (c->state == Connection::State::ready) return c.get();
  }
  return nullptr;
}

void LoadGen::send_chat(Connection& c, Clock::time_point stamp) {
  if (c.state != Connection::State::ready) return;
  std::string key = tag_ + "-" + std::to_string(c.index()) + "-" + std::to_string(++seq_);
  std::string frame;
  frame.reserve(160 + key.size() * 2 + c.session.size() + text_.size());
  frame += R"({"type":"req","id":")";
  frame += key;
  frame += R"(","method":"chat.send","params":{"sessionKey":")";
  frame += c.session;
  frame += R"(","message":")";
  frame += text_;
  frame += R"(","idempotencyKey":")";
  frame += key;
  frame += R"("}})";
  Message m;
  m.sent = stamp;
  m.conn = static_cast<std::uint32_t>(c.index());
  m.measured = phase_ == Phase::measuring;
  messages_.emplace(std::move(key), m);
  ++sent_;
  ++c.outstanding;
  ++outstanding_total_;
  if (m.measured) {
    ++measured_sent_;
    if (opt_.messages > 0 && measured_sent_ >= opt_.messages) stop_sending(Clock::now());
  }
  c.send_text(std::move(frame));
}

void LoadGen::on_frame(Connection& c, std::string_view text) {
  Frame f = opt_.full_parse ? parse_full(text) : parse_fast(text);
  const auto now = Clock::now();
  switch (f.kind) {
    case Frame::Kind::other:
      return;
    case Frame::Kind::malformed:
      note_error("malformed frame: " + std::string(text.substr(0, 120)));
      return;
    case Frame::Kind::response: {
      if (f.id == "connect") {
        if (!f.ok) {
          c.state = Connection::State::dead;
          on_setup_failed(c, "connect refused: " + f.error);
          return;
        }
        on_ready(c);
        return;
      }
      if (!f.ok) {
        note_error("chat.send " + f.id + " failed: " + f.error);
        auto it = messages_.find(f.id);
        if (it != messages_.end() && it->second.finals == 0) {
          // No final will come: stop waiting for it, but it stays "sent without a final".
          --c.outstanding;
          --outstanding_total_;
          it->second.finals = 255;  // marks "settled by an error"
          if (opt_.rate <= 0 && sending()) send_chat(c, now);
        }
        return;
      }
      auto it = messages_.find(f.id);
      if (it == messages_.end()) return;
      it->second.acked = true;
      ++acked_;
      if (f.status == "queued") ++queued_acks_;
      if (!f.run_id.empty() && f.run_id != f.id) {
        note_error("chat.send " + f.id + " answered runId " + f.run_id + " (expected the key)");
      }
      return;
    }
    case Frame::Kind::chat_event: {
      if (f.state == "delta") {
        ++deltas_;
        return;
      }
      auto it = messages_.find(f.run_id);
      if (f.state == "error" || f.state == "aborted") {
        note_error("run " + f.run_id + " ended " + f.state + ": " + f.error);
        if (it != messages_.end() && it->second.finals == 0) {
          it->second.finals = 255;
          --c.outstanding;
          --outstanding_total_;
          if (opt_.rate <= 0 && sending()) send_chat(c, now);
        }
        return;
      }
      if (f.state != "final") return;
      if (it == messages_.end()) {
        ++unknown_finals_;
        return;
      }
      Message& m = it->second;
      if (m.finals > 0) {
        ++duplicates_;
        if (m.finals < 250) ++m.finals;
        return;
      }
      m.finals = 1;
      ++finals_;
      --c.outstanding;
      --outstanding_total_;
      t_last_final_ = now;
      if (phase_ == Phase::measuring || phase_ == Phase::draining) {
        if (phase_ == Phase::measuring || opt_.messages > 0) ++window_finals_;
      }
      if (m.measured) {
        ++measured_finals_;
        latencies_ms_.push_back(std::chrono::duration<double, std::milli>(now - m.sent).count());
      }
      if (opt_.rate <= 0 && sending()) send_chat(c, now);
      if (phase_ == Phase::draining && outstanding_total_ <= 0) finish();
      return;
    }
  }
}

void LoadGen::schedule_tick() {
  tick_.expires_after(std::chrono::milliseconds(1));
  tick_.async_wait([this](beast::error_code ec) {
    if (ec) return;
    on_tick();
  });
}

void LoadGen::on_tick() {
  const auto now = Clock::now();
  if (phase_ == Phase::warmup && seconds_between(t_start_, now) >= opt_.warmup_s) {
    enter_measuring(now);
  }
  if (phase_ == Phase::measuring && opt_.messages <= 0 &&
      seconds_between(t_measure_, now) >= opt_.duration_s) {
    stop_sending(now);
  }
  if (sending() && opt_.rate > 0) {
    // Open loop: messages are due at t_start + i / rate; each is stamped with its due time.
    const double elapsed = seconds_between(t_start_, now);
    const auto due = static_cast<std::int64_t>(std::floor(elapsed * opt_.rate));
    while (sending() && sent_ + skipped_ < due) {
      const auto stamp = t_start_ + std::chrono::duration_cast<Clock::duration>(
                                        std::chrono::duration<double>((sent_ + skipped_) /
                                                                      opt_.rate));
      if (outstanding_total_ >= opt_.max_outstanding) {
        ++skipped_;
        continue;
      }
      Connection* c = next_ready_connection();
      if (!c) break;
      send_chat(*c, stamp);
    }
  }
  if (phase_ == Phase::draining) {
    if (outstanding_total_ <= 0 || seconds_between(t_stop_, now) >= opt_.grace_s) {
      finish();
      return;
    }
  }
  if (phase_ == Phase::done) return;
  if (ready_ - dead_conns_ <= 0 && phase_ != Phase::connecting) {
    note_error("every connection is gone");
    finish();
    return;
  }
  schedule_tick();
}

void LoadGen::enter_measuring(Clock::time_point now) {
  phase_ = Phase::measuring;
  t_measure_ = now;
  cpu_at_measure_ = cpu_seconds_self();
  srv_cpu_at_measure_ = cpu_seconds_of(opt_.server_pid);
  srv_sched_measure_ = schedstat_of(std::to_string(opt_.server_pid));
  lg_sched_measure_ = schedstat_of("self");
  machine_measure_ = machine_jiffies();
  std::ifstream la("/proc/loadavg");
  std::getline(la, loadavg_at_start_);
}

void LoadGen::stop_sending(Clock::time_point now) {
  if (!sending()) return;
  if (phase_ == Phase::warmup) enter_measuring(now);
  phase_ = Phase::draining;
  t_stop_ = now;
  cpu_at_stop_ = cpu_seconds_self();
  srv_cpu_at_stop_ = cpu_seconds_of(opt_.server_pid);
  srv_sched_stop_ = schedstat_of(std::to_string(opt_.server_pid));
  lg_sched_stop_ = schedstat_of("self");
  machine_stop_ = machine_jiffies();
  if (outstanding_total_ <= 0) finish();
}

void LoadGen::finish() {
  if (phase_ == Phase::done && t_done_ != Clock::time_point{}) return;
  phase_ = Phase::done;
  t_done_ = Clock::now();
  tick_.cancel();
  signals_.cancel();
  for (auto& c : conns_) c->close();
}

double percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  const double rank = p / 100.0 * static_cast<double>(sorted.size() - 1);
  const auto lo = static_cast<std::size_t>(std::floor(rank));
  const auto hi = std::min(sorted.size() - 1, lo + 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - static_cast<double>(lo));
}

json LoadGen::report() const {
  std::vector<double> lat = latencies_ms_;
  std::sort(lat.begin(), lat.end());
  std::int64_t lost = 0, errored = 0;
  for (const auto& [key, m] : messages_) {
    if (m.finals == 0) ++lost;
    if (m.finals == 255) ++errored;
  }
  // Window: measurement start to stop of sending (duration mode) or to the last final of a
  // measured message (--messages mode).
  double window = 0;
  if (t_measure_ != Clock::time_point{}) {
    const auto end = opt_.messages > 0 ? std::max(t_last_final_, t_measure_)
                                       : (t_stop_ != Clock::time_point{} ? t_stop_ : t_done_);
    window = seconds_between(t_measure_, end);
  }
  const double lg_cpu = cpu_at_stop_ - cpu_at_measure_;
  double mean = 0;
  for (double v : lat) mean += v;
  if (!lat.empty()) mean /= static_cast<double>(lat.size());
  json r = {
      {"url", opt_.url},
      {"mode", opt_.rate > 0 ? "open" : "closed"},
      {"connections", opt_.connections},
      {"connectionsReady", ready_},
      {"inflightPerConnection", opt_.rate > 0 ? 0 : opt_.inflight},
      {"rate", opt_.rate},
      {"messageBytes", opt_.message_bytes},
      {"warmupS", opt_.warmup_s},
      {"windowS", window},
      {"connectS", connect_s_},
      {"sent", sent_},
      {"acked", acked_},
      {"ackedQueued", queued_acks_},
      {"finals", finals_},
      {"deltas", deltas_},
      {"errors", errors_},
      {"erroredMessages", errored},
      {"lost", lost},
      {"duplicates", duplicates_},
      {"unknownFinals", unknown_finals_},
      {"skippedOpenLoop", skipped_},
      {"connectionsLost", dead_conns_},
      {"measuredSent", measured_sent_},
      {"measuredFinals", measured_finals_},
      {"throughput", window > 0 ? static_cast<double>(window_finals_) / window : 0.0},
      {"latencyMs",
       {{"mean", mean},
        {"p50", percentile(lat, 50)},
        {"p90", percentile(lat, 90)},
        {"p99", percentile(lat, 99)},
        {"p999", percentile(lat, 99.9)},
        {"max", lat.empty() ? 0.0 : lat.back()},
        {"min", lat.empty() ? 0.0 : lat.front()}}},
      {"loadgenCpuPct", window > 0 ? 100.0 * lg_cpu / window : 0.0},
      {"interrupted", interrupted_},
      {"errorSamples", error_samples_},
  };
  if (opt_.server_pid > 0 && srv_cpu_at_measure_ >= 0 && srv_cpu_at_stop_ >= 0 && window > 0) {
    r["gatewayCpuPct"] = 100.0 * (srv_cpu_at_stop_ - srv_cpu_at_measure_) / window;
  }
  // Seconds the main thread was runnable but waiting for a CPU: other processes' load.
  if (window > 0 && srv_sched_measure_.second >= 0 && srv_sched_stop_.second >= 0 &&
      opt_.server_pid > 0) {
    r["gatewayRunqueueWaitPct"] =
        100.0 * (srv_sched_stop_.second - srv_sched_measure_.second) / window;
  }
  if (window > 0 && lg_sched_measure_.second >= 0 && lg_sched_stop_.second >= 0) {
    r["loadgenRunqueueWaitPct"] = 100.0 * (lg_sched_stop_.second - lg_sched_measure_.second) / window;
  }
  if (machine_stop_.second > machine_measure_.second) {
    // Percent of one CPU, so 100 * nproc is all of them.
    r["machineCpuBusyPct"] = 100.0 * static_cast<double>(sysconf(_SC_NPROCESSORS_ONLN)) *
                             (machine_stop_.first - machine_measure_.first) /
                             (machine_stop_.second - machine_measure_.second);
    r["nproc"] = sysconf(_SC_NPROCESSORS_ONLN);
  }
  r["loadavgAtStart"] = loadavg_at_start_;
  return r;
}

void LoadGen::print_human(const json& r) const {
  const auto& l = r["latencyMs"];
  std::fprintf(stderr,
               "drawbridge_loadgen: %s loop, %d/%d connections%s, %.1f s window (after %.1f s "
               "warmup), %d-byte messages\n",
               r["mode"].get<std::string>().c_str(), r["connectionsReady"].get<int>(),
               opt_.connections,
               opt_.rate > 0 ? (", " + std::to_string(std::llround(opt_.rate)) + " msg/s").c_str()
                             : (", inflight " + std::to_string(opt_.inflight)).c_str(),
               r["windowS"].get<double>(), opt_.warmup_s, opt_.message_bytes);
  std::fprintf(stderr,
               "  sent %lld  acked %lld (queued %lld)  finals %lld  errors %lld  lost %lld  "
               "duplicates %lld\n",
               static_cast<long long>(sent_), static_cast<long long>(acked_),
               static_cast<long long>(queued_acks_), static_cast<long long>(finals_),
               static_cast<long long>(errors_), static_cast<long long>(r["lost"].get<std::int64_t>()),
               static_cast<long long>(duplicates_));
  std::fprintf(stderr, "  throughput %.0f finals/s  (measured messages: %lld sent, %lld final)\n",
               r["throughput"].get<double>(), static_cast<long long>(measured_sent_),
               static_cast<long long>(measured_finals_));
  std::fprintf(stderr,
               "  latency ms: p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  mean %.3f\n",
               l["p50"].get<double>(), l["p90"].get<double>(), l["p99"].get<double>(),
               l["p999"].get<double>(), l["max"].get<double>(), l["mean"].get<double>());
  std::fprintf(stderr, "  loadgen CPU %.0f%% of one core", r["loadgenCpuPct"].get<double>());
  if (r.contains("gatewayCpuPct")) {
    std::fprintf(stderr, ", gateway CPU %.0f%% of one core", r["gatewayCpuPct"].get<double>());
  }
  if (r.contains("gatewayRunqueueWaitPct")) {
    std::fprintf(stderr, " (+%.0f%% runnable but waiting for a CPU)",
                 r["gatewayRunqueueWaitPct"].get<double>());
  }
  if (r.contains("machineCpuBusyPct")) {
    std::fprintf(stderr, "; machine busy %.0f%% of %d00%%, load avg at start %s",
                 r["machineCpuBusyPct"].get<double>(), r["nproc"].get<int>(),
                 loadavg_at_start_.substr(0, 14).c_str());
  }
  std::fprintf(stderr, "\n");
  for (const auto& e : error_samples_) std::fprintf(stderr, "  error: %s\n", e.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"drawbridge_loadgen: WebSocket chat.send load generator for drawbridge"};
  app.add_option("--url", o.url, "Gateway WebSocket URL (ws://127.0.0.1:PORT)");
  app.add_option("--token", o.token, "Gateway auth token")->required();
  app.add_option("--connections,-c", o.connections, "Connections (one chat session each)")
      ->check(CLI::Range(1, 20000));
  app.add_option("--messages,-n", o.messages, "Measured messages in total (instead of --duration)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--duration,-d", o.duration_s, "Measured window in seconds (default 10)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--rate,-r", o.rate, "Messages/s over all connections; 0 = closed loop")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--inflight,-k", o.inflight, "Closed loop: outstanding messages per connection")
      ->check(CLI::Range(1, 10000));
  app.add_option("--warmup,-w", o.warmup_s, "Warm-up seconds before measuring")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--grace", o.grace_s, "Seconds to wait for outstanding finals after sending")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--connect-timeout", o.connect_timeout_s, "Seconds to set up a connection");
  app.add_option("--message-bytes", o.message_bytes, "Length of each chat message")
      ->check(CLI::Range(1, 1 << 20));
  app.add_flag("--allow-loss", o.allow_loss,
               "Exit 0 even when finals are lost or duplicated or errors occurred");
  app.add_flag("--full-parse", o.full_parse,
               "Parse every frame with nlohmann::json instead of the fast scanner");
  app.add_option("--server-pid", o.server_pid, "Report this process's CPU use over the window");
  app.add_option("--json", o.json_out, "Also write the JSON report to this file");
  app.add_option("--session-prefix", o.session_prefix, "Prefix of the session keys");
  app.add_option("--max-outstanding", o.max_outstanding,
                 "Open loop: skip a due message when this many are unanswered");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 64;
  }
  if (o.messages <= 0 && o.duration_s <= 0) o.duration_s = 10;
  LoadGen lg(o);
  return lg.run();
}
