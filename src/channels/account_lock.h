#pragma once

#include <memory>
#include <string>

namespace drawbridge::channels {

// One poller per chat account on this machine: an flock on
// <runtime folder>/drawbridge/<name>.lock, held while the channel receives. The kernel drops it
// when the process dies, so a crashed holder never leaves it stale. The runtime folder is
// $XDG_RUNTIME_DIR (systemd's per-user /run/user/<uid>), else /tmp/drawbridge-<uid>; a
// folder that is not this user's own is not used (docs/DECISIONS.md "Telegram: one poller").
class AccountLock {
 public:
  // Takes the lock, or returns nullptr with `error` naming the holder (or what failed).
  // `name` must be a file name ([A-Za-z0-9._-]).
  static std::unique_ptr<AccountLock> acquire(const std::string& name, std::string& error);
  // The folder locks go in (created 0700 when missing), or empty with `error`.
  static std::string folder(std::string& error);
  ~AccountLock();
  AccountLock(const AccountLock&) = delete;
  AccountLock& operator=(const AccountLock&) = delete;

  const std::string& path() const { return path_; }

 private:
  AccountLock(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  std::string path_;
  int fd_ = -1;
};

}  // namespace drawbridge::channels
