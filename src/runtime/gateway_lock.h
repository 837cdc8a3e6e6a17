#pragma once

#include <memory>
#include <optional>
#include <string>

namespace drawbridge::runtime {

// One gateway per data folder: an flock on <dataDir>/gateway.lock, held for the life of the
// process (the kernel drops it when the process dies, so a crashed holder never leaves a
// stale lock). The file names the holder, {pid, startTime, port}, so the one refused can say
// who has it.
class GatewayLock {
 public:
  // Takes the lock, or returns nullptr and sets `error` to a message naming the holder.
  static std::unique_ptr<GatewayLock> acquire(const std::string& data_dir, int port,
                                              std::string& error);
  ~GatewayLock();
  GatewayLock(const GatewayLock&) = delete;
  GatewayLock& operator=(const GatewayLock&) = delete;

  // Lets go before a successor takes it (re-exec hands over without overlap).
  void release();
  const std::string& path() const { return path_; }

 private:
  GatewayLock(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  std::string path_;
  int fd_ = -1;
};

// This process's start time in clock ticks since boot (/proc/self/stat field 22): with the
// pid it identifies a process across pid reuse.
std::optional<long long> process_start_time(int pid);

}  // namespace drawbridge::runtime
