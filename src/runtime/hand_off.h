#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <nlohmann/json.hpp>

#include "core/clock.h"
#include "core/executor.h"
#include "runtime/carried_connections.h"

namespace drawbridge::runtime {

// A restart in a fresh process by hand-off (re-exec, or an update to another binary): a
// successor is started with the listening socket, and this process exits once it says it is
// ready; if it does not, it is killed and the caller restarts in this process. The outcome of
// an update is kept across the hand-off in <dataDir>/update.json (the update sentinel).
class HandOff {
 public:
  struct Hooks {
    // The gateway lock goes first: the successor takes it.
    std::function<void()> release_lock;
    // The listening socket the successor gets (fd 3).
    std::function<int()> listen_fd;
    // The successor serves (its pid, and what it reported).
    std::function<void(pid_t pid, const std::string& why)> handed_over;
    // It did not come up (it is killed and reaped already): restart in this process.
    std::function<void(const std::string& why)> failed;
  };

  struct Successor {
    std::string binary;             // empty: this binary
    std::vector<std::string> argv;  // this process's argv; empty: built from the paths below
    std::string data_dir;
    std::string config_path;
    bool update = false;  // record the outcome in the sentinel
    // Channel connections it takes over (their fds are closed here once it has them).
    std::vector<CarriedConnection> carried;
  };

  // How long a successor has to report ready before it is killed and `failed` runs.
  static constexpr std::chrono::milliseconds kReadyTimeout{10'000};

  // `io` reads the successor's ready pipe; the deadline is a timer of `executor`.
  HandOff(boost::asio::io_context& io, core::Clock& clock, core::Executor& executor,
          std::string data_dir, Hooks hooks);

  void start(const Successor& s);

  // At start: confirms an update that handed over to this process, or keeps the last outcome.
  void read_sentinel();
  const nlohmann::json& last_update() const { return last_update_; }
  const std::string& self_exe() const { return self_exe_; }

  // An update's binary as an absolute path, or why it cannot be one.
  static std::optional<std::string> executable_path(const std::string& binary,
                                                    std::string& error);

 private:
  void failed(pid_t pid, const std::string& why, bool update, const std::string& binary);
  void write_sentinel(const nlohmann::json& j);
  std::string sentinel_path() const;

  boost::asio::io_context& io_;
  core::Clock& clock_;
  core::Executor& executor_;
  std::string data_dir_;
  Hooks hooks_;
  std::string self_exe_;
  nlohmann::json last_update_ = nullptr;
};

}  // namespace drawbridge::runtime
