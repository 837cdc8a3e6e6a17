#include "store/pg_listener.h"

#include <poll.h>
#include <cerrno>
#include <unistd.h>

#include <algorithm>
#include <stdexcept>

#include <spdlog/spdlog.h>

#include "store/pg.h"
#include "store/store.h"

namespace drawbridge::store {

PgListener::PgListener(std::string conninfo, std::string password,
                       std::vector<std::string> channels, Hooks hooks)
    : conninfo_(std::move(conninfo)),
      password_(std::move(password)),
      channels_(std::move(channels)),
      hooks_(std::move(hooks)) {
  for (const auto& c : channels_) {
    const bool ok = !c.empty() && std::all_of(c.begin(), c.end(), [](char ch) {
      return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_';
    });
    if (!ok) throw std::invalid_argument("not a channel name to LISTEN on: " + c);
  }
  if (::pipe(wake_) != 0) throw std::runtime_error("cannot create the listener's wake-up pipe");
  thread_ = std::thread([this] { run(); });
}

PgListener::~PgListener() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  const char b = 1;
  [[maybe_unused]] auto n = ::write(wake_[1], &b, 1);
  if (thread_.joinable()) thread_.join();
  ::close(wake_[0]);
  ::close(wake_[1]);
}

bool PgListener::wait_stop(std::chrono::milliseconds d) {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, d, [this] { return stop_.load(); });
}

void PgListener::run() {
  auto backoff = std::chrono::milliseconds(1000);
  while (!stop_) {
    const auto error = listen_once();
    if (stop_) break;
    spdlog::warn("cluster: the notice listener lost PostgreSQL ({}); connecting again in {} ms",
                 error, backoff.count());
    if (wait_stop(backoff)) break;
    backoff = std::min(backoff * 2, std::chrono::milliseconds(30000));
  }
}

std::string PgListener::listen_once() {
  try {
    pg::Connection conn(conninfo_, password_);
    for (const auto& c : channels_) conn.exec("LISTEN " + c);
    ++connections_;
    if (hooks_.on_connected) hooks_.on_connected();
    while (!stop_) {
      pollfd fds[2] = {{conn.socket(), POLLIN, 0}, {wake_[0], POLLIN, 0}};
      const int r = ::poll(fds, 2, 1000);
      if (r < 0 && errno != EINTR) return "poll failed";
      if (stop_) break;
      std::vector<Notice> got;
      for (auto& [channel, payload] : conn.take_notices()) {
        got.push_back({std::move(channel), std::move(payload)});
      }
      if (!got.empty() && hooks_.on_notices) hooks_.on_notices(std::move(got));
    }
    return {};
  } catch (const std::exception& e) {
    return e.what();
  }
}

}  // namespace drawbridge::store
