// drawbridge_restart_probe: measures restarts of a gateway from outside, one restart at a time
// (bench/restart.sh drives turn and idle, bench/reexec.sh drives reexec; see docs/BENCHMARKS.md).
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
//   --mode reexec re-exec restarts (SIGUSR2, no supervisor): the probe starts the gateway itself
//                 (--binary, --config, --data-dir; DRAWBRIDGE_SUPERVISOR=none; output appended
//                 to --log) and makes itself a child subreaper, so that each successor, the
//                 old process's child, is reparented to the probe when the old one exits. Per
//                 run: SIGUSR2 to the current process, then (a) its exit, seen on a pidfd and
//                 reaped (exit code must be 0), and (b) the first `status` answered by another
//                 pid (a fresh WebSocket per attempt, no pause while refused or answered by the
//                 old one); that pid must report inheritedSocket and cleanStart, be in its own
//                 session and be ours now. Meanwhile --load-threads threads open fresh
//                 connections, each one `GET /healthz`, as fast as they go; refused connects,
//                 resets, EOF before the answer, timeouts and non-200 answers are counted
//                 apart (target: none). --chat-every-ms adds a light chat load on one WebSocket
//                 (reconnecting; each message must be answered exactly once). At the end every
//                 process it started, directly or by hand-off, is stopped by pid (--pid-file
//                 names the current one for a caller's cleanup). One run every --interval-ms.
//
// One JSON object per run on stdout (reexec: then a summary object), a human line per run on
// stderr. Exit status: 0 ok, 1 a run failed (timeout, wrong generation, reply missing or
// duplicated; reexec: a failed load connection, a bad exit or hand-off), 64 usage.
// Only Boost.Beast, nlohmann_json and CLI11: no drawbridge code.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <functional>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <nlohmann/json.hpp>

#include "ws_rpc.h"

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using Millis = std::chrono::milliseconds;
using nlohmann::json;

extern char** environ;

using bench_ws::Ws;

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

// ---- --mode reexec -------------------------------------------------------------------------

// What one load connection ended with. Each kind is counted on its own.
enum class Outcome { ok, refused, connect_error, reset, eof, timeout, non200 };

const char* to_string(Outcome o) {
  switch (o) {
    case Outcome::ok:
      return "ok";
    case Outcome::refused:
      return "refused";
    case Outcome::connect_error:
      return "connectError";
    case Outcome::reset:
      return "reset";
    case Outcome::eof:
      return "eof";
    case Outcome::timeout:
      return "timeout";
    case Outcome::non200:
      return "non200";
  }
  return "?";
}

constexpr int kOutcomes = 7;

struct Attempt {
  Outcome outcome = Outcome::ok;
  int err = 0;     // errno of the failed call
  int status = 0;  // HTTP status when one was read
};

// One GET on a fresh connection, told apart by how it ended: a refused connect, another connect
// failure, a reset or EOF before the whole answer, a timeout, a status other than 200.
Attempt get_once(int port, const char* path, int timeout_ms) {
  Attempt a;
  auto failed = [&a](Outcome o) {
    a.outcome = o;
    a.err = errno;
    return a;
  };
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return failed(Outcome::connect_error);
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    if (errno == ECONNREFUSED) return failed(Outcome::refused);
    // SO_SNDTIMEO bounds connect(); it then fails with EINPROGRESS.
    if (errno == EINPROGRESS || errno == ETIMEDOUT) return failed(Outcome::timeout);
    return failed(Outcome::connect_error);
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  const std::string req =
      std::string("GET ") + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
    return failed(errno == EAGAIN ? Outcome::timeout : Outcome::reset);
  }
  std::string resp;
  char buf[4096];
  std::size_t header_end = std::string::npos, content_length = std::string::npos;
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return failed(errno == EAGAIN || errno == EWOULDBLOCK ? Outcome::timeout : Outcome::reset);
    }
    if (n == 0) break;
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
  // An answer is a status line and its headers, and the body when a length was given.
  const bool whole = header_end != std::string::npos &&
                     (content_length == std::string::npos ||
                      resp.size() >= header_end + 4 + content_length);
  if (!whole || !resp.starts_with("HTTP/1.1 ") || resp.size() < 12) {
    a.outcome = Outcome::eof;
    return a;
  }
  a.status = std::atoi(resp.substr(9, 3).c_str());
  a.outcome = a.status == 200 ? Outcome::ok : Outcome::non200;
  return a;
}

