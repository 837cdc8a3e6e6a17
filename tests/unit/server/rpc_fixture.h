#pragma once

// The fixture of the method-table tests: a real pipeline on an in-memory store, a fake agent
// and channel, a fake Control, and a call() that runs the executor until the answer.

#include <gtest/gtest.h>

#include "core/manual_executor.h"
#include "server/rpc_methods.h"
#include "store/sqlite_store.h"
#include "unit/pipeline/fakes.h"
#include "unit/server/fake_control.h"

namespace drawbridge::server {

using fakes::FakeControl;

class RpcMethodsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = store::SqliteStore::open(":memory:");
    writer_ = std::make_unique<pipeline::InlineBatchRunner>(*store_);
    pipeline_ = std::make_unique<pipeline::Pipeline>(clock_, executor_, *store_, *writer_);
    pipeline_->add_channel(&channel_, &agent_, 0);
    rpc_ = std::make_unique<RpcMethods>(control_, *pipeline_, "local");
  }

  Caller caller(std::vector<std::string> scopes) {
    Caller c;
    c.conn_id = "conn-1";
    c.client_id = "test";
    c.scopes = std::move(scopes);
    c.subscribe = [this](const std::string& s) { subscribed_.push_back(s); };
    return c;
  }

  RpcOutcome call(const Caller& c, const std::string& method, const nlohmann::json& params) {
    std::optional<RpcOutcome> out;
    rpc_->call(c, method, params, [&](RpcOutcome o) { out = std::move(o); });
    executor_.run_ready();
    EXPECT_TRUE(out.has_value()) << method << " never answered";
    return out ? *out : RpcOutcome{RpcError{"NONE", "no answer", nullptr, {}, {}}};
  }

  const RpcError& error_of(const RpcOutcome& out) {
    static RpcError none{"NONE", "no error", nullptr, {}, {}};
    auto* e = std::get_if<RpcError>(&out);
    return e ? *e : none;
  }

  core::ManualClock clock_;
  core::ManualExecutor executor_{clock_};
  std::unique_ptr<store::SqliteStore> store_;
  std::unique_ptr<pipeline::InlineBatchRunner> writer_;
  testing::FakeAgent agent_;
  testing::FakeChannel channel_;
  FakeControl control_;
  std::unique_ptr<pipeline::Pipeline> pipeline_;
  std::unique_ptr<RpcMethods> rpc_;
  std::vector<std::string> subscribed_;
};

}  // namespace drawbridge::server
