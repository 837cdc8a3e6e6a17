#include "openai_bench_parts.h"

#include <unistd.h>

#include <algorithm>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <stdexcept>
#include <thread>
#include <tuple>
#include <unordered_map>

#include "fakes/openai_fake.h"
#include "openai_bench_cpu.h"
#include "openai_bench_direct.h"
#include "openai_bench_support.h"

namespace openai_bench {

namespace {

using drawbridge::testing::OpenAiFake;
using Script = OpenAiFake::Script;
using Request = OpenAiFake::Request;
using Requests = std::unordered_map<std::string, Request>;
using nlohmann::json;
using namespace std::chrono_literals;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

constexpr const char* kToken = "bench-token-0123456789";
constexpr const char* kKeyEnv = "DRAWBRIDGE_BENCH_OPENAI_KEY";
constexpr const char* kKey = "sk-bench-0123456789abcdef";

std::vector<std::string> markers(int k) {
  std::vector<std::string> out;
  for (int i = 0; i < k; ++i) out.push_back("t" + std::to_string(i) + " ");
  return out;
}

std::string expected_text(int deltas) {
  std::string s;
  for (auto& m : markers(deltas)) s += m;
  return s;
}

double round3(double x) {
  return std::round(x * 1000) / 1000;
}

OpenAiFake::Options fake_options(std::size_t clients) {
  OpenAiFake::Options f;
  f.max_connections = std::max<std::size_t>(512, clients + 64);
  return f;
}

// Runs `io` until pred() (checked after each handler; with `poll`, every 10 ms) or the timeout.
// `check` runs every 100 ms (the gateway still alive?).
bool run_until(asio::io_context& io, const std::function<bool()>& pred, Clock::duration timeout,
               bool poll = false, const std::function<void()>& check = {}) {
  const auto deadline = Clock::now() + timeout;
  auto checked = Clock::now();
  while (!pred()) {
    const auto now = Clock::now();
    if (now >= deadline) return false;
    if (check && now - checked > 100ms) {
      checked = now;
      check();
    }
    if (poll) {
      io.run_for(10ms);
    } else {
      io.run_one_for(20ms);
    }
  }
  return true;
}

// One fake, one gateway pointed at it, and the clients of one run.
class Rig {
 public:
  Rig(const Options& o, const fs::path& dir, std::size_t clients, bool hold_streams)
      : fake_(std::make_unique<OpenAiFake>(fake_options(clients))),
        gw_(o.bin, dir, config(o, fake_->base_url(), clients, hold_streams), {{kKeyEnv, kKey}}),
        guard_(asio::make_work_guard(io_)) {
    fake_->set_api_key(kKey);
    gw_.start(15s);
    ep_ =
        tcp::endpoint(asio::ip::make_address("127.0.0.1"), static_cast<std::uint16_t>(gw_.port()));
  }
  ~Rig() {
    for (auto& c : clients_) c->close();
  }

  OpenAiFake& fake() { return *fake_; }
  void stop_fake() { fake_.reset(); }
  GatewayProcess& gateway() { return gw_; }
  asio::io_context& io() { return io_; }
  std::vector<std::shared_ptr<WsClient>>& clients() { return clients_; }

  // Opens n clients (sessions "<prefix><i>") and waits for every hello-ok.
  void connect(int n, const std::string& prefix) {
    int opened = 0;
    for (int i = 0; i < n; ++i) {
      auto c = std::make_shared<WsClient>(io_, prefix + std::to_string(i), kToken);
      clients_.push_back(c);
      c->open(ep_, [&opened](WsClient&) { ++opened; });
    }
    if (!run([&] { return opened == n; }, 60s)) {
      throw std::runtime_error("clients not connected within 60 s");
    }
    for (auto& c : clients_) {
      if (!c->failure().empty()) throw std::runtime_error("client: " + c->failure());
    }
  }

  // Throws when the gateway exits meanwhile.
  bool run(const std::function<bool()>& pred, Clock::duration timeout, bool poll = false) {
    return run_until(io_, pred, timeout, poll, [this] {
      if (gw_.exited()) throw std::runtime_error("the gateway exited:\n" + gw_.log_tail());
    });
  }

