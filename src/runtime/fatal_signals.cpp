#include "runtime/fatal_signals.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>

namespace drawbridge::runtime {

namespace {

struct Fatal {
  int sig;
  const char* name;
};
constexpr std::array<Fatal, 5> kFatal = {{{SIGSEGV, "SIGSEGV"},
                                          {SIGBUS, "SIGBUS"},
                                          {SIGFPE, "SIGFPE"},
                                          {SIGILL, "SIGILL"},
                                          {SIGABRT, "SIGABRT"}}};

// Everything the handler touches, prepared at install: no allocation or formatting in it.
struct Prepared {
  char line[256];
  std::size_t size = 0;
  struct sigaction previous {};
};
Prepared g_prepared[kFatal.size()];

// 64 KiB: enough for the handler, and independent of glibc's run-time SIGSTKSZ.
alignas(16) char g_alt_stack[64 * 1024];

void write_all(int fd, const char* data, std::size_t size) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    data += n;
    size -= static_cast<std::size_t>(n);
  }
}

void on_fatal(int sig, siginfo_t* info, void*) {
  const int saved_errno = errno;
  for (std::size_t i = 0; i < kFatal.size(); ++i) {
    if (kFatal[i].sig != sig) continue;
    write_all(STDERR_FILENO, g_prepared[i].line, g_prepared[i].size);
    struct sigaction next = g_prepared[i].previous;
    if (next.sa_handler == SIG_IGN) next.sa_handler = SIG_DFL;
    ::sigaction(sig, &next, nullptr);
    break;
  }
  errno = saved_errno;
  // Sent by kill(2), raise or abort: send it again, now to the previous handler (it is blocked
  // until we return). A fault (si_code > 0) happens again when the instruction is retried.
  if (info == nullptr || info->si_code <= 0) ::raise(sig);
}

}  // namespace

void install_fatal_signal_handlers() {
  stack_t ss{};
  ss.ss_sp = g_alt_stack;
  ss.ss_size = sizeof g_alt_stack;
  ss.ss_flags = 0;
  ::sigaltstack(&ss, nullptr);
  const long pid = static_cast<long>(::getpid());
  for (std::size_t i = 0; i < kFatal.size(); ++i) {
    const int n = std::snprintf(g_prepared[i].line, sizeof g_prepared[i].line,
                                "drawbridge: fatal signal %s (pid %ld); the process ends now; "
                                "messages already acknowledged are replayed at the next start\n",
                                kFatal[i].name, pid);
    g_prepared[i].size =
        n < 0 ? 0 : std::min(static_cast<std::size_t>(n), sizeof g_prepared[i].line - 1);
    struct sigaction sa {};
    sa.sa_sigaction = on_fatal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    ::sigaction(kFatal[i].sig, &sa, &g_prepared[i].previous);
  }
}

}  // namespace drawbridge::runtime
