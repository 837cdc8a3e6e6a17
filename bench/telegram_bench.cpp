// drawbridge_telegram_bench: the Telegram channel against the fake Bot API (issue 12).
//
// Starts tests/fakes' TelegramFake in this process (127.0.0.1, a kernel-chosen port), writes a
// config (echo agent, channels.telegram with apiRoot = the fake, dmPolicy "open", the send rate
// limits off), spawns the real `drawbridge run` on a free 127.0.0.1 port with a fresh data
// folder, waits for /readyz 200, then runs the parts asked for (each on a fresh gateway and a
// fresh fake):
//
//  throughput  pushes -n updates ("u<i>") over --chats private chats as fast as the fake takes
//              them (or at --push-rate), measures updates/s from the first push to the last
//              reply the fake accepted, and checks that every update got exactly one reply.
//  latency     open loop at -r updates/s for -d seconds (after a warm-up of -w seconds, not
//              measured): per update, the fake's receipt of its sendMessage minus the time
//              just before it was pushed (so the getUpdates long-poll wake-up, the journal
//              commit, the echo turn and the sendMessage round trip are all in it).
//  lifecycle   --lifecycle-rate updates/s flow while the gateway gets --restarts SIGUSR1
//              (in-process restarts, each waited for: "generation N ready" in the log, then
//              /readyz 200), --reloads config file rewrites toggling pollTimeoutSeconds (which
//              restarts only the telegram channel: "channel telegram started" in the log, then
//              /readyz 200) and --kills SIGKILLs (started again on the same data folder and
//              port). Then every update must be answered: lost, duplicated (and how many reply
//              parts the logs say were replayed at a start; a second copy whose first one
//              arrived within 1 s before a kill is in README "Answered once"'s one window, any
//              other is not), the fake's largest number of overlapping getUpdates, and how long
//              the final SIGTERM took.
//
// Every wait has a deadline; everything talks to 127.0.0.1 only; the gateway is stopped by its
// PID (SIGTERM, SIGKILL after 10 s). Exit status: 0 every target of correctness met (no update
// lost, no duplicate outside the documented window, no overlapping polls, a clean stop), 1
// otherwise, 2 setup failure, 64 usage.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "bench_host.h"
#include "fakes/telegram_fake.h"

extern char** environ;

namespace {

namespace fs = std::filesystem;
using drawbridge::testing::TelegramFake;
using bench_host::free_port;
using bench_host::http_status;
using bench_host::load_avg;
using bench_host::machine_jiffies;
using bench_host::proc_cpu_s;
using bench_host::wait_quiet;
using nlohmann::json;
using Clock = std::chrono::steady_clock;
using Sys = std::chrono::system_clock;
using namespace std::chrono_literals;

// Not the tests' bot: a gateway of a test run on the same machine must not share its poll lock.
constexpr const char* kBot = "778899001:drawbridge-bench-bot";
constexpr std::int64_t kBotId = 778899001;
constexpr const char* kTokenEnv = "DRAWBRIDGE_BENCH_BOT_TOKEN";
constexpr std::int64_t kFirstChat = 5000000;

struct Options {
  std::string bin;
  std::string tmp;
  std::string parts = "throughput,latency,lifecycle";
  int updates = 20000;
  int chats = 1000;
  double push_rate = 0;  // throughput: 0 = as fast as the fake takes them
  double rate = 200;
  double duration_s = 10;
  double warmup_s = 1;
  double lifecycle_rate = 200;
  int restarts = 20;
  int reloads = 20;
  int kills = 5;
  double pause_s = 0.5;  // lifecycle: updates flow this long between two events
  int repeats = 1;
  int quiet_s = 0;
  int quiet_pct = 80;
  std::string keep;
  std::string json_out;
  std::string log_level = "info";
};

double secs(Clock::duration d) {
  return std::chrono::duration<double>(d).count();
}
double ms(Sys::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}




// CPU seconds per thread ("comm/tid") of a process ("self" for this one).
std::map<std::string, double> thread_cpu_s(const std::string& pid) {
  std::map<std::string, double> out;
  std::error_code ec;
  for (auto& t : fs::directory_iterator("/proc/" + pid + "/task", ec)) {
    std::ifstream in(t.path() / "stat");
    std::string s;
    if (!std::getline(in, s)) continue;
    auto open = s.find('('), close = s.rfind(')');
    if (open == std::string::npos || close == std::string::npos) continue;
    std::istringstream rest(s.substr(close + 2));
    std::string f;
    unsigned long long ut = 0, st = 0;
    for (int i = 3; i <= 15 && rest >> f; ++i) {
      if (i == 14) ut = std::stoull(f);
      if (i == 15) st = std::stoull(f);
    }
    const std::string tid = t.path().filename().string();
    std::string name = s.substr(open + 1, close - open - 1) + "/" + tid;
    // In this process: the main thread pushes and waits; the only other is the fake's server.
    if (pid == "self") name = tid == std::to_string(::getpid()) ? "main" : "fake-server/" + tid;
    out[name] = static_cast<double>(ut + st) / static_cast<double>(sysconf(_SC_CLK_TCK));
  }
  return out;
}

// "name 93%, name 12%" for the threads that used at least 2% of a core since `before`.
json thread_pcts(const std::map<std::string, double>& before,
                 const std::map<std::string, double>& after, double wall) {
  json out = json::object();
  for (auto& [k, v] : after) {
    auto b = before.find(k);
    const double d = v - (b == before.end() ? 0 : b->second);
    if (wall > 0 && d / wall >= 0.02) out[k] = std::round(d / wall * 1000) / 10;
  }
  return out;
}

double self_cpu_s() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}