volatile std::sig_atomic_t g_stop = 0;

void on_stop_signal(int) { g_stop = 1; }

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double r = p * static_cast<double>(v.size() - 1);
  const auto lo = static_cast<std::size_t>(r);
  const std::size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (r - static_cast<double>(lo));
}

json stats(const std::vector<double>& v) {
  if (v.empty()) return {{"n", 0}};
  return {{"n", v.size()},
          {"min", *std::min_element(v.begin(), v.end())},
          {"p50", percentile(v, 0.5)},
          {"p90", percentile(v, 0.9)},
          {"max", *std::max_element(v.begin(), v.end())}};
}

struct ReexecOptions {
  std::string binary;
  std::string config;
  std::string data_dir;
  std::string log;
  std::string pid_file;
  int interval_ms = 1000;
  int load_threads = 2;
  int chat_every_ms = 0;
  int exec_baseline = 0;
};

std::vector<char*> c_strings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (auto& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// Our environment without anything that would make the gateway think it is supervised or
// handed a socket, plus DRAWBRIDGE_SUPERVISOR=none: a SIGUSR2 then always re-execs.
std::vector<std::string> gateway_environment() {
  static const char* const kDropped[] = {
      "NOTIFY_SOCKET",  "INVOCATION_ID",        "XPC_SERVICE_NAME",  "LAUNCH_JOB_LABEL",
      "LISTEN_FDS",     "LISTEN_PID",           "LISTEN_FDNAMES",    "WATCHDOG_USEC",
      "WATCHDOG_PID",   "DRAWBRIDGE_READY_FD",  "DRAWBRIDGE_RESTART_MODE",
      "DRAWBRIDGE_SUPERVISOR", "DRAWBRIDGE_PREDECESSOR_PID"};
  std::vector<std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    const std::string_view kv(*e);
    const auto name = kv.substr(0, kv.find('='));
    if (std::none_of(std::begin(kDropped), std::end(kDropped),
                     [&](const char* d) { return name == d; })) {
      env.emplace_back(kv);
    }
  }
  env.emplace_back("DRAWBRIDGE_SUPERVISOR=none");
  return env;
}

// posix_spawn with stdin from /dev/null and stdout + stderr appended to `out` ("" : /dev/null).
pid_t spawn(std::vector<std::string> args, std::vector<std::string> env, const std::string& out,
            std::string& why) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, out.empty() ? "/dev/null" : out.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  auto argv = c_strings(args);
  auto envp = c_strings(env);
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, args[0].c_str(), &fa, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    why = "posix_spawn " + args[0] + ": " + std::strerror(rc);
    return -1;
  }
  return pid;
}

int pidfd_open(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

// Waits (bounded) for `pid`, a child of ours, to exit; its wait status, or -1 on timeout.
int wait_child(pid_t pid, Millis timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    int st = 0;
    const pid_t r = ::waitpid(pid, &st, WNOHANG);
    if (r == pid) return st;
    if (r < 0 && errno == ECHILD) {
      // Not (yet) our child: a successor whose predecessor still runs. Gone, or wait.
      if (::kill(pid, 0) != 0) return 0;
    } else if (r < 0 && errno != EINTR) {
      return 0;
    }
    if (Clock::now() >= deadline) return -1;
    std::this_thread::sleep_for(Millis(2));
  }
}

// SIGTERM, up to 10 s, then SIGKILL; reaps it. Only for a child of ours (checked by the caller).
void stop_child(pid_t pid) {
  if (pid <= 1) return;
  ::kill(pid, SIGTERM);
  if (wait_child(pid, Millis(10000)) == -1) {
    std::fprintf(stderr, "pid %d ignored SIGTERM for 10 s: SIGKILL\n", static_cast<int>(pid));
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
  }
}

