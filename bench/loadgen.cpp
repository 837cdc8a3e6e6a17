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
//
// Restarts (--reconnect): a connection the gateway closes (1012 service restart, 1013 try
// again later) or that cannot connect is opened again after a short backoff, the handshake is
// redone, the session's history is read once (chat.history, which also subscribes the new
// connection to the session's events) to learn which replies were delivered while it was
// away, and every chat.send whose acknowledgement never came is written again with the SAME
// idempotency key (the gateway deduplicates). Messages due while a connection is down wait
// for it, stamped with their due time. A message whose reply was delivered while its
// connection was down has no latency: it is counted as `finalMissed`, not guessed.
// --restart-every S sends SIGUSR1 to --server-pid every S seconds while sending.
// --kill-every S sends SIGKILL to the gateway at a random point 0.5 S..1.5 S after it (re)started
// (bench/killloop.sh restarts it on the same port and data folder and writes its new pid to
// --server-pid-file; the next kill waits for a new pid there). --kill-max N stops killing after
// N kills and ends the sending S seconds after the last restart.
// --verify: at the end, reads every session's transcript (GET /v1/messages) and checks that
// every message sent has exactly one user entry and exactly one assistant reply.
// --verify-ws: the same check with the transcripts read over the protocol (chat.history, every
// page; bench/chat_history.h), so that it works against any gateway of the protocol (OpenClaw
// too; there --client-id gateway-client, since OpenClaw accepts only its own client ids).
// Against a gateway that sends every session's chat events to every connection (OpenClaw), an
// event counts only on its session's own connection; a final without a message (OpenClaw's
// answer to a message it queued as a follow-up turn) is not a reply: the follow-up's own final,
// with a run id of its own, is taken for the oldest such message of the session.
// --records FILE: each measured final's send time (ms since the epoch) and latency, one per line
// (bench/chaos plots them against the events it injected).
// SIGUSR2 ends the sending window now, as the end of --duration would (bench/chaos ends it so
// when its last event is done); SIGINT and SIGTERM do too, but mark the report interrupted.

#include <signal.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <deque>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <CLI/CLI.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <nlohmann/json.hpp>

#include "bench_host.h"
#include "chat_history.h"

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
namespace http = beast::http;
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
  // Restarts
  bool reconnect = false;       // reopen closed connections and re-send unacknowledged messages
  int reconnect_min_ms = 10;    // first reconnect delay (doubled per failed attempt)
  int reconnect_max_ms = 500;   // largest reconnect delay
  double give_up_s = 30;        // reconnect: stop when no connection was up for this long
  double restart_every_s = 0;   // send SIGUSR1 to server_pid this often while sending
  double kill_every_s = 0;      // send SIGKILL to the gateway about this often while sending
  int kill_max = 0;             // stop killing after this many (0: no limit)
  std::string server_pid_file;  // the current gateway pid, rewritten by whoever restarts it
  bool verify = false;          // check every session's transcript at the end
  bool verify_ws = false;       // ... read over the protocol (chat.history) instead of HTTP
  std::string client_id = "drawbridge-loadgen";  // connect.params.client.id
  std::string client_mode = "test";              // connect.params.client.mode
  std::string records_out;      // one line per measured final: send time (epoch ms), latency ms
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
double cpu_seconds_of(int pid) { return pid <= 0 ? -1 : bench_host::proc_cpu_s(pid); }

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
  enum class Kind { other, response, chat_event, shutdown, malformed } kind = Kind::other;
  std::string id;      // response: request id
  bool ok = false;     // response
  std::string status;  // response: payload.status
  std::string run_id;  // response payload.runId / chat event payload.runId
  std::string state;   // chat event: delta / final / error / aborted
  std::string error;   // response error message / chat errorMessage
  std::string session_key;  // chat event: payload.sessionKey
  bool has_message = false;  // chat event: payload.message is present
  bool retryable = false;          // response error: error.retryable
  std::int64_t retry_after_ms = 0; // response error: error.retryAfterMs / shutdown: restartExpectedMs
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
      f.retryable = j["error"].value("retryable", false);
      f.retry_after_ms = j["error"].value("retryAfterMs", std::int64_t{0});
    }
  } else if (type == "event" && j.value("event", "") == "shutdown") {
    f.kind = Frame::Kind::shutdown;
    if (j.contains("payload") && j["payload"].is_object()) {
      f.retry_after_ms = j["payload"].value("restartExpectedMs", std::int64_t{0});
      f.error = j["payload"].value("reason", "");
    }
  } else if (type == "event" && j.value("event", "") == "chat" && j.contains("payload") &&
             j["payload"].is_object()) {
    f.kind = Frame::Kind::chat_event;
    const auto& p = j["payload"];
    f.run_id = p.value("runId", "");
    f.state = p.value("state", "");
    f.error = p.value("errorMessage", "");
    f.session_key = p.value("sessionKey", "");
    f.has_message = p.contains("message") && p["message"].is_object();
  }
  return f;
}

// The members of a frame after its opening brace and, when it comes first, its "type": the
// gateway writes the envelope either with sorted keys (`{"event":..,"payload":..,"seq":..,
// "type":"event"}`, `{"id":..,"ok":..,"payload":..,"type":"res"}`) or type first
// (`{"type":"event","event":..}`, `{"type":"res","id":..}`); both give `"event":..`/`"id":..`.
std::string_view frame_rest(std::string_view text) {
  for (std::string_view lead : {std::string_view(R"({"type":"event",)"),
                                std::string_view(R"({"type":"res",)"), std::string_view("{")}) {
    if (text.starts_with(lead)) return text.substr(lead.size());
  }
  return {};
}

