#pragma once

#include <map>
#include <memory>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include "core/executor.h"

namespace drawbridge::runtime {

// core::Executor on the gateway's io_context.
class AsioExecutor final : public core::Executor {
 public:
  explicit AsioExecutor(boost::asio::io_context& io) : io_(io) {}
  ~AsioExecutor() override {
    for (auto& [id, t] : timers_) t->cancel();
  }

  void post(std::function<void()> fn) override { boost::asio::post(io_, std::move(fn)); }

  core::TimerId schedule(core::Duration delay, std::function<void()> fn) override {
    const core::TimerId id = ++next_id_;
    auto timer = std::make_shared<boost::asio::steady_timer>(io_, delay);
    timers_[id] = timer;
    timer->async_wait([this, id, timer, fn = std::move(fn)](boost::system::error_code ec) {
      // A timer that expired is already queued when cancel() comes: cancelled by then, it is
      // no longer in timers_ and must not run (as with ManualExecutor, cancel is final).
      if (ec) return;
      auto it = timers_.find(id);
      if (it == timers_.end() || it->second != timer) return;
      timers_.erase(it);
      fn();
    });
    return id;
  }

  void cancel(core::TimerId id) override {
    if (auto it = timers_.find(id); it != timers_.end()) {
      it->second->cancel();
      timers_.erase(it);
    }
  }

 private:
  boost::asio::io_context& io_;
  std::map<core::TimerId, std::shared_ptr<boost::asio::steady_timer>> timers_;
  core::TimerId next_id_ = 0;
};

}  // namespace drawbridge::runtime