// Our children now: the gateway we started and every successor the kernel handed to us when
// its predecessor exited (we are a subreaper).
std::vector<pid_t> children() {
  std::vector<pid_t> out;
  std::error_code ec;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task", ec)) {
    std::ifstream in(task.path() / "children");
    long pid = 0;
    while (in >> pid) out.push_back(static_cast<pid_t>(pid));
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

// Stops every process we started, directly or through a hand-off, by pid.
void stop_all_children(pid_t current) {
  if (current > 0) stop_child(current);
  for (int round = 0; round < 5; ++round) {
    auto left = children();
    if (left.empty()) return;
    for (pid_t pid : left) {
      std::fprintf(stderr, "stopping a leftover child, pid %d\n", static_cast<int>(pid));
      stop_child(pid);
    }
  }
  // Zombies of load-free races (a successor reaped by nobody yet).
  while (::waitpid(-1, nullptr, WNOHANG) > 0) {
  }
}

void write_pid_file(const std::string& path, pid_t pid) {
  if (path.empty()) return;
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << pid << "\n";
  }
  std::rename(tmp.c_str(), path.c_str());
}

std::string read_from(const std::string& path, std::uintmax_t offset) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  in.seekg(static_cast<std::streamoff>(offset));
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::uintmax_t file_size(const std::string& path) {
  std::error_code ec;
  const auto n = std::filesystem::file_size(path, ec);
  return ec ? 0 : n;
}

// The number after `before` up to " ms" in the first line containing `line_has`; null if absent.
json log_ms(const std::string& text, const std::string& line_has, const std::string& before) {
  std::size_t p = text.find(line_has);
  if (p == std::string::npos) return nullptr;
  const std::size_t line_start = text.rfind('\n', p) == std::string::npos ? 0 : text.rfind('\n', p);
  const std::size_t line_end = text.find('\n', p);
  const std::string line = text.substr(line_start, line_end - line_start);
  const std::size_t q = line.find(before);
  if (q == std::string::npos) return nullptr;
  const char* start = line.c_str() + q + before.size();
  char* end = nullptr;
  const double v = std::strtod(start, &end);
  return end == start ? json(nullptr) : json(v);
}

// `status` from whichever process answers now: its payload, or nullopt (why in `why`).
std::optional<json> status_once(int port, const std::string& token, std::string& why) {
  Ws ws(port);
  bool retryable = true;
  why = ws.open(token, Millis(3000), retryable);
  if (!why.empty()) return std::nullopt;
  return status_payload(ws, why);
}

// The connection load: fresh connections, each one GET /healthz, as fast as they go.
struct Load {
  std::atomic<bool> stop{false};
  std::atomic<long> counts[kOutcomes]{};
  std::atomic<long> max_us{0};  // the longest request since it was last taken
  std::atomic<int> run{0};      // the run in progress (for the samples)
  std::atomic<std::int64_t> t0_ns{0};
  std::mutex mu;
  std::vector<json> samples;  // the first failures, with when they happened
};

void load_loop(Load& load, int port) {
  while (!load.stop && !g_stop) {
    const auto t = Clock::now();
    const Attempt a = get_once(port, "/healthz", 5000);
    const auto us =
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t).count();
    ++load.counts[static_cast<int>(a.outcome)];
    long seen = load.max_us.load();
    while (us > seen && !load.max_us.compare_exchange_weak(seen, us)) {
    }
    if (a.outcome != Outcome::ok) {
      std::lock_guard lock(load.mu);
      if (load.samples.size() < 20) {
        const double since =
            static_cast<double>(t.time_since_epoch().count() - load.t0_ns.load()) / 1e6;
        load.samples.push_back({{"run", load.run.load()},
                                {"outcome", to_string(a.outcome)},
                                {"errno", a.err != 0 ? std::strerror(a.err) : ""},
                                {"status", a.status},
                                {"startedAfterSignalMs", since}});
      }
    }
  }
}

// The light chat load: one WebSocket, a chat.send every `every_ms`, reconnecting when a
// restart closes it; every message must end up answered exactly once (chat.history).
struct ChatLoad {
  std::atomic<bool> stop{false};
  std::vector<std::string> keys;
  std::vector<double> latency_ms;  // send -> final event, for those whose final was seen
  long acked = 0, finals = 0, closed_before_final = 0, resent_answered = 0, errors = 0,
       reconnects = 0;
  std::map<std::string, long> ack_statuses;  // payload.status of the acks: started, queued, ok
};

