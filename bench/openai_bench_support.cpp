#include "openai_bench_support.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/websocket.hpp>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace openai_bench {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using nlohmann::json;
using namespace std::chrono_literals;

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

Percentiles percentiles(std::vector<double> v) {
  Percentiles p;
  p.n = v.size();
  if (v.empty()) return p;
  std::sort(v.begin(), v.end());
  auto at = [&](double q) {  // nearest rank
    auto i = static_cast<std::size_t>(std::ceil(q * static_cast<double>(v.size())));
    return v[std::min(i == 0 ? 0 : i - 1, v.size() - 1)];
  };
  p.p50 = at(0.50);
  p.p90 = at(0.90);
  p.p99 = at(0.99);
  p.p999 = at(0.999);
  p.max = v.back();
  double s = 0;
  for (double x : v) s += x;
  p.mean = s / static_cast<double>(v.size());
  return p;
}

json to_json(const Percentiles& p) {
  auto r = [](double x) { return std::round(x * 1000) / 1000; };  // µs resolution
  return {{"n", p.n},          {"p50", r(p.p50)}, {"p90", r(p.p90)},  {"p99", r(p.p99)},
          {"p999", r(p.p999)}, {"max", r(p.max)}, {"mean", r(p.mean)}};
}




Memory read_memory(pid_t pid) {
  Memory m;
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string key;
    long value = 0;
    if (!(fields >> key >> value)) continue;  // "Name:\tdrawbridge" and the like
    if (key == "VmRSS:") m.vm_rss = value;
    if (key == "RssAnon:") m.rss_anon = value;
    if (key == "RssFile:") m.rss_file = value;
    if (key == "VmHWM:") m.vm_hwm = value;
  }
  return m;
}


std::map<std::string, double> thread_cpu_s(const std::string& pid) {
  return thread_times_s(pid, false);
}

std::map<std::string, double> thread_wait_s(const std::string& pid) {
  return thread_times_s(pid, true);
}

std::map<std::string, double> thread_times_s(const std::string& pid, bool wait) {
  std::map<std::string, double> out;
  std::error_code ec;
  for (auto& t : fs::directory_iterator("/proc/" + pid + "/task", ec)) {
    std::ifstream in(t.path() / "stat");
    std::string s;
    if (!std::getline(in, s)) continue;
    auto open = s.find('('), close = s.rfind(')');
    if (open == std::string::npos || close == std::string::npos) continue;
    const std::string tid = t.path().filename().string();
    std::string name = s.substr(open + 1, close - open - 1) + "/" + tid;
    if (pid == "self") {
      // This process: the main thread runs the clients; the others are the fake's server and
      // the resolver's.
      name = tid == std::to_string(::getpid()) ? "bench-clients" : "bench-other/" + tid;
    }
    if (!wait) {
      out[name] = stat_cpu_s(s);
      continue;
    }
    std::ifstream sched(t.path() / "schedstat");  // ns on a CPU, ns runnable and waiting
    unsigned long long run_ns = 0, wait_ns = 0;
    if (sched >> run_ns >> wait_ns) out[name] = static_cast<double>(wait_ns) / 1e9;
  }
  return out;
}

json thread_pcts(const std::map<std::string, double>& before,
                 const std::map<std::string, double>& after, double wall_s) {
  json out = json::object();
  for (auto& [k, v] : after) {
    auto b = before.find(k);
    const double d = v - (b == before.end() ? 0 : b->second);
    if (wall_s > 0 && d / wall_s >= 0.02) out[k] = std::round(d / wall_s * 1000) / 10;
  }
  return out;
}



// ---- GatewayProcess -------------------------------------------------------------------------

GatewayProcess::GatewayProcess(std::string bin, fs::path dir, const json& config,
                               std::vector<std::pair<std::string, std::string>> env)
    : bin_(std::move(bin)), dir_(std::move(dir)), env_(std::move(env)) {
  fs::create_directories(dir_ / "data");
  fs::create_directories(dir_ / "run");
  ::chmod((dir_ / "run").c_str(), 0700);
  // Its own XDG_RUNTIME_DIR: no lock or socket shared with another gateway on the machine.
  env_.emplace_back("XDG_RUNTIME_DIR", (dir_ / "run").string());
  port_ = free_port();
  std::ofstream out(dir_ / "config.json", std::ios::trunc);
  out << "// drawbridge_openai_bench config\n" << config.dump(2) << "\n";
  out.close();
  if (!out) throw std::runtime_error("cannot write " + (dir_ / "config.json").string());
}

GatewayProcess::~GatewayProcess() {
  stop();
}

