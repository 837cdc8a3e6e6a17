#pragma once

#include <functional>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

namespace drawbridge::runtime {

// The process's signals, on the event loop: SIGTERM/SIGINT ask for a stop, SIGUSR1 for a
// restart, SIGUSR2 for one in a fresh process, SIGHUP for a config read; SIGPIPE is ignored.
// It only routes: what each means is the handlers' to decide (the root wires them).
class SignalRouter {
 public:
  struct Handlers {
    std::function<void(const std::string& name)> stop;
    std::function<void(const std::string& name, bool fresh_process)> restart;
    std::function<void(const std::string& name)> reload;
  };

  SignalRouter(boost::asio::io_context& io, Handlers handlers);
  void start();
  void cancel();

 private:
  void wait();

  boost::asio::signal_set signals_;
  Handlers handlers_;
};

}  // namespace drawbridge::runtime
