#include "runtime/store_thread.h"

#include <boost/asio/post.hpp>

namespace drawbridge::runtime {

StoreThread::StoreThread(boost::asio::io_context& io, store::Store& writer)
    : io_(io), store_(writer), thread_([this] { loop(); }) {}

StoreThread::~StoreThread() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

void StoreThread::run(std::vector<pipeline::StoreOp> ops,
                      std::function<void(std::string error)> done) {
  {
    std::lock_guard lock(mutex_);
    jobs_.push_back(Job{std::move(ops), std::move(done)});
  }
  wake_.notify_one();
}

void StoreThread::set_fence(pipeline::StoreOp fence) {
  std::lock_guard lock(mutex_);
  fence_ = std::move(fence);
}

void StoreThread::wait_idle() {
  std::unique_lock lock(mutex_);
  idle_.wait(lock, [this] { return jobs_.empty() && !busy_; });
}

void StoreThread::loop() {
  std::unique_lock lock(mutex_);
  for (;;) {
    wake_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
    if (jobs_.empty()) return;  // stopping, and everything handed over is committed
    std::deque<Job> jobs;
    jobs.swap(jobs_);
    busy_ = true;
    auto fence = fence_;
    lock.unlock();

    // One commit for every batch that queued up meanwhile: under load the batches grow and
    // the commits per message shrink.
    std::vector<pipeline::StoreOp> ops;
    if (fence) ops.push_back(std::move(fence));
    for (auto& j : jobs) {
      for (auto& op : j.ops) ops.push_back(std::move(op));
    }
    std::string error = pipeline::run_batch(store_, ops);
    for (auto& j : jobs) {
      boost::asio::post(io_, [done = std::move(j.done), error] { done(error); });
    }

    lock.lock();
    busy_ = false;
    if (jobs_.empty()) idle_.notify_all();
  }
}

}  // namespace drawbridge::runtime
