#pragma once

// What drawbridge_openai_bench (bench/openai_bench.cpp) needs besides its measurements: the
// gateway as a child process, /proc readings, percentiles, and a WebSocket client of the
// control protocol that records when each `chat` event of its turns arrived. Boost.Beast,
// nlohmann_json and the standard library only: the gateway is measured from outside.

#include <sys/types.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <chrono>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "bench_host.h"

namespace openai_bench {

using bench_host::free_port;
using bench_host::http_status;
using bench_host::load_avg;
using bench_host::machine_jiffies;
using bench_host::proc_cpu_s;
using bench_host::stat_cpu_s;
using bench_host::wait_quiet;

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double ms_between(Clock::time_point a, Clock::time_point b);

struct Percentiles {
  std::size_t n = 0;
  double p50 = 0, p90 = 0, p99 = 0, p999 = 0, max = 0, mean = 0;
};
Percentiles percentiles(std::vector<double> v);
nlohmann::json to_json(const Percentiles& p);


// From /proc/<pid>/status, in KiB (0 when unreadable).
struct Memory {
  long vm_rss = 0, rss_anon = 0, rss_file = 0, vm_hwm = 0;
};
Memory read_memory(pid_t pid);
// CPU seconds per thread ("name/tid") of a process, "self" for this one.
std::map<std::string, double> thread_cpu_s(const std::string& pid);
// Seconds each thread was runnable but waited for a CPU (/proc/.../schedstat), same names.
std::map<std::string, double> thread_wait_s(const std::string& pid);
std::map<std::string, double> thread_times_s(const std::string& pid, bool wait);
// {"name/tid": percent of one core} for the threads that used at least 2 % since `before`.
nlohmann::json thread_pcts(const std::map<std::string, double>& before,
                           const std::map<std::string, double>& after, double wall_s);


// One `drawbridge --config C run --port P --data-dir D` child with its own folder under `dir`.
class GatewayProcess {
 public:
  // `env` is added to this process's environment (replacing variables of the same name).
  GatewayProcess(std::string bin, fs::path dir, const nlohmann::json& config,
                 std::vector<std::pair<std::string, std::string>> env);
  ~GatewayProcess();
  GatewayProcess(const GatewayProcess&) = delete;
  GatewayProcess& operator=(const GatewayProcess&) = delete;

  // Spawns it and waits (bounded) for /readyz 200; throws with the log's tail otherwise.
  void start(std::chrono::milliseconds timeout);
  // SIGTERM, SIGKILL after 10 s, reaped: the exit status (-1 when killed or not running).
  int stop();
  bool exited();
  pid_t pid() const { return pid_; }
  int port() const { return port_; }
  std::string log_tail(std::size_t n = 3000) const;

 private:
  std::string bin_;
  fs::path dir_;
  std::vector<std::pair<std::string, std::string>> env_;
  int port_ = 0;
  pid_t pid_ = -1;
};

// One turn of a WsClient: when each thing about it arrived (this process's steady clock).
struct Turn {
  std::string tag;  // idempotency key and the message's first word: finds the fake's request
  Clock::time_point sent{};  // chat.send handed to the socket
  std::optional<Clock::time_point> acked, first_delta, ended;
  // Receipt of the delta event carrying marker "t<k> " (deltas the bench scripted).
  std::vector<std::optional<Clock::time_point>> markers;
  int delta_events = 0;
  std::string end_state;  // final / error / aborted, or why the turn was lost
  std::string error;
  std::string final_text;
};

// A control-protocol client with one session: connect + handshake, then one turn at a time.
// Everything runs on the io_context's thread; a frame's receipt time is taken before it is
// parsed.
class WsClient : public std::enable_shared_from_this<WsClient> {
 public:
  using Done = std::function<void(WsClient&)>;

  WsClient(boost::asio::io_context& io, std::string session_key, std::string token);
  // Connects; `ready` is called once: after hello-ok, or with failure() set.
  void open(const boost::asio::ip::tcp::endpoint& ep, Done ready);
  // Sends chat.send {sessionKey, message, idempotencyKey = tag}; `ended` after its final,
  // error or aborted event (or a lost connection).
  void send_turn(std::string tag, std::string message, Done ended);
  void close();

  bool ready() const { return state_ == State::ready; }
  bool busy() const { return busy_; }
  const std::string& failure() const { return failure_; }
  const std::string& session_key() const { return key_; }
  std::vector<Turn>& turns() { return turns_; }

 private:
  enum class State { connecting, handshaking, ready, dead };
  void send_text(std::string text);
  void do_write();
  void do_read();
  void on_frame(const std::string& text, Clock::time_point at);
  void on_delta(std::string_view delta_text, Clock::time_point at);
  void end_turn(std::string state, std::string error, Clock::time_point at);
  void fail(std::string why);

  boost::beast::websocket::stream<boost::beast::tcp_stream> ws_;
  boost::beast::flat_buffer buffer_;
  std::deque<std::string> queue_;
  bool writing_ = false;
  std::string key_;
  std::string token_;
  State state_ = State::connecting;
  std::string failure_;
  Done on_ready_;
  Done on_end_;
  bool busy_ = false;
  std::vector<Turn> turns_;
};

}  // namespace openai_bench