void GatewayProcess::start(std::chrono::milliseconds timeout) {
  if (pid_ > 0) throw std::logic_error("already running");
  std::vector<std::string> args{bin_,
                                "--config",
                                (dir_ / "config.json").string(),
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
    const bool replaced = std::any_of(
        env_.begin(), env_.end(), [&](const auto& kv) { return v.rfind(kv.first + "=", 0) == 0; });
    if (!replaced) env_s.emplace_back(v);
  }
  for (const auto& [k, v] : env_) env_s.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& e : env_s) envp.push_back(e.data());
  envp.push_back(nullptr);
  const std::string log = (dir_ / "gateway.log").string();
  const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) throw std::runtime_error("cannot open " + log);
  const auto deadline = Clock::now() + timeout;
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
  while (Clock::now() < deadline) {
    if (exited()) break;
    if (http_status(port_, "/readyz") == 200) return;
    std::this_thread::sleep_for(2ms);
  }
  throw std::runtime_error("gateway not ready within " + std::to_string(timeout.count()) +
                           " ms; log " + log + ":\n" + log_tail());
}

bool GatewayProcess::exited() {
  if (pid_ <= 0) return true;
  int st = 0;
  if (::waitpid(pid_, &st, WNOHANG) == pid_) {
    pid_ = -1;
    return true;
  }
  return false;
}

int GatewayProcess::stop() {
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
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, &st, 0);
  pid_ = -1;
  return -1;
}

std::string GatewayProcess::log_tail(std::size_t n) const {
  std::ifstream in(dir_ / "gateway.log", std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  std::string text = s.str();
  return text.size() <= n ? text : "..." + text.substr(text.size() - n);
}

// ---- WsClient -------------------------------------------------------------------------------

WsClient::WsClient(asio::io_context& io, std::string session_key, std::string token)
    : ws_(io), key_(std::move(session_key)), token_(std::move(token)) {}

void WsClient::open(const tcp::endpoint& ep, Done ready) {
  on_ready_ = std::move(ready);
  auto self = shared_from_this();
  beast::get_lowest_layer(ws_).expires_after(15s);
  beast::get_lowest_layer(ws_).async_connect(ep, [self, ep](beast::error_code ec) {
    if (ec) return self->fail("connect: " + ec.message());
    beast::error_code ignored;
    beast::get_lowest_layer(self->ws_).socket().set_option(tcp::no_delay(true), ignored);
    self->state_ = State::handshaking;
    const std::string host = "127.0.0.1:" + std::to_string(ep.port());
    self->ws_.async_handshake(host, "/", [self](beast::error_code ec2) {
      if (ec2) return self->fail("websocket handshake: " + ec2.message());
      self->ws_.read_message_max(16 * 1024 * 1024);
      self->ws_.text(true);
      json f = {{"type", "req"},
                {"id", "connect"},
                {"method", "connect"},
                {"params",
                 {{"minProtocol", 4},
                  {"maxProtocol", 4},
                  {"client",
                   {{"id", "drawbridge-openai-bench"},
                    {"version", "1"},
                    {"platform", "linux"},
                    {"mode", "test"}}},
                  {"role", "operator"},
                  {"scopes", {"operator.read", "operator.write"}},
                  {"auth", {{"token", self->token_}}}}}};
      // The challenge comes first; connect may be sent at once (as the load generator does).
      self->send_text(f.dump());
      self->do_read();
    });
  });
}

void WsClient::send_turn(std::string tag, std::string message, Done ended) {
  if (state_ != State::ready || busy_) throw std::logic_error("send_turn: not ready or busy");
  busy_ = true;
  on_end_ = std::move(ended);
  json f = {{"type", "req"},
            {"id", tag},
            {"method", "chat.send"},
            {"params", {{"sessionKey", key_}, {"message", message}, {"idempotencyKey", tag}}}};
  Turn t;
  t.tag = std::move(tag);
  t.sent = Clock::now();
  turns_.push_back(std::move(t));
  send_text(f.dump());
}

void WsClient::close() {
  if (state_ == State::dead) return;
  state_ = State::dead;
  beast::error_code ignored;
  beast::get_lowest_layer(ws_).socket().shutdown(tcp::socket::shutdown_both, ignored);
  beast::get_lowest_layer(ws_).socket().close(ignored);
}

void WsClient::send_text(std::string text) {
  if (state_ == State::dead) return;
  queue_.push_back(std::move(text));
  if (!writing_) do_write();
}

void WsClient::do_write() {
  if (queue_.empty()) {
    writing_ = false;
    return;
  }
  writing_ = true;
  ws_.async_write(asio::buffer(queue_.front()),
                  [self = shared_from_this()](beast::error_code ec, std::size_t) {
                    if (ec) return self->fail("write: " + ec.message());
                    self->queue_.pop_front();
                    self->do_write();
                  });
}

void WsClient::do_read() {
  ws_.async_read(buffer_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
    const auto at = Clock::now();  // before any parsing
    if (ec) return self->fail("read: " + ec.message());
    std::string text = beast::buffers_to_string(self->buffer_.cdata());
    self->buffer_.consume(self->buffer_.size());
    self->on_frame(text, at);
    if (self->state_ != State::dead) self->do_read();
  });
}

