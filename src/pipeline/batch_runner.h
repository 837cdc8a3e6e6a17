#pragma once

#include <functional>
#include <string>
#include <vector>

#include "store/store.h"

namespace drawbridge::pipeline {

using StoreOp = std::function<void(store::Store&)>;

// Runs the writes of one event-loop round as one store batch (group commit) and reports the
// outcome: `done("")` once all of them are committed, `done(error)` when none is. Batches are
// committed in the order they are handed over.
class BatchRunner {
 public:
  virtual ~BatchRunner() = default;
  virtual void run(std::vector<StoreOp> ops, std::function<void(std::string error)> done) = 0;
  // Blocks until every batch handed over is committed (or failed); for shutdown.
  virtual void wait_idle() = 0;
};

// Runs the batch at once on the caller's thread: for tests and for a gateway without a store
// thread.
class InlineBatchRunner final : public BatchRunner {
 public:
  explicit InlineBatchRunner(store::Store& store) : store_(store) {}
  void run(std::vector<StoreOp> ops, std::function<void(std::string error)> done) override;
  void wait_idle() override {}

 private:
  store::Store& store_;
};

// Runs `ops` in one batch of `store`; returns the error, empty when committed.
std::string run_batch(store::Store& store, const std::vector<StoreOp>& ops);

}  // namespace drawbridge::pipeline