// A scan of the frame relying on how the gateway serializes (the envelope as above, the
// payload with sorted keys, nlohmann::json) and on the load generator's message text holding
// no JSON syntax. Falls back to a full parse for anything it does not recognise.
Frame parse_fast(std::string_view text) {
  const std::string_view rest = frame_rest(text);
  if (rest.starts_with(R"("event":"chat",)")) {
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
    if (auto sk = string_after(text, R"("sessionKey":")")) f.session_key = *sk;
    f.has_message = text.find(R"("message":{)") != std::string_view::npos;
    return f;
  }
  if (rest.starts_with(R"("event":"shutdown")")) return parse_full(text);
  if (rest.starts_with(R"("event":)")) return Frame{};  // tick, health, ...
  if (rest.starts_with(R"("id":")")) {
    auto id = string_after(rest, R"("id":")");
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
  std::uint8_t finals = 0;  // final events received (255: settled by an error)
  std::uint8_t writes = 0;  // chat.send frames written (more than 1: re-sent after a restart)
  bool acked = false;
  bool measured = false;
  bool settled = false;  // no longer waited for: a final, an error, or a reply seen elsewhere
  bool queued = false;   // in its session's backlog, to be written once connected
  Clock::time_point first_write;  // (--reconnect: for the samples of finals missed)
  bool missed = false;   // settled without a final event: the reply was delivered while away
  bool gateway_queued = false;  // its final came without a message: a follow-up turn will answer
  // --verify: transcript entries carrying this run id
  std::uint8_t user_entries = 0, assistant_entries = 0;
  bool verified = false;  // the session's transcript could be read
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
  std::string session;
  std::string end_reason;  // why it failed: "1012", "1013", "refused", "reset", ...
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
  explicit LoadGen(Options o)
      : opt_(std::move(o)), tick_(io_), signals_(io_, SIGINT, SIGTERM), end_signal_(io_, SIGUSR2) {}

  int run();

  // Called by connections.
  void on_ready(Connection& c);
  void on_setup_failed(Connection& c, const std::string& why, bool retryable = true);
  void on_dead(Connection& c, const std::string& why);
  void on_frame(Connection& c, std::string_view text);
  std::string connect_frame() const;
  const Options& opt() const { return opt_; }
  std::string host, port;

 private:
  enum class Phase { connecting, warmup, measuring, draining, done };

  // What survives a reconnect: one per connection index (= per session).
  struct SessionState {
    std::string key;                          // sessionKey
    int outstanding = 0;                      // closed loop: unsettled messages
    std::unordered_set<std::string> pending;  // written or waiting to be, not settled
    std::deque<std::string> backlog;          // to write once connected (oldest first)
    std::unique_ptr<asio::steady_timer> timer;  // reconnect
    std::unique_ptr<asio::steady_timer> retry;  // re-send after a retryable error
    Clock::time_point down_since;               // when its connection went (zero: up)
    Clock::time_point last_down;                // when its connection last went
    int backoff_ms = 0;
    bool given_up = false;
    bool reconnecting = false;
    std::uint64_t history_seq = 0;
    std::int64_t history_entries = -1;  // entries the last chat.history returned
    Clock::time_point history_at;       // when it returned
  };

  void start_load();
  void send_chat(Connection& c, Clock::time_point stamp);
  std::string new_message(int index, Clock::time_point stamp);
  void write_message(Connection& c, const std::string& key);
  void send_new(int index, Clock::time_point stamp);
  void flush_backlog(int index);
  void settle(const std::string& key, Message& m, Clock::time_point now);
  void settle_missed(const std::string& key, Message& m, Clock::time_point now, const char* how);
  void schedule_reconnect(int index);
  void reconnect_now(int index);
  void request_history(Connection& c);
  void on_history(Connection& c, std::string_view text);
  void on_tick();
  void schedule_tick();
  bool sending() const { return phase_ == Phase::warmup || phase_ == Phase::measuring; }
  void enter_measuring(Clock::time_point now);
  void stop_sending(Clock::time_point now);
  void finish();
  void verify();
  void verify_ws();
  struct VerifyRead {
    std::int64_t read = 0, unreadable = 0, truncated = 0, unexpected = 0, wrong_session = 0,
                 entries = 0, by_position = 0;
    std::vector<std::string> samples;
    Clock::time_point t0;
    const char* via = "";
  };
  void tally_verify(const VerifyRead& r);
  bool own_session(const Connection& c, const std::string& session_key) const;
  void write_records() const;
  json report() const;
  void print_human(const json& r) const;
  Connection* next_ready_connection();

  Options opt_;
  asio::io_context io_;
  asio::steady_timer tick_;
  asio::signal_set signals_;
  asio::signal_set end_signal_;  // SIGUSR2: the sending window ends now (as --duration would)
  tcp::resolver::results_type endpoints_;
  std::vector<std::shared_ptr<Connection>> conns_;
  std::vector<SessionState> sess_;
  std::unordered_map<std::string, Message> messages_;
  std::string tag_;
  std::string text_;
  std::mt19937 rng_{std::random_device{}()};
  Phase phase_ = Phase::connecting;
  int ready_ = 0, setup_failed_ = 0;
  std::string first_setup_error_;
  std::size_t rr_ = 0;
  std::uint64_t seq_ = 0;
  Clock::time_point t_connect_start_, t_start_, t_measure_, t_stop_, t_done_, t_last_final_;
  Clock::time_point t_last_up_, next_restart_;
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
  // restarts
  std::int64_t disconnects_ = 0, reconnects_ = 0, reconnect_failures_ = 0, resent_ = 0,
               retryable_errors_ = 0, shutdown_events_ = 0, restarts_signalled_ = 0,
               missed_ = 0, missed_upgraded_ = 0, notices_ = 0, finals_after_settle_ = 0,
               history_reads_ = 0, settled_by_history_ = 0, settled_by_ack_ = 0;
  // events of other sessions (a gateway that sends every session's events to every connection);
  // finals without a message (queued as a follow-up); follow-up finals taken for their message
  // (followup_finals_: ends of follow-up runs, a reply or an error, taken for their message)
  std::int64_t foreign_events_ = 0, queued_finals_ = 0, followup_finals_ = 0;
  std::int64_t restart_expected_ms_ = -1;
  // --kill-every
  std::int64_t kills_ = 0, kill_failures_ = 0;
  int killed_pid_ = 0;            // the last pid killed; a new one in the pid file is a restart
  bool awaiting_restart_ = false;  // killed; the next kill is scheduled once it is back
  Clock::time_point next_kill_{}, last_restart_seen_{};
  std::vector<double> kill_to_restart_ms_;  // SIGKILL -> a new pid in the pid file
  Clock::time_point last_kill_{};
  int current_server_pid();
  void schedule_kill(Clock::time_point from);
  void on_kill_tick(Clock::time_point now);
  double longest_down_s_ = 0;
  std::map<std::string, std::int64_t> close_reasons_, ack_statuses_;
  std::vector<std::string> missed_samples_;
  json verify_ = nullptr;
  std::vector<double> latencies_ms_;
  // --records: (send time, latency ms) of every measured final, written at the end
  std::vector<std::pair<Clock::time_point, double>> records_;
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
    end_reason = "close " + std::to_string(ws_.reason().code);
  } else if (ec == asio::error::connection_refused) {
    end_reason = "connection refused";
  } else {
    end_reason = what + ": " + ec.message();
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
               {{"id", opt_.client_id},
                {"version", "1"},
                {"platform", "linux"},
                {"mode", opt_.client_mode}}},
              {"role", "operator"},
              {"scopes", {"operator.admin"}},
              {"auth", {{"token", opt_.token}}}}}};
  return f.dump();
}

// One GET with the bearer token on a fresh connection, bounded by `timeout` (--verify).
struct HttpGet {
  int status = 0;
  std::string body;
  std::string error;
};

HttpGet http_get(const std::string& host, const std::string& port, const std::string& target,
                 const std::string& token, std::chrono::milliseconds timeout) {
  asio::io_context io;
  beast::tcp_stream stream(io);
  HttpGet out;
  tcp::resolver resolver(io);
  beast::error_code ec;
  auto eps = resolver.resolve(host, port, ec);
  if (ec) {
    out.error = "resolve: " + ec.message();
    return out;
  }
  http::request<http::empty_body> req{http::verb::get, target, 11};
  req.set(http::field::host, host + ":" + port);
  req.set(http::field::authorization, "Bearer " + token);
  req.keep_alive(false);
  beast::flat_buffer buf;
  http::response_parser<http::string_body> parser;
  parser.body_limit(64 * 1024 * 1024);
  stream.expires_after(timeout);
  stream.async_connect(eps, [&](beast::error_code e, const tcp::endpoint&) {
    if (e) {
      out.error = "connect: " + e.message();
      return;
    }
    http::async_write(stream, req, [&](beast::error_code e, std::size_t) {
      if (e) {
        out.error = "write: " + e.message();
        return;
      }
      http::async_read(stream, buf, parser, [&](beast::error_code e, std::size_t) {
        if (e) {
          out.error = "read: " + e.message();
          return;
        }
        out.status = static_cast<int>(parser.get().result_int());
        out.body = std::move(parser.get().body());
      });
    });
  });
  io.run();
  return out;
}