namespace {

// The value of the first `"key":"` in a frame, when it holds no escapes. (Inside a JSON string
// a quote is escaped, so the pattern only matches a key.)
std::optional<std::string_view> string_field(std::string_view frame, std::string_view pattern) {
  auto p = frame.find(pattern);
  if (p == std::string_view::npos) return std::nullopt;
  p += pattern.size();
  auto e = frame.find('"', p);
  if (e == std::string_view::npos) return std::nullopt;
  auto v = frame.substr(p, e - p);
  if (v.find('\\') != std::string_view::npos) return std::nullopt;
  return v;
}

}  // namespace

void WsClient::on_frame(const std::string& text, Clock::time_point at) {
  // Delta events, most of the frames, without a full parse: the client's own time is part of
  // every delay measured.
  if (busy_ && text.rfind(R"({"type":"event","event":"chat",)", 0) == 0) {
    auto state = string_field(text, R"("state":")");
    auto key = string_field(text, R"("sessionKey":")");
    auto delta = string_field(text, R"("deltaText":")");
    if (state && *state == "delta" && key && *key == key_ && delta) {
      on_delta(*delta, at);
      return;
    }
  }
  json j = json::parse(text, nullptr, false);
  if (!j.is_object()) return fail("a frame that is not a JSON object");
  const std::string type = j.value("type", "");
  if (type == "res") {
    const std::string id = j.value("id", "");
    const bool ok = j.value("ok", false);
    std::string err;
    if (!ok && j.contains("error") && j["error"].is_object()) {
      err = j["error"].value("message", "");
    }
    if (id == "connect" && state_ == State::handshaking) {
      if (!ok) return fail("connect refused: " + err);
      state_ = State::ready;
      beast::get_lowest_layer(ws_).expires_never();
      if (auto done = std::move(on_ready_)) done(*this);
    } else if (busy_ && id == turns_.back().tag) {
      if (!ok) return end_turn("refused", err, at);
      turns_.back().acked = at;
    }
    return;
  }
  if (type != "event" || j.value("event", "") != "chat" || !busy_) return;
  const json& p = j["payload"];
  if (!p.is_object() || p.value("sessionKey", "") != key_) return;
  const std::string state = p.value("state", "");
  Turn& t = turns_.back();
  if (state == "delta") return on_delta(p.value("deltaText", ""), at);
  std::string err = p.value("errorMessage", "");
  if (state == "final" && p.contains("message")) {
    const json& content = p["message"].value("content", json::array());
    for (const auto& part : content) {
      if (part.is_object()) t.final_text += part.value("text", "");
    }
  }
  end_turn(state, err, at);
}

void WsClient::on_delta(std::string_view d, Clock::time_point at) {
  Turn& t = turns_.back();
  ++t.delta_events;
  if (!t.first_delta) t.first_delta = at;
  // The bench's deltas are "t<k> ": a delta event carries one or more of them.
  for (std::size_t i = d.find('t'); i != std::string_view::npos; i = d.find('t', i + 1)) {
    std::size_t e = i + 1;
    while (e < d.size() && d[e] >= '0' && d[e] <= '9') ++e;
    if (e == i + 1 || e >= d.size() || d[e] != ' ' || e - i > 6) continue;
    const auto k = static_cast<std::size_t>(std::stoul(std::string(d.substr(i + 1, e - i - 1))));
    if (t.markers.size() <= k) t.markers.resize(k + 1);
    if (!t.markers[k]) t.markers[k] = at;
  }
}

void WsClient::end_turn(std::string state, std::string error, Clock::time_point at) {
  if (!busy_) return;
  busy_ = false;
  Turn& t = turns_.back();
  t.end_state = std::move(state);
  t.error = std::move(error);
  t.ended = at;
  if (auto done = std::move(on_end_)) done(*this);
}

void WsClient::fail(std::string why) {
  if (state_ == State::dead) return;
  const bool setup = state_ != State::ready;
  state_ = State::dead;
  failure_ = std::move(why);
  beast::error_code ignored;
  beast::get_lowest_layer(ws_).socket().close(ignored);
  if (setup) {
    if (auto done = std::move(on_ready_)) done(*this);
  }
  if (busy_) end_turn("lost", failure_, Clock::now());
}

}  // namespace openai_bench