std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

int count_of(const std::string& text, const std::string& needle) {
  int n = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

// Reply parts the log says a start sent again because the last run died before recording them
// as sent (README "Answered once"; as tests/e2e/telegram_test.cpp counts them).
int parts_replayed(const std::string& log) {
  int n = 0;
  const std::string needle = " unfinished message(s) and ";
  for (auto at = log.find(needle); at != std::string::npos; at = log.find(needle, at + 1)) {
    n += std::atoi(log.substr(at + needle.size(), 12).c_str());
  }
  return n;
}

struct Percentiles {
  std::size_t n = 0;
  double p50 = 0, p90 = 0, p99 = 0, max = 0, mean = 0;
};

Percentiles percentiles(std::vector<double> v) {
  Percentiles p;
  p.n = v.size();
  if (v.empty()) return p;
  std::sort(v.begin(), v.end());
  auto at = [&](double q) {
    auto i = static_cast<std::size_t>(std::ceil(q * static_cast<double>(v.size()))) - 1;
    return v[std::min(i, v.size() - 1)];
  };
  p.p50 = at(0.50);
  p.p90 = at(0.90);
  p.p99 = at(0.99);
  p.max = v.back();
  double s = 0;
  for (double x : v) s += x;
  p.mean = s / static_cast<double>(v.size());
  return p;
}

// One `drawbridge run` child, its config, data folder and logs (one log per start).
class GatewayProcess {
 public:
  GatewayProcess(const Options& o, fs::path dir, const TelegramFake& fake)
      : o_(o), dir_(std::move(dir)), api_root_(fake.base_url()) {
    fs::create_directories(dir_ / "data");
    fs::create_directories(dir_ / "run");
    ::chmod((dir_ / "run").c_str(), 0700);
    port_ = free_port();
    write_config();
  }
  ~GatewayProcess() { stop(); }

  // pollTimeoutSeconds toggles between 5 and 6 (a change that restarts only the channel).
  void write_config() {
    json cfg = {{"gateway",
                 {{"auth", {{"token", "bench-token"}}},
                  {"bind", "127.0.0.1"},
                  {"restart", {{"delayMs", 0}, {"cooldownMs", 0}}}}},
                {"logging", {{"level", o_.log_level}}},
                {"agents", {{"main", {{"type", "echo"}}}}},
                {"channels",
                 {{"telegram",
                   {{"botTokenEnv", kTokenEnv},
                    {"apiRoot", api_root_},
                    {"dmPolicy", "open"},
                    {"pollTimeoutSeconds", poll_timeout_},
                    // Telegram's own limits (30/s per bot, 1/s per chat) would be the measure.
                    {"sendRate", {{"botPerSecond", 0}, {"chatPerSecond", 0}}}}}}}};
    // In place (the gateway watches the file), as an editor that truncates would.
    std::ofstream out(config_path(), std::ios::trunc);
    out << "// drawbridge_telegram_bench config\n" << cfg.dump(2) << "\n";
    out.close();
    if (!out) throw std::runtime_error("cannot write " + config_path().string());
  }
  void toggle_poll_timeout() {
    poll_timeout_ = poll_timeout_ == 5 ? 6 : 5;
    write_config();
  }

  fs::path config_path() const { return dir_ / "config.json"; }
  fs::path log_path() const { return dir_ / ("gateway-" + std::to_string(starts_) + ".log"); }
  pid_t pid() const { return pid_; }
  int port() const { return port_; }
  int starts() const { return starts_; }
  std::string log() const { return read_text(log_path()); }
  std::string all_logs() const {
    std::string s;
    for (int i = 1; i <= starts_; ++i) {
      s += read_text(dir_ / ("gateway-" + std::to_string(i) + ".log"));
    }
    return s;
  }

  // Starts the process and waits (bounded) for /readyz 200; the time it took.
  double start(std::chrono::milliseconds timeout = 15s) {
    if (pid_ > 0) throw std::logic_error("already running");
    ++starts_;
    const std::string log = log_path().string();
    std::vector<std::string> args{o_.bin,
                                  "--config",
                                  config_path().string(),
                                  "run",
                                  "--port",
                                  std::to_string(port_),
                                  "--data-dir",
                                  (dir_ / "data").string()};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::vector<std::string> env_s;
    for (char** e = environ; *e; ++e) {
      std::string_view v(*e);
      if (v.rfind(std::string(kTokenEnv) + "=", 0) == 0 || v.rfind("XDG_RUNTIME_DIR=", 0) == 0) {
        continue;
      }
      env_s.emplace_back(v);
    }
    env_s.push_back(std::string(kTokenEnv) + "=" + kBot);
    env_s.push_back("XDG_RUNTIME_DIR=" + (dir_ / "run").string());
    std::vector<char*> envp;
    for (auto& e : env_s) envp.push_back(e.data());
    envp.push_back(nullptr);
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) throw std::runtime_error("cannot open " + log);
    const auto t0 = Clock::now();
    pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error("fork failed");
    if (pid == 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      int nul = ::open("/dev/null", O_RDONLY);
      if (nul >= 0) ::dup2(nul, 0);
      ::execve(argv[0], argv.data(), envp.data());
      ::_exit(127);
    }
    ::close(fd);
    pid_ = pid;
    if (!wait_ready(t0 + timeout)) {
      throw std::runtime_error("gateway not ready within " + std::to_string(timeout.count()) +
                               " ms; log " + log + ":\n" + tail(this->log()));
    }
    return secs(Clock::now() - t0);
  }

  bool wait_ready(Clock::time_point deadline) {
    while (Clock::now() < deadline) {
      if (exited()) return false;
      if (http_status(port_, "/readyz") == 200) return true;
      std::this_thread::sleep_for(2ms);
    }
    return false;
  }

  bool exited() {
    if (pid_ <= 0) return true;
    int st = 0;
    if (::waitpid(pid_, &st, WNOHANG) == pid_) {
      pid_ = -1;
      return true;
    }
    return false;
  }

  void signal(int sig) {
    if (pid_ > 0) ::kill(pid_, sig);
  }

  // SIGKILL and reap.
  void kill9() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    int st = 0;
    ::waitpid(pid_, &st, 0);
    pid_ = -1;
  }

  // SIGTERM, SIGKILL after 10 s; the exit status (-1 when killed or not running).
  int stop() {
    if (pid_ <= 0) return -1;
    ::kill(pid_, SIGTERM);
    const auto deadline = Clock::now() + 10s;
    int st = 0;
    while (Clock::now() < deadline) {
      if (::waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
      }
      std::this_thread::sleep_for(5ms);
    }
    std::fprintf(stderr, "gateway %d ignored SIGTERM for 10 s: SIGKILL\n", pid_);
    kill9();
    return -1;
  }

  // Waits (bounded) until `needle` occurs more than `seen` times in the current log.
  bool wait_log_count(const std::string& needle, int seen, Clock::time_point deadline) {
    while (Clock::now() < deadline) {
      if (count_of(log(), needle) > seen) return true;
      if (exited()) return false;
      std::this_thread::sleep_for(2ms);
    }
    return false;
  }

  static std::string tail(const std::string& s, std::size_t n = 3000) {
    return s.size() <= n ? s : "..." + s.substr(s.size() - n);
  }

 private:
  const Options& o_;
  fs::path dir_;
  std::string api_root_;
  int port_ = 0;
  int poll_timeout_ = 5;
  int starts_ = 0;
  pid_t pid_ = -1;
};

