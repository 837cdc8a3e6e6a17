#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/executor.h"
#include "pipeline/batch_runner.h"

namespace drawbridge::pipeline {

// Group commit (docs/DECISIONS.md "Foundation"): the writes of one event-loop round share one
// store batch, handed to the BatchRunner once the work queued now has run. Callbacks added
// with after_commit() run, in the order they were added, once that batch is committed (error
// empty) or failed (error set).
class CommitRound {
 public:
  CommitRound(core::Executor& executor, BatchRunner& writer) : executor_(executor), writer_(writer) {}
  ~CommitRound();
  CommitRound(const CommitRound&) = delete;
  CommitRound& operator=(const CommitRound&) = delete;

  // Adds `op` to the round's batch, opening one (and scheduling its hand-over) if none is.
  void write(StoreOp op);
  // Runs `after` with the outcome of the batch open now (the next one when none is open).
  void after_commit(std::function<void(const std::string& error)> after);
  // Hands the round's batch to the writer now.
  void flush();
  // Flushes and blocks until everything handed over is committed (for shutdown).
  void flush_and_wait();
  bool open() const { return open_; }
  // For the owner's destructor: commits what is open without running its callbacks.
  void finish();
  // Called with the error of every failed batch and how many writes it held.
  void on_error(std::function<void(const std::string& error, std::size_t writes)> fn) {
    on_error_ = std::move(fn);
  }

 private:
  core::Executor& executor_;
  BatchRunner& writer_;
  bool open_ = false;
  std::vector<StoreOp> ops_;
  std::vector<std::function<void(const std::string&)>> after_;
  std::function<void(const std::string&, std::size_t)> on_error_;
  // Commit callbacks may outlive the round: they check this.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace drawbridge::pipeline