void chat_loop(ChatLoad& chat, const Options& o, const std::string& session, int every_ms,
               const std::string& tag) {
  // What the pump thread saw of the message in flight.
  struct InFlight {
    std::mutex mu;
    std::condition_variable cv;
    std::string key, request_id;
    std::optional<json> ack;
    std::optional<Clock::time_point> final_at;
    bool closed = false;
  } in;
  auto on_frame = [&in](Ws::Frame f) {
    std::lock_guard lock(in.mu);
    if (!f.ok) {
      in.closed = true;
    } else if (f.msg.is_object() && f.msg.value("type", "") == "res" &&
               f.msg.value("id", "") == in.request_id) {
      in.ack = std::move(f.msg);
    } else if (f.msg.is_object() && f.msg.value("type", "") == "event" &&
               f.msg.value("event", "") == "chat" && f.msg.contains("payload") &&
               f.msg["payload"].is_object() && f.msg["payload"].value("runId", "") == in.key &&
               f.msg["payload"].value("state", "") == "final") {
      in.final_at = f.at;
    }
    in.cv.notify_all();
  };
  std::unique_ptr<Ws> ws;
  bool connected_once = false;
  // Connected (and pumping), or false after the deadline (or when stopping).
  auto ensure_connected = [&] {
    {
      std::lock_guard lock(in.mu);
      if (ws && !in.closed) return true;
    }
    ws.reset();
    if (chat.stop || g_stop) return false;
    std::string why;
    int attempts = 0;
    auto fresh = connect_retrying(o, Clock::now() + Millis(o.timeout_ms), why, attempts);
    if (!fresh) {
      ++chat.errors;
      return false;
    }
    if (connected_once) ++chat.reconnects;
    connected_once = true;
    {
      std::lock_guard lock(in.mu);
      in.closed = false;
    }
    ws = std::move(fresh);
    ws->pump(on_frame);
    return true;
  };
  // Waits (bounded) until `done` holds or the connection is gone.
  auto wait_for = [&](auto done, Millis timeout) {
    std::unique_lock lock(in.mu);
    in.cv.wait_for(lock, timeout, [&] { return done() || in.closed; });
    return done();
  };
  int n = 0;
  while (!chat.stop && !g_stop) {
    const std::string key = "reexec-" + tag + "-" + std::to_string(++n);
    const auto t = Clock::now();
    {
      std::lock_guard lock(in.mu);
      in.key = key;
      in.ack.reset();
      in.final_at.reset();
    }
    // A chat.send without an answer (the connection closed under it) goes again with the same
    // key on a new connection: the gateway dedupes it, so it is answered once either way.
    std::optional<json> ack;
    for (int attempt = 0; attempt < 3 && !ack && ensure_connected(); ++attempt) {
      const std::string id = "c" + std::to_string(n) + "-" + std::to_string(attempt);
      {
        std::lock_guard lock(in.mu);
        in.request_id = id;
      }
      ws->post_write(json{{"type", "req"},
                          {"id", id},
                          {"method", "chat.send"},
                          {"params",
                           {{"sessionKey", session},
                            {"message", "re-exec " + key},
                            {"idempotencyKey", key}}}}
                         .dump());
      if (wait_for([&] { return in.ack.has_value(); }, Millis(5000))) {
        std::lock_guard lock(in.mu);
        ack = in.ack;
      }
    }
    chat.keys.push_back(key);
    if (!ack || !ack->value("ok", false)) {
      ++chat.errors;
      continue;
    }
    ++chat.acked;
    if (ack->contains("payload") && (*ack)["payload"].is_object()) {
      ++chat.ack_statuses[(*ack)["payload"].value("status", "?")];
    }
    // "ok": a re-send of a message already answered; no final event follows.
    const bool answered_before = ack->contains("payload") && (*ack)["payload"].is_object() &&
                                 (*ack)["payload"].value("status", "") == "ok";
    std::optional<Clock::time_point> final_at;
    if (!answered_before && wait_for([&] { return in.final_at.has_value(); }, Millis(5000))) {
      std::lock_guard lock(in.mu);
      final_at = in.final_at;
    }
    if (final_at) {
      ++chat.finals;
      chat.latency_ms.push_back(ms_between(t, *final_at));
    } else if (answered_before) {
      ++chat.resent_answered;
    } else {
      ++chat.closed_before_final;  // the history check decides whether it was answered
    }
    const auto next = t + Millis(every_ms);
    while (!chat.stop && !g_stop && Clock::now() < next) std::this_thread::sleep_for(Millis(1));
  }
}