// The replies the fake accepted, by text: "u<i>" -> times; everything else (restart notices)
// counted apart.
struct Replies {
  std::unordered_map<std::string, std::vector<Sys::time_point>> by_text;
  int other = 0;
  std::vector<std::string> other_samples;
};

Replies replies(const TelegramFake& fake) {
  Replies r;
  for (auto& m : fake.sent(kBot)) {
    if (m.text.size() >= 2 && (m.text[0] == 'u' || m.text[0] == 'w') &&
        std::all_of(m.text.begin() + 1, m.text.end(),
                    [](unsigned char c) { return std::isdigit(c); })) {
      r.by_text[m.text].push_back(m.time);
    } else {
      ++r.other;
      if (r.other_samples.size() < 3) r.other_samples.push_back(m.text.substr(0, 120));
    }
  }
  return r;
}

// Waits (bounded) until the fake has accepted at least `n` sendMessage calls whose texts cover
// every one of `texts`; returns the replies seen last.
Replies wait_answered(const TelegramFake& fake, const std::vector<std::string>& texts,
                      Clock::time_point deadline) {
  Replies r;
  while (true) {
    if (fake.requests(kBot, "sendMessage") >= static_cast<int>(texts.size())) {
      r = replies(fake);
      bool all = true;
      for (auto& t : texts) {
        if (!r.by_text.count(t)) {
          all = false;
          break;
        }
      }
      if (all || Clock::now() >= deadline) return r;
      std::this_thread::sleep_for(100ms);
      continue;
    }
    if (Clock::now() >= deadline) return replies(fake);
    std::this_thread::sleep_for(10ms);
  }
}

struct Check {
  int lost = 0;
  int duplicated = 0;  // updates answered more than once
  int extra = 0;       // replies beyond the first, over all updates
};

Check check(const Replies& r, const std::vector<std::string>& texts) {
  Check c;
  for (auto& t : texts) {
    auto it = r.by_text.find(t);
    if (it == r.by_text.end()) {
      ++c.lost;
    } else if (it->second.size() > 1) {
      ++c.duplicated;
      c.extra += static_cast<int>(it->second.size()) - 1;
    }
  }
  return c;
}

std::int64_t chat_of(int i, int chats) {
  return kFirstChat + (i % chats);
}

