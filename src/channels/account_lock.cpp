#include "channels/account_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string_view>

namespace drawbridge::channels {

namespace {

// A folder we may put locks in: a real directory (not a symlink) of this user, not writable by
// others.
bool own_folder(const std::string& path, std::string& error) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    error = path + ": " + std::strerror(errno);
    return false;
  }
  if (!S_ISDIR(st.st_mode) || st.st_uid != ::getuid() || (st.st_mode & 0022) != 0) {
    error = path + " is not a directory of this user closed to others";
    return false;
  }
  return true;
}

bool file_name(std::string_view name) {
  if (name.empty() || name.size() > 128 || name[0] == '.') return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

std::string AccountLock::folder(std::string& error) {
  std::string base;
  if (const char* xdg = std::getenv("XDG_RUNTIME_DIR"); xdg && *xdg == '/') {
    base = std::string(xdg) + "/drawbridge";
  } else {
    base = "/tmp/drawbridge-" + std::to_string(::getuid());
  }
  if (::mkdir(base.c_str(), 0700) != 0 && errno != EEXIST) {
    error = "cannot create " + base + ": " + std::strerror(errno);
    return {};
  }
  if (!own_folder(base, error)) return {};
  return base;
}

std::unique_ptr<AccountLock> AccountLock::acquire(const std::string& name, std::string& error) {
  if (!file_name(name)) {
    error = "not a lock name: " + name;
    return nullptr;
  }
  const std::string dir = folder(error);
  if (dir.empty()) return nullptr;
  const std::string path = dir + "/" + name + ".lock";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    error = "cannot open " + path + ": " + std::strerror(errno);
    return nullptr;
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    std::string holder = "another process";
    std::array<char, 32> buf{};
    const auto n = ::pread(fd, buf.data(), buf.size() - 1, 0);
    if (n > 0) {
      std::string_view text(buf.data(), static_cast<std::size_t>(n));
      const auto end = text.find_first_not_of("0123456789");
      text = text.substr(0, end);
      if (!text.empty() && text.size() < 12) holder = "process " + std::string(text);
    }
    ::close(fd);
    error = err == EWOULDBLOCK ? "held by " + holder + " (" + path + ")"
                               : "cannot lock " + path + ": " + std::strerror(err);
    return nullptr;
  }
  const std::string me = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, me.data(), me.size(), 0) < 0) {
    error = "cannot write " + path + ": " + std::strerror(errno);
    ::close(fd);
    return nullptr;
  }
  return std::unique_ptr<AccountLock>(new AccountLock(path, fd));
}

AccountLock::~AccountLock() {
  if (fd_ < 0) return;
  ::flock(fd_, LOCK_UN);
  ::close(fd_);
}

}  // namespace drawbridge::channels