// Every chat message: exactly one user entry and one reply in the session's transcript.
json check_history(const Options& o, const std::string& session,
                   const std::vector<std::string>& keys) {
  std::string why;
  int attempts = 0;
  auto ws = connect_retrying(o, Clock::now() + Millis(o.timeout_ms), why, attempts);
  if (!ws) return {{"error", why}};
  auto h = ws->request("chat.history", {{"sessionKey", session}, {"limit", 1000}}, Millis(5000));
  if (!h || !h->value("ok", false)) return {{"error", h ? h->dump() : ws->last_error()}};
  int ok = 0, lost = 0, duplicated = 0;
  for (const auto& key : keys) {
    int users = 0, replies = 0;
    for (const auto& m : (*h)["payload"]["messages"]) {
      if (!m.contains("__openclaw") || m["__openclaw"].value("runId", "") != key) continue;
      if (m.value("role", "") == "user") ++users;
      if (m.value("role", "") == "assistant") ++replies;
    }
    if (users == 1 && replies == 1) {
      ++ok;
    } else if (users > 1 || replies > 1) {
      ++duplicated;
    } else {
      ++lost;
    }
  }
  return {{"messages", keys.size()}, {"ok", ok}, {"lost", lost}, {"duplicated", duplicated},
          {"truncated", keys.size() >= 500}};
}

// fork + exec + exit of the binary alone (`--version`): the floor under a process hand-off.
json exec_baseline(const ReexecOptions& r, int n) {
  std::vector<double> ms;
  for (int i = 0; i < n && !g_stop; ++i) {
    std::string why;
    const auto t = Clock::now();
    const pid_t pid = spawn({r.binary, "--version"}, gateway_environment(), "", why);
    if (pid < 0) return {{"error", why}};
    ::waitpid(pid, nullptr, 0);
    ms.push_back(ms_between(t, Clock::now()));
  }
  return stats(ms);
}

