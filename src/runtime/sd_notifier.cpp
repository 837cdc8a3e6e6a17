#include "runtime/sd_notifier.h"

#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <spdlog/spdlog.h>

namespace drawbridge::runtime {

namespace {

const char* nonempty_env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : nullptr;
}

std::optional<std::uint64_t> parse_unsigned(const char* s) {
  if (s == nullptr || *s < '0' || *s > '9') return std::nullopt;
  errno = 0;
  char* end = nullptr;
  const unsigned long long v = std::strtoull(s, &end, 10);
  if (errno != 0 || *end != '\0') return std::nullopt;
  return v;
}

// One line per field: a newline inside STATUS= would start a field of its own.
std::string one_line(const std::string& s) {
  std::string out = s;
  std::replace(out.begin(), out.end(), '\n', ' ');
  return out;
}

// MONOTONIC_USEC is compared by systemd with its own CLOCK_MONOTONIC, so this is the one place
// that reads the real clock rather than the injected one.
std::uint64_t monotonic_usec() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000u +
         static_cast<std::uint64_t>(ts.tv_nsec) / 1'000u;
}

}  // namespace

SdNotifier::SdNotifier(core::Clock& clock, core::Executor& executor)
    : clock_(clock), executor_(executor) {
  const char* socket = nonempty_env("NOTIFY_SOCKET");
  if (socket == nullptr) return;
  enabled_ = true;
  socket_ = socket;

  const char* usec_text = nonempty_env("WATCHDOG_USEC");
  if (usec_text == nullptr) {
    spdlog::debug("sd_notify: NOTIFY_SOCKET={}, no watchdog", socket_);
    return;
  }
  const auto usec = parse_unsigned(usec_text);
  if (!usec || *usec == 0) {
    spdlog::warn(
        "WATCHDOG_USEC={} is not a positive number of microseconds; not pinging the "
        "systemd watchdog",
        usec_text);
    return;
  }
  // systemd names the process the watchdog is meant for; a re-exec successor inherits its
  // parent's WATCHDOG_PID unless the parent drops it.
  if (const char* pid_text = nonempty_env("WATCHDOG_PID")) {
    const auto pid = parse_unsigned(pid_text);
    if (!pid || *pid != static_cast<std::uint64_t>(::getpid())) {
      spdlog::info("WATCHDOG_PID={} is not this process ({}); not pinging the systemd watchdog",
                   pid_text, ::getpid());
      return;
    }
  }
  watchdog_interval_ = std::chrono::microseconds{static_cast<std::int64_t>(*usec / 2)};
  spdlog::debug("sd_notify: NOTIFY_SOCKET={}, watchdog ping every {} ms", socket_,
                watchdog_interval_->count() / 1000);
}

// The timer's own destructor aborts a pending wait; its handler then finds `alive_` expired.
SdNotifier::~SdNotifier() {
  alive_.reset();
  if (timer_) executor_.cancel(*timer_);
}

void SdNotifier::ready(const std::string& status) {
  if (!enabled_) return;
  send("READY=1\nSTATUS=" + one_line(status) + "\nMAINPID=" + std::to_string(::getpid()));
}

void SdNotifier::reloading(const std::string& status) {
  if (!enabled_) return;
  send("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(monotonic_usec()) +
       "\nSTATUS=" + one_line(status));
}

void SdNotifier::stopping(const std::string& status) {
  if (!enabled_) return;
  send("STOPPING=1\nSTATUS=" + one_line(status));
}

void SdNotifier::status(const std::string& status) {
  if (!enabled_) return;
  send("STATUS=" + one_line(status));
}

void SdNotifier::extend_timeout(std::chrono::microseconds usec) {
  if (!enabled_) return;
  send("EXTEND_TIMEOUT_USEC=" + std::to_string(std::max<std::int64_t>(usec.count(), 0)));
}

void SdNotifier::main_pid(pid_t pid) {
  if (!enabled_) return;
  send("MAINPID=" + std::to_string(pid));
}

bool SdNotifier::barrier(std::chrono::milliseconds timeout) {
  if (!enabled_) return true;
  const auto usec = std::chrono::duration_cast<std::chrono::microseconds>(timeout);
  const int r =
      ::sd_notify_barrier(0, static_cast<std::uint64_t>(std::max<std::int64_t>(usec.count(), 0)));
  if (r < 0) {
    spdlog::warn("sd_notify barrier on {} failed: {}", socket_, std::strerror(-r));
    return false;
  }
  return true;
}

void SdNotifier::start_watchdog() {
  if (!enabled_ || !watchdog_interval_ || watchdog_running_) return;
  watchdog_running_ = true;
  const auto generation = ++watchdog_generation_;
  send("WATCHDOG=1");
  next_ping_ = clock_.now() + ping_interval();
  schedule_ping(generation);
}

void SdNotifier::stop_watchdog() {
  if (!watchdog_running_) return;
  watchdog_running_ = false;
  ++watchdog_generation_;
  if (timer_) executor_.cancel(*timer_);
  timer_.reset();
}

core::Duration SdNotifier::ping_interval() const {
  return std::max(std::chrono::floor<core::Duration>(*watchdog_interval_), core::Duration{1});
}

void SdNotifier::schedule_ping(std::uint64_t generation) {
  const auto delay =
      std::max(std::chrono::ceil<core::Duration>(next_ping_ - clock_.now()), core::Duration{0});
  timer_ = executor_.schedule(
      delay, [this, generation, alive = std::weak_ptr<bool>(alive_)] {
        if (alive.expired() || generation != watchdog_generation_) return;
        timer_.reset();
        send("WATCHDOG=1");
        // A fixed rate, so the pings do not drift later; after a stall (the case the watchdog is
        // for) the next one is a whole interval away rather than a burst to catch up.
        const auto now = clock_.now();
        next_ping_ += ping_interval();
        if (next_ping_ <= now) next_ping_ = now + ping_interval();
        schedule_ping(generation);
      });
}

void SdNotifier::send(const std::string& message) {
  std::string logged = message;
  std::replace(logged.begin(), logged.end(), '\n', ' ');
  spdlog::debug("sd_notify: {}", logged);
  const int r = ::sd_notify(0, message.c_str());
  if (r > 0) {
    sent_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  const std::string why = r == 0 ? "NOTIFY_SOCKET is no longer set" : std::strerror(-r);
  if (!failure_reported_.exchange(true)) {
    spdlog::warn("sd_notify to {} failed: {}; later failures are logged at debug level", socket_,
                 why);
  } else {
    spdlog::debug("sd_notify to {} failed: {}", socket_, why);
  }
}

}  // namespace drawbridge::runtime
