// drawbridge_restart_probe: measures in-process restarts of a running gateway from outside,
// one restart at a time (bench/restart.sh drives it; see docs/BENCHMARKS.md).
//
//   --mode turn   restart latency after the last reply: per run, send a chat.send to a slow
//                 echo agent (delayMs ~200), request a restart over RPC (gateway.restart.request
//                 {delayMs: 0}) while the turn runs, wait for the final reply, the `shutdown`
//                 event and the close (1012), reconnect, and read `status`.lastRestart
//                 (afterLastReplyMs: last reply delivered -> teardown begins, measured inside the
//                 gateway; durationMs; startMs). The client's own view is reported too: final
//                 event -> shutdown event. At the end, the session's transcript must hold
//                 exactly one reply per run.
//   --mode idle   in-process restart of an idle gateway: per run, read the generation from
//                 /metrics, send SIGUSR1 to --server-pid and poll GET /readyz in a tight loop
//                 (a fresh loopback connection per poll). The restart is over at the first 200
//                 that belongs to the new generation: a 200 after a 503 was seen, or, when the
//                 polls missed the 503 window, a 200 followed by /metrics showing the generation
//                 incremented. Then `status`.lastRestart gives the gateway's own durationMs.
//
// One JSON object per run on stdout, a human line per run on stderr. Exit status: 0 ok, 1 a
// run failed (timeout, wrong generation, reply missing or duplicated), 64 usage.
// Only Boost.Beast, nlohmann_json and CLI11: no drawbridge code.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <nlohmann/json.hpp>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using Millis = std::chrono::milliseconds;
using nlohmann::json;

namespace {

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// ---- HTTP with plain sockets: one request per connection, as cheap as a poll can be -------

struct HttpResult {
  int status = 0;  // 0: no answer (refused, reset, timeout)
  std::string body;
};

HttpResult http_get(int port, const std::string& path, int timeout_ms = 2000) {
  HttpResult out;
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return out;
  timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return out;
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  const std::string req =
      "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
    ::close(fd);
    return out;
  }
  std::string resp;
  char buf[8192];
  std::size_t header_end = std::string::npos, content_length = std::string::npos;
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    resp.append(buf, static_cast<std::size_t>(n));
    if (header_end == std::string::npos) {
      header_end = resp.find("\r\n\r\n");
      if (header_end != std::string::npos) {
        std::string head = resp.substr(0, header_end);
        for (auto& ch : head) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        if (auto p = head.find("content-length:"); p != std::string::npos) {
          content_length = std::stoul(head.substr(p + 15));
        }
      }
    }
    if (header_end != std::string::npos && content_length != std::string::npos &&
        resp.size() >= header_end + 4 + content_length) {
      break;
    }
  }
  ::close(fd);
  if (resp.starts_with("HTTP/1.1 ") && resp.size() >= 12) {
    out.status = std::atoi(resp.substr(9, 3).c_str());
    if (header_end != std::string::npos) out.body = resp.substr(header_end + 4);
  }
  return out;
}

// The value of an unlabelled sample in /metrics; -1 when absent.
double metric(const std::string& text, const std::string& name) {
  std::size_t p = 0;
  while ((p = text.find(name + " ", p)) != std::string::npos) {
    if (p == 0 || text[p - 1] == '\n') return std::atof(text.c_str() + p + name.size() + 1);
    p += name.size();
  }
  return -1;
}

// ---- A blocking WebSocket client (async Beast operations, each run to completion) ----------

class Ws {
 public:
  struct Frame {
    bool ok = false;         // a text frame was read
    std::string text;
    json msg;
    Clock::time_point at;    // when it was read
    int close_code = 0;      // the gateway closed (ok false)
    std::string error;
  };

  explicit Ws(int port) : port_(port), ws_(io_) {}

