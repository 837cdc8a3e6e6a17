#pragma once

// Helpers of the lifecycle end-to-end tests (drain, restart): restart-ready configs, chat event
// predicates, an event tape over a raw WebSocket, and bounded waits on the log, /readyz and
// generations of another process.

#include <poll.h>
#include <sys/prctl.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <csignal>
#include <thread>

#include "e2e/harness.h"

namespace drawbridge::e2e::lifecycle {

using Clock = std::chrono::steady_clock;

inline const std::string kRestartingNotice =
    "The gateway is restarting; it will finish your reply first.";
inline const std::string kStoppingNotice =
    "The gateway is shutting down; your reply will come when it is back.";
inline const std::string kInterruptedNotice =
    "Your task was interrupted by a gateway restart. Send a message to continue.";

// The gateway's successor is its child; when the gateway exits it is reparented to us (a
// subreaper), so the test can wait for it and end it by its pid.
struct Subreaper {
  Subreaper() { ::prctl(PR_SET_CHILD_SUBREAPER, 1); }
};

// Ends a process the gateway started for us (its successor), by pid, and reaps it.
// Its exit is waited for on a pidfd (readable once it has exited), at most 10 s.
inline void stop_successor(pid_t pid) {
  if (pid <= 1) return;
  const int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  ::kill(pid, SIGTERM);
  bool exited = false;
  if (fd >= 0) {
    pollfd p{fd, POLLIN, 0};
    exited = ::poll(&p, 1, 10'000) == 1;
    ::close(fd);
  }
  if (!exited) ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);  // ECHILD when it is not ours (or reaped already): nothing to wait
}

// `config` with restarts that begin at once and no cooldown between two of them.
inline json restartable(json config) {
  config["gateway"]["restart"]["delayMs"] = 0;
  config["gateway"]["restart"]["cooldownMs"] = 0;
  return config;
}

inline std::int64_t elapsed_ms(Clock::time_point since) {
  return std::chrono::duration_cast<Millis>(Clock::now() - since).count();
}

template <typename Pred>
int find_event(const std::vector<json>& events, Pred pred) {
  for (std::size_t i = 0; i < events.size(); ++i) {
    if (pred(events[i])) return static_cast<int>(i);
  }
  return -1;
}

inline bool is_chat(const json& ev, const std::string& run_id, const std::string& state) {
  return ev.value("event", "") == "chat" && ev["payload"].value("runId", "") == run_id &&
         ev["payload"].value("state", "") == state;
}

inline bool is_shutdown(const json& ev) { return ev.value("event", "") == "shutdown"; }

// A lifecycle notice on the local channel: a final chat event of a run "notice:...".
inline bool is_notice(const json& ev) {
  return ev.value("event", "") == "chat" && ev["payload"].value("state", "") == "final" &&
         ev["payload"].value("runId", "").rfind("notice:", 0) == 0;
}

inline std::string notice_text(const json& ev) { return entry_text(ev["payload"]["message"]); }

// Notices of `session` (all sessions when empty), their texts in order.
inline std::vector<std::string> notice_texts(const std::vector<json>& events,
                                      const std::string& session = {}) {
  std::vector<std::string> out;
  for (const auto& e : events) {
    if (!is_notice(e)) continue;
    if (!session.empty() && e["payload"].value("sessionKey", "") != session) continue;
    out.push_back(notice_text(e));
  }
  return out;
}

// Events of a RawWs as the test saw them, in order: what request() kept meanwhile, then what
// wait_for() and until_close() read.
class EventTape {
 public:
  explicit EventTape(RawWs& ws) : ws_(ws) {}

  template <typename Pred>
  json wait_for(Pred pred, Millis timeout) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      const auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now());
      if (left.count() <= 0) return nullptr;
      auto ev = ws_.next_event(left);
      if (!ev) return nullptr;
      seen_.push_back(*ev);
      if (pred(*ev)) return *ev;
    }
  }

  WsFrame until_close(Millis timeout) {
    WsFrame close = ws_.read_until_close(timeout);
    for (auto& e : ws_.events()) seen_.push_back(std::move(e));
    ws_.events().clear();
    return close;
  }

  const std::vector<json>& seen() const { return seen_; }
  std::string dump() const { return json(seen_).dump(2); }

 private:
  RawWs& ws_;
  std::vector<json> seen_;
};

inline std::size_t log_count(const Gateway& gw, const std::string& needle) {
  const std::string log = gw.log();
  std::size_t n = 0;
  for (auto at = log.find(needle); at != std::string::npos; at = log.find(needle, at + 1)) ++n;
  return n;
}

inline bool wait_for_log_count(const Gateway& gw, const std::string& needle, std::size_t n,
                        Millis timeout = 5s) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (log_count(gw, needle) >= n) return true;
    if (Clock::now() >= deadline) return false;
    // The log file of another process: polled, bounded by the deadline.
    std::this_thread::sleep_for(10ms);
  }
}

// Waits (bounded) until /readyz answers `status` (and, when given, that `reason`).
inline bool wait_readyz(const Gateway& gw, int status, const std::string& reason = {},
                 Millis timeout = 5s) {
  const auto deadline = Clock::now() + timeout;
  HttpClient c(gw.port(), 1s);
  while (Clock::now() < deadline) {
    auto res = c.request("GET", "/readyz");
    if (res && res->status == status &&
        (reason.empty() || res->json_body().value("reason", "") == reason)) {
      return true;
    }
    // Readiness of another process: polled, as a load balancer would.
    std::this_thread::sleep_for(10ms);
  }
  return false;
}

inline bool wait_generation(const Gateway& gw, int n, Millis timeout = 8s) {
  return gw.wait_for_log("generation " + std::to_string(n) + " ready", timeout) &&
         wait_readyz(gw, 200, {}, 3s);
}

inline json status_of(const Gateway& gw) {
  auto c = gw.client({"operator.read"});
  return c->request("status", json::object());
}

}  // namespace drawbridge::e2e::lifecycle
