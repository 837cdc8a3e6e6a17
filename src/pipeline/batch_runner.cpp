#include "pipeline/batch_runner.h"

namespace drawbridge::pipeline {

std::string run_batch(store::Store& store, const std::vector<StoreOp>& ops) {
  try {
    store.begin_batch();
    for (const auto& op : ops) op(store);
    store.commit_batch();
    return {};
  } catch (const std::exception& e) {
    try {
      store.rollback_batch();
    } catch (const std::exception&) {
    }
    return e.what();
  }
}

void InlineBatchRunner::run(std::vector<StoreOp> ops,
                            std::function<void(std::string error)> done) {
  done(run_batch(store_, ops));
}

}  // namespace drawbridge::pipeline