std::string url_encode(std::string_view s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char ch : s) {
    if (std::isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch == '~') {
      out += static_cast<char>(ch);
    } else {
      out += '%';
      out += hex[ch >> 4];
      out += hex[ch & 15];
    }
  }
  return out;
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
  endpoints_ = resolver.resolve(host, port, ec);
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
  end_signal_.async_wait([this](beast::error_code ec, int) {
    if (ec) return;
    if (phase_ == Phase::connecting) finish();
    else stop_sending(Clock::now());
  });

  t_connect_start_ = Clock::now();
  t_last_up_ = t_connect_start_;
  conns_.reserve(static_cast<std::size_t>(opt_.connections));
  sess_.resize(static_cast<std::size_t>(opt_.connections));
  for (int i = 0; i < opt_.connections; ++i) {
    auto& s = sess_[static_cast<std::size_t>(i)];
    s.key = opt_.session_prefix + "-" + tag_ + "-" + std::to_string(i);
    s.timer = std::make_unique<asio::steady_timer>(io_);
    s.retry = std::make_unique<asio::steady_timer>(io_);
    auto c = std::make_shared<Connection>(*this, io_, i);
    c->session = s.key;
    conns_.push_back(c);
    c->start(endpoints_);
  }
  io_.run();
  if (opt_.verify_ws && sent_ > 0) verify_ws();
  else if (opt_.verify && sent_ > 0) verify();

  json r = report();
  print_human(r);
  std::cout << r.dump() << std::endl;
  if (!opt_.json_out.empty()) {
    std::ofstream out(opt_.json_out);
    out << r.dump(2) << "\n";
  }
  if (!opt_.records_out.empty()) write_records();
  if (ready_ == 0 || sent_ == 0) return 2;
  bool bad = r["lost"].get<std::int64_t>() > 0 || duplicates_ > 0;
  if (verify_.is_object()) {
    for (const char* k : {"lost", "duplicatedReplies", "duplicatedUserEntries",
                          "sessionsUnreadable", "sessionsTruncated", "wrongSession"}) {
      if (verify_.value(k, std::int64_t{0}) > 0) bad = true;
    }
  }
  if (!opt_.allow_loss && bad) return 1;
  if (errors_ > 0 && !opt_.allow_loss) return 3;
  return 0;
}

void LoadGen::on_ready(Connection& c) {
  c.state = Connection::State::ready;
  const int idx = c.index();
  auto& s = sess_[static_cast<std::size_t>(idx)];
  const auto now = Clock::now();
  s.backoff_ms = 0;
  t_last_up_ = now;
  if (!s.reconnecting) {
    ++ready_;
    if (phase_ == Phase::connecting && ready_ + setup_failed_ == opt_.connections) start_load();
    return;
  }
  // Back after a restart (or a failed first attempt).
  s.reconnecting = false;
  ++reconnects_;
  if (s.down_since != Clock::time_point{}) {
    longest_down_s_ = std::max(longest_down_s_, seconds_between(s.down_since, now));
    s.down_since = {};
  }
  if (phase_ == Phase::connecting || phase_ == Phase::done) return;
  // Replies delivered while away are in the transcript; reading it also subscribes this
  // connection to the session, so later replies arrive as events.
  if (!s.pending.empty()) request_history(c);
  flush_backlog(idx);
}

void LoadGen::on_setup_failed(Connection& c, const std::string& why, bool retryable) {
  const int idx = c.index();
  auto& s = sess_[static_cast<std::size_t>(idx)];
  if (!s.reconnecting && phase_ == Phase::connecting) {
    ++setup_failed_;
    if (first_setup_error_.empty()) first_setup_error_ = why;
  }
  if (opt_.reconnect && retryable && phase_ != Phase::done) {
    if (s.reconnecting) ++reconnect_failures_;
    ++close_reasons_[c.end_reason.empty() ? why : c.end_reason];
    if (s.down_since == Clock::time_point{}) s.down_since = Clock::now();
    schedule_reconnect(idx);
  } else {
    note_error("connection " + std::to_string(idx) + " setup: " + why);
    s.given_up = true;
    s.reconnecting = false;
  }
  if (phase_ == Phase::connecting && ready_ + setup_failed_ == opt_.connections) start_load();
}

void LoadGen::on_dead(Connection& c, const std::string& why) {
  const int idx = c.index();
  auto& s = sess_[static_cast<std::size_t>(idx)];
  if (!opt_.reconnect) {
    ++dead_conns_;
    note_error("connection " + std::to_string(idx) + " lost: " + why);
    // Its outstanding messages stay in messages_ and are counted as lost at the end.
    outstanding_total_ -= s.outstanding;
    s.outstanding = 0;
    return;
  }
  ++disconnects_;
  ++close_reasons_[c.end_reason.empty() ? why : c.end_reason];
  s.down_since = Clock::now();
  s.last_down = s.down_since;
  // Written but not acknowledged: the gateway may or may not have it. Written again, with the
  // same idempotency key, once reconnected (oldest first, before the ones never written).
  std::vector<std::pair<Clock::time_point, const std::string*>> again;
  for (const auto& key : s.pending) {
    auto& m = messages_.at(key);
    if (!m.acked && m.writes > 0 && !m.queued) again.emplace_back(m.sent, &key);
  }
  std::sort(again.begin(), again.end());
  for (auto it = again.rbegin(); it != again.rend(); ++it) {
    messages_.at(*it->second).queued = true;
    s.backlog.push_front(*it->second);
  }
  if (phase_ != Phase::done) schedule_reconnect(idx);
}

void LoadGen::schedule_reconnect(int idx) {
  auto& s = sess_[static_cast<std::size_t>(idx)];
  s.reconnecting = true;
  if (phase_ == Phase::done) return;
  s.backoff_ms = s.backoff_ms == 0 ? opt_.reconnect_min_ms
                                   : std::min(s.backoff_ms * 2, opt_.reconnect_max_ms);
  // Jitter, so that the connections of one restart do not all knock at the same instant.
  std::uniform_int_distribution<int> jitter(0, std::max(0, s.backoff_ms / 2));
  s.timer->expires_after(std::chrono::milliseconds(s.backoff_ms + jitter(rng_)));
  s.timer->async_wait([this, idx](beast::error_code ec) {
    if (ec || phase_ == Phase::done) return;
    reconnect_now(idx);
  });
}

void LoadGen::reconnect_now(int idx) {
  auto& s = sess_[static_cast<std::size_t>(idx)];
  if (phase_ == Phase::draining && s.pending.empty()) {
    s.reconnecting = false;  // nothing left to send or wait for on this session
    return;
  }
  auto c = std::make_shared<Connection>(*this, io_, idx);
  c->session = s.key;
  conns_[static_cast<std::size_t>(idx)] = c;
  c->start(endpoints_);
}

