#include "runtime/config_watcher.h"

#include <sys/inotify.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <boost/asio/posix/stream_descriptor.hpp>
#include <spdlog/spdlog.h>

#include "config/config_text.h"

namespace drawbridge::runtime {
namespace {

// IN_MODIFY covers writers that never close (a long-lived editor); IN_ATTRIB makes `touch` a
// manual reload. The *_SELF flags are only logged: the folder itself is not what we watch for.
constexpr std::uint32_t kWatchMask = IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE |
                                     IN_DELETE | IN_MODIFY | IN_ATTRIB | IN_DELETE_SELF |
                                     IN_MOVE_SELF | IN_ONLYDIR;

std::string errno_text(int err) { return std::generic_category().message(err); }

std::string describe(std::uint32_t mask) {
  static constexpr std::pair<std::uint32_t, const char*> kNames[] = {
      {IN_MODIFY, "modify"},           {IN_ATTRIB, "attrib"},
      {IN_CLOSE_WRITE, "close_write"}, {IN_MOVED_FROM, "moved_from"},
      {IN_MOVED_TO, "moved_to"},       {IN_CREATE, "create"},
      {IN_DELETE, "delete"},           {IN_DELETE_SELF, "delete_self"},
      {IN_MOVE_SELF, "move_self"},     {IN_IGNORED, "ignored"},
      {IN_Q_OVERFLOW, "overflow"},
  };
  std::string out;
  for (const auto& [bit, name] : kNames) {
    if ((mask & bit) == 0) continue;
    if (!out.empty()) out += '|';
    out += name;
  }
  return out.empty() ? "none" : out;
}

// The file as it is now. `error` is set when it is missing, cannot be read (not a regular
// file, larger than the limit) or is not JSON yet. Text that is JSON but crosses a limit the
// config parser reports with a path (nesting depth, a repeated key) is handed over as it is:
// it will not get better by waiting.
WatchedFile read_now(const std::string& path) {
  WatchedFile out;
  auto file = config::read_config_text_file(path);
  out.exists = file.exists;
  if (!file.text) {
    out.error = file.exists ? std::move(file.error) : "missing";
    return out;
  }
  out.text = std::move(*file.text);
  // An empty file fails here too: a writer that truncated and has not written yet.
  if (auto unfinished = config::unfinished_json(out.text)) out.error = std::move(*unfinished);
  return out;
}

}  // namespace

// Handlers hold a weak_ptr to the Impl and the `session`/`arm_seq` they were started for, so
// that nothing runs after stop(), a restart, a re-arm, or destruction; the timer is cancelled
// on the executor as well, and the numbers also cover an executor whose cancel comes too late
// for a completion already queued.
struct ConfigWatcher::Impl : std::enable_shared_from_this<Impl> {
  Impl(boost::asio::io_context& io, core::Executor& executor, std::string file,
       std::function<void(const WatchedFile&)> on_change)
      : file(std::move(file)), on_change(std::move(on_change)), executor(executor), events(io) {}

  void cancel_timer() {
    if (timer) executor.cancel(*timer);
    timer.reset();
  }

  void close() {
    running = false;
    pending = false;
    ++session;
    ++arm_seq;
    cancel_timer();
    boost::system::error_code ignored;
    events.close(ignored);
  }

  void read_events() {
    // The handler owns the buffer too: a read still queued when the Impl goes away must not
    // write into freed memory.
    auto on_read = [weak = weak_from_this(), buf = buffer, s = session](
                       const boost::system::error_code& ec, std::size_t n) {
      auto self = weak.lock();
      if (!self || !self->running || s != self->session) return;
      if (ec) {
        spdlog::warn("config watcher {}: reading inotify events failed, no longer watching: {}",
                     self->file, ec.message());
        return;
      }
      self->on_events(buf->data(), n);
      self->read_events();
    };
    events.async_read_some(boost::asio::buffer(*buffer), std::move(on_read));
  }