  // TCP connect, upgrade, connect.challenge, connect. Empty on success; else why (and
  // `retryable` says whether the gateway asked to come back).
  std::string open(const std::string& token, Millis timeout, bool& retryable) {
    retryable = true;
    tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), static_cast<std::uint16_t>(port_));
    auto ec = run([&](auto h) { beast::get_lowest_layer(ws_).async_connect(ep, h); }, timeout);
    if (ec) return "connect: " + ec.message();
    beast::error_code ignored;
    beast::get_lowest_layer(ws_).socket().set_option(tcp::no_delay(true), ignored);
    ec = run([&](auto h) { ws_.async_handshake("127.0.0.1:" + std::to_string(port_), "/", h); },
             timeout);
    if (ec) return "websocket handshake: " + ec.message();
    ws_.read_message_max(64 * 1024 * 1024);
    ws_.text(true);
    json connect = {{"type", "req"},
                    {"id", "connect"},
                    {"method", "connect"},
                    {"params",
                     {{"minProtocol", 4},
                      {"maxProtocol", 4},
                      {"client",
                       {{"id", "drawbridge-restart-probe"},
                        {"version", "1"},
                        {"platform", "linux"},
                        {"mode", "test"}}},
                      {"role", "operator"},
                      {"scopes", {"operator.admin"}},
                      {"auth", {{"token", token}}}}}};
    if (!write(connect.dump(), timeout)) return "write connect: " + last_error_;
    auto res = response("connect", timeout);
    if (!res) return "no connect response: " + last_error_;
    if (!res->value("ok", false)) {
      const auto& e = (*res)["error"];
      retryable = e.is_object() && e.value("retryable", false);
      return "connect refused: " + res->dump();
    }
    return {};
  }

  bool write(const std::string& text, Millis timeout) {
    auto ec = run([&](auto h) { ws_.async_write(asio::buffer(text), h); }, timeout);
    if (ec) last_error_ = ec.message();
    return !ec;
  }

  Frame read(Millis timeout) {
    Frame f;
    buffer_.clear();
    auto ec = run([&](auto h) { ws_.async_read(buffer_, h); }, timeout);
    f.at = Clock::now();
    if (ec) {
      if (ec == websocket::error::closed) f.close_code = ws_.reason().code;
      f.error = ec.message();
      last_error_ = f.error;
      closed_ = true;
      return f;
    }
    f.ok = true;
    f.text = beast::buffers_to_string(buffer_.data());
    f.msg = json::parse(f.text, nullptr, false);
    return f;
  }

  // Reads until the response `id`; events meanwhile go to events().
  std::optional<json> response(const std::string& id, Millis timeout) {
    const auto deadline = Clock::now() + timeout;
    while (!closed_) {
      const auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now());
      if (left.count() <= 0) {
        last_error_ = "timeout waiting for " + id;
        return std::nullopt;
      }
      Frame f = read(left);
      if (!f.ok) return std::nullopt;
      if (f.msg.is_object() && f.msg.value("type", "") == "res" && f.msg.value("id", "") == id) {
        return f.msg;
      }
      events_.push_back(std::move(f));
    }
    return std::nullopt;
  }

  std::optional<json> request(const std::string& method, const json& params, Millis timeout) {
    const std::string id = "r" + std::to_string(++next_id_);
    json req = {{"type", "req"}, {"id", id}, {"method", method}, {"params", params}};
    if (!write(req.dump(), timeout)) return std::nullopt;
    return response(id, timeout);
  }

  std::vector<Frame>& events() { return events_; }
  const std::string& last_error() const { return last_error_; }
  bool closed() const { return closed_; }

 private:
  // Starts one asynchronous operation and runs the loop until it completes; the tcp_stream's
  // expiry bounds it (on expiry the operation completes with a timeout error).
  template <class Start>
  beast::error_code run(Start start, Millis timeout) {
    beast::get_lowest_layer(ws_).expires_after(timeout);
    std::optional<beast::error_code> result;
    start([&](beast::error_code ec, auto&&...) { result = ec; });
    io_.restart();
    while (!result && io_.run_one()) {
    }
    beast::get_lowest_layer(ws_).expires_never();
    return result.value_or(asio::error::operation_aborted);
  }

  int port_;
  asio::io_context io_;
  websocket::stream<beast::tcp_stream> ws_;
  beast::flat_buffer buffer_;
  std::vector<Frame> events_;
  std::string last_error_;
  bool closed_ = false;
  int next_id_ = 0;
};

struct Options {
  int port = 0;
  std::string token;
  int server_pid = 0;
  std::string mode;
  int runs = 20;
  int timeout_ms = 15000;
  std::string session;
};

// Connects, retrying while the gateway refuses (restarting) or is not listening, until the
// deadline. Returns nullptr on failure (why in `why`).
std::unique_ptr<Ws> connect_retrying(const Options& o, Clock::time_point deadline,
                                     std::string& why, int& attempts) {
  attempts = 0;
  for (;;) {
    ++attempts;
    auto ws = std::make_unique<Ws>(o.port);
    bool retryable = true;
    why = ws->open(o.token, Millis(3000), retryable);
    if (why.empty()) return ws;
    if (!retryable || Clock::now() >= deadline) return nullptr;
    std::this_thread::sleep_for(Millis(1));
  }
}