 private:
  static json config(const Options& o, const std::string& base_url, std::size_t clients,
                     bool hold_streams) {
    const int limit = static_cast<int>(std::max<std::size_t>(512, clients + 64));
    json agent = {{"type", "openai"},
                  {"baseUrl", base_url},
                  {"model", "fake-model"},
                  {"apiKeyEnv", kKeyEnv},
                  {"stream", true}};
    if (hold_streams) {  // streams held open on purpose: no timeout may end them
      agent["firstTokenTimeoutMs"] = 3600000;
      agent["idleTimeoutMs"] = 3600000;
      agent["timeoutMs"] = 3600000;
    }
    return {{"gateway",
             {{"auth", {{"token", kToken}}},
              {"bind", "127.0.0.1"},
              {"limits", {{"maxConnections", limit}, {"maxConnectionsPerPeer", limit}}}}},
            {"logging", {{"level", o.log_level}}},
            {"agents", {{"default", "main"}, {"main", agent}}},
            {"channels", {{"local", json::object()}}}};
  }

  std::unique_ptr<OpenAiFake> fake_;
  GatewayProcess gw_;
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> guard_;
  tcp::endpoint ep_;
  std::vector<std::shared_ptr<WsClient>> clients_;
};

// The fake's requests by the tag their last user message starts with.
Requests requests_by_tag(const OpenAiFake& fake) {
  Requests out;
  for (auto& r : fake.requests()) {
    if (!r.body.is_object() || !r.body.contains("messages")) continue;
    const json& messages = r.body["messages"];
    for (auto m = messages.rbegin(); m != messages.rend(); ++m) {
      if (!m->is_object() || m->value("role", "") != "user") continue;
      const std::string text = m->value("content", "");
      auto& slot = out[text.substr(0, text.find(' '))];
      if (slot.deltas_sent.empty()) slot = r;  // a retry without deltas does not replace one
      break;
    }
  }
  return out;
}

const Request* find(const Requests& requests, const std::string& tag) {
  auto it = requests.find(tag);
  return it == requests.end() ? nullptr : &it->second;
}

// Problems of the run: counted, the first few kept.
struct Problems {
  int count = 0;
  std::vector<std::string> samples;
  void add(const std::string& what) {
    ++count;
    if (samples.size() < 5) samples.push_back(what);
  }
  json to_json() const { return {{"count", count}, {"samples", samples}}; }
};

void check_turn(const Turn& t, const Request* r, int deltas, Problems& p) {
  if (t.end_state != "final") return p.add(t.tag + ": " + t.end_state + " " + t.error);
  if (!r) return p.add(t.tag + ": no request at the fake");
  if (r->deltas_sent.size() != static_cast<std::size_t>(deltas)) {
    return p.add(t.tag + ": the fake sent " + std::to_string(r->deltas_sent.size()) + " deltas");
  }
  if (t.markers.size() != static_cast<std::size_t>(deltas)) {
    return p.add(t.tag + ": " + std::to_string(t.markers.size()) + " delta markers received");
  }
  for (auto& m : t.markers) {
    if (!m) return p.add(t.tag + ": a delta never arrived");
  }
  if (t.final_text != expected_text(deltas)) p.add(t.tag + ": final text differs");
}

// First-delta figures of closed-loop turns "...-t<index>"; the warm-up ones are not measured.
json first_figures(const std::vector<Turn*>& turns, const Requests& requests, int warmup,
                   int deltas, Problems& problems) {
  std::vector<double> overhead, after_write, send_to_first, send_to_request;
  for (const Turn* t : turns) {
    const Request* req = find(requests, t->tag);
    check_turn(*t, req, deltas, problems);
    const int index = std::stoi(t->tag.substr(t->tag.rfind("-t") + 2));
    if (index < warmup || !req || !t->first_delta || req->deltas_sent.empty()) continue;
    overhead.push_back(ms_between(req->deltas_sent[0], *t->first_delta));
    if (req->first_delta_written) {
      after_write.push_back(ms_between(*req->first_delta_written, *t->first_delta));
    }
    send_to_first.push_back(ms_between(t->sent, *t->first_delta));
    send_to_request.push_back(ms_between(t->sent, req->received));
  }
  return {{"firstDeltaOverheadMs", to_json(percentiles(overhead))},
          {"firstDeltaAfterWriteCompletedMs", to_json(percentiles(after_write))},
          {"sendToFirstDeltaMs", to_json(percentiles(send_to_first))},
          {"sendToRequestAtFakeMs", to_json(percentiles(send_to_request))}};
}

// Per-delta figures of concurrent streams: receipt - write of every delta.
json delta_figures(const std::vector<Turn*>& turns, const Requests& requests, int deltas,
                   Problems& problems) {
  // The window in which every stream was running: from the last first delta written to the
  // first last delta written.
  auto all_from = Clock::time_point::min(), all_to = Clock::time_point::max();
  for (const Turn* t : turns) {
    const Request* req = find(requests, t->tag);
    if (!req || req->deltas_sent.empty()) continue;
    all_from = std::max(all_from, req->deltas_sent.front());
    all_to = std::min(all_to, req->deltas_sent.back());
  }
  std::vector<double> delay, steady, first, worst_per_stream;
  int over1 = 0, over5 = 0;
  for (const Turn* t : turns) {
    const Request* req = find(requests, t->tag);
    check_turn(*t, req, deltas, problems);
    if (!req) continue;
    double worst = 0;
    for (std::size_t k = 0; k < t->markers.size() && k < req->deltas_sent.size(); ++k) {
      if (!t->markers[k]) continue;
      const double d = ms_between(req->deltas_sent[k], *t->markers[k]);
      delay.push_back(d);
      if (req->deltas_sent[k] > all_from && req->deltas_sent[k] < all_to) steady.push_back(d);
      if (k == 0) first.push_back(d);
      worst = std::max(worst, d);
      over1 += d > 1;
      over5 += d > 5;
    }
    worst_per_stream.push_back(worst);
  }
  return {{"deltaDelayMs", to_json(percentiles(delay))},
          {"deltaDelayAllStreamsRunningMs", to_json(percentiles(steady))},
          {"allStreamsRunningSeconds",
           all_to > all_from ? round3(ms_between(all_from, all_to) / 1000) : 0.0},
          {"firstDeltaDelayMs", to_json(percentiles(first))},
          {"worstDelayPerStreamMs", to_json(percentiles(worst_per_stream))},
          {"deltasOver1ms", over1},
          {"deltasOver5ms", over5}};
}

// When the fake wrote the run's first delta.
Clock::time_point first_write(const std::vector<Turn*>& turns, const Requests& requests) {
  auto t0 = Clock::time_point::max();
  for (const Turn* t : turns) {
    const Request* req = find(requests, t->tag);
    if (req && !req->deltas_sent.empty()) t0 = std::min(t0, req->deltas_sent.front());
  }
  return t0;
}

// Appends "label,stream,k,write_ms,delay_ms" per delta to `path` (write_ms: from the first
// delta the fake wrote in this run), for plotting delays against time.
void write_samples(const std::string& path, const std::string& label,
                   const std::vector<Turn*>& turns, const Requests& requests) {
  if (path.empty()) return;
  const auto t0 = first_write(turns, requests);
  std::ofstream out(path, std::ios::app);
  for (const Turn* t : turns) {
    const Request* req = find(requests, t->tag);
    if (!req) continue;
    const std::string stream = t->tag.substr(t->tag.rfind("-t") + 2);
    for (std::size_t k = 0; k < t->markers.size() && k < req->deltas_sent.size(); ++k) {
      if (!t->markers[k]) continue;
      out << label << ',' << stream << ',' << k << ',' << ms_between(t0, req->deltas_sent[k]) << ','
          << ms_between(req->deltas_sent[k], *t->markers[k]) << '\n';
    }
  }
}

json finish(Rig& rig, json r, Problems& problems) {
  r["gatewayVmRssKiB"] = read_memory(rig.gateway().pid()).vm_rss;
  // Clients first: a stopping gateway waits (2 s) for the close handshake of connections
  // nobody reads any more.
  for (auto& c : rig.clients()) c->close();
  const auto t0 = Clock::now();
  const int rc = rig.gateway().stop();
  r["stopSeconds"] = round3(ms_between(t0, Clock::now()) / 1000);
  r["stopExit"] = rc;
  if (rc != 0) problems.add("the gateway's SIGTERM exit status was " + std::to_string(rc));
  r["problems"] = problems.to_json();
  return r;
}

std::vector<Turn*> turns_of(std::vector<std::shared_ptr<WsClient>>& clients) {
  std::vector<Turn*> out;
  for (auto& c : clients) {
    for (auto& t : c->turns()) out.push_back(&t);
  }
  return out;
}

// Starts call(i) for i in [0, n) spread evenly over `stagger` from 20 ms on.
std::vector<std::unique_ptr<asio::steady_timer>> staggered(asio::io_context& io, int n,
                                                           int stagger_ms,
                                                           std::function<void(int)> call) {
  std::vector<std::unique_ptr<asio::steady_timer>> timers;
  const auto t0 = Clock::now() + 20ms;
  for (int i = 0; i < n; ++i) {
    timers.push_back(std::make_unique<asio::steady_timer>(io));
    timers.back()->expires_at(t0 + std::chrono::microseconds(1000LL * stagger_ms * i / n));
    timers.back()->async_wait([call, i](boost::system::error_code ec) {
      if (!ec) call(i);
    });
  }
  return timers;
}

// The first part's turns: --first-deltas deltas, each --first-gap-ms after the one before (the
// first after the role chunk, which comes at once).
Script first_script(const Options& o) {
  return Script::slow_stream(markers(o.first_deltas), std::chrono::milliseconds(o.first_gap_ms));
}

Clock::duration first_budget(const Options& o, int turns, int concurrency) {
  const long long per_turn_ms =
      5 + 2LL * o.first_think_ms + (o.first_deltas + 1LL) * o.first_gap_ms;
  return std::chrono::milliseconds(60000 + 2 * turns * per_turn_ms / concurrency);
}

// The streams parts' turns: --deltas deltas --gap-ms apart, paced as --pace says.
Script streams_script(const Options& o) {
  Script s = Script::slow_stream(markers(o.deltas), std::chrono::milliseconds(o.gap_ms));
  s.pace = o.pace == "grid"          ? OpenAiFake::Pace::grid
           : o.pace == "after-write" ? OpenAiFake::Pace::after_write
                                     : OpenAiFake::Pace::steady;
  return s;
}

Clock::duration streams_budget(const Options& o) {
  return std::chrono::milliseconds(30000 + o.stagger_ms + 4LL * o.deltas * o.gap_ms);
}

json memory_json(const Memory& m) {
  return {{"vmRssKiB", m.vm_rss},
          {"rssAnonKiB", m.rss_anon},
          {"rssFileKiB", m.rss_file},
          {"vmHwmKiB", m.vm_hwm}};
}

}  // namespace

std::vector<json> run_direct(const Options& o, int run) {
  wait_quiet(o.quiet_s, o.quiet_pct);
  const std::string load = load_avg();
  OpenAiFake fake(fake_options(static_cast<std::size_t>(o.streams)));
  fake.set_api_key(kKey);
  asio::io_context io;
  auto guard = asio::make_work_guard(io);
  const tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), fake.port());
  const std::string path = "/v1/chat/completions";
  std::vector<std::shared_ptr<DirectStream>> streams;
  auto turns = [&] {
    std::vector<Turn*> out;
    for (auto& s : streams) out.push_back(&s->turn());
    return out;
  };
  std::vector<json> results;

  // One at a time, as the first part with one session (a fresh connection per turn).
  const int total = o.turns + o.warmup_turns;
  const std::string first_name = "direct-first-r" + std::to_string(run);
  const Script quick = first_script(o);
  int ended = 0;
  CpuWindow cpu(-1);
  std::function<void()> next = [&] {
    const int i = static_cast<int>(streams.size());
    if (i >= total) return;
    if (i == o.warmup_turns) cpu.reset();
    fake.push(quick);
    streams.push_back(std::make_shared<DirectStream>(io, first_name + "-t" + std::to_string(i)));
    streams.back()->start(ep, path, kKey, [&](DirectStream&) {
      ++ended;
      next();
    });
  };
  next();
  if (!run_until(
          io, [&] { return ended == total; }, first_budget(o, total, 1))) {
    throw std::runtime_error(first_name + ": not every turn ended within the time limit");
  }
  Problems first_problems;
  json first = {
      {"part", "first-direct"},  {"run", run},   {"concurrency", 1},   {"turns", o.turns},
      {"gapMs", o.first_gap_ms}, {"thinkMs", 0}, {"loadBefore", load}, {"cpu", cpu.result()}};
  first.update(first_figures(turns(), requests_by_tag(fake), o.warmup_turns, o.first_deltas,
                             first_problems));
  first["problems"] = first_problems.to_json();
  results.push_back(first);

  // Concurrent slow streams, as the streams part.
  streams.clear();
  ended = 0;
  const std::string name = "direct-streams-" + o.pace + "-r" + std::to_string(run);
  const Script slow = streams_script(o);
  for (int i = 0; i < o.streams; ++i) {
    fake.push(slow);
    streams.push_back(std::make_shared<DirectStream>(io, name + "-t" + std::to_string(i)));
  }
  cpu.reset();
  auto timers = staggered(io, o.streams, o.stagger_ms, [&](int i) {
    streams[static_cast<std::size_t>(i)]->start(ep, path, kKey, [&](DirectStream&) { ++ended; });
  });
  if (!run_until(
          io, [&] { return ended == o.streams; }, streams_budget(o))) {
    throw std::runtime_error(name + ": not every stream ended within the time limit");
  }
  Problems problems;
  json r = {{"part", "streams-direct"},  {"run", run},         {"streams", o.streams},
            {"deltas", o.deltas},        {"gapMs", o.gap_ms},  {"pace", o.pace},
            {"staggerMs", o.stagger_ms}, {"loadBefore", load}, {"cpu", cpu.result()}};
  const auto requests = requests_by_tag(fake);
  r.update(delta_figures(turns(), requests, o.deltas, problems));
  write_samples(o.samples, name, turns(), requests);
  r["problems"] = problems.to_json();
  results.push_back(r);
  return results;
}

