#pragma once

// The cluster's side of pipeline::AccountLeases for the channel tests, scripted: grants or
// refuses every claim at once; `left` is what remains of a granted lease (a test sets it to
// zero to have the lease pass).

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "pipeline/account_leases.h"

namespace drawbridge::testing {

using namespace std::chrono_literals;

// The cluster's side of pipeline::AccountLeases, scripted: grants or refuses every claim.
struct ScriptedLeases final : pipeline::AccountLeases {
  bool grant = false;
  int claims = 0;
  std::chrono::milliseconds left{0};
  std::vector<std::string> released;
  void claim(const std::string&, std::function<void(Grant)> done) override {
    ++claims;
    Grant g;
    g.held = grant;
    g.epoch = grant ? 7 : 3;
    g.holder = grant ? "me" : "replica-b";
    if (grant) left = 4000ms;
    done(g);
  }
  std::chrono::milliseconds remaining(const std::string&) const override { return left; }
  void release(const std::string& name) override {
    released.push_back(name);
    left = 0ms;
  }
  std::chrono::milliseconds ttl() const override { return 3000ms; }
  const std::string& replica_id() const override { return id; }
  std::string id = "me";
};

}  // namespace drawbridge::testing
