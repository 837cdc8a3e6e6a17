#pragma once

#include <atomic>
#include <functional>
#include <mutex>
#include <chrono>
#include <condition_variable>
#include <string>
#include <thread>
#include <vector>

namespace drawbridge::store {

// The receiving side of Store::notify on PostgreSQL (LISTEN): one connection and one thread of
// its own, so a notice never waits behind a group commit. The thread waits on the socket,
// hands what arrived to `on_notices` (on that thread: the caller posts it to its loop), and
// after a lost link connects again (1 s, doubling to 30 s), calling `on_connected` each time
// it listens again: notices sent meanwhile are gone, and the caller looks at the store instead.
class PgListener {
 public:
  struct Notice {
    std::string channel;
    std::string payload;
  };
  struct Hooks {
    std::function<void(std::vector<Notice>)> on_notices;
    std::function<void()> on_connected;
  };
  // `channels`: names made of [a-z0-9_] only (they are spliced into LISTEN); others throw
  // std::invalid_argument.
  PgListener(std::string conninfo, std::string password, std::vector<std::string> channels,
             Hooks hooks);
  ~PgListener();  // stops the thread (within its wake-up pipe's round trip)
  PgListener(const PgListener&) = delete;
  PgListener& operator=(const PgListener&) = delete;

  // Connections made so far (for tests and status).
  int connections() const { return connections_.load(); }

 private:
  void run();
  // Waits on the connection until it fails or stop() is asked; returns the error.
  std::string listen_once();
  bool wait_stop(std::chrono::milliseconds d);

  std::string conninfo_;
  std::string password_;
  std::vector<std::string> channels_;
  Hooks hooks_;
  int wake_[2] = {-1, -1};  // a pipe: the destructor writes to end a poll at once
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0};
  std::thread thread_;
};

}  // namespace drawbridge::store
