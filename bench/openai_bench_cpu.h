#pragma once

// CPU use and scheduling of the gateway's threads and of the bench's own, over a run: what tells
// "the gateway was busy" from "someone else had the CPUs" (bench/openai_bench_parts.cpp).

#include <sys/types.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <tuple>
#include <vector>

#include "openai_bench_support.h"

namespace openai_bench {

// Every 10 ms of a run: how long the gateway's event-loop thread and this process's client
// thread had run and had waited for a CPU (/proc/.../schedstat), and the machine's busy and
// total jiffies. Written beside the samples, it tells a late delta's cause apart: the gateway's
// loop busy, the gateway or the client waiting for a CPU (other work on the machine), or both
// idle (a wait inside the gateway).
class SchedSampler {
 public:
  SchedSampler(boost::asio::io_context& io, pid_t gateway) : timer_(io), gateway_(gateway) {
    tick();
  }
  ~SchedSampler() { timer_.cancel(); }
  void stop() {
    stopped_ = true;
    timer_.cancel();
  }
  // "label,t_ms,gw_run_ms,gw_wait_ms,client_run_ms,client_wait_ms,busy_jiffies,jiffies"
  void write(const std::string& path, const std::string& label, Clock::time_point t0) const {
    if (path.empty()) return;
    std::ofstream out(path, std::ios::app);
    for (const auto& r : rows_) {
      out << label << ',' << ms_between(t0, r.at) << ',' << r.gw[0] << ',' << r.gw[1] << ','
          << r.client[0] << ',' << r.client[1] << ',' << r.busy << ',' << r.total << '\n';
    }
  }

 private:
  struct Row {
    Clock::time_point at;
    double gw[2], client[2], busy, total;
  };
  static void read(const std::string& path, double (&out)[2]) {  // run, wait in ms
    std::ifstream in(path);
    unsigned long long run = 0, wait = 0;
    in >> run >> wait;
    out[0] = static_cast<double>(run) / 1e6;
    out[1] = static_cast<double>(wait) / 1e6;
  }
  void tick() {
    if (stopped_) return;
    Row r;
    r.at = Clock::now();
    const std::string gw = std::to_string(gateway_);
    read("/proc/" + gw + "/task/" + gw + "/schedstat", r.gw);
    read("/proc/self/task/" + std::to_string(::getpid()) + "/schedstat", r.client);
    std::tie(r.busy, r.total) = machine_jiffies();
    rows_.push_back(r);
    timer_.expires_after(std::chrono::milliseconds(10));
    timer_.async_wait([this](boost::system::error_code ec) {
      if (!ec) tick();
    });
  }
  boost::asio::steady_timer timer_;
  pid_t gateway_;
  bool stopped_ = false;
  std::vector<Row> rows_;
};

// CPU use by thread, of the gateway and of this process, over a window.
struct CpuWindow {
  explicit CpuWindow(pid_t gw) : pid(gw) { reset(); }
  void reset() {
    t0 = Clock::now();
    if (pid > 0) gw0 = thread_cpu_s(std::to_string(pid));
    if (pid > 0) gw_wait0 = thread_wait_s(std::to_string(pid));
    self0 = thread_cpu_s("self");
    self_wait0 = thread_wait_s("self");
  }
  nlohmann::json result() const {
    const double wall = ms_between(t0, Clock::now()) / 1000;
    nlohmann::json r = {
        {"wallSeconds", std::round(wall * 1000) / 1000},
        {"benchThreads", thread_pcts(self0, thread_cpu_s("self"), wall)},
        {"benchThreadsWaitingForCpu", thread_pcts(self_wait0, thread_wait_s("self"), wall)}};
    if (pid > 0) {
      auto gw1 = thread_cpu_s(std::to_string(pid));
      double total = 0;
      for (auto& [k, v] : gw1) total += v - (gw0.count(k) ? gw0.at(k) : 0);
      r["gatewayCpuPct"] = wall > 0 ? std::round(total / wall * 1000) / 10 : 0.0;
      r["gatewayThreads"] = thread_pcts(gw0, gw1, wall);
      r["gatewayThreadsWaitingForCpu"] =
          thread_pcts(gw_wait0, thread_wait_s(std::to_string(pid)), wall);
    }
    return r;
  }
  pid_t pid;
  Clock::time_point t0;
  std::map<std::string, double> gw0, self0, gw_wait0, self_wait0;
};

}  // namespace openai_bench
