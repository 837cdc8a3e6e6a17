#include "runtime/successor.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string_view>

#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

#include "agents/child_process.h"

extern char** environ;

namespace drawbridge::runtime {

namespace asio = boost::asio;
using agents::c_strings;
using agents::make_pipe;
using agents::reap;
using agents::UniqueFd;

namespace {

constexpr int kListenFd = 3;  // SD_LISTEN_FDS_START
constexpr int kReadyFd = 4;
constexpr int kFirstOtherFd = 5;
constexpr const char* kReadyVariable = "DRAWBRIDGE_READY_FD";
constexpr std::size_t kPidDigits = 20;

// What the child reports on its error pipe when a step before exec fails.
enum class Step : int { setsid, fds, exec };

const char* describe(Step step) {
  switch (step) {
    case Step::setsid:
      return "setsid";
    case Step::fds:
      return "cannot arrange its file descriptors";
    case Step::exec:
      return "exec";
  }
  return "";
}

// Everything the child uses, prepared before fork(): between fork and exec a multi-threaded
// process may only make async-signal-safe calls (no malloc, no setenv).
struct ChildPlan {
  const char* binary = nullptr;
  std::vector<char*> argv;
  std::vector<char*> envp;
  char* pid_digits = nullptr;  // inside the LISTEN_PID=... entry, room for kPidDigits + NUL
  int listen_fd = -1;
  const int* carried = nullptr;  // carried_fds, moved to kFirstCarriedFd + i
  std::size_t carried_count = 0;
  int ready_write = -1;
  int error_write = -1;
  long max_fd = 0;  // for the close loop where close_range(2) is missing
  int umask = -1;
};

// Async-signal-safe decimal formatting.
void write_digits(char* out, long value) {
  char reversed[kPidDigits];
  std::size_t n = 0;
  do {
    reversed[n++] = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value > 0 && n < kPidDigits);
  for (std::size_t i = 0; i < n; ++i) out[i] = reversed[n - 1 - i];
  out[n] = '\0';
}

void close_fds(int first, int last, long max_fd) {
  if (first > last) return;
#ifdef SYS_close_range
  if (::syscall(SYS_close_range, static_cast<unsigned>(first), static_cast<unsigned>(last), 0) ==
      0) {
    return;
  }
#endif
  for (long fd = first; fd <= last && fd < max_fd; ++fd) ::close(static_cast<int>(fd));
}

[[noreturn]] void run_child(const ChildPlan& plan) {
  int error_fd = plan.error_write;
  auto die = [&error_fd](Step step) {
    const int message[2] = {static_cast<int>(step), errno};
    [[maybe_unused]] auto n = ::write(error_fd, message, sizeof message);
    ::_exit(127);
  };

  // Handlers of ours must not run in the child; then the mask blocked around fork() goes.
  struct sigaction default_action {};
  default_action.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) ::sigaction(sig, &default_action, nullptr);
  sigset_t empty;
  sigemptyset(&empty);
  ::sigprocmask(SIG_SETMASK, &empty, nullptr);

  if (::setsid() < 0) die(Step::setsid);

  // Every source is first moved above the targets, so that a dup2 onto 3, 4 or a carried
  // connection's number cannot clobber one still needed. F_DUPFD (and dup2) leave FD_CLOEXEC
  // off; the error pipe keeps it, so a successful exec closes it and the parent reads EOF.
  const int above = kFirstOtherFd + static_cast<int>(plan.carried_count);
  error_fd = ::fcntl(plan.error_write, F_DUPFD_CLOEXEC, above);
  if (error_fd < 0) {
    error_fd = plan.error_write;
    die(Step::fds);
  }
  const int ready = ::fcntl(plan.ready_write, F_DUPFD, above);
  if (ready < 0) die(Step::fds);
  int socket = -1;
  if (plan.listen_fd >= 0) {
    socket = ::fcntl(plan.listen_fd, F_DUPFD, above);
    if (socket < 0) die(Step::fds);
  }
  int moved[kMaxCarriedFds];
  for (std::size_t i = 0; i < plan.carried_count; ++i) {
    moved[i] = ::fcntl(plan.carried[i], F_DUPFD, above);
    if (moved[i] < 0) die(Step::fds);
  }
  if (socket >= 0) {
    if (::dup2(socket, kListenFd) < 0) die(Step::fds);
  } else {
    ::close(kListenFd);
  }
  if (::dup2(ready, kReadyFd) < 0) die(Step::fds);
  for (std::size_t i = 0; i < plan.carried_count; ++i) {
    if (::dup2(moved[i], kFirstCarriedFd + static_cast<int>(i)) < 0) die(Step::fds);
  }
  close_fds(above, error_fd - 1, plan.max_fd);
  close_fds(error_fd + 1, ~0U >> 1, plan.max_fd);