void LoadGen::request_history(Connection& c) {
  auto& s = sess_[static_cast<std::size_t>(c.index())];
  // The unanswered messages are the newest ones: a short tail is enough.
  const auto limit = std::min<std::size_t>(1000, 2 * s.pending.size() + 10);
  json f = {{"type", "req"},
            {"id", "h-" + std::to_string(c.index()) + "-" + std::to_string(++s.history_seq)},
            {"method", "chat.history"},
            {"params", {{"sessionKey", s.key}, {"limit", limit}}}};
  ++history_reads_;
  c.send_text(f.dump());
}

void LoadGen::on_history(Connection& c, std::string_view text) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.value("ok", false) || !j.contains("payload") ||
      !j["payload"].contains("messages") || !j["payload"]["messages"].is_array()) {
    note_error("chat.history failed: " + std::string(text.substr(0, 160)));
    return;
  }
  const auto now = Clock::now();
  auto& s = sess_[static_cast<std::size_t>(c.index())];
  s.history_entries = static_cast<std::int64_t>(j["payload"]["messages"].size());
  s.history_at = now;
  std::vector<bench_history::Entry> entries;
  for (const auto& e : j["payload"]["messages"]) entries.push_back(bench_history::parse_entry(e));
  const auto owners = bench_history::attribute(
      entries, [this](const std::string& k) { return messages_.count(k) > 0; });
  for (std::size_t i = 0; i < entries.size(); ++i) {
    if (entries[i].role != "assistant" || owners[i].key.empty()) continue;
    const std::string& run = owners[i].key;
    auto it = messages_.find(run);
    if (it == messages_.end() || it->second.settled) continue;
    // Answered while this session had no connection: no final event will come for it (or it
    // comes late, and then it counts as a final after all).
    ++settled_by_history_;
    settle_missed(run, it->second, now, "its reply was in the transcript after reconnecting");
  }
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
              << (opt_.reconnect ? "); they keep trying" : "); continuing with ")
              << (opt_.reconnect ? "" : std::to_string(ready_)) << "\n";
  }
  t_start_ = Clock::now();
  next_restart_ = t_start_ + std::chrono::duration_cast<Clock::duration>(
                                 std::chrono::duration<double>(opt_.restart_every_s));
  if (opt_.kill_every_s > 0) schedule_kill(t_start_);
  phase_ = Phase::warmup;
  if (opt_.warmup_s <= 0) enter_measuring(t_start_);
  if (opt_.rate <= 0) {
    for (int i = 0; i < opt_.connections; ++i) {
      for (int k = 0; k < opt_.inflight; ++k) send_new(i, Clock::now());
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

void LoadGen::send_chat(Connection& c, Clock::time_point stamp) { send_new(c.index(), stamp); }

std::string LoadGen::new_message(int idx, Clock::time_point stamp) {
  auto& s = sess_[static_cast<std::size_t>(idx)];
  std::string key = tag_ + "-" + std::to_string(idx) + "-" + std::to_string(++seq_);
  Message m;
  m.sent = stamp;
  m.conn = static_cast<std::uint32_t>(idx);
  m.measured = phase_ == Phase::measuring;
  messages_.emplace(key, m);
  s.pending.insert(key);
  ++sent_;
  ++s.outstanding;
  ++outstanding_total_;
  if (m.measured) {
    ++measured_sent_;
    if (opt_.messages > 0 && measured_sent_ >= opt_.messages) stop_sending(Clock::now());
  }
  return key;
}

void LoadGen::write_message(Connection& c, const std::string& key) {
  auto& m = messages_.at(key);
  if (m.writes < 255) ++m.writes;
  if (m.writes == 1) m.first_write = Clock::now();
  if (m.writes > 1) ++resent_;
  const std::string& session = sess_[static_cast<std::size_t>(c.index())].key;
  std::string frame;
  frame.reserve(160 + key.size() * 2 + session.size() + text_.size());
  frame += R"({"type":"req","id":")";
  frame += key;
  frame += R"(","method":"chat.send","params":{"sessionKey":")";
  frame += session;
  frame += R"(","message":")";
  frame += text_;
  frame += R"(","idempotencyKey":")";
  frame += key;
  frame += R"("}})";
  c.send_text(std::move(frame));
}

// A new message for session `idx`: written now, or (--reconnect) when its connection is back.
void LoadGen::send_new(int idx, Clock::time_point stamp) {
  auto& c = *conns_[static_cast<std::size_t>(idx)];
  const bool up = c.state == Connection::State::ready;
  if (!up && !opt_.reconnect) return;
  auto& s = sess_[static_cast<std::size_t>(idx)];
  if (!up && s.given_up) return;
  std::string key = new_message(idx, stamp);
  if (up) {
    write_message(c, key);
  } else {
    messages_.at(key).queued = true;
    s.backlog.push_back(std::move(key));
  }
}

void LoadGen::flush_backlog(int idx) {
  auto& s = sess_[static_cast<std::size_t>(idx)];
  auto& c = *conns_[static_cast<std::size_t>(idx)];
  while (c.state == Connection::State::ready && !s.backlog.empty()) {
    std::string key = std::move(s.backlog.front());
    s.backlog.pop_front();
    auto it = messages_.find(key);
    if (it == messages_.end()) continue;
    it->second.queued = false;
    if (it->second.settled || it->second.acked) continue;
    write_message(c, key);
  }
}

void LoadGen::settle(const std::string& key, Message& m, Clock::time_point now) {
  if (m.settled) return;
  m.settled = true;
  const int idx = static_cast<int>(m.conn);
  auto& s = sess_[static_cast<std::size_t>(idx)];
  s.pending.erase(key);
  --s.outstanding;
  --outstanding_total_;
  if (opt_.rate <= 0 && sending()) send_new(idx, now);
  if (phase_ == Phase::draining && outstanding_total_ <= 0) finish();
}

void LoadGen::settle_missed(const std::string& key, Message& m, Clock::time_point now,
                            const char* how) {
  if (m.settled) return;
  m.missed = true;
  ++missed_;
  if (missed_samples_.size() < 8) {
    const auto& s = sess_[m.conn];
    std::string when = "never written";
    if (m.writes > 0 && s.last_down != Clock::time_point{}) {
      const double ms =
          std::chrono::duration<double, std::milli>(s.last_down - m.first_write).count();
      char buf[96];
      std::snprintf(buf, sizeof buf, "first written %.1f ms before its connection last ended",
                    ms);
      when = buf;
    }
    std::string hist = "no chat.history since";
    if (s.history_entries >= 0 && s.history_at > s.last_down) {
      char buf[120];
      std::snprintf(buf, sizeof buf, "chat.history %.1f ms after it ended returned %lld entries",
                    std::chrono::duration<double, std::milli>(s.history_at - s.last_down).count(),
                    static_cast<long long>(s.history_entries));
      hist = buf;
    }
    const char* ack = m.writes > 1 ? "not before its connection ended (re-sent)"
                      : m.acked    ? "yes"
                                   : "no";
    missed_samples_.push_back(key + ": " + when + ", acknowledged " + ack + ", written " +
                              std::to_string(m.writes) + "x, " + hist + "; " + how);
  }
  settle(key, m, now);
}