  void on_events(const char* data, std::size_t n) {
    bool matched = false;
    std::size_t off = 0;
    while (off + sizeof(inotify_event) <= n) {
      inotify_event ev;
      std::memcpy(&ev, data + off, sizeof ev);
      const char* name_at = data + off + sizeof(inotify_event);
      off += sizeof(inotify_event) + ev.len;
      if (off > n) break;  // never from the kernel; keeps a bad length from reading past n
      const std::string_view name(name_at, ::strnlen(name_at, ev.len));

      if (ev.mask & IN_Q_OVERFLOW) {
        // Events were dropped, ours may be among them: read the file to be sure.
        spdlog::warn("config watcher {}: inotify queue overflowed, re-reading the file", file);
        ++seen;
        matched = true;
        continue;
      }
      if (ev.mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED)) {
        spdlog::warn("config watcher {}: folder {} event {}; changes there are no longer seen",
                     file, folder, describe(ev.mask));
        continue;
      }
      if (name != basename) continue;
      spdlog::debug("config watcher {}: {}", file, describe(ev.mask));
      ++seen;
      matched = true;
    }
    if (!matched) return;
    retries_left = options.retries;
    arm(options.debounce);
  }

  void arm(std::chrono::milliseconds delay) {
    const std::uint64_t seq = ++arm_seq;
    pending = true;
    cancel_timer();
    timer = executor.schedule(delay, [weak = weak_from_this(), seq] {
      auto self = weak.lock();
      if (!self || !self->running || seq != self->arm_seq) return;
      self->timer.reset();
      self->settle();
    });
  }

  void settle() {
    WatchedFile now = read_now(path);
    if (!now.error.empty()) {
      if (retries_left > 0) {
        --retries_left;
        spdlog::debug("config watcher {}: not ready ({}), {} retries left", file, now.error,
                      retries_left);
        arm(options.retry_interval);
        return;
      }
      spdlog::warn("config watcher {}: still not readable after {} retries: {}", file,
                   options.retries, now.error);
      now.text.clear();
    }
    pending = false;
    ++reads;
    // `self` in the timer handler keeps this alive even if the callback destroys the watcher.
    on_change(now);
  }

  const std::string file;
  const std::function<void(const WatchedFile&)> on_change;
  std::string path;      // absolute
  std::string folder;    // what inotify watches
  std::string basename;  // the only name whose events count
  Options options;
  core::Executor& executor;
  boost::asio::posix::stream_descriptor events;
  std::optional<core::TimerId> timer;  // the debounce or retry timer, when armed
  std::shared_ptr<std::vector<char>> buffer;
  bool running = false;
  std::uint64_t session = 0;
  std::uint64_t arm_seq = 0;
  int retries_left = 0;
  std::atomic<std::uint64_t> seen{0};
  std::uint64_t reads = 0;  // files handed to on_change
  bool pending = false;     // a read is due (debounce or retry timer armed)
};

ConfigWatcher::ConfigWatcher(boost::asio::io_context& io, core::Executor& executor,
                             std::string file, std::function<void(const WatchedFile&)> on_change)
    : impl_(std::make_shared<Impl>(io, executor, std::move(file), std::move(on_change))) {}

ConfigWatcher::~ConfigWatcher() { stop(); }

std::optional<std::string> ConfigWatcher::start(Options options) {
  Impl& s = *impl_;
  s.close();
  s.options = options;
  s.seen = 0;
  s.reads = 0;

  std::error_code ec;
  const std::filesystem::path abs = std::filesystem::absolute(s.file, ec).lexically_normal();
  if (ec) return "cannot resolve " + s.file + ": " + ec.message();
  if (!abs.has_filename()) return "cannot watch " + s.file + ": not a file name";
  s.path = abs.string();
  s.folder = abs.parent_path().string();
  s.basename = abs.filename().string();

  const int fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0) return "inotify_init1: " + errno_text(errno);
  if (::inotify_add_watch(fd, s.folder.c_str(), kWatchMask) < 0) {
    const int err = errno;
    ::close(fd);
    return "cannot watch " + s.folder + ": " + errno_text(err);
  }
  boost::system::error_code assign_error;
  s.events.assign(fd, assign_error);
  if (assign_error) {
    ::close(fd);
    return "cannot watch " + s.folder + ": " + assign_error.message();
  }

  // Room for many events; one needs at most sizeof(inotify_event) + NAME_MAX + 1.
  s.buffer = std::make_shared<std::vector<char>>(64 * 1024);
  s.running = true;
  spdlog::debug("config watcher {}: watching folder {}", s.file, s.folder);
  s.read_events();
  return std::nullopt;
}

void ConfigWatcher::set_debounce(std::chrono::milliseconds debounce) {
  impl_->options.debounce = debounce;
}

void ConfigWatcher::stop() { impl_->close(); }

std::uint64_t ConfigWatcher::events_seen() const { return impl_->seen.load(); }
std::uint64_t ConfigWatcher::reads() const { return impl_->reads; }
bool ConfigWatcher::read_pending() const { return impl_->pending; }

}  // namespace drawbridge::runtime
