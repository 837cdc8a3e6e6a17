#include "agents/exec_agent.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>

#include "agents/child_process.h"

namespace drawbridge::agents {

namespace {

namespace asio = boost::asio;
using boost::system::error_code;
using pipeline::TurnOutcome;

constexpr std::size_t kStderrTailBytes = 4096;
constexpr std::size_t kMaxFinalDrainBytes = 1 << 20;
constexpr core::Duration kFirstPollDelay{1};
constexpr core::Duration kMaxPollDelay{50};
// Longer is no limit in practice, and keeps the timer's nanosecond arithmetic from overflowing.
constexpr std::int64_t kMaxTimeoutMs = 365LL * 24 * 3600 * 1000;

std::string request_line(const pipeline::TurnRequest& request) {
  nlohmann::json history = nlohmann::json::array();
  for (const auto& entry : request.history) {
    nlohmann::json item = nlohmann::json::object();
    item["role"] = entry.role;
    item["text"] = entry.text;
    history.push_back(std::move(item));
  }
  nlohmann::json doc = nlohmann::json::object();
  doc["runId"] = request.run_id;
  doc["sessionKey"] = request.session_key;
  doc["channel"] = request.channel;
  doc["chatId"] = request.chat_id;
  doc["sender"] = request.sender;
  doc["text"] = request.text;
  doc["history"] = std::move(history);
  // `replace`: chat text with invalid UTF-8 must not throw on the event loop.
  return doc.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

std::string last_line(std::string_view text) {
  auto is_space = [](char c) { return c == '\n' || c == '\r' || c == ' ' || c == '\t'; };
  while (!text.empty() && is_space(text.back())) text.remove_suffix(1);
  if (auto nl = text.rfind('\n'); nl != std::string_view::npos) text.remove_prefix(nl + 1);
  while (!text.empty() && is_space(text.front())) text.remove_prefix(1);
  return std::string(text);
}

bool is_directory(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// Reads what is already buffered in a pipe without waiting (bounded: an orphan that keeps
// writing must not hold the event loop).
void drain_now(asio::posix::stream_descriptor& pipe, std::string& sink) {
  if (!pipe.is_open()) return;
  error_code ec;
  pipe.non_blocking(true, ec);
  std::array<char, 4096> buf;
  std::size_t total = 0;
  while (!ec && total < kMaxFinalDrainBytes) {
    std::size_t n = pipe.read_some(asio::buffer(buf), ec);
    sink.append(buf.data(), n);
    total += n;
  }
}

// One turn's child process and its I/O. Shared with every pending handler, so a handler that
// runs after the Turn was destroyed finds `finished_` set and returns without calling back.
class ExecRun final : public std::enable_shared_from_this<ExecRun> {
 public:
  ExecRun(asio::io_context& io, core::Executor& executor, ExecSettings settings,
          ExecAgent::ExitWatch exit_watch, pipeline::TurnCallbacks callbacks)
      : executor_(executor),
        settings_(std::move(settings)),
        exit_watch_(exit_watch),
        callbacks_(std::move(callbacks)),
        stdin_(io),
        stdout_(io),
        stderr_(io),
        pidfd_(io) {}

  void start(const pipeline::TurnRequest& request) {
    ChildSpec spec{settings_.command, settings_.cwd, settings_.env};
    // Who is asking, for tools the command calls back with (`drawbridge restart` sends the run
    // id, so the gateway does not wait for the turn that asked it to restart).
    spec.env["DRAWBRIDGE_RUN_ID"] = request.run_id;
    spec.env["DRAWBRIDGE_SESSION_KEY"] = request.session_key;
    spec.env["DRAWBRIDGE_CHANNEL"] = request.channel;
    Child child;
    int err = spawn_child(spec, child);
    if (err == 0) err = attach(child);
    if (err != 0) {
      if (child.pid > 0) kill_and_reap(child.pid);
      post_start_failure(err);
      return;
    }
    pid_ = child.pid;

    if (exit_watch_ == ExecAgent::ExitWatch::pidfd) {
      UniqueFd pidfd = open_pidfd(pid_);
      error_code ec;
      if (pidfd.valid()) pidfd_.assign(pidfd.get(), ec);
      if (pidfd.valid() && !ec) {
        pidfd.release();
        watch_pidfd();
      }
      // Otherwise (kernel < 5.3, seccomp): poll waitpid once stdout closes or a kill starts.
    }

    payload_ = request_line(request);
    asio::async_write(stdin_, asio::buffer(payload_),
                      [self = shared_from_this()](const error_code&, std::size_t) {
                        if (self->finished_) return;
                        // EPIPE (a command that never reads stdin) is not an error; closing
                        // gives the command EOF after the one request line.
                        error_code ignored;
                        self->stdin_.close(ignored);
                      });
    read_stdout();
    read_stderr();

    if (settings_.timeout_ms > 0) {
      timeout_timer_ =
          executor_.schedule(core::Duration(std::min(settings_.timeout_ms, kMaxTimeoutMs)),
                             [self = shared_from_this()] {
                               self->timeout_timer_.reset();
                               if (self->finished_) return;
                               self->begin_kill(KillReason::timeout);
                             });
    }
  }

  void cancel() {
    if (finished_ || pid_ <= 0) return;  // done, or a start failure is already on its way
    begin_kill(KillReason::cancel);
  }

  // The Turn is gone: nothing may be called back any more, and no process may outlive it.
  void abandon() {
    if (finished_) return;
    finished_ = true;
    if (pid_ > 0 && !exited_) {
      kill_and_reap(pid_);
    } else if (pid_ > 0 && !stdout_eof_) {
      signal_group(pid_, SIGKILL);  // the leader is reaped, but its group still holds stdout
    }
    close_all();
    // callbacks_ stay until the last handler releases this object: abandon() may run inside
    // on_delta, and destroying a std::function while it runs is undefined.
  }

 private:
  enum class KillReason { none, timeout, cancel };

  int attach(Child& child) {
    // On failure the descriptor does not own the fd, so only release() after success.
    std::pair<asio::posix::stream_descriptor*, UniqueFd*> pipes[] = {
        {&stdin_, &child.stdin_fd}, {&stdout_, &child.stdout_fd}, {&stderr_, &child.stderr_fd}};
    for (auto [descriptor, fd] : pipes) {
      error_code ec;
      descriptor->assign(fd->get(), ec);
      if (ec) return ec.value();
      fd->release();
    }
    return 0;
  }

  void post_start_failure(int err) {
    const std::string argv0 = settings_.command.empty() ? "(empty command)" : settings_.command[0];
    std::string error = "cannot start " + argv0 + ": " + std::strerror(err);
    // posix_spawnp reports a missing cwd as ENOENT too; say which path was missing.
    if (!settings_.cwd.empty() && !is_directory(settings_.cwd)) {
      error += " (cwd " + settings_.cwd + ")";
    }
    close_all();
    executor_.post([self = shared_from_this(), error = std::move(error)]() mutable {
      if (self->finished_) return;
      self->finish({TurnOutcome::Kind::failed, {}, std::move(error)});
    });
  }

  void read_stdout() {
    stdout_.async_read_some(asio::buffer(stdout_buf_), [self = shared_from_this()](
                                                           const error_code& ec, std::size_t n) {
      if (self->finished_) return;
      self->text_.append(self->stdout_buf_.data(), n);
      self->emit_lines();
      if (self->finished_) return;  // on_delta destroyed the Turn
      if (!ec) {
        self->read_stdout();
      } else {
        self->on_stdout_closed();  // EOF, or an error that ends the output just the same
      }
    });
  }

  void read_stderr() {
    stderr_.async_read_some(asio::buffer(stderr_buf_),
                            [self = shared_from_this()](const error_code& ec, std::size_t n) {
                              if (self->finished_) return;
                              self->append_stderr(std::string_view(self->stderr_buf_.data(), n));
                              if (!ec) {
                                self->read_stderr();
                              } else {
                                error_code ignored;
                                self->stderr_.close(ignored);
                              }
                            });
  }

  void append_stderr(std::string_view bytes) {
    stderr_tail_.append(bytes);
    if (stderr_tail_.size() > 2 * kStderrTailBytes) {
      stderr_tail_.erase(0, stderr_tail_.size() - kStderrTailBytes);
    }
  }

  bool deltas_wanted() const { return !finished_ && kill_reason_ != KillReason::cancel; }

  void emit_lines() {
    while (deltas_wanted()) {
      auto nl = text_.find('\n', scanned_);
      if (nl == std::string::npos) {
        scanned_ = text_.size();
        return;
      }
      std::string_view line(text_.data() + emitted_, nl + 1 - emitted_);
      emitted_ = scanned_ = nl + 1;
      if (callbacks_.on_delta) callbacks_.on_delta(line);
    }
  }

  void on_stdout_closed() {
    stdout_eof_ = true;
    if (deltas_wanted() && emitted_ < text_.size()) {
      std::string_view rest(text_.data() + emitted_, text_.size() - emitted_);
      emitted_ = scanned_ = text_.size();
      if (callbacks_.on_delta) callbacks_.on_delta(rest);
      if (finished_) return;
    }
    error_code ignored;
    stdout_.close(ignored);
    if (!pidfd_.is_open()) start_polling();
    maybe_finish();
  }

  void watch_pidfd() {
    pidfd_.async_wait(asio::posix::descriptor_base::wait_read,
                      [self = shared_from_this()](const error_code& ec) {
                        if (self->finished_ || self->exited_) return;
                        error_code ignored;
                        // A readable pidfd means the child exited. Anything else (an error, a
                        // spurious wakeup) falls back to polling instead of re-arming: the
                        // reactor is edge-triggered and a re-armed wait could miss the edge.
                        if (ec || !self->check_exit()) {
                          self->pidfd_.close(ignored);
                          self->start_polling();
                        }
                      });
  }

  void start_polling() {
    if (polling_ || exited_ || finished_) return;
    polling_ = true;
    poll_delay_ = kFirstPollDelay;
    schedule_poll();
  }

  void schedule_poll() {
    poll_timer_ = executor_.schedule(poll_delay_, [self = shared_from_this()] {
      self->poll_timer_.reset();
      if (self->finished_ || self->exited_) return;
      if (self->check_exit()) return;
      self->poll_delay_ = std::min(self->poll_delay_ * 2, kMaxPollDelay);
      self->schedule_poll();
    });
  }

  // Reaps the child if it has exited; returns false while it is still running.
  bool check_exit() {
    int status = 0;
    switch (try_reap(pid_, status)) {
      case ReapResult::running:
        return false;
      case ReapResult::reaped:
        wait_status_ = status;
        status_known_ = true;
        break;
      case ReapResult::lost:
        status_known_ = false;
        break;
    }
    exited_ = true;
    error_code ignored;
    pidfd_.close(ignored);
    cancel_timer(poll_timer_);
    maybe_finish();
    return true;
  }

  void begin_kill(KillReason reason) {
    if (kill_reason_ != KillReason::none) return;  // the first reason is the one reported
    kill_reason_ = reason;
    cancel_timer(timeout_timer_);
    signal_group(pid_, SIGTERM);
    signal_group(pid_, SIGCONT);  // a stopped member would otherwise sit on SIGTERM
    // Also with a zero grace period the SIGKILL goes through the timer: cancel() may be
    // called from inside on_delta, and on_done must not run from there.
    grace_timer_ = executor_.schedule(core::Duration(std::max(0, settings_.kill_grace_ms)),
                                      [self = shared_from_this()] {
                                        self->grace_timer_.reset();
                                        if (self->finished_) return;
                                        self->sigkill_sent_ = true;
                                        signal_group(self->pid_, SIGKILL);
                                        self->maybe_finish();
                                      });
    if (!pidfd_.is_open()) start_polling();
  }

  // Normally the turn ends at stdout EOF plus exit; after SIGKILL, the exit alone is enough,
  // in case something that left the process group still holds stdout open.
  void maybe_finish() {
    if (finished_ || !exited_ || (!stdout_eof_ && !sigkill_sent_)) return;

    // The child is gone, but its last writes may still sit in the pipes.
    drain_now(stderr_, stderr_tail_);
    if (!stdout_eof_) drain_now(stdout_, text_);

    TurnOutcome outcome;
    outcome.text = text_;
    if (!outcome.text.empty() && outcome.text.back() == '\n') outcome.text.pop_back();
    outcome.kind = TurnOutcome::Kind::failed;
    if (kill_reason_ == KillReason::cancel) {
      outcome.kind = TurnOutcome::Kind::aborted;
      outcome.error = "aborted";
    } else if (kill_reason_ == KillReason::timeout) {
      outcome.error = "timed out after " + std::to_string(settings_.timeout_ms) + " ms";
    } else if (!status_known_) {
      outcome.error = "command exit status unavailable (the child was reaped elsewhere)";
    } else if (WIFEXITED(wait_status_) && WEXITSTATUS(wait_status_) == 0) {
      outcome.kind = TurnOutcome::Kind::completed;
    } else if (WIFEXITED(wait_status_)) {
      outcome.error = "command exited with status " + std::to_string(WEXITSTATUS(wait_status_));
      if (std::string line = last_line(stderr_tail_); !line.empty()) outcome.error += ": " + line;
    } else if (WIFSIGNALED(wait_status_)) {
      outcome.error = "command killed by signal " + std::to_string(WTERMSIG(wait_status_));
    } else {
      outcome.error = "command ended with wait status " + std::to_string(wait_status_);
    }
    finish(std::move(outcome));
  }

  void finish(TurnOutcome outcome) {
    finished_ = true;
    close_all();
    auto on_done = std::move(callbacks_.on_done);
    callbacks_ = {};
    if (on_done) on_done(std::move(outcome));
  }

  void close_all() {
    error_code ignored;
    stdin_.close(ignored);
    stdout_.close(ignored);
    stderr_.close(ignored);
    pidfd_.close(ignored);
    cancel_timer(timeout_timer_);
    cancel_timer(grace_timer_);
    cancel_timer(poll_timer_);
  }

  void cancel_timer(std::optional<core::TimerId>& timer) {
    if (timer) executor_.cancel(*std::exchange(timer, std::nullopt));
  }

  core::Executor& executor_;
  // A copy: a config reload may replace the ExecAgent while its turns still run.
  const ExecSettings settings_;
  ExecAgent::ExitWatch exit_watch_;
  pipeline::TurnCallbacks callbacks_;

  asio::posix::stream_descriptor stdin_;
  asio::posix::stream_descriptor stdout_;
  asio::posix::stream_descriptor stderr_;
  asio::posix::stream_descriptor pidfd_;
  // Armed timers of the executor, until they fire or are cancelled.
  std::optional<core::TimerId> timeout_timer_;
  std::optional<core::TimerId> grace_timer_;
  std::optional<core::TimerId> poll_timer_;

  pid_t pid_ = -1;  // also the process group id
  std::string payload_;
  std::array<char, 16384> stdout_buf_;
  std::array<char, 4096> stderr_buf_;
  std::string text_;         // all of stdout so far
  std::size_t emitted_ = 0;  // text_[0, emitted_) went out as deltas
  std::size_t scanned_ = 0;  // no '\n' in text_[emitted_, scanned_)
  std::string stderr_tail_;  // the last 4..8 KiB of stderr

  bool stdout_eof_ = false;
  bool exited_ = false;  // reaped (or lost to another reaper)
  bool status_known_ = false;
  int wait_status_ = 0;
  bool polling_ = false;
  core::Duration poll_delay_ = kFirstPollDelay;
  KillReason kill_reason_ = KillReason::none;
  bool sigkill_sent_ = false;
  bool finished_ = false;  // on_done ran, or will never run
};

class ExecTurn final : public pipeline::Turn {
 public:
  explicit ExecTurn(std::shared_ptr<ExecRun> run) : run_(std::move(run)) {}
  ~ExecTurn() override { run_->abandon(); }
  void cancel() override { run_->cancel(); }

 private:
  std::shared_ptr<ExecRun> run_;
};

}  // namespace

ExecAgent::ExecAgent(boost::asio::io_context& io, core::Executor& executor, ExecSettings settings,
                     ExitWatch exit_watch)
    : io_(io), executor_(executor), settings_(std::move(settings)), exit_watch_(exit_watch) {}

std::unique_ptr<pipeline::Turn> ExecAgent::start(pipeline::TurnRequest request,
                                                 pipeline::TurnCallbacks callbacks) {
  auto run =
      std::make_shared<ExecRun>(io_, executor_, settings_, exit_watch_, std::move(callbacks));
  run->start(request);
  return std::make_unique<ExecTurn>(std::move(run));
}

}  // namespace drawbridge::agents
