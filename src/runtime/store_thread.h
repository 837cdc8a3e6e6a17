#pragma once

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include <boost/asio/io_context.hpp>

#include "pipeline/batch_runner.h"
#include "store/store.h"

namespace drawbridge::runtime {

// Commits the pipeline's write batches on a thread of its own, so SQLite's work runs on the
// second core while the event loop serves sockets. Batches are committed in order; batches
// that queue up while one commits are merged into the next commit. `done` is posted back to
// the event loop.
class StoreThread final : public pipeline::BatchRunner {
 public:
  StoreThread(boost::asio::io_context& io, store::Store& writer);
  ~StoreThread() override;
  StoreThread(const StoreThread&) = delete;
  StoreThread& operator=(const StoreThread&) = delete;

  void run(std::vector<pipeline::StoreOp> ops,
           std::function<void(std::string error)> done) override;
  void wait_idle() override;
  // Runs first in every batch from now on, in its transaction: a fence that throws
  // store::StoreError when this process may no longer write (a replica whose lease was taken:
  // runtime/cluster.h), which fails the whole batch with nothing committed.
  void set_fence(pipeline::StoreOp fence);

 private:
  struct Job {
    std::vector<pipeline::StoreOp> ops;
    std::function<void(std::string)> done;
  };
  void loop();

  boost::asio::io_context& io_;
  store::Store& store_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable idle_;
  std::deque<Job> jobs_;
  bool busy_ = false;
  bool stopping_ = false;
  pipeline::StoreOp fence_;  // guarded by mutex_
  std::thread thread_;
};

}  // namespace drawbridge::runtime
