#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/io_context.hpp>

#include "core/executor.h"

namespace drawbridge::runtime {

// What the watcher read once the file settled.
struct WatchedFile {
  bool exists = false;
  // The whole file, when it exists and is complete JSON (with comments); it may still cross a
  // config limit (nesting depth, a repeated key), which the caller's validation reports.
  std::string text;
  // Set when the retries ran out: "missing", "cannot read PATH: not a regular file (a FIFO)",
  // "cannot read PATH: larger than the limit of 1 MiB ...", or the JSON parse error.
  std::string error;
};

// Watches one config file through inotify on its folder, so that a rename over it
// (editors' write-to-temp-and-rename), an in-place write, and a delete followed by a create
// are all seen. Events for other names in the folder are ignored.
//
// Every event for the file (re)starts the debounce timer; when it fires the file is read. A
// missing file or one that is not JSON yet (half written) is read again `retry_interval`
// later, up to `retries` times; only then is `on_change` called with `error` set. A file
// that reads fine is handed over as it is: validating it is the caller's job.
// The inotify descriptor is read on the io_context; the debounce and retry timers are timers of
// the injected Executor (so tests drive them in simulated time). Both must run on one thread,
// as the gateway's io_context and AsioExecutor do. Callbacks run there; nothing runs after
// stop() or destruction. The executor must outlive the watcher.
class ConfigWatcher {
 public:
  struct Options {
    std::chrono::milliseconds debounce{300};
    std::chrono::milliseconds retry_interval{100};
    int retries = 5;
  };

  ConfigWatcher(boost::asio::io_context& io, core::Executor& executor, std::string file,
                std::function<void(const WatchedFile&)> on_change);
  ~ConfigWatcher();
  ConfigWatcher(const ConfigWatcher&) = delete;
  ConfigWatcher& operator=(const ConfigWatcher&) = delete;

  // Starts watching; the error text when inotify or the folder cannot be watched.
  std::optional<std::string> start(Options options);
  // Later events use this debounce (gateway.reload.debounceMs changed).
  void set_debounce(std::chrono::milliseconds debounce);
  void stop();
  // Events seen for the file since start (for tests and status).
  std::uint64_t events_seen() const;
  // Files read and handed to on_change since start; whether a read is due (an event arrived
  // and its debounce or retry timer is armed). Event-loop thread only. With events_seen(),
  // status shows when the watcher has caught up with a write: nothing more will come of it.
  std::uint64_t reads() const;
  bool read_pending() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace drawbridge::runtime