int mode_reexec(const Options& o, const ReexecOptions& r, const std::string& tag) {
  // The successor of the gateway we start is its child; when the gateway exits, the kernel
  // reparents it to us, and we can time, reap and stop it by pid.
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
    std::fprintf(stderr, "prctl(PR_SET_CHILD_SUBREAPER): %s\n", std::strerror(errno));
    return 1;
  }
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);

  if (r.exec_baseline > 0) {
    json b = {{"mode", "reexec"}, {"execBaseline", true},
              {"ms", exec_baseline(r, r.exec_baseline)}};
    std::cout << b.dump() << std::endl;
    std::fprintf(stderr, "exec baseline (%s --version, spawn -> exit): %s\n", r.binary.c_str(),
                 b["ms"].dump().c_str());
  }

  std::vector<std::string> args = {r.binary};
  if (!r.config.empty()) args.insert(args.end(), {"--config", r.config});
  args.insert(args.end(), {"run", "--port", std::to_string(o.port), "--data-dir", r.data_dir});
  std::string why;
  const auto t_spawn = Clock::now();
  pid_t current = spawn(args, gateway_environment(), r.log, why);
  if (current < 0) {
    std::fprintf(stderr, "%s\n", why.c_str());
    return 1;
  }
  write_pid_file(r.pid_file, current);
  int failures = 0;
  auto finish = [&](int rc) {
    stop_all_children(current);
    return rc;
  };

  // Up and serving: `status` answered by the process we started. That first start is a cold
  // start (fresh data folder), the reference for the hand-offs.
  double cold_start_ms = 0;
  {
    const auto deadline = Clock::now() + Millis(o.timeout_ms);
    std::optional<json> st;
    while (!g_stop && Clock::now() < deadline) {
      int ws_status = 0;
      if (::waitpid(current, &ws_status, WNOHANG) == current) {
        std::fprintf(stderr, "the gateway exited before it was ready (status 0x%x); see %s\n",
                     ws_status, r.log.c_str());
        current = -1;
        return finish(1);
      }
      st = status_once(o.port, o.token, why);
      if (st && st->value("pid", 0) == current) break;
      st.reset();
      std::this_thread::sleep_for(Millis(1));
    }
    if (!st) {
      std::fprintf(stderr, "no status from pid %d within %d ms: %s\n", static_cast<int>(current),
                   o.timeout_ms, why.c_str());
      return finish(1);
    }
    cold_start_ms = ms_between(t_spawn, Clock::now());
    std::fprintf(stderr, "gateway pid %d ready (spawn -> status answered: %.2f ms); supervisor %s\n",
                 static_cast<int>(current), cold_start_ms, st->value("supervisor", "?").c_str());
    if (st->value("supervisor", "") != "none") {
      std::fprintf(stderr, "the gateway detected a supervisor: SIGUSR2 would not re-exec\n");
      return finish(1);
    }
  }

  Load load;
  std::vector<std::thread> load_threads;
  for (int i = 0; i < r.load_threads; ++i) load_threads.emplace_back(load_loop, std::ref(load), o.port);
  ChatLoad chat;
  const std::string chat_session = "reexec-probe-" + tag;
  std::thread chat_thread;
  if (r.chat_every_ms > 0) {
    chat_thread = std::thread(chat_loop, std::ref(chat), std::cref(o), chat_session,
                              r.chat_every_ms, tag);
  }
  // Some load before the first hand-off, so that it happens under way.
  std::this_thread::sleep_for(Millis(r.load_threads > 0 || r.chat_every_ms > 0 ? 300 : 50));

  std::vector<double> to_exit, to_new, max_request;
  long before[kOutcomes];
  for (int run = 1; run <= o.runs && !g_stop; ++run) {
    json out = {{"mode", "reexec"}, {"run", run}, {"oldPid", current}};
    auto fail = [&](const std::string& what) {
      out["error"] = what;
      std::cout << out.dump() << std::endl;
      std::fprintf(stderr, "run %2d: FAILED: %s\n", run, what.c_str());
      ++failures;
    };
    const int pidfd = pidfd_open(current);
    if (pidfd < 0) {
      fail(std::string("pidfd_open: ") + std::strerror(errno));
      break;
    }
    const auto log_offset = file_size(r.log);
    for (int k = 0; k < kOutcomes; ++k) before[k] = load.counts[k].load();
    load.max_us = 0;
    load.run = run;
    const auto t0 = Clock::now();
    load.t0_ns = t0.time_since_epoch().count();
    if (::kill(current, SIGUSR2) != 0) {
      ::close(pidfd);
      fail(std::string("kill(SIGUSR2): ") + std::strerror(errno));
      break;
    }
    // (a) the old process's exit, on its pidfd (readable at exit), then reaped.
    std::optional<Clock::time_point> t_exit;
    int exit_status = -1;
    const pid_t old_pid = current;
    std::thread waiter([&] {
      const auto deadline = t0 + Millis(o.timeout_ms);
      while (!g_stop && Clock::now() < deadline) {
        pollfd p{pidfd, POLLIN, 0};
        if (::poll(&p, 1, 100) > 0) {
          t_exit = Clock::now();
          int st = 0;
          if (::waitpid(old_pid, &st, 0) == old_pid) exit_status = st;
          return;
        }
      }
    });
    // (b) the first `status` answered by another process.
    std::optional<Clock::time_point> t_new;
    std::optional<json> st;
    int attempts = 0, old_answers = 0, attempt_errors = 0;
    std::string last_why;
    while (!g_stop && Clock::now() < t0 + Millis(o.timeout_ms)) {
      ++attempts;
      auto s = status_once(o.port, o.token, last_why);
      if (!s) {
        ++attempt_errors;
        continue;
      }
      if (s->value("pid", 0) != old_pid) {
        t_new = Clock::now();
        st = std::move(s);
        break;
      }
      ++old_answers;
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    waiter.join();
    ::close(pidfd);
    const long max_us = load.max_us.load();
    json counts = json::object();
    long bad = 0;
    for (int k = 0; k < kOutcomes; ++k) {
      const long d = load.counts[k].load() - before[k];
      counts[to_string(static_cast<Outcome>(k))] = d;
      if (k != static_cast<int>(Outcome::ok)) bad += d;
    }
    if (!t_new) {
      fail("no status from a new process within " + std::to_string(o.timeout_ms) +
           " ms (last: " + last_why + ")");
      if (t_exit) current = -1;  // gone; stop_all_children finds the successor, if any
      break;
    }
    const pid_t new_pid = st->value("pid", 0);
    current = new_pid;
    write_pid_file(r.pid_file, current);
    if (!t_exit) {
      fail("pid " + std::to_string(old_pid) + " did not exit within " +
           std::to_string(o.timeout_ms) + " ms");
      stop_child(old_pid);
      break;
    }
    // Reparented to us once the old one exited: ours to reap and stop.
    const bool reparented = ::waitpid(new_pid, nullptr, WNOHANG) == 0;
    const std::string log = read_from(r.log, log_offset);
    out["newPid"] = new_pid;
    out["sigToOldExitMs"] = ms_between(t0, *t_exit);
    out["sigToNewStatusMs"] = ms_between(t0, *t_new);
    out["oldExitCode"] = WIFEXITED(exit_status) ? WEXITSTATUS(exit_status) : -1;
    out["oldKilledBy"] = WIFSIGNALED(exit_status) ? WTERMSIG(exit_status) : 0;
    out["inheritedSocket"] = st->value("inheritedSocket", false);
    out["cleanStart"] = st->value("cleanStart", false);
    out["ownSession"] = ::getsid(new_pid) == new_pid;
    out["reparented"] = reparented;
    out["statusAttempts"] = attempts;
    out["statusAnsweredByOld"] = old_answers;
    out["statusAttemptErrors"] = attempt_errors;
    out["load"] = counts;
    out["loadFailed"] = bad;
    out["maxRequestMs"] = static_cast<double>(max_us) / 1000.0;
    // The gateways' own lines: the drain, the hand-off (spawn -> "READY" on the pipe), and
    // the successor's run() -> ready.
    out["logDrainMs"] = log_ms(log, "drain finished in", "drain finished in ");
    out["logHandOffMs"] = log_ms(log, "handed over to pid", " in ");
    out["logSuccessorReadyInMs"] = log_ms(log, ", ready in ", ", ready in ");
    std::string problem;
    if (out["oldExitCode"] != 0) problem += "old process exit " + out["oldExitCode"].dump() + "; ";
    if (!out["inheritedSocket"].get<bool>()) problem += "not an inherited socket; ";
    if (!out["cleanStart"].get<bool>()) problem += "not a clean start; ";
    if (!out["ownSession"].get<bool>()) problem += "not in a session of its own; ";
    if (!reparented) problem += "not reparented to the probe; ";
    if (bad > 0) problem += std::to_string(bad) + " load connection(s) failed; ";
    if (!problem.empty()) out["problem"] = problem;
    std::cout << out.dump() << std::endl;
    std::fprintf(stderr,
                 "run %2d: pid %d -> %d  SIGUSR2 -> old exit %7.2f ms, -> status from new %7.2f "
                 "ms  (log: drain %s, hand-off %s, successor ready in %s ms)  load %s max %.1f "
                 "ms%s%s\n",
                 run, static_cast<int>(old_pid), static_cast<int>(new_pid),
                 ms_between(t0, *t_exit), ms_between(t0, *t_new), out["logDrainMs"].dump().c_str(),
                 out["logHandOffMs"].dump().c_str(), out["logSuccessorReadyInMs"].dump().c_str(),
                 counts.dump().c_str(), static_cast<double>(max_us) / 1000.0,
                 problem.empty() ? "" : "  PROBLEM: ", problem.c_str());
    if (!problem.empty()) ++failures;
    to_exit.push_back(ms_between(t0, *t_exit));
    to_new.push_back(ms_between(t0, *t_new));
    max_request.push_back(static_cast<double>(max_us) / 1000.0);
    const auto next = t0 + Millis(r.interval_ms);
    while (!g_stop && Clock::now() < next) std::this_thread::sleep_for(Millis(5));
  }
  // Some load after the last hand-off too.
  if (!g_stop) std::this_thread::sleep_for(Millis(200));
  load.stop = true;
  for (auto& t : load_threads) t.join();
  chat.stop = true;
  if (chat_thread.joinable()) chat_thread.join();

  json summary = {{"mode", "reexec"}, {"summary", true}, {"runs", to_new.size()},
                  {"runsAsked", o.runs}, {"interrupted", g_stop != 0}};
  json totals = json::object();
  long bad = 0;
  for (int k = 0; k < kOutcomes; ++k) {
    totals[to_string(static_cast<Outcome>(k))] = load.counts[k].load();
    if (k != static_cast<int>(Outcome::ok)) bad += load.counts[k].load();
  }
  summary["coldStartMs"] = cold_start_ms;
  summary["loadThreads"] = r.load_threads;
  summary["load"] = totals;
  summary["loadFailed"] = bad;
  summary["loadFailureSamples"] = load.samples;
  summary["sigToOldExitMs"] = stats(to_exit);
  summary["sigToNewStatusMs"] = stats(to_new);
  summary["maxRequestMs"] = stats(max_request);
  if (r.chat_every_ms > 0) {
    json c = {{"everyMs", r.chat_every_ms},
              {"sent", chat.keys.size()},
              {"acked", chat.acked},
              {"finals", chat.finals},
              {"noFinalSeen", chat.closed_before_final},
              {"resentAlreadyAnswered", chat.resent_answered},
              {"ackStatuses", chat.ack_statuses},
              {"errors", chat.errors},
              {"reconnects", chat.reconnects},
              {"latencyMs", stats(chat.latency_ms)}};
    c["history"] = check_history(o, chat_session, chat.keys);
    const auto& h = c["history"];
    if (!h.contains("ok") || h.value("lost", 0) != 0 || h.value("duplicated", 0) != 0) ++failures;
    summary["chat"] = c;
  }
  if (bad > 0) ++failures;
  summary["failures"] = failures;
  std::cout << summary.dump() << std::endl;
  std::fprintf(stderr, "summary: %s\n", summary.dump().c_str());
  return finish(failures == 0 && !g_stop ? 0 : 1);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"drawbridge_restart_probe: measures restarts of a gateway"};
  app.add_option("--port", o.port, "Gateway port on 127.0.0.1")->required();
  app.add_option("--token", o.token, "Gateway auth token")->required();
  app.add_option("--server-pid", o.server_pid, "Gateway PID (SIGUSR1 in --mode idle)");
  app.add_option("--mode", o.mode,
                 "turn: restart during a reply; idle: SIGUSR1 when idle; reexec: SIGUSR2 "
                 "hand-offs of a gateway the probe starts")
      ->required()
      ->check(CLI::IsMember({"turn", "idle", "reexec"}));
  app.add_option("--runs,-n", o.runs, "Restarts to measure")->check(CLI::Range(1, 100000));
  app.add_option("--timeout-ms", o.timeout_ms, "Bound on each run")->check(CLI::Range(100, 600000));
  app.add_option("--session", o.session, "Session key (--mode turn; default: a fresh one)");
  ReexecOptions r;
  app.add_option("--binary", r.binary, "reexec: the drawbridge executable to start");
  app.add_option("--config", r.config, "reexec: its config file");
  app.add_option("--data-dir", r.data_dir, "reexec: its data folder");
  app.add_option("--log", r.log, "reexec: file its output is appended to (also parsed)");
  app.add_option("--pid-file", r.pid_file, "reexec: kept naming the gateway's current pid");
  app.add_option("--interval-ms", r.interval_ms, "reexec: from one SIGUSR2 to the next")
      ->check(CLI::Range(1, 600000));
  app.add_option("--load-threads", r.load_threads, "reexec: GET /healthz connection loops (0: none)")
      ->check(CLI::Range(0, 64));
  app.add_option("--chat-every-ms", r.chat_every_ms, "reexec: a chat.send this often (0: none)")
      ->check(CLI::Range(0, 600000));
  app.add_option("--exec-baseline", r.exec_baseline,
                 "reexec: first time N spawns of `BINARY --version` (spawn -> exit)")
      ->check(CLI::Range(0, 10000));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 64;
  }
  if (o.mode == "idle" && o.server_pid <= 0) {
    std::cerr << "--mode idle needs --server-pid\n";
    return 64;
  }
  if (o.mode == "reexec" && (r.binary.empty() || r.data_dir.empty() || r.log.empty())) {
    std::cerr << "--mode reexec needs --binary, --data-dir and --log\n";
    return 64;
  }
  ::signal(SIGPIPE, SIG_IGN);
  char tag[16];
  std::snprintf(tag, sizeof tag, "%08x", static_cast<unsigned>(std::random_device{}()));
  if (o.mode == "reexec") return mode_reexec(o, r, tag);
  return o.mode == "turn" ? mode_turn(o, tag) : mode_idle(o);
}