std::optional<json> status_payload(Ws& ws, std::string& why) {
  auto r = ws.request("status", json::object(), Millis(5000));
  if (!r || !r->value("ok", false) || !r->contains("payload")) {
    why = r ? r->dump() : ws.last_error();
    return std::nullopt;
  }
  return (*r)["payload"];
}

json num_or_null(const json& obj, const char* key) {
  if (obj.is_object() && obj.contains(key) && obj[key].is_number()) return obj[key];
  return nullptr;
}

// ---- --mode turn ---------------------------------------------------------------------------

int mode_turn(const Options& o, const std::string& tag) {
  int failures = 0;
  std::vector<std::string> keys;
  const std::string session = o.session.empty() ? "restart-probe-" + tag : o.session;
  for (int run = 1; run <= o.runs; ++run) {
    const auto deadline = Clock::now() + Millis(o.timeout_ms);
    json out = {{"mode", "turn"}, {"run", run}};
    auto fail = [&](const std::string& why) {
      out["error"] = why;
      std::cout << out.dump() << std::endl;
      std::fprintf(stderr, "run %2d: FAILED: %s\n", run, why.c_str());
      ++failures;
    };
    std::string why;
    int attempts = 0;
    auto ws = connect_retrying(o, deadline, why, attempts);
    if (!ws) {
      fail("cannot connect: " + why);
      continue;
    }
    auto st = status_payload(*ws, why);
    if (!st) {
      fail("status: " + why);
      continue;
    }
    const int g0 = st->value("generation", 0);
    const std::string key = "probe-" + tag + "-" + std::to_string(run);
    keys.push_back(key);
    const auto t_send = Clock::now();
    auto ack = ws->request("chat.send",
                           {{"sessionKey", session},
                            {"message", "restart probe " + std::to_string(run)},
                            {"idempotencyKey", key}},
                           Millis(5000));
    if (!ack || !ack->value("ok", false)) {
      fail("chat.send: " + (ack ? ack->dump() : ws->last_error()));
      continue;
    }
    const auto t_ack = Clock::now();
    auto rr = ws->request("gateway.restart.request",
                          {{"reason", "bench: restart during a turn"}, {"delayMs", 0}},
                          Millis(5000));
    const auto t_requested = Clock::now();
    if (!rr || !rr->value("ok", false)) {
      fail("gateway.restart.request: " + (rr ? rr->dump() : ws->last_error()));
      continue;
    }
    // The reply, the shutdown event, then the close.
    std::optional<Clock::time_point> t_final, t_shutdown;
    int finals = 0, close_code = 0;
    Clock::time_point t_close{};
    auto look = [&](const Ws::Frame& f) {
      if (!f.msg.is_object() || f.msg.value("type", "") != "event") return;
      const std::string ev = f.msg.value("event", "");
      const auto& p = f.msg.contains("payload") ? f.msg["payload"] : json();
      if (ev == "chat" && p.is_object() && p.value("runId", "") == key &&
          p.value("state", "") == "final") {
        ++finals;
        if (!t_final) t_final = f.at;
      } else if (ev == "shutdown" && !t_shutdown) {
        t_shutdown = f.at;
      }
    };
    for (auto& f : ws->events()) look(f);
    while (!ws->closed()) {
      const auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now());
      if (left.count() <= 0) break;
      auto f = ws->read(left);
      if (!f.ok) {
        close_code = f.close_code;
        t_close = f.at;
        break;
      }
      look(f);
    }
    if (!ws->closed()) {
      fail("the gateway did not close the connection within " + std::to_string(o.timeout_ms) +
           " ms");
      continue;
    }
    ws.reset();
    auto ws2 = connect_retrying(o, deadline, why, attempts);
    const auto t_back = Clock::now();
    if (!ws2) {
      fail("cannot reconnect after the restart: " + why);
      continue;
    }
    st = status_payload(*ws2, why);
    if (!st) {
      fail("status after the restart: " + why);
      continue;
    }
    const auto& lr = (*st)["lastRestart"];
    out["generationBefore"] = g0;
    out["generation"] = st->value("generation", 0);
    out["lastRestart"] = lr;
    out["afterLastReplyMs"] = num_or_null(lr, "afterLastReplyMs");
    out["durationMs"] = num_or_null(lr, "durationMs");
    out["startMs"] = num_or_null(lr, "startMs");
    out["interrupted"] = lr.is_object() ? lr.value("interrupted", false) : false;
    out["ackMs"] = ms_between(t_send, t_ack);
    out["restartRequestMs"] = ms_between(t_ack, t_requested);
    out["sendToFinalMs"] = t_final ? json(ms_between(t_send, *t_final)) : json(nullptr);
    out["clientFinalToShutdownMs"] =
        t_final && t_shutdown ? json(ms_between(*t_final, *t_shutdown)) : json(nullptr);
    out["closeToReconnectedMs"] = ms_between(t_close, t_back);
    out["reconnectAttempts"] = attempts;
    out["closeCode"] = close_code;
    out["finals"] = finals;
    std::string problem;
    if (finals != 1) problem += "finals " + std::to_string(finals) + "; ";
    if (!t_shutdown) problem += "no shutdown event; ";
    if (t_final && t_shutdown && *t_shutdown < *t_final) problem += "shutdown before the final; ";
    if (close_code != 1012) problem += "close code " + std::to_string(close_code) + "; ";
    if (st->value("generation", 0) != g0 + 1) problem += "generation did not go up by one; ";
    if (!lr.is_object() || lr.value("generation", 0) != g0 + 1) problem += "lastRestart is not this restart; ";
    if (out["afterLastReplyMs"].is_null()) problem += "no afterLastReplyMs; ";
    if (!problem.empty()) out["problem"] = problem;
    std::cout << out.dump() << std::endl;
    std::fprintf(stderr,
                 "run %2d: afterLastReplyMs %s  durationMs %s  startMs %s  (client: send->final "
                 "%.1f ms, final->shutdown event %.3f ms, close->reconnected %.1f ms, close %d)%s%s\n",
                 run, out["afterLastReplyMs"].dump().c_str(), out["durationMs"].dump().c_str(),
                 out["startMs"].dump().c_str(),
                 out["sendToFinalMs"].is_number() ? out["sendToFinalMs"].get<double>() : -1.0,
                 out["clientFinalToShutdownMs"].is_number()
                     ? out["clientFinalToShutdownMs"].get<double>()
                     : -1.0,
                 ms_between(t_close, t_back), close_code, problem.empty() ? "" : "  PROBLEM: ",
                 problem.c_str());
    if (!problem.empty()) ++failures;
  }
  // Every run's message answered exactly once.
  std::string why;
  int attempts = 0;
  auto ws = connect_retrying(o, Clock::now() + Millis(o.timeout_ms), why, attempts);
  json summary = {{"mode", "turn"}, {"summary", true}, {"runs", o.runs}, {"failures", failures}};
  if (ws) {
    auto h = ws->request("chat.history", {{"sessionKey", session}, {"limit", 1000}}, Millis(5000));
    if (h && h->value("ok", false)) {
      int ok = 0, bad = 0;
      for (const auto& key : keys) {
        int users = 0, replies = 0;
        for (const auto& m : (*h)["payload"]["messages"]) {
          if (!m.contains("__openclaw") || m["__openclaw"].value("runId", "") != key) continue;
          if (m.value("role", "") == "user") ++users;
          if (m.value("role", "") == "assistant") ++replies;
        }
        (users == 1 && replies == 1) ? ++ok : ++bad;
      }
      summary["historyOk"] = ok;
      summary["historyBad"] = bad;
      if (bad > 0) ++failures;
    } else {
      summary["historyError"] = h ? h->dump() : ws->last_error();
      ++failures;
    }
  } else {
    summary["historyError"] = why;
    ++failures;
  }
  summary["failures"] = failures;
  std::cout << summary.dump() << std::endl;
  std::fprintf(stderr, "history: %s\n", summary.dump().c_str());
  return failures == 0 ? 0 : 1;
}