  if (plan.umask >= 0) ::umask(static_cast<mode_t>(plan.umask));
  if (plan.pid_digits != nullptr) write_digits(plan.pid_digits, ::getpid());
  ::execve(plan.binary, plan.argv.data(), plan.envp.data());
  die(Step::exec);
  ::_exit(127);  // not reached
}

bool replaced(std::string_view key, const std::map<std::string, std::string>& extra) {
  return key == "LISTEN_PID" || key == "LISTEN_FDS" || key == "LISTEN_FDNAMES" ||
         key == kReadyVariable || extra.contains(std::string(key));
}

long fd_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY ||
      limit.rlim_cur > (1u << 20)) {
    return 1 << 20;
  }
  return static_cast<long>(limit.rlim_cur);
}

// Reads the child's report of a failed step; false when the exec succeeded (EOF).
bool read_child_failure(int fd, Step& step, int& err) {
  int message[2] = {0, 0};
  std::size_t got = 0;
  while (got < sizeof message) {
    ssize_t n = ::read(fd, reinterpret_cast<char*>(message) + got, sizeof message - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<std::size_t>(n);
  }
  if (got < sizeof message) return false;
  step = static_cast<Step>(message[0]);
  err = message[1];
  return true;
}

}  // namespace

Successor spawn_successor(const SuccessorOptions& options) {
  Successor result;
  auto fail = [&](const std::string& why) {
    result.error = "cannot start the successor " + options.binary + ": " + why;
    return result;
  };
  if (options.binary.empty()) return fail("no executable given");
  for (const auto& [key, value] : options.extra_env) {
    if (key.empty() || key.find('=') != std::string::npos) {
      return fail("\"" + key + "\" is not an environment variable name");
    }
  }
  if (options.carried_fds.size() > kMaxCarriedFds) return fail("too many connections to carry");
  for (int fd : options.carried_fds) {
    if (fd < 0 || ::fcntl(fd, F_GETFD) < 0) {
      return fail("a carried connection (fd " + std::to_string(fd) + ") is not open");
    }
  }
  if (options.listen_fd >= 0 && ::fcntl(options.listen_fd, F_GETFD) < 0) {
    return fail("the listening socket (fd " + std::to_string(options.listen_fd) + ") is not open");
  }

  std::vector<std::string> argv_strings = options.argv;
  if (argv_strings.empty()) argv_strings.push_back(options.binary);
  std::vector<std::string> env_strings;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    std::string_view kv(*entry);
    if (!replaced(kv.substr(0, kv.find('=')), options.extra_env)) env_strings.emplace_back(kv);
  }
  for (const auto& [key, value] : options.extra_env) env_strings.push_back(key + "=" + value);
  env_strings.push_back(std::string(kReadyVariable) + "=" + std::to_string(kReadyFd));
  std::size_t pid_entry = 0;
  if (options.listen_fd >= 0) {
    env_strings.push_back("LISTEN_FDS=1");
    env_strings.push_back("LISTEN_FDNAMES=gateway");
    pid_entry = env_strings.size();
    // The child writes its pid over the placeholder: it is not known before fork().
    env_strings.push_back("LISTEN_PID=" + std::string(kPidDigits, '0'));
  }

  ChildPlan plan;
  plan.binary = options.binary.c_str();
  plan.argv = c_strings(argv_strings);
  plan.envp = c_strings(env_strings);
  if (options.listen_fd >= 0) {
    plan.pid_digits = env_strings[pid_entry].data() + std::strlen("LISTEN_PID=");
  }
  plan.listen_fd = options.listen_fd;
  plan.carried = options.carried_fds.data();
  plan.carried_count = options.carried_fds.size();
  plan.max_fd = fd_limit();
  plan.umask = options.umask;

  UniqueFd ready_read, ready_write, error_read, error_write;
  if (int err = make_pipe(ready_read, ready_write)) return fail(std::strerror(err));
  if (int err = make_pipe(error_read, error_write)) return fail(std::strerror(err));
  plan.ready_write = ready_write.get();
  plan.error_write = error_write.get();

  // No signal handler of ours may run in the child before it has reset them all.
  sigset_t all, old;
  sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &old);
  const pid_t pid = ::fork();
  if (pid == 0) run_child(plan);
  const int fork_errno = errno;
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (pid < 0) return fail(std::string("fork: ") + std::strerror(fork_errno));

  // Our copies of the write ends go now: EOF then means the child has gone (or exec'd).
  ready_write.reset();
  error_write.reset();
  Step step{};
  int child_errno = 0;
  if (read_child_failure(error_read.get(), step, child_errno)) {
    reap(pid);
    return fail(std::string(describe(step)) + ": " + std::strerror(child_errno));
  }
  result.pid = pid;
  result.ready_fd = ready_read.release();
  return result;
}

bool started_by_predecessor() { return std::getenv(kReadyVariable) != nullptr; }