void print_errors(const std::string& log) {
  std::istringstream in(log);
  std::string line;
  std::map<std::string, int> seen;
  int shown = 0;
  while (std::getline(in, line)) {
    if (line.find("[error]") == std::string::npos && line.find("[warning]") == std::string::npos &&
        line.find("[critical]") == std::string::npos) {
      continue;
    }
    // Group by the text after the level.
    auto at = line.find("] ", line.find('['));
    std::string key = at == std::string::npos ? line : line.substr(at + 2, 70);
    if (seen[key]++ == 0 && shown++ < 8) std::printf("    log: %s\n", line.substr(0, 220).c_str());
  }
  int total = 0;
  for (auto& [k, n] : seen) total += n;
  if (total > 0) std::printf("    (%d warning/error line(s) in the gateway log)\n", total);
}

struct Usage {
  Clock::time_point t0;
  double gw0 = 0, self0 = 0;
  std::pair<double, double> m0;
  pid_t pid;
  std::map<std::string, double> gw_threads0, self_threads0;
  explicit Usage(pid_t p)
      : t0(Clock::now()),
        gw0(proc_cpu_s(p)),
        self0(self_cpu_s()),
        m0(machine_jiffies()),
        pid(p),
        gw_threads0(thread_cpu_s(std::to_string(p))),
        self_threads0(thread_cpu_s("self")) {}
  json end() const {
    const double wall = secs(Clock::now() - t0);
    const auto m1 = machine_jiffies();
    const double busy = m1.second > m0.second ? (m1.first - m0.first) / (m1.second - m0.second) : 0;
    return {
        {"gatewayCpuPct", std::round((proc_cpu_s(pid) - gw0) / wall * 1000) / 10},
        {"benchCpuPct", std::round((self_cpu_s() - self0) / wall * 1000) / 10},
        {"machineBusyPct", std::round(busy * 1000) / 10},
        {"gatewayThreadsPct", thread_pcts(gw_threads0, thread_cpu_s(std::to_string(pid)), wall)},
        {"benchThreadsPct", thread_pcts(self_threads0, thread_cpu_s("self"), wall)}};
  }
};

// --- throughput ---------------------------------------------------------------------------

json run_throughput(const Options& o, const fs::path& dir, int run) {
  TelegramFake::Options fo;
  fo.max_connections = 4096;
  TelegramFake fake(fo);
  fake.add_bot(kBot, kBotId, "drawbridge_bench_bot");
  GatewayProcess gw(o, dir / ("throughput-" + std::to_string(run)), fake);
  wait_quiet(o.quiet_s, o.quiet_pct);
  const std::string load = load_avg();
  gw.start();
  if (!fake.wait_for([&] { return fake.poll_waiting(kBot); }, 10s)) {
    throw std::runtime_error("no getUpdates waits:\n" + gw.log());
  }
  std::vector<std::string> texts;
  texts.reserve(static_cast<std::size_t>(o.updates));
  for (int i = 0; i < o.updates; ++i) texts.push_back("u" + std::to_string(i));

  Usage usage(gw.pid());
  const auto first = Sys::now();
  const auto c0 = Clock::now();
  for (int i = 0; i < o.updates; ++i) {
    if (o.push_rate > 0) {
      std::this_thread::sleep_until(c0 + std::chrono::duration_cast<Clock::duration>(
                                             std::chrono::duration<double>(i / o.push_rate)));
    }
    const auto chat = chat_of(i, o.chats);
    fake.push_message(kBot, chat, chat, texts[static_cast<std::size_t>(i)]);
  }
  const double push_s = secs(Clock::now() - c0);
  // Ingested: every update confirmed to the fake (the poll after its journal commit).
  const auto ingest_deadline = Clock::now() + 120s;
  while (fake.pending_updates(kBot) > 0 && Clock::now() < ingest_deadline) {
    std::this_thread::sleep_for(5ms);
  }
  const double ingest_s = secs(Clock::now() - c0);
  const Replies r = wait_answered(fake, texts, Clock::now() + 120s);
  const json cpu = usage.end();
  Sys::time_point last = first;
  for (auto& [t, times] : r.by_text) {
    for (auto& x : times) last = std::max(last, x);
  }
  const Check c = check(r, texts);
  const double window_s = ms(last - first) / 1000;
  json res = {{"part", "throughput"},
              {"run", run},
              {"updates", o.updates},
              {"chats", o.chats},
              {"pushRate", o.push_rate},
              {"pushSeconds", push_s},
              {"ingestSeconds", ingest_s},
              {"seconds", window_s},
              {"updatesPerSecond", window_s > 0 ? std::round(o.updates / window_s) : 0},
              {"lost", c.lost},
              {"duplicated", c.duplicated},
              {"otherReplies", r.other},
              {"getUpdates", fake.requests(kBot, "getUpdates")},
              {"sendMessage", fake.requests(kBot, "sendMessage")},
              {"maxConcurrentPolls", fake.max_concurrent_polls(kBot)},
              {"loadBefore", load},
              {"loadAfter", load_avg()}};
  res.update(cpu);
  std::printf(
      "throughput run %d: %d updates over %d chats: pushed in %.2f s, all confirmed at %.2f s, "
      "last reply at %.2f s: %.0f updates/s; lost %d, duplicated %d, other replies %d; "
      "getUpdates %d, sendMessage %d; gateway CPU %.0f%%, bench+fake CPU %.0f%%, machine busy "
      "%.0f%%; load before %s\n",
      run, o.updates, o.chats, push_s, ingest_s, window_s, res["updatesPerSecond"].get<double>(),
      c.lost, c.duplicated, r.other, res["getUpdates"].get<int>(), res["sendMessage"].get<int>(),
      res["gatewayCpuPct"].get<double>(), res["benchCpuPct"].get<double>(),
      res["machineBusyPct"].get<double>(), load.c_str());
  std::printf("  CPU %% of one core by thread: gateway %s; bench %s\n",
              res["gatewayThreadsPct"].dump().c_str(), res["benchThreadsPct"].dump().c_str());
  print_errors(gw.all_logs());
  gw.stop();
  return res;
}

