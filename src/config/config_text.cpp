#include "config/config_text.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "config/config.h"

namespace drawbridge::config {

namespace {

std::string kind_of(mode_t mode) {
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a file";
}

std::string too_large(std::size_t max_bytes) {
  return "larger than the limit of " + describe_bytes(max_bytes) + " for config files";
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

}  // namespace

JsonLimits config_json_limits() {
  JsonLimits limits;
  limits.max_bytes = kMaxConfigBytes;
  limits.max_depth = kMaxConfigDepth;
  limits.allow_comments = true;
  limits.reject_duplicate_keys = true;
  return limits;
}

JsonParseResult parse_config_json(std::string_view text) {
  return parse_bounded_json(text, config_json_limits());
}

TextFile read_config_text_file(const std::string& path, std::size_t max_bytes) {
  TextFile out;
  auto fail = [&](const std::string& why) {
    out.error = "cannot read " + path + ": " + why;
    return out;
  };
  // O_NONBLOCK: opening a FIFO must not wait for a writer; O_NOCTTY: a terminal must not
  // become ours. Both are checked right after, by fstat.
  int raw = -1;
  do {
    raw = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  } while (raw < 0 && errno == EINTR);
  if (raw < 0) {
    const int err = errno;
    out.exists = err != ENOENT && err != ENOTDIR;
    return fail(std::strerror(err));
  }
  out.exists = true;
  const Fd fd(raw);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return fail(std::strerror(errno));
  if (S_ISDIR(st.st_mode)) return fail(std::strerror(EISDIR));
  if (!S_ISREG(st.st_mode)) return fail("not a regular file (" + kind_of(st.st_mode) + ")");
  if (static_cast<std::uint64_t>(st.st_size) > max_bytes) return fail(too_large(max_bytes));
  // A regular file: reads block as usual (NFS may need it).
  if (const int flags = ::fcntl(fd.get(), F_GETFL); flags >= 0) {
    ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK);
  }
  std::string text;
  text.reserve(static_cast<std::size_t>(st.st_size));
  char buf[65536];
  // The size may change while we read (or be 0, as for files under /proc): the limit holds
  // for what is read, never more than one byte past it.
  while (text.size() <= max_bytes) {
    const std::size_t want = std::min(sizeof buf, max_bytes + 1 - text.size());
    const ssize_t n = ::read(fd.get(), buf, want);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(std::strerror(errno));
    }
    text.append(buf, static_cast<std::size_t>(n));
  }
  if (text.size() > max_bytes) return fail(too_large(max_bytes));
  out.text = std::move(text);
  return out;
}

std::optional<std::string> read_text_file(const std::string& path, std::string& error) {
  auto file = read_config_text_file(path);
  if (!file.text) error = std::move(file.error);
  return std::move(file.text);
}

std::optional<std::string> unfinished_json(std::string_view text) {
  const auto parsed = parse_config_json(text);
  if (parsed.ok()) return std::nullopt;
  const JsonParseError& e = *parsed.error;
  if (e.kind != JsonErrorKind::syntax && e.kind != JsonErrorKind::nul_byte) return std::nullopt;
  return e.message.starts_with("line ") ? "parse error at " + e.message
                                        : "parse error: " + e.message;
}

}  // namespace drawbridge::config
