#include "pipeline/commit_round.h"

#include <utility>

namespace drawbridge::pipeline {

CommitRound::~CommitRound() { *alive_ = false; }

void CommitRound::write(StoreOp op) {
  ops_.push_back(std::move(op));
  if (open_) return;
  open_ = true;
  // The batch closes after the work queued now: every write of this round shares the commit.
  executor_.post([this, alive = alive_] {
    if (*alive) flush();
  });
}

void CommitRound::after_commit(std::function<void(const std::string& error)> after) {
  after_.push_back(std::move(after));
}

void CommitRound::flush() {
  if (!open_) return;
  open_ = false;
  auto ops = std::exchange(ops_, {});
  auto callbacks = std::exchange(after_, {});
  const std::size_t n = ops.size();
  writer_.run(std::move(ops), [this, alive = alive_, n, callbacks = std::move(callbacks)](
                                  std::string error) mutable {
    if (!*alive) return;
    if (!error.empty() && on_error_) on_error_(error, n);
    for (auto& cb : callbacks) cb(error);
  });
}

void CommitRound::finish() {
  *alive_ = false;
  if (open_) flush_and_wait();
}

void CommitRound::flush_and_wait() {
  flush();
  writer_.wait_idle();
}

}  // namespace drawbridge::pipeline