// --- latency ------------------------------------------------------------------------------

json run_latency(const Options& o, const fs::path& dir, int run) {
  TelegramFake::Options fo;
  fo.max_connections = 4096;
  TelegramFake fake(fo);
  fake.add_bot(kBot, kBotId, "drawbridge_bench_bot");
  GatewayProcess gw(o, dir / ("latency-" + std::to_string(run)), fake);
  wait_quiet(o.quiet_s, o.quiet_pct);
  const std::string load = load_avg();
  gw.start();
  if (!fake.wait_for([&] { return fake.poll_waiting(kBot); }, 10s)) {
    throw std::runtime_error("no getUpdates waits:\n" + gw.log());
  }
  const int warm = static_cast<int>(o.warmup_s * o.rate);
  const int n = static_cast<int>(o.duration_s * o.rate);
  std::vector<std::string> texts, warm_texts;
  for (int i = 0; i < n; ++i) texts.push_back("u" + std::to_string(i));
  for (int i = 0; i < warm; ++i) warm_texts.push_back("w" + std::to_string(i));
  std::vector<Sys::time_point> pushed(static_cast<std::size_t>(n));
  double max_lag_ms = 0;
  std::optional<Usage> usage;
  const auto c0 = Clock::now();
  for (int i = 0; i < warm + n; ++i) {
    const auto due =
        c0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(i / o.rate));
    std::this_thread::sleep_until(due);
    max_lag_ms =
        std::max(max_lag_ms, std::chrono::duration<double, std::milli>(Clock::now() - due).count());
    if (i == warm) usage.emplace(gw.pid());
    const auto chat = chat_of(i, o.chats);
    if (i < warm) {
      fake.push_message(kBot, chat, chat, warm_texts[static_cast<std::size_t>(i)]);
    } else {
      pushed[static_cast<std::size_t>(i - warm)] = Sys::now();
      fake.push_message(kBot, chat, chat, texts[static_cast<std::size_t>(i - warm)]);
    }
  }
  const Replies r = wait_answered(fake, texts, Clock::now() + 60s);
  const json cpu = usage ? usage->end() : json::object();
  const Check c = check(r, texts);
  std::vector<double> lat;
  lat.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    auto it = r.by_text.find(texts[static_cast<std::size_t>(i)]);
    if (it == r.by_text.end()) continue;
    lat.push_back(ms(it->second.front() - pushed[static_cast<std::size_t>(i)]));
  }
  const Percentiles p = percentiles(lat);
  json res = {{"part", "latency"},
              {"run", run},
              {"rate", o.rate},
              {"seconds", o.duration_s},
              {"updates", n},
              {"chats", o.chats},
              {"latencyMs",
               {{"p50", p.p50}, {"p90", p.p90}, {"p99", p.p99}, {"max", p.max}, {"mean", p.mean}}},
              {"maxPushLagMs", max_lag_ms},
              {"lost", c.lost},
              {"duplicated", c.duplicated},
              {"otherReplies", r.other},
              {"getUpdates", fake.requests(kBot, "getUpdates")},
              {"maxConcurrentPolls", fake.max_concurrent_polls(kBot)},
              {"loadBefore", load},
              {"loadAfter", load_avg()}};
  res.update(cpu);
  std::printf(
      "latency run %d: %d updates at %.0f/s over %d chats (after %d warm-up): p50 %.2f ms, p90 "
      "%.2f ms, p99 %.2f ms, max %.2f ms, mean %.2f ms; lost %d, duplicated %d; getUpdates %d; "
      "max push lag %.2f ms; gateway CPU %.1f%%, bench+fake CPU %.1f%%; load before %s\n",
      run, n, o.rate, o.chats, warm, p.p50, p.p90, p.p99, p.max, p.mean, c.lost, c.duplicated,
      res["getUpdates"].get<int>(), max_lag_ms, res.value("gatewayCpuPct", 0.0),
      res.value("benchCpuPct", 0.0), load.c_str());
  print_errors(gw.all_logs());
  gw.stop();
  return res;
}

// --- lifecycle ----------------------------------------------------------------------------