// ---- --mode idle ---------------------------------------------------------------------------

int mode_idle(const Options& o) {
  int failures = 0;
  for (int run = 1; run <= o.runs; ++run) {
    json out = {{"mode", "idle"}, {"run", run}};
    auto fail = [&](const std::string& why) {
      out["error"] = why;
      std::cout << out.dump() << std::endl;
      std::fprintf(stderr, "run %2d: FAILED: %s\n", run, why.c_str());
      ++failures;
    };
    // Ready and idle, and the generation now.
    auto deadline = Clock::now() + Millis(o.timeout_ms);
    while (http_get(o.port, "/readyz").status != 200 && Clock::now() < deadline) {
      std::this_thread::sleep_for(Millis(1));
    }
    auto m = http_get(o.port, "/metrics");
    const double g0 = metric(m.body, "drawbridge_generation");
    if (m.status != 200 || g0 < 1) {
      fail("cannot read drawbridge_generation from /metrics (HTTP " + std::to_string(m.status) +
           ")");
      continue;
    }
    int polls = 0, n503 = 0, nfail = 0, n200_old = 0;
    std::optional<Clock::time_point> t_first_503, t_ready;
    bool confirmed_by_metrics = false;
    const auto t0 = Clock::now();
    if (::kill(o.server_pid, SIGUSR1) != 0) {
      fail("kill(SIGUSR1) failed");
      break;
    }
    deadline = t0 + Millis(o.timeout_ms);
    while (Clock::now() < deadline) {
      auto r = http_get(o.port, "/readyz");
      const auto at = Clock::now();
      ++polls;
      if (r.status == 503) {
        ++n503;
        if (!t_first_503) t_first_503 = at;
      } else if (r.status == 0) {
        ++nfail;
      } else if (r.status == 200) {
        if (t_first_503) {
          t_ready = at;
          break;
        }
        // No 503 seen: the drain may not have begun yet, or the polls missed it.
        auto mm = http_get(o.port, "/metrics");
        if (metric(mm.body, "drawbridge_generation") > g0) {
          t_ready = at;
          confirmed_by_metrics = true;
          break;
        }
        ++n200_old;
      }
    }
    if (!t_ready) {
      fail("no /readyz 200 of a new generation within " + std::to_string(o.timeout_ms) + " ms");
      continue;
    }
    std::string why;
    int attempts = 0;
    auto ws = connect_retrying(o, Clock::now() + Millis(o.timeout_ms), why, attempts);
    std::optional<json> st;
    if (ws) st = status_payload(*ws, why);
    if (!st) {
      fail("status after the restart: " + why);
      continue;
    }
    const auto& lr = (*st)["lastRestart"];
    out["generationBefore"] = g0;
    out["generation"] = st->value("generation", 0);
    out["requestToReadyMs"] = ms_between(t0, *t_ready);
    out["requestToFirst503Ms"] = t_first_503 ? json(ms_between(t0, *t_first_503)) : json(nullptr);
    out["polls"] = polls;
    out["polls503"] = n503;
    out["pollsFailed"] = nfail;
    out["polls200Old"] = n200_old;
    out["missed503"] = confirmed_by_metrics;
    out["durationMs"] = num_or_null(lr, "durationMs");
    out["startMs"] = num_or_null(lr, "startMs");
    out["lastRestart"] = lr;
    std::string problem;
    if (st->value("generation", 0) != static_cast<int>(g0) + 1) {
      problem += "generation " + std::to_string(st->value("generation", 0)) + " after " +
                 std::to_string(static_cast<int>(g0)) + "; ";
    }
    if (!lr.is_object() || lr.value("source", "") != "signal") problem += "lastRestart.source is not signal; ";
    if (!problem.empty()) out["problem"] = problem;
    std::cout << out.dump() << std::endl;
    std::fprintf(stderr,
                 "run %2d: SIGUSR1 -> /readyz 200 (new generation) %7.2f ms  first 503 at %s ms  "
                 "polls %d (503: %d, failed: %d)%s  lastRestart.durationMs %s startMs %s%s%s\n",
                 run, ms_between(t0, *t_ready),
                 t_first_503 ? std::to_string(ms_between(t0, *t_first_503)).c_str() : "-", polls,
                 n503, nfail, confirmed_by_metrics ? " 503 missed: generation from /metrics" : "",
                 out["durationMs"].dump().c_str(), out["startMs"].dump().c_str(),
                 problem.empty() ? "" : "  PROBLEM: ", problem.c_str());
    if (!problem.empty()) ++failures;
  }
  return failures == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"drawbridge_restart_probe: measures in-process restarts of a running gateway"};
  app.add_option("--port", o.port, "Gateway port on 127.0.0.1")->required();
  app.add_option("--token", o.token, "Gateway auth token")->required();
  app.add_option("--server-pid", o.server_pid, "Gateway PID (SIGUSR1 in --mode idle)");
  app.add_option("--mode", o.mode, "turn: restart during a reply; idle: SIGUSR1 when idle")
      ->required()
      ->check(CLI::IsMember({"turn", "idle"}));
  app.add_option("--runs,-n", o.runs, "Restarts to measure")->check(CLI::Range(1, 100000));
  app.add_option("--timeout-ms", o.timeout_ms, "Bound on each run")->check(CLI::Range(100, 600000));
  app.add_option("--session", o.session, "Session key (--mode turn; default: a fresh one)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 64;
  }
  if (o.mode == "idle" && o.server_pid <= 0) {
    std::cerr << "--mode idle needs --server-pid\n";
    return 64;
  }
  ::signal(SIGPIPE, SIG_IGN);
  char tag[16];
  std::snprintf(tag, sizeof tag, "%08x", static_cast<unsigned>(std::random_device{}()));
  return o.mode == "turn" ? mode_turn(o, tag) : mode_idle(o);
}