void LoadGen::on_frame(Connection& c, std::string_view text) {
  if (frame_rest(text).starts_with(R"("id":"h-)")) return on_history(c, text);
  Frame f = opt_.full_parse ? parse_full(text) : parse_fast(text);
  const auto now = Clock::now();
  switch (f.kind) {
    case Frame::Kind::other:
      return;
    case Frame::Kind::malformed:
      note_error("malformed frame: " + std::string(text.substr(0, 120)));
      return;
    case Frame::Kind::shutdown:
      ++shutdown_events_;
      restart_expected_ms_ = f.retry_after_ms;
      return;
    case Frame::Kind::response: {
      if (f.id == "connect") {
        if (!f.ok) {
          c.end_reason = f.retryable ? "connect refused (retryable)" : "connect refused";
          c.close();
          on_setup_failed(c, "connect refused: " + f.error, f.retryable);
          return;
        }
        on_ready(c);
        return;
      }
      auto it = messages_.find(f.id);
      if (!f.ok) {
        if (opt_.reconnect && f.retryable && it != messages_.end() && !it->second.settled) {
          // The gateway could not take it now (a restart): written again, same key, soon.
          ++retryable_errors_;
          auto& s = sess_[static_cast<std::size_t>(c.index())];
          if (!it->second.queued) {
            it->second.queued = true;
            s.backlog.push_back(f.id);
          }
          const auto delay = std::clamp<std::int64_t>(f.retry_after_ms, opt_.reconnect_min_ms,
                                                      opt_.reconnect_max_ms);
          s.retry->expires_after(std::chrono::milliseconds(delay));
          s.retry->async_wait([this, idx = c.index()](beast::error_code ec) {
            if (ec || phase_ == Phase::done) return;
            flush_backlog(idx);
          });
          return;
        }
        note_error("chat.send " + f.id + " failed: " + f.error);
        if (it != messages_.end() && !it->second.settled) {
          // No final will come: stop waiting for it, but it stays "sent without a final".
          it->second.finals = 255;  // marks "settled by an error"
          settle(f.id, it->second, now);
        }
        return;
      }
      if (it == messages_.end()) return;
      Message& m = it->second;
      ++ack_statuses_[f.status];
      if (!m.acked) {
        m.acked = true;
        ++acked_;
        if (f.status == "queued") ++queued_acks_;
      }
      if (!f.run_id.empty() && f.run_id != f.id) {
        note_error("chat.send " + f.id + " answered runId " + f.run_id + " (expected the key)");
      }
      if (!m.settled) {
        if (f.status == "ok") {
          // A re-sent message the gateway had already answered (while we were away).
          ++settled_by_ack_;
          settle_missed(f.id, m, now, "its re-send was acknowledged \"ok\" (already answered)");
        } else if (f.status == "dropped" || f.status == "timeout" || f.status == "error") {
          note_error("chat.send " + f.id + " acknowledged with status " + f.status);
          m.finals = 255;
          settle(f.id, m, now);
        }
      }
      return;
    }
    case Frame::Kind::chat_event: {
      if (f.state == "delta") {
        ++deltas_;
        return;
      }
      auto it = messages_.find(f.run_id);
      if (it != messages_.end() && it->second.conn != static_cast<std::uint32_t>(c.index())) {
        ++foreign_events_;  // another session's run, sent to every connection
        return;
      }
      const bool ends = f.state == "final" || f.state == "error" || f.state == "aborted";
      if (it == messages_.end() && ends && !f.session_key.empty()) {
        if (!own_session(c, f.session_key)) {
          ++foreign_events_;
          return;
        }
        // A follow-up turn's own run: its end (a reply, an error) is that of the oldest message
        // of this session that the gateway queued (its final came without a message).
        Message* oldest = nullptr;
        std::string oldest_key;
        for (const auto& k : sess_[static_cast<std::size_t>(c.index())].pending) {
          auto& m = messages_.at(k);
          if (m.gateway_queued && !m.settled && (!oldest || m.sent < oldest->sent)) {
            oldest = &m;
            oldest_key = k;
          }
        }
        if (oldest && (f.state != "final" || f.has_message) && !f.run_id.starts_with("notice:")) {
          ++followup_finals_;
          oldest->gateway_queued = false;
          it = messages_.find(oldest_key);
        }
      }
      if (it != messages_.end() && f.state == "final" && !f.has_message) {
        ++queued_finals_;  // queued as a follow-up turn: not a reply
        it->second.gateway_queued = true;
        return;
      }
      if (f.state == "error" || f.state == "aborted") {
        note_error("run " + f.run_id + " ended " + f.state + ": " + f.error);
        if (it != messages_.end() && !it->second.settled) {
          it->second.finals = 255;
          settle(it->first, it->second, now);
        }
        return;
      }
      if (f.state != "final") return;
      if (it == messages_.end()) {
        // Lifecycle notices ("the gateway is restarting...") are runs of their own.
        if (f.run_id.starts_with("notice:")) ++notices_;
        else ++unknown_finals_;
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
      t_last_final_ = now;
      if (phase_ == Phase::measuring || phase_ == Phase::draining) {
        if (phase_ == Phase::measuring || opt_.messages > 0) ++window_finals_;
      }
      if (m.measured) {
        ++measured_finals_;
        latencies_ms_.push_back(std::chrono::duration<double, std::milli>(now - m.sent).count());
        if (!opt_.records_out.empty()) records_.emplace_back(m.sent, latencies_ms_.back());
      }
      if (m.settled) {
        if (m.missed) {
          // Seen in the transcript first, then its event came after all: a final with latency.
          m.missed = false;
          --missed_;
          ++missed_upgraded_;
        } else {
          ++finals_after_settle_;
        }
        return;
      }
      settle(it->first, m, now);
      return;
    }
  }
}

bool LoadGen::own_session(const Connection& c, const std::string& session_key) const {
  const std::string& mine = sess_[static_cast<std::size_t>(c.index())].key;
  // OpenClaw names a session by its canonical key, "agent:<id>:<key>".
  return session_key == mine ||
         (session_key.size() > mine.size() && session_key.ends_with(mine) &&
          session_key[session_key.size() - mine.size() - 1] == ':');
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
  if (sending() && opt_.kill_every_s > 0) on_kill_tick(now);
  if (sending() && opt_.restart_every_s > 0 && opt_.server_pid > 0 && now >= next_restart_) {
    if (::kill(opt_.server_pid, SIGUSR1) == 0) ++restarts_signalled_;
    else note_error("kill(" + std::to_string(opt_.server_pid) + ", SIGUSR1) failed");
    next_restart_ += std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double>(opt_.restart_every_s));
  }
  if (sending() && opt_.rate > 0) {
    // Open loop: message i is due at t_start + i / rate and stamped with that time, so
    // floor(elapsed * rate) + 1 messages are due now (message 0 at once). (Before this was
    // "+ 0": each message went out 1 / rate after its stamp, adding 1 / rate to every latency.)
    const double elapsed = seconds_between(t_start_, now);
    const auto due = static_cast<std::int64_t>(std::floor(elapsed * opt_.rate)) + 1;
    while (sending() && sent_ + skipped_ < due) {
      const auto stamp = t_start_ + std::chrono::duration_cast<Clock::duration>(
                                        std::chrono::duration<double>((sent_ + skipped_) /
                                                                      opt_.rate));
      if (outstanding_total_ >= opt_.max_outstanding) {
        ++skipped_;
        continue;
      }
      if (opt_.reconnect) {
        // Each session gets every N-th message; one whose connection is down waits for it.
        send_new(static_cast<int>(rr_++ % conns_.size()), stamp);
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
  if (opt_.reconnect) {
    bool any = false;
    for (const auto& c : conns_) {
      if (c->state == Connection::State::ready) {
        any = true;
        break;
      }
    }
    if (any) {
      t_last_up_ = now;
    } else if (seconds_between(t_last_up_, now) >= opt_.give_up_s) {
      note_error("no connection for " + std::to_string(opt_.give_up_s) + " s: giving up");
      finish();
      return;
    }
  } else if (ready_ - dead_conns_ <= 0 && phase_ != Phase::connecting) {
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

int LoadGen::current_server_pid() {
  if (opt_.server_pid_file.empty()) return opt_.server_pid;
  std::ifstream in(opt_.server_pid_file);
  int pid = 0;
  in >> pid;
  return pid;
}

void LoadGen::schedule_kill(Clock::time_point from) {
  // A random point in 0.5 S..1.5 S: kills land anywhere in the message flow, not in step with it.
  std::uniform_real_distribution<double> factor(0.5, 1.5);
  next_kill_ = from + std::chrono::duration_cast<Clock::duration>(
                          std::chrono::duration<double>(opt_.kill_every_s * factor(rng_)));
}

void LoadGen::on_kill_tick(Clock::time_point now) {
  if (awaiting_restart_) {
    const int pid = current_server_pid();
    if (pid <= 0 || pid == killed_pid_) return;
    awaiting_restart_ = false;
    last_restart_seen_ = now;
    kill_to_restart_ms_.push_back(seconds_between(last_kill_, now) * 1000);
    if (opt_.kill_max > 0 && kills_ >= opt_.kill_max) {
      // The last stretch runs without kills, so the final restart serves some traffic too.
      next_kill_ = now + std::chrono::duration_cast<Clock::duration>(
                             std::chrono::duration<double>(opt_.kill_every_s));
    } else {
      schedule_kill(now);
    }
    return;
  }
  if (now < next_kill_) return;
  if (opt_.kill_max > 0 && kills_ >= opt_.kill_max) {
    stop_sending(now);
    return;
  }
  const int pid = current_server_pid();
  if (pid <= 0 || pid == killed_pid_) return;  // not restarted yet
  if (::kill(pid, SIGKILL) == 0) {
    ++kills_;
    killed_pid_ = pid;
    last_kill_ = now;
    awaiting_restart_ = true;
  } else {
    ++kill_failures_;
    note_error("kill(" + std::to_string(pid) + ", SIGKILL) failed");
    schedule_kill(now);
  }
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
  end_signal_.cancel();
  for (auto& s : sess_) {
    if (s.timer) s.timer->cancel();
    if (s.retry) s.retry->cancel();
  }
  for (auto& c : conns_) c->close();
}

// After the run: every session's transcript, read over HTTP (a connection of its own, so a
// WebSocket that the last restart closed does not matter). Each message written must have
// exactly one user entry and exactly one assistant entry carrying its run id (= its key).
void LoadGen::write_records() const {
  // The steady clock's records on the wall clock, so that another process's timeline (the
  // chaos harness's injected events) lines up with them.
  const auto steady_now = Clock::now();
  const double epoch_now_ms =
      std::chrono::duration<double, std::milli>(
          std::chrono::system_clock::now().time_since_epoch())
          .count();
  std::ofstream out(opt_.records_out);
  char line[64];
  for (const auto& [sent, latency_ms] : records_) {
    const double at =
        epoch_now_ms - std::chrono::duration<double, std::milli>(steady_now - sent).count();
    std::snprintf(line, sizeof line, "%.1f\t%.3f\n", at, latency_ms);
    out << line;
  }
}

void LoadGen::verify() {
  VerifyRead vr;
  vr.t0 = Clock::now();
  vr.via = "GET /v1/messages";
  auto& [read, unreadable, truncated, unexpected, wrong_session, entries, by_position, samples,
         t0_unused, via_unused] = vr;
  constexpr std::size_t kLimit = 1000;  // the most GET /v1/messages returns in one page
  std::vector<std::vector<std::string>> keys(sess_.size());
  for (const auto& [key, m] : messages_) {
    if (m.writes > 0) keys[m.conn].push_back(key);
  }
  for (std::size_t i = 0; i < sess_.size(); ++i) {
    if (keys[i].empty()) continue;
    // Every page, newest first (`before` = the previous page's nextBefore), so that a long
    // run's transcripts are read whole; at most 10,000 pages a session.
    std::int64_t before = 0;
    bool failed = false, more = true;
    for (int page = 0; more && page < 10000; ++page) {
      const std::string target = "/v1/messages?sessionKey=" + url_encode(sess_[i].key) +
                                 "&limit=" + std::to_string(kLimit) +
                                 (before > 0 ? "&before=" + std::to_string(before) : "");
      HttpGet g;
      // Bounded retries: the gateway may be finishing a restart.
      const auto deadline = Clock::now() + std::chrono::seconds(15);
      for (;;) {
        g = http_get(host, port, target, opt_.token, std::chrono::milliseconds(3000));
        if (g.status == 200 || Clock::now() >= deadline) break;
        usleep(20000);
      }
      json j = g.status == 200 ? json::parse(g.body, nullptr, false) : json();
      if (g.status != 200 || j.is_discarded() || !j.contains("messages") ||
          !j["messages"].is_array()) {
        failed = true;
        if (samples.size() < 3) {
          samples.push_back(sess_[i].key + ": HTTP " + std::to_string(g.status) + " " + g.error +
                            " " + g.body.substr(0, 120));
        }
        break;
      }
      more = j.value("hasMore", false);
      before = j.value("nextBefore", std::int64_t{0});
      if (more && before <= 0) {
        ++truncated;  // says there is more but not where: what was read is all we check
        more = false;
      }
      for (const auto& e : j["messages"]) {
        ++entries;
        if (!e.is_object()) continue;
        const std::string role = e.value("role", "");
        std::string run;
        if (auto oc = e.find("__openclaw"); oc != e.end() && oc->is_object()) {
          run = oc->value("runId", "");
        }
        auto it = messages_.find(run);
        if (it == messages_.end()) {
          ++unexpected;
          continue;
        }
        if (it->second.conn != i) ++wrong_session;
        if (role == "user" && it->second.user_entries < 250) ++it->second.user_entries;
        if (role == "assistant" && it->second.assistant_entries < 250) {
          ++it->second.assistant_entries;
        }
      }
    }
    if (failed) {
      ++unreadable;
      continue;
    }
    ++read;
    for (const auto& k : keys[i]) messages_.at(k).verified = true;
  }
  tally_verify(vr);
}

// The same check with each transcript read over the protocol (bench/chat_history.h), on one
// connection of its own (opened again when the gateway closes it).
void LoadGen::verify_ws() {
  VerifyRead vr;
  vr.t0 = Clock::now();
  vr.via = "chat.history";
  std::vector<std::vector<std::string>> keys(sess_.size());
  for (const auto& [key, m] : messages_) {
    if (m.writes > 0) keys[m.conn].push_back(key);
  }
  auto known = [this](const std::string& k) { return messages_.count(k) > 0; };
  std::unique_ptr<bench_ws::Ws> ws;
  for (std::size_t i = 0; i < sess_.size(); ++i) {
    if (keys[i].empty()) continue;
    bench_history::Transcript t;
    // Bounded retries: the gateway may be finishing a restart.
    const auto deadline = Clock::now() + std::chrono::seconds(60);
    for (;;) {
      if (!ws) {
        ws = std::make_unique<bench_ws::Ws>(std::stoi(port), opt_.client_id, opt_.client_mode);
        if (auto why = ws->open(opt_.token, std::chrono::seconds(10)); !why.empty()) {
          t = {};
          t.error = why;
          ws.reset();
        }
      }
      if (ws) {
        t = bench_history::read(*ws, sess_[i].key, std::chrono::seconds(30));
        if (t.error.empty()) break;
        ws.reset();
      }
      if (Clock::now() >= deadline) break;
      usleep(200000);
    }
    if (!t.error.empty()) {
      ++vr.unreadable;
      if (vr.samples.size() < 3) vr.samples.push_back(sess_[i].key + ": " + t.error);
      continue;
    }
    if (t.truncated) ++vr.truncated;
    const auto owners = bench_history::attribute(t.entries, known);
    for (std::size_t k = 0; k < t.entries.size(); ++k) {
      ++vr.entries;
      const std::string& role = t.entries[k].role;
      if (owners[k].key.empty()) {
        if (role == "user" || role == "assistant") ++vr.unexpected;
        continue;
      }
      auto& m = messages_.at(owners[k].key);
      if (m.conn != i) ++vr.wrong_session;
      if (owners[k].by_position) ++vr.by_position;
      if (role == "user" && m.user_entries < 250) ++m.user_entries;
      if (role == "assistant" && m.assistant_entries < 250) ++m.assistant_entries;
    }
    ++vr.read;
    for (const auto& k : keys[i]) messages_.at(k).verified = true;
  }
  tally_verify(vr);
}

void LoadGen::tally_verify(const VerifyRead& vr) {
  const auto& [read, unreadable, truncated, unexpected, wrong_session, entries, by_position,
               samples, t0, via] = vr;
  std::int64_t checked = 0, ok = 0, lost = 0, lost_accepted = 0, never_accepted = 0, dup = 0,
               dup_user = 0, reply_without_user = 0, settled_here = 0, lost_after_error = 0;
  std::vector<std::string> lost_samples, dup_samples;
  for (auto& [key, m] : messages_) {
    if (m.writes == 0 || !m.verified) continue;
    ++checked;
    const int u = m.user_entries, a = m.assistant_entries;
    if (u == 1 && a == 1) ++ok;
    if (a == 0) {
      ++lost;
      if (u > 0 || m.acked) ++lost_accepted;
      else ++never_accepted;
      // The gateway told us: its run ended with an error or was aborted (finals 255).
      if (m.finals == 255) ++lost_after_error;
      if (lost_samples.size() < 5) {
        lost_samples.push_back(key + " (acked " + (m.acked ? "yes" : "no") + ", writes " +
                               std::to_string(m.writes) + ", user entries " + std::to_string(u) +
                               (m.finals == 255 ? ", its run ended in an error" : "") + ")");
      }
    }
    if (a > 1) {
      ++dup;
      if (dup_samples.size() < 5) dup_samples.push_back(key + " x" + std::to_string(a));
    }
    if (u > 1) ++dup_user;
    if (a > 0 && u == 0) ++reply_without_user;
    if (a > 0 && !m.settled) {
      // Answered, but its final event never reached us (it came while we were away).
      ++settled_here;
      settle_missed(key, m, Clock::now(), "its reply was found by --verify");
    }
  }
  verify_ = {{"sessionsRead", read},
             {"sessionsUnreadable", unreadable},
             {"sessionsTruncated", truncated},
             {"entries", entries},
             {"messagesChecked", checked},
             {"ok", ok},
             {"lost", lost},
             {"lostAccepted", lost_accepted},
             {"lostNeverAccepted", never_accepted},
             {"lostAfterAnError", lost_after_error},
             {"duplicatedReplies", dup},
             {"duplicatedUserEntries", dup_user},
             {"replyWithoutUserEntry", reply_without_user},
             {"unexpectedEntries", unexpected},
             {"wrongSession", wrong_session},
             {"finalMissedFoundHere", settled_here},
             {"via", via},
             {"repliesMatchedByPosition", by_position},
             {"lostSamples", lost_samples},
             {"duplicateSamples", dup_samples},
             {"errorSamples", samples},
             {"seconds", seconds_between(t0, Clock::now())}};
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
  std::int64_t lost = 0, errored = 0, unsent = 0;
  for (const auto& [key, m] : messages_) {
    if (!m.settled && m.writes == 0) ++unsent;
    else if (!m.settled) ++lost;
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
      {"finalMissed", missed_},
      {"notices", notices_},
      {"ackStatuses", ack_statuses_},
      {"foreignEvents", foreign_events_},
      {"queuedFinals", queued_finals_},
      {"followupFinals", followup_finals_},
  };
  if (opt_.reconnect) {
    // finalMissed: answered (seen in the transcript, or a re-send acknowledged "ok") but the
    // final event never reached us: it went out while the session had no connection. Those
    // messages have no latency. unsent: due while the connection was down, never written.
    r["unsent"] = unsent;
    r["reconnect"] = {{"restartsSignalled", restarts_signalled_},
                      {"shutdownEvents", shutdown_events_},
                      {"restartExpectedMs", restart_expected_ms_},
                      {"disconnects", disconnects_},
                      {"reconnects", reconnects_},
                      {"reconnectFailures", reconnect_failures_},
                      {"endReasons", close_reasons_},
                      {"longestDownMs", longest_down_s_ * 1000},
                      {"resentSameKey", resent_},
                      {"retryableErrors", retryable_errors_},
                      {"historyReads", history_reads_},
                      {"settledByHistory", settled_by_history_},
                      {"settledByDuplicateAck", settled_by_ack_},
                      {"missedThenFinal", missed_upgraded_},
                      {"finalMissedSamples", missed_samples_},
                      {"finalsAfterSettle", finals_after_settle_},
                      {"minDelayMs", opt_.reconnect_min_ms},
                      {"maxDelayMs", opt_.reconnect_max_ms}};
  }
  if (opt_.kill_every_s > 0) {
    auto sorted = kill_to_restart_ms_;
    std::sort(sorted.begin(), sorted.end());
    r["kill"] = {{"every", opt_.kill_every_s},
                 {"max", opt_.kill_max},
                 {"killsSent", kills_},
                 {"killFailures", kill_failures_},
                 {"restartsSeen", static_cast<std::int64_t>(kill_to_restart_ms_.size())},
                 {"killToNewPidMsMedian", sorted.empty() ? 0.0 : sorted[sorted.size() / 2]},
                 {"killToNewPidMsMax", sorted.empty() ? 0.0 : sorted.back()}};
  }
  if (verify_.is_object()) r["verify"] = verify_;
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
  if (r.contains("reconnect")) {
    const auto& rc = r["reconnect"];
    std::fprintf(stderr,
                 "  restarts: %lld SIGUSR1 sent, %lld shutdown events; %lld disconnects, %lld "
                 "reconnects (%lld failed attempts), longest down %.1f ms; %lld re-sent with the "
                 "same key, %lld retryable errors\n",
                 static_cast<long long>(rc["restartsSignalled"].get<std::int64_t>()),
                 static_cast<long long>(shutdown_events_), static_cast<long long>(disconnects_),
                 static_cast<long long>(reconnects_), static_cast<long long>(reconnect_failures_),
                 longest_down_s_ * 1000, static_cast<long long>(resent_),
                 static_cast<long long>(retryable_errors_));
    std::fprintf(stderr,
                 "  finals missed while reconnecting (answered, no latency): %lld (seen in "
                 "history %lld, duplicate ack %lld); unsent %lld\n",
                 static_cast<long long>(missed_), static_cast<long long>(settled_by_history_),
                 static_cast<long long>(settled_by_ack_),
                 static_cast<long long>(r["unsent"].get<std::int64_t>()));
    if (r.contains("kill")) {
      const auto& k = r["kill"];
      std::fprintf(stderr,
                   "  kills: %lld SIGKILL sent (%lld failed), %lld restarts seen; SIGKILL -> new "
                   "pid median %.1f ms, max %.1f ms\n",
                   static_cast<long long>(kills_), static_cast<long long>(kill_failures_),
                   static_cast<long long>(k["restartsSeen"].get<std::int64_t>()),
                   k["killToNewPidMsMedian"].get<double>(), k["killToNewPidMsMax"].get<double>());
    }
    std::string reasons;
    for (const auto& [k, v] : close_reasons_) {
      reasons += (reasons.empty() ? "" : ", ") + k + " x" + std::to_string(v);
    }
    if (!reasons.empty()) std::fprintf(stderr, "  connection ends: %s\n", reasons.c_str());
    if (foreign_events_ + queued_finals_ > 0) {
      std::fprintf(stderr,
                   "  events of other sessions ignored %lld; finals without a message (queued as "
                   "a follow-up) %lld, follow-up finals taken for their message %lld\n",
                   static_cast<long long>(foreign_events_), static_cast<long long>(queued_finals_),
                   static_cast<long long>(followup_finals_));
    }
    for (const auto& s : missed_samples_) std::fprintf(stderr, "  final missed: %s\n", s.c_str());
  }
  if (verify_.is_object()) {
    const auto& v = verify_;
    std::fprintf(stderr,
                 "  verify (transcripts of %lld sessions, %lld entries): %lld messages checked, "
                 "%lld ok, lost %lld (accepted %lld), duplicated replies %lld, duplicated user "
                 "entries %lld, unreadable sessions %lld, truncated %lld\n",
                 static_cast<long long>(v["sessionsRead"].get<std::int64_t>()),
                 static_cast<long long>(v["entries"].get<std::int64_t>()),
                 static_cast<long long>(v["messagesChecked"].get<std::int64_t>()),
                 static_cast<long long>(v["ok"].get<std::int64_t>()),
                 static_cast<long long>(v["lost"].get<std::int64_t>()),
                 static_cast<long long>(v["lostAccepted"].get<std::int64_t>()),
                 static_cast<long long>(v["duplicatedReplies"].get<std::int64_t>()),
                 static_cast<long long>(v["duplicatedUserEntries"].get<std::int64_t>()),
                 static_cast<long long>(v["sessionsUnreadable"].get<std::int64_t>()),
                 static_cast<long long>(v["sessionsTruncated"].get<std::int64_t>()));
    for (const auto& s : v["lostSamples"]) {
      std::fprintf(stderr, "  lost: %s\n", s.get<std::string>().c_str());
    }
    for (const auto& s : v["duplicateSamples"]) {
      std::fprintf(stderr, "  duplicated: %s\n", s.get<std::string>().c_str());
    }
    for (const auto& s : v["errorSamples"]) {
      std::fprintf(stderr, "  verify error: %s\n", s.get<std::string>().c_str());
    }
    std::fprintf(stderr, "  verify via %s; replies matched by their position: %lld\n",
                 v["via"].get<std::string>().c_str(),
                 static_cast<long long>(v["repliesMatchedByPosition"].get<std::int64_t>()));
  }
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
  app.add_option("--records", o.records_out,
                 "Write one line per measured final to this file: its send time (open loop: "
                 "its due time) in ms since the epoch and its latency in ms, tab-separated");
  app.add_option("--session-prefix", o.session_prefix, "Prefix of the session keys");
  app.add_option("--max-outstanding", o.max_outstanding,
                 "Open loop: skip a due message when this many are unanswered");
  app.add_flag("--reconnect", o.reconnect,
               "Survive restarts: reopen closed connections (backoff), redo the handshake, "
               "re-send unacknowledged chat.send with the same idempotency key");
  app.add_option("--reconnect-delay-ms", o.reconnect_min_ms,
                 "First reconnect delay; doubled per failed attempt (plus up to 50% jitter)")
      ->check(CLI::Range(1, 60000));
  app.add_option("--reconnect-max-ms", o.reconnect_max_ms, "Largest reconnect delay")
      ->check(CLI::Range(1, 600000));
  app.add_option("--give-up", o.give_up_s,
                 "--reconnect: stop when no connection was up for this many seconds")
      ->check(CLI::PositiveNumber);
  app.add_option("--restart-every", o.restart_every_s,
                 "Send SIGUSR1 to --server-pid every S seconds while sending")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--kill-every", o.kill_every_s,
                 "Send SIGKILL to the gateway at a random point 0.5 S..1.5 S after each (re)start "
                 "while sending (someone else restarts it; see --server-pid-file)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--kill-max", o.kill_max,
                 "--kill-every: stop after N kills; sending ends S seconds after the last restart")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--server-pid-file", o.server_pid_file,
                 "File holding the gateway's current pid (read before each kill); default: "
                 "--server-pid");
  app.add_flag("--verify", o.verify,
               "At the end, read every session's transcript (GET /v1/messages) and check one "
               "user entry and one reply per message");
  app.add_flag("--verify-ws", o.verify_ws,
               "As --verify, with the transcripts read over the protocol (chat.history, every "
               "page) on a connection of its own to 127.0.0.1: works against OpenClaw too");
  app.add_option("--client-id", o.client_id,
                 "connect.params.client.id (OpenClaw accepts only its own ids: gateway-client)")
      ->capture_default_str();
  app.add_option("--client-mode", o.client_mode, "connect.params.client.mode (e.g. backend)")
      ->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 64;
  }
  if (o.messages <= 0 && o.duration_s <= 0) o.duration_s = 10;
  if (o.restart_every_s > 0 && o.server_pid <= 0) {
    std::cerr << "--restart-every needs --server-pid\n";
    return 64;
  }
  if (o.kill_every_s > 0 && o.server_pid <= 0 && o.server_pid_file.empty()) {
    std::cerr << "--kill-every needs --server-pid or --server-pid-file\n";
    return 64;
  }
  if (o.kill_every_s > 0 && !o.reconnect) {
    std::cerr << "--kill-every needs --reconnect\n";
    return 64;
  }
  if (o.reconnect_max_ms < o.reconnect_min_ms) o.reconnect_max_ms = o.reconnect_min_ms;
  LoadGen lg(o);
  return lg.run();
}