json run_lifecycle(const Options& o, const fs::path& dir, int run) {
  TelegramFake::Options fo;
  fo.max_connections = 4096;
  TelegramFake fake(fo);
  fake.add_bot(kBot, kBotId, "drawbridge_bench_bot");
  GatewayProcess gw(o, dir / ("lifecycle-" + std::to_string(run)), fake);
  wait_quiet(o.quiet_s, o.quiet_pct);
  const std::string load = load_avg();
  gw.start();
  if (!fake.wait_for([&] { return fake.poll_waiting(kBot); }, 10s)) {
    throw std::runtime_error("no getUpdates waits:\n" + gw.log());
  }

  std::atomic<bool> stop_pushing{false};
  std::atomic<int> pushed{0};
  std::thread pusher([&] {
    const auto c0 = Clock::now();
    for (int i = 0; !stop_pushing.load(); ++i) {
      std::this_thread::sleep_until(c0 + std::chrono::duration_cast<Clock::duration>(
                                             std::chrono::duration<double>(i / o.lifecycle_rate)));
      const auto chat = chat_of(i, o.chats);
      fake.push_message(kBot, chat, chat, "u" + std::to_string(i));
      pushed.store(i + 1);
    }
  });
  auto pause = [&] { std::this_thread::sleep_for(std::chrono::duration<double>(o.pause_s)); };
  std::string failure;
  std::vector<double> restart_ms, reload_ms, kill_ms;
  const auto t0 = Clock::now();
  const auto events_t0 = Sys::now();
  std::vector<Sys::time_point> kill_at;
  try {
    pause();
    for (int i = 0; i < o.restarts; ++i) {
      const std::string needle = " ready: restart (";
      const int seen = count_of(gw.log(), needle);
      const auto s0 = Clock::now();
      gw.signal(SIGUSR1);
      if (!gw.wait_log_count(needle, seen, Clock::now() + 20s) ||
          !gw.wait_ready(Clock::now() + 20s)) {
        throw std::runtime_error("restart " + std::to_string(i + 1) + " not ready within 20 s");
      }
      restart_ms.push_back(secs(Clock::now() - s0) * 1000);
      pause();
    }
    for (int i = 0; i < o.reloads; ++i) {
      const std::string needle = "channel telegram started";
      const int seen = count_of(gw.log(), needle);
      const auto s0 = Clock::now();
      gw.toggle_poll_timeout();
      if (!gw.wait_log_count(needle, seen, Clock::now() + 20s) ||
          !gw.wait_ready(Clock::now() + 20s)) {
        throw std::runtime_error("reload " + std::to_string(i + 1) +
                                 ": the channel did not start again within 20 s");
      }
      reload_ms.push_back(secs(Clock::now() - s0) * 1000);
      pause();
    }
    for (int i = 0; i < o.kills; ++i) {
      const auto s0 = Clock::now();
      kill_at.push_back(Sys::now());
      gw.kill9();
      gw.start(20s);
      kill_ms.push_back(secs(Clock::now() - s0) * 1000);
      pause();
    }
  } catch (const std::exception& e) {
    failure = e.what();
  }
  stop_pushing = true;
  pusher.join();
  const double events_s = secs(Clock::now() - t0);
  const int n = pushed.load();
  std::vector<std::string> texts;
  for (int i = 0; i < n; ++i) texts.push_back("u" + std::to_string(i));
  Replies r = wait_answered(fake, texts, Clock::now() + 60s);
  // Anything still in flight (a replayed part) has had its chance to arrive twice.
  std::this_thread::sleep_for(1s);
  r = replies(fake);
  const Check c = check(r, texts);
  const std::string logs = gw.all_logs();
  const int replayed = parts_replayed(logs);
  // The documented window (README "Answered once") is a kill between the fake accepting a part
  // and the outbox marking it sent: the first copy arrived just before a kill (within 1 s; the
  // kill's time is taken just before the signal). Any other second copy is outside it.
  int at_kill = 0, outside = 0;
  for (auto& t : texts) {
    auto it = r.by_text.find(t);
    if (it == r.by_text.end() || it->second.size() < 2) continue;
    const auto first_copy = *std::min_element(it->second.begin(), it->second.end());
    const bool near_kill = std::any_of(kill_at.begin(), kill_at.end(), [&](Sys::time_point k) {
      return first_copy <= k + 100ms && first_copy >= k - 1s;
    });
    (near_kill ? at_kill : outside) += static_cast<int>(it->second.size()) - 1;
  }
  const int unexplained = std::max(outside, c.extra - replayed);
  const int max_polls = fake.max_concurrent_polls(kBot);
  auto summary = [](const std::vector<double>& v) {
    const Percentiles p = percentiles(v);
    return json{{"n", p.n}, {"p50", p.p50}, {"max", p.max}};
  };
  json res = {{"part", "lifecycle"},
              {"run", run},
              {"rate", o.lifecycle_rate},
              {"updates", n},
              {"chats", o.chats},
              {"restarts", restart_ms.size()},
              {"reloads", reload_ms.size()},
              {"kills", kill_ms.size()},
              {"seconds", events_s},
              {"restartMs", summary(restart_ms)},
              {"reloadMs", summary(reload_ms)},
              {"killToReadyMs", summary(kill_ms)},
              {"lost", c.lost},
              {"duplicated", c.duplicated},
              {"extraReplies", c.extra},
              {"partsReplayed", replayed},
              {"duplicatesAtAKill", at_kill},
              {"duplicatesOutsideTheWindow", outside},
              {"unexplainedDuplicates", unexplained},
              {"maxConcurrentPolls", max_polls},
              {"otherReplies", r.other},
              {"gatewayStarts", gw.starts()},
              {"failure", failure},
              {"loadBefore", load},
              {"loadAfter", load_avg()}};
  std::printf(
      "lifecycle run %d: %d updates at %.0f/s over %.1f s with %zu restarts (SIGUSR1 -> ready "
      "p50 %.1f ms, max %.1f ms), %zu channel reloads (write -> started and ready p50 %.1f ms, "
      "max %.1f ms), %zu kill -9 (kill -> ready p50 %.1f ms, max %.1f ms)\n"
      "  lost %d, duplicated %d (%d extra replies; the logs say %d part(s) were replayed at a "
      "start; %d first delivered within 1 s before a kill, %d not: %d unexplained), max "
      "overlapping getUpdates %d, other replies (notices) %d%s%s\n",
      run, n, o.lifecycle_rate, events_s, restart_ms.size(), percentiles(restart_ms).p50,
      percentiles(restart_ms).max, reload_ms.size(), percentiles(reload_ms).p50,
      percentiles(reload_ms).max, kill_ms.size(), percentiles(kill_ms).p50,
      percentiles(kill_ms).max, c.lost, c.duplicated, c.extra, replayed, at_kill, outside,
      unexplained, max_polls, r.other, failure.empty() ? "" : "\n  FAILED: ", failure.c_str());
  for (auto& s : r.other_samples) std::printf("    other reply: %s\n", s.c_str());
  if (c.duplicated > 0) {
    // When each copy arrived, against the kills: the documented window is a kill.
    int shown = 0;
    std::printf("    answered more than once (s after the first event):");
    for (auto& t : texts) {
      auto it = r.by_text.find(t);
      if (it == r.by_text.end() || it->second.size() < 2 || shown++ >= 10) continue;
      std::printf(" %s at", t.c_str());
      for (auto& x : it->second) std::printf(" %.3f", ms(x - events_t0) / 1000);
      std::printf(";");
    }
    std::printf("\n    kill -9 at (s):");
    for (auto& k : kill_at) std::printf(" %.3f", ms(k - events_t0) / 1000);
    std::printf("\n");
  }
  if (c.lost > 0) {
    int shown = 0;
    std::printf("    lost:");
    for (auto& t : texts) {
      if (!r.by_text.count(t) && shown++ < 20) std::printf(" %s", t.c_str());
    }
    std::printf("\n");
  }
  print_errors(logs);
  // A stop that hangs (deliveries that never complete) is a finding too.
  const auto s0 = Clock::now();
  const int stop_rc = gw.stop();
  res["stopSeconds"] = secs(Clock::now() - s0);
  res["stopExit"] = stop_rc;
  std::printf("  SIGTERM -> exit: %.2f s, exit status %d%s\n", res["stopSeconds"].get<double>(),
              stop_rc, stop_rc != 0 ? " (SIGKILL after 10 s, or a failed exit)" : "");
  return res;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (const char* b = std::getenv("DRAWBRIDGE_BIN")) o.bin = b;
  if (o.bin.empty()) {
    // bench/drawbridge_telegram_bench next to the build's drawbridge.
    std::error_code ec;
    auto self = fs::read_symlink("/proc/self/exe", ec);
    o.bin = (self.parent_path().parent_path() / "drawbridge").string();
  }
  if (const char* t = std::getenv("BENCH_TMP")) o.tmp = t;
  if (o.tmp.empty()) o.tmp = std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp";

  CLI::App app{"drawbridge_telegram_bench: the Telegram channel against the fake Bot API"};
  app.add_option("--bin", o.bin, "drawbridge binary (default $DRAWBRIDGE_BIN or ../drawbridge)");
  app.add_option("--tmp", o.tmp, "Where the data folders go (default $BENCH_TMP, $TMPDIR, /tmp)");
  app.add_option("--parts,-p", o.parts, "Comma-separated: throughput,latency,lifecycle");
  app.add_option("--updates,-n", o.updates, "Throughput: updates pushed (default 20000)");
  app.add_option("--chats,-c", o.chats, "Private chats the updates are spread over (default 1000)");
  app.add_option("--push-rate", o.push_rate, "Throughput: push rate, updates/s (0: at once)");
  app.add_option("--rate,-r", o.rate, "Latency: updates/s, open loop (default 200)");
  app.add_option("--duration,-d", o.duration_s, "Latency: measured seconds (default 10)");
  app.add_option("--warmup,-w", o.warmup_s, "Latency: warm-up seconds, not measured (default 1)");
  app.add_option("--lifecycle-rate", o.lifecycle_rate, "Lifecycle: updates/s (default 200)");
  app.add_option("--restarts", o.restarts, "Lifecycle: SIGUSR1 restarts (default 20)");
  app.add_option("--reloads", o.reloads, "Lifecycle: channel reloads (default 20)");
  app.add_option("--kills", o.kills, "Lifecycle: kill -9 (default 5)");
  app.add_option("--pause", o.pause_s, "Lifecycle: seconds between two events (default 0.5)");
  app.add_option("--repeats,-R", o.repeats, "Runs of throughput and latency (default 1)");
  app.add_option("--quiet,-q", o.quiet_s,
                 "Before each run wait up to S s for the machine to be >= 80% idle (default 0)");
  app.add_option("--quiet-pct", o.quiet_pct, "Idle percentage -q waits for (default 80)");
  app.add_option("--keep,-L", o.keep, "Keep the data folders and logs under this folder");
  app.add_option("--json", o.json_out, "Also write every run's result (JSON lines) here");
  app.add_option("--log-level", o.log_level, "The gateway's logging.level (default info)");
  CLI11_PARSE(app, argc, argv);
  if (::access(o.bin.c_str(), X_OK) != 0) {
    std::fprintf(stderr, "missing %s: build it first (see docs/BENCHMARKS.md)\n", o.bin.c_str());
    return 2;
  }
  if (o.rate <= 0 || o.lifecycle_rate <= 0 || o.chats <= 0 || o.updates <= 0) {
    std::fprintf(stderr, "rates, chats and updates must be > 0\n");
    return 64;
  }
  ::signal(SIGPIPE, SIG_IGN);

  fs::path dir;
  if (!o.keep.empty()) {
    dir = o.keep;
    fs::create_directories(dir);
  } else {
    std::string tmpl = (fs::path(o.tmp) / "drawbridge-tgbench.XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) {
      std::perror("mkdtemp");
      return 2;
    }
    dir = tmpl;
  }
  std::printf("gateway: %s\nwork folder: %s%s\n", o.bin.c_str(), dir.c_str(),
              o.keep.empty() ? " (removed at the end)" : "");
  std::fflush(stdout);

  std::vector<json> results;
  int rc = 0;
  auto want = [&](const std::string& part) {
    return ("," + o.parts + ",").find("," + part + ",") != std::string::npos;
  };
  try {
    auto record = [&](json r) {
      std::fflush(stdout);
      results.push_back(r);
      if (!o.json_out.empty()) {
        std::ofstream(o.json_out, std::ios::app) << r.dump() << "\n";
      }
      if (r.value("lost", 0) > 0 || r.value("unexplainedDuplicates", 0) > 0 ||
          r.value("maxConcurrentPolls", 0) > 1 || !r.value("failure", std::string()).empty() ||
          r.value("stopExit", 0) != 0 ||
          (r.value("part", "") != "lifecycle" && r.value("duplicated", 0) > 0)) {
        rc = 1;
      }
    };
    for (int i = 1; want("throughput") && i <= o.repeats; ++i) record(run_throughput(o, dir, i));
    for (int i = 1; want("latency") && i <= o.repeats; ++i) record(run_latency(o, dir, i));
    if (want("lifecycle")) record(run_lifecycle(o, dir, 1));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "FAILED: %s\n", e.what());
    rc = 2;
  }

  // Summary table.
  std::printf("\n| part | run | result | lost | dup | max polls | gateway CPU | load before |\n");
  std::printf("|---|---|---|---|---|---|---|---|\n");
  for (auto& r : results) {
    const std::string part = r["part"];
    char what[256];
    if (part == "throughput") {
      std::snprintf(what, sizeof what, "%.0f updates/s (%d updates, %d chats)",
                    r["updatesPerSecond"].get<double>(), r["updates"].get<int>(),
                    r["chats"].get<int>());
    } else if (part == "latency") {
      std::snprintf(what, sizeof what, "%.0f/s × %.0f s: p50 %.2f, p90 %.2f, p99 %.2f, max %.2f ms",
                    r["rate"].get<double>(), r["seconds"].get<double>(),
                    r["latencyMs"]["p50"].get<double>(), r["latencyMs"]["p90"].get<double>(),
                    r["latencyMs"]["p99"].get<double>(), r["latencyMs"]["max"].get<double>());
    } else {
      std::snprintf(what, sizeof what,
                    "%d updates at %.0f/s; %d restarts, %d reloads, %d kill -9; %d replayed "
                    "part(s); extra copies: %d at a kill, %d outside that window; stop %.1f s",
                    r["updates"].get<int>(), r["rate"].get<double>(), r["restarts"].get<int>(),
                    r["reloads"].get<int>(), r["kills"].get<int>(), r["partsReplayed"].get<int>(),
                    r["duplicatesAtAKill"].get<int>(), r["duplicatesOutsideTheWindow"].get<int>(),
                    r.value("stopSeconds", 0.0));
    }
    std::printf(
        "| %s | %d | %s | %d | %d | %d | %s | %s |\n", part.c_str(), r["run"].get<int>(), what,
        r["lost"].get<int>(), r["duplicated"].get<int>(), r["maxConcurrentPolls"].get<int>(),
        r.contains("gatewayCpuPct")
            ? (std::to_string(static_cast<int>(r["gatewayCpuPct"].get<double>())) + "%").c_str()
            : "—",
        r["loadBefore"].get<std::string>().c_str());
  }
  std::printf(
      "targets: >= 2000 updates/s (the fake the bottleneck); p50 < 5 ms; lost 0, "
      "duplicated 0 (beyond the replayed parts), overlapping polls 0 (max 1)\n");
  if (o.keep.empty()) {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  return rc;
}