json run_first(const Options& o, const fs::path& dir, int concurrency, int run) {
  wait_quiet(o.quiet_s, o.quiet_pct);
  json r = {{"part", "first"},
            {"run", run},
            {"concurrency", concurrency},
            {"turns", o.turns},
            {"gapMs", o.first_gap_ms},
            {"thinkMs", o.first_think_ms},
            {"loadBefore", load_avg()}};
  const std::string name = "first-c" + std::to_string(concurrency) + "-r" + std::to_string(run);
  Rig rig(o, dir / name, static_cast<std::size_t>(concurrency), false);
  rig.connect(concurrency, name + "-s");
  const int total = o.turns + o.warmup_turns;
  const Script script = first_script(o);
  int started = 0, ended = 0;
  CpuWindow cpu(rig.gateway().pid());
  std::mt19937 rng(12345);
  std::uniform_int_distribution<int> think_us(0, 2000 * o.first_think_ms);
  std::unordered_map<WsClient*, std::unique_ptr<asio::steady_timer>> timers;
  std::function<void(WsClient&)> next;
  auto begin = [&](WsClient& c) {
    if (started >= total || !c.failure().empty()) return;
    if (started == o.warmup_turns) cpu.reset();
    const std::string tag = name + "-t" + std::to_string(started++);
    rig.fake().push(script);
    c.send_turn(tag, tag + " stream please", next);
  };
  next = [&](WsClient& c) {
    ++ended;
    if (o.first_think_ms <= 0) return begin(c);
    auto& timer = timers[&c];
    if (!timer) timer = std::make_unique<asio::steady_timer>(rig.io());
    timer->expires_after(std::chrono::microseconds(think_us(rng)));
    timer->async_wait([&begin, &c](boost::system::error_code ec) {
      if (!ec) begin(c);
    });
  };
  for (auto& c : rig.clients()) begin(*c);
  if (!rig.run([&] { return ended == total; }, first_budget(o, total, concurrency))) {
    throw std::runtime_error(name + ": " + std::to_string(ended) + " of " + std::to_string(total) +
                             " turns ended within the time limit");
  }
  r["cpu"] = cpu.result();
  Problems problems;
  r.update(first_figures(turns_of(rig.clients()), requests_by_tag(rig.fake()), o.warmup_turns,
                         o.first_deltas, problems));
  return finish(rig, r, problems);
}