void report_ready_to_predecessor() {
  const char* text = std::getenv(kReadyVariable);
  if (text == nullptr) return;
  const std::string value(text);
  ::unsetenv(kReadyVariable);  // our own children have no predecessor to tell

  int fd = -1;
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), fd);
  if (ec != std::errc() || end != value.data() + value.size() || fd <= 2) {
    spdlog::warn("{}={}: not a file descriptor; the predecessor is not told we are ready",
                 kReadyVariable, value);
    return;
  }
  // A variable leaked from elsewhere must not make us write into some file of ours.
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISFIFO(st.st_mode)) {
    spdlog::warn("{}={}: not a pipe; the predecessor is not told we are ready", kReadyVariable,
                 value);
    return;
  }

  const std::string line = "READY " + std::to_string(::getpid()) + "\n";
  // A predecessor that gave up has closed its end: the write fails with EPIPE and raises
  // SIGPIPE, which must not kill us. Blocked here, and consumed if this write raised it.
  sigset_t pipe_only, old, pending;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  ::pthread_sigmask(SIG_BLOCK, &pipe_only, &old);
  sigpending(&pending);
  const bool was_pending = sigismember(&pending, SIGPIPE) == 1;
  ssize_t n = -1;
  do {
    n = ::write(fd, line.data(), line.size());  // under PIPE_BUF: all or nothing
  } while (n < 0 && errno == EINTR);
  const int write_errno = errno;
  if (n < 0 && write_errno == EPIPE && !was_pending) {
    const timespec now{};
    ::sigtimedwait(&pipe_only, nullptr, &now);
  }
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  ::close(fd);
  if (n < 0) {
    spdlog::warn("cannot tell the predecessor we are ready: {}",
                 write_errno == EPIPE ? "it stopped waiting" : std::strerror(write_errno));
  }
}

namespace {

class ReadyWaiter : public std::enable_shared_from_this<ReadyWaiter> {
 public:
  ReadyWaiter(asio::io_context& io, core::Executor& executor,
              std::function<void(bool, std::string)> done)
      : descriptor_(io), executor_(executor), done_(std::move(done)) {}

  // Takes `fd`.
  void start(int fd, std::chrono::milliseconds timeout) {
    boost::system::error_code ec;
    descriptor_.assign(fd, ec);
    if (ec) {
      ::close(fd);
      // Reported asynchronously like every other outcome.
      asio::post(descriptor_.get_executor(), [self = shared_from_this(), ec] {
        self->finish(false, "cannot watch the successor's ready pipe: " + ec.message());
      });
      return;
    }
    // The pending read holds the waiter; the timer only refers to it.
    timer_ = executor_.schedule(timeout, [weak = weak_from_this(), timeout] {
      auto self = weak.lock();
      if (!self) return;
      self->timer_.reset();
      self->finish(false,
                   "no READY from the successor within " + std::to_string(timeout.count()) + " ms");
    });
    read();
  }

 private:
  // A line longer than this is not "READY <pid>".
  static constexpr std::size_t kMaxLine = 256;

  void read() {
    descriptor_.async_read_some(
        asio::buffer(chunk_), [self = shared_from_this()](boost::system::error_code ec,
                                                          std::size_t n) { self->on_read(ec, n); });
  }

  void on_read(boost::system::error_code ec, std::size_t n) {
    if (finished_) return;
    if (ec == asio::error::eof) {
      return finish(false, "the successor exited or closed its ready pipe before it was ready");
    }
    if (ec) return finish(false, "cannot read the successor's ready pipe: " + ec.message());
    line_.append(chunk_.data(), n);
    const auto newline = line_.find('\n');
    if (newline == std::string::npos) {
      if (line_.size() > kMaxLine) return finish(false, "the successor wrote no READY line");
      return read();
    }
    line_.resize(newline);
    if (line_.starts_with("READY")) return finish(true, line_);
    finish(false, "the successor wrote \"" + line_ + "\" instead of READY");
  }

  void finish(bool ok, std::string why) {
    if (finished_) return;
    finished_ = true;
    if (timer_) executor_.cancel(*timer_);
    timer_.reset();
    boost::system::error_code ignored;
    descriptor_.close(ignored);
    auto done = std::move(done_);
    done(ok, std::move(why));
  }

  asio::posix::stream_descriptor descriptor_;
  core::Executor& executor_;
  std::optional<core::TimerId> timer_;
  std::function<void(bool, std::string)> done_;
  std::array<char, 64> chunk_{};
  std::string line_;
  bool finished_ = false;
};

}  // namespace

void await_successor(asio::io_context& io, core::Executor& executor, int ready_fd,
                     std::chrono::milliseconds timeout,
                     std::function<void(bool ok, std::string why)> done) {
  if (ready_fd < 0) {
    asio::post(io, [done = std::move(done)] { done(false, "the successor has no ready pipe"); });
    return;
  }
  std::make_shared<ReadyWaiter>(io, executor, std::move(done))->start(ready_fd, timeout);
}

}  // namespace drawbridge::runtime
