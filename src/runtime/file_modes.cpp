#include "runtime/file_modes.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "config/document.h"

namespace drawbridge::runtime {

namespace fs = std::filesystem;

namespace {

std::string octal(mode_t mode) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}

// Removes group and other bits from `path` when it is ours and not a symbolic link.
void tighten(const fs::path& path, std::vector<std::string>& changed) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return;
  if (st.st_uid != ::geteuid()) return;
  if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) return;
  const mode_t before = st.st_mode & 07777;
  const mode_t after = before & ~static_cast<mode_t>(077);
  if (before == after) return;
  if (::chmod(path.c_str(), after) == 0) {
    changed.push_back(path.string() + " " + octal(before) + " -> " + octal(after));
  }
}

}  // namespace

namespace {
std::atomic<int> g_started_umask{-1};
}  // namespace

mode_t restrict_umask() {
  const mode_t before = ::umask(077);
  int unset = -1;
  g_started_umask.compare_exchange_strong(unset, static_cast<int>(before));
  return static_cast<mode_t>(g_started_umask.load());
}

int started_umask() {
  return g_started_umask.load();
}

std::optional<std::string> make_private_dir(const std::string& dir) {
  if (dir.empty()) return std::nullopt;
  std::error_code ec;
  const fs::path target = fs::absolute(dir, ec);
  if (ec) return "cannot create " + dir + ": " + ec.message();
  fs::path built;
  for (const auto& part : target) {
    built /= part;
    struct stat st {};
    if (::stat(built.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) continue;
    if (::mkdir(built.c_str(), kPrivateDir) == 0 || errno == EEXIST) continue;
    return "cannot create " + built.string() + ": " + std::strerror(errno);
  }
  if (!fs::is_directory(target, ec)) return "cannot create " + dir + ": not a folder";
  return std::nullopt;
}

std::optional<std::string> write_private_file(const std::string& path, std::string_view text) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, kPrivateFile);
  if (fd < 0) return "cannot create " + path + ": " + std::strerror(errno);
  while (!text.empty()) {
    const ssize_t n = ::write(fd, text.data(), text.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      ::close(fd);
      return "cannot write " + path + ": " + std::strerror(err);
    }
    text.remove_prefix(static_cast<std::size_t>(n));
  }
  ::fsync(fd);
  ::close(fd);
  return std::nullopt;
}

std::vector<std::string> tighten_private_files(const std::string& data_dir,
                                               const std::string& config_path) {
  std::vector<std::string> changed;
  const fs::path dir(data_dir);
  tighten(dir, changed);
  for (const char* name :
       {"drawbridge.db", "drawbridge.db-wal", "drawbridge.db-shm", "drawbridge.db-journal",
        "gateway.token", "gateway.lock", "update.json"}) {
    tighten(dir / name, changed);
  }
  const fs::path diagnostics = dir / "diagnostics";
  struct stat st {};
  if (::lstat(diagnostics.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    tighten(diagnostics, changed);
    std::error_code ec;
    for (fs::directory_iterator it(diagnostics, ec), end; !ec && it != end; it.increment(ec)) {
      tighten(it->path(), changed);
    }
  }
  if (!config_path.empty()) tighten(config::last_good_path(config_path), changed);
  return changed;
}

}  // namespace drawbridge::runtime