json run_streams(const Options& o, const fs::path& dir, int run) {
  wait_quiet(o.quiet_s, o.quiet_pct);
  json r = {{"part", "streams"},         {"run", run},
            {"streams", o.streams},      {"deltas", o.deltas},
            {"gapMs", o.gap_ms},         {"pace", o.pace},
            {"staggerMs", o.stagger_ms}, {"loadBefore", load_avg()}};
  const std::string name = "streams-" + o.pace + "-r" + std::to_string(run);
  Rig rig(o, dir / name, static_cast<std::size_t>(o.streams), false);
  rig.connect(o.streams, name + "-s");
  const Script script = streams_script(o);
  for (int i = 0; i < o.streams; ++i) rig.fake().push(script);
  int ended = 0;
  CpuWindow cpu(rig.gateway().pid());
  SchedSampler sched(rig.io(), rig.gateway().pid());
  auto timers = staggered(rig.io(), o.streams, o.stagger_ms, [&](int i) {
    auto& c = *rig.clients()[static_cast<std::size_t>(i)];
    if (!c.failure().empty()) return;
    const std::string tag = name + "-t" + std::to_string(i);
    c.send_turn(tag, tag + " stream please", [&ended](WsClient&) { ++ended; });
  });
  if (!rig.run([&] { return ended == o.streams; }, streams_budget(o))) {
    throw std::runtime_error(name + ": " + std::to_string(ended) + " of " +
                             std::to_string(o.streams) + " streams ended within the time limit");
  }
  sched.stop();
  r["cpu"] = cpu.result();
  r["fakeMaxActiveStreams"] = rig.fake().max_active_streams();
  Problems problems;
  const auto requests = requests_by_tag(rig.fake());
  r.update(delta_figures(turns_of(rig.clients()), requests, o.deltas, problems));
  write_samples(o.samples, name, turns_of(rig.clients()), requests);
  if (!o.samples.empty()) {
    sched.write(o.samples + ".sched", name, first_write(turns_of(rig.clients()), requests));
  }
  return finish(rig, r, problems);
}

