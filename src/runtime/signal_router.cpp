#include "runtime/signal_router.h"

#include <csignal>
#include <utility>

namespace drawbridge::runtime {

SignalRouter::SignalRouter(boost::asio::io_context& io, Handlers handlers)
    : signals_(io), handlers_(std::move(handlers)) {}

void SignalRouter::start() {
  ::signal(SIGPIPE, SIG_IGN);
  for (int sig : {SIGTERM, SIGINT, SIGUSR1, SIGUSR2, SIGHUP}) signals_.add(sig);
  wait();
}

void SignalRouter::cancel() {
  boost::system::error_code ignored;
  signals_.cancel(ignored);
}

void SignalRouter::wait() {
  signals_.async_wait([this](boost::system::error_code ec, int sig) {
    if (ec) return;
    const std::string name = sig == SIGTERM   ? "SIGTERM"
                             : sig == SIGINT  ? "SIGINT"
                             : sig == SIGUSR1 ? "SIGUSR1"
                             : sig == SIGUSR2 ? "SIGUSR2"
                                              : "SIGHUP";
    if (sig == SIGTERM || sig == SIGINT) {
      handlers_.stop(name);
    } else if (sig == SIGUSR1 || sig == SIGUSR2) {
      handlers_.restart(name, sig == SIGUSR2);  // SIGUSR2: a fresh process
    } else {
      handlers_.reload(name);
    }
    wait();
  });
}

}  // namespace drawbridge::runtime