json run_memory(const Options& o, const fs::path& dir, int n) {
  wait_quiet(o.quiet_s, o.quiet_pct);
  json r = {{"part", "memory"}, {"run", 1}, {"streams", n}, {"loadBefore", load_avg()}};
  const std::string name = "memory-" + std::to_string(n);
  Rig rig(o, dir / name, static_cast<std::size_t>(n), true);
  const pid_t pid = rig.gateway().pid();
  const auto settle = std::chrono::milliseconds(o.settle_ms);
  auto wait = [&] { rig.run([] { return false; }, settle, true); };
  std::this_thread::sleep_for(settle);
  const Memory idle = read_memory(pid);
  rig.connect(n, name + "-s");
  wait();
  const Memory connected = read_memory(pid);
  for (int i = 0; i < n; ++i) rig.fake().push(Script::stall_after_deltas({"t0 "}));
  int ended = 0;
  for (int i = 0; i < n; ++i) {
    const std::string tag = name + "-t" + std::to_string(i);
    rig.clients()[static_cast<std::size_t>(i)]->send_turn(tag, tag + " stream please",
                                                          [&ended](WsClient&) { ++ended; });
  }
  auto all_streaming = [&] {
    if (rig.fake().active_streams() != n) return false;
    return std::all_of(rig.clients().begin(), rig.clients().end(),
                       [](auto& c) { return c->turns().back().first_delta.has_value(); });
  };
  if (!rig.run(all_streaming, 60s, true)) {
    throw std::runtime_error(name + ": not every stream open with its first delta within 60 s (" +
                             std::to_string(rig.fake().active_streams()) + " at the fake, " +
                             std::to_string(ended) + " ended)");
  }
  wait();
  const Memory held = read_memory(pid);
  const int still_open = rig.fake().active_streams();
  // End them: the fake goes, every upstream connection closes, each turn ends cut short.
  rig.stop_fake();
  rig.run([&] { return ended == n; }, 60s, true);
  wait();
  const Memory after = read_memory(pid);
  Problems problems;
  if (still_open != n) problems.add(std::to_string(still_open) + " streams open at the fake");
  if (ended != n) problems.add(std::to_string(n - ended) + " turns never ended");
  auto per = [n](long a, long b) { return round3(static_cast<double>(a - b) / n); };
  r["idle"] = memory_json(idle);
  r["connected"] = memory_json(connected);
  r["streaming"] = memory_json(held);
  r["afterStreamsEnded"] = memory_json(after);
  r["perStreamKiB"] = {{"vmRss", per(held.vm_rss, idle.vm_rss)},
                       {"rssAnon", per(held.rss_anon, idle.rss_anon)},
                       {"vmRssOverConnected", per(held.vm_rss, connected.vm_rss)},
                       {"perConnectionVmRss", per(connected.vm_rss, idle.vm_rss)}};
  return finish(rig, r, problems);
}

}  // namespace openai_bench
