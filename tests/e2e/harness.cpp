#include "e2e/harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <boost/asio/connect.hpp>
#include <boost/asio/write.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <gtest/gtest.h>

#ifndef DRAWBRIDGE_BINARY
#error "DRAWBRIDGE_BINARY must name the drawbridge binary under test"
#endif

namespace drawbridge::e2e {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error(what); }

void set_cloexec(int fd) {
  if (fd >= 0) ::fcntl(fd, F_SETFD, ::fcntl(fd, F_GETFD) | FD_CLOEXEC);
}

std::string tail(const std::string& text, std::size_t max = 6000) {
  return text.size() <= max ? text : "...\n" + text.substr(text.size() - max);
}

tcp::endpoint loopback(int port) {
  return {asio::ip::make_address_v4("127.0.0.1"), static_cast<unsigned short>(port)};
}

// Runs one asynchronous operation on `io` until it completes or the deadline passes; on the
// deadline the socket is cancelled and the operation completes with operation_aborted.
template <typename Socket, typename Start>
beast::error_code run_bounded(asio::io_context& io, Socket& socket, Start start,
                              Clock::time_point deadline) {
  bool done = false;
  beast::error_code result;
  start([&](beast::error_code ec, auto&&...) {
    done = true;
    result = ec;
  });
  io.restart();
  while (!done && io.run_one_until(deadline) > 0) {
  }
  if (!done) {
    beast::error_code ignored;
    socket.cancel(ignored);
    io.restart();
    while (!done && io.run_one() > 0) {
    }
    return asio::error::timed_out;
  }
  return result;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Temp folders and ports

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string templ = std::string(base && *base ? base : "/tmp") + "/drawbridge-e2e-XXXXXX";
  if (::mkdtemp(templ.data()) == nullptr) fail("mkdtemp: " + std::string(std::strerror(errno)));
  path_ = templ;
}

TempDir::~TempDir() {
  const char* keep = std::getenv("DRAWBRIDGE_E2E_KEEP");
  if (keep && *keep && std::string(keep) != "0") {
    std::cerr << "[e2e] kept " << path_ << "\n";
    return;
  }
  std::error_code ec;
  fs::remove_all(path_, ec);
}

fs::path TempDir::write(const std::string& name, const std::string& text) const {
  fs::path p = path_ / name;
  fs::create_directories(p.parent_path());
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << text;
  if (!out) fail("cannot write " + p.string());
  return p;
}

std::string read_text(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

int free_port() {
  for (int attempt = 0; attempt < 20; ++attempt) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) fail("socket: " + std::string(std::strerror(errno)));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof addr;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      const int err = errno;
      ::close(fd);
      if (err == EADDRINUSE) continue;
      fail("bind 127.0.0.1:0: " + std::string(std::strerror(err)));
    }
    ::close(fd);
    return ntohs(addr.sin_port);
  }
  fail("no free loopback port after 20 attempts");
}

PortHolder::PortHolder() {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(fd_, 4) != 0 || ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    fail("cannot hold a loopback port: " + std::string(std::strerror(errno)));
  }
  port_ = ntohs(addr.sin_port);
}

PortHolder::~PortHolder() {
  if (fd_ >= 0) ::close(fd_);
}

// ---------------------------------------------------------------------------------------------
// HTTP

json HttpResponse::json_body() const { return json::parse(body, nullptr, false); }

std::string HttpResponse::header(const std::string& lower_name) const {
  auto it = headers.find(lower_name);
  return it == headers.end() ? std::string() : it->second;
}

struct HttpClient::Impl {
  int port;
  Millis timeout;
  asio::io_context io;
  std::optional<tcp::socket> socket;
  beast::flat_buffer buffer;
  std::string error;

  template <typename Start>
  beast::error_code run(Start start) {
    return run_bounded(io, *socket, start, Clock::now() + timeout);
  }

  void drop() {
    beast::error_code ignored;
    if (socket) socket->close(ignored);
    socket.reset();
    buffer.clear();
  }
};

HttpClient::HttpClient(int port, Millis timeout) : impl_(std::make_unique<Impl>()) {
  impl_->port = port;
  impl_->timeout = timeout;
}

HttpClient::~HttpClient() { impl_->drop(); }

const std::string& HttpClient::last_error() const { return impl_->error; }

std::optional<HttpResponse> HttpClient::request(const std::string& method,
                                                const std::string& target,
                                                const std::string& body,
                                                const std::map<std::string, std::string>& headers) {
  auto& d = *impl_;
  d.error.clear();
  if (!d.socket) {
    d.socket.emplace(d.io);
    auto ec = d.run([&](auto h) { d.socket->async_connect(loopback(d.port), h); });
    if (ec) {
      d.error = "connect: " + ec.message();
      d.drop();
      return std::nullopt;
    }
    set_cloexec(d.socket->native_handle());
    d.socket->set_option(tcp::no_delay(true), ec);
  }
  bhttp::request<bhttp::string_body> req{bhttp::string_to_verb(method), target, 11};
  req.set(bhttp::field::host, "127.0.0.1:" + std::to_string(d.port));
  for (const auto& [k, v] : headers) req.set(k, v);
  req.body() = body;
  req.keep_alive(true);
  req.prepare_payload();
  auto ec = d.run([&](auto h) { bhttp::async_write(*d.socket, req, h); });
  if (ec) {
    d.error = "write: " + ec.message();
    d.drop();
    return std::nullopt;
  }
  bhttp::response_parser<bhttp::string_body> parser;
  parser.body_limit(64 * 1024 * 1024);
  ec = d.run([&](auto h) { bhttp::async_read(*d.socket, d.buffer, parser, h); });
  if (ec) {
    d.error = "read: " + ec.message();
    d.drop();
    return std::nullopt;
  }
  auto res = parser.release();
  HttpResponse out;
  out.status = static_cast<int>(res.result_int());
  for (const auto& f : res) {
    std::string name(f.name_string());
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    out.headers[name] = std::string(f.value());
  }
  out.body = std::move(res.body());
  if (!res.keep_alive()) d.drop();
  return out;
}

HttpResponse http(int port, const std::string& method, const std::string& target,
                  const std::string& body, const std::map<std::string, std::string>& headers,
                  Millis timeout) {
  HttpClient c(port, timeout);
  auto res = c.request(method, target, body, headers);
  if (!res) fail(method + " " + target + " on port " + std::to_string(port) + ": " + c.last_error());
  return *res;
}

std::optional<double> metric_value(const std::string& text, const std::string& sample) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.size() > sample.size() && line.compare(0, sample.size(), sample) == 0 &&
        line[sample.size()] == ' ') {
      return std::strtod(line.c_str() + sample.size() + 1, nullptr);
    }
  }
  return std::nullopt;
}

// ---------------------------------------------------------------------------------------------
// Processes

std::string ExitStatus::describe() const {
  if (exited) return "exit code " + std::to_string(code);
  if (signal) return "killed by signal " + std::to_string(signal) + " (" + strsignal(signal) + ")";
  return "still running";
}

Process::Process(const std::vector<std::string>& argv, const fs::path& cwd,
                 const fs::path& out_file, const fs::path& err_file,
                 const std::map<std::string, std::string>& extra_env) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  // A small, fixed environment: nothing from the developer's shell (DRAWBRIDGE_CONFIG,
  // DRAWBRIDGE_GATEWAY_PORT, ...) may change what the test sees.
  std::vector<std::string> env_strings = {"PATH=/usr/local/bin:/usr/bin:/bin",
                                          "HOME=" + cwd.string(), "LANG=C.UTF-8"};
  // Machine-wide locks (a Telegram bot's poller) go under XDG_RUNTIME_DIR: one per test, so
  // tests that share a fake bot token may run in parallel; a test that wants two gateways to
  // meet sets the same folder for both.
  if (!extra_env.count("XDG_RUNTIME_DIR")) env_strings.push_back("XDG_RUNTIME_DIR=" + cwd.string());
  for (const auto& [k, v] : extra_env) env_strings.push_back(k + "=" + v);
  std::vector<char*> env;
  for (auto& e : env_strings) env.push_back(e.data());
  env.push_back(nullptr);

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, out_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, err_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addchdir_np(&fa, cwd.c_str());
  posix_spawn_file_actions_addclosefrom_np(&fa, 3);

  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  sigdelset(&all, SIGKILL);
  sigdelset(&all, SIGSTOP);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  const int rc = ::posix_spawn(&pid_, args[0], &fa, &attr, args.data(), env.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) fail("posix_spawn " + argv[0] + ": " + std::strerror(rc));
  pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
  set_cloexec(pidfd_);
}

Process::~Process() {
  if (!status_ && pid_ > 0) {
    ::kill(pid_, SIGKILL);
    wait(10s);
  }
  if (pidfd_ >= 0) ::close(pidfd_);
}

void Process::signal(int sig) {
  if (status_) fail("cannot send signal " + std::to_string(sig) + ": process already " +
                    status_->describe());
  if (::kill(pid_, sig) != 0) fail("kill: " + std::string(std::strerror(errno)));
}

std::optional<ExitStatus> Process::wait(Millis timeout) {
  if (status_) return status_;
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    int st = 0;
    pid_t r = ::waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
      ExitStatus s;
      s.exited = WIFEXITED(st);
      s.code = s.exited ? WEXITSTATUS(st) : -1;
      s.signal = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
      status_ = s;
      return status_;
    }
    if (r < 0 && errno != EINTR) fail("waitpid: " + std::string(std::strerror(errno)));
    const auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now());
    if (left.count() <= 0) return std::nullopt;
    if (pidfd_ >= 0) {
      // Readable when the process exits: no polling loop.
      pollfd p{pidfd_, POLLIN, 0};
      ::poll(&p, 1, static_cast<int>(left.count()));
    } else {
      std::this_thread::sleep_for(std::min(left, Millis(5)));
    }
  }
}

CliResult run_cli(const TempDir& dir, const std::vector<std::string>& args, Millis timeout,
                  const std::map<std::string, std::string>& env) {
  static int counter = 0;
  const std::string n = std::to_string(++counter);
  const fs::path out = dir.path() / ("cli-" + n + ".out");
  const fs::path err = dir.path() / ("cli-" + n + ".err");
  std::vector<std::string> argv{DRAWBRIDGE_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  Process p(argv, dir.path(), out, err, env);
  auto st = p.wait(timeout);
  if (!st) {
    p.signal(SIGKILL);
    p.wait(5s);
    fail("drawbridge CLI did not finish within " + std::to_string(timeout.count()) +
         " ms; stderr:\n" + tail(read_text(err)));
  }
  return CliResult{*st, read_text(out), read_text(err)};
}

// ---------------------------------------------------------------------------------------------
// The gateway

Gateway::Gateway(const TempDir& dir, json config, fs::path data_dir)
    : dir_(dir), config_(std::move(config)) {
  if (!config_.is_object()) config_ = json::object();
  auto& auth = config_["gateway"]["auth"];
  if (!auth.contains("token")) auth["token"] = kToken;
  token_ = auth["token"].get<std::string>();
  data_dir_ = data_dir.empty() ? dir.path() / "data" : data_dir;
  config_file_ = dir.write("config.json", config_.dump(2));
}

Gateway::~Gateway() {
  if (::testing::Test::HasFailure() && runs_ > 0) {
    std::cerr << "[e2e] gateway log (run " << runs_ << ", port " << port_ << "):\n"
              << tail(log()) << "\n";
  }
  proc_.reset();  // kills our child by its pid if it still runs
}

bool Gateway::running() const { return proc_ && !proc_->status(); }

pid_t Gateway::pid() const { return proc_ ? proc_->pid() : -1; }

std::string Gateway::out() const { return out_file_.empty() ? "" : read_text(out_file_); }
std::string Gateway::err() const { return err_file_.empty() ? "" : read_text(err_file_); }
std::string Gateway::log() const { return out() + err(); }

bool Gateway::spawn_and_wait_ready(std::string& why) {
  ++runs_;
  port_ = free_port();
  out_file_ = dir_.path() / ("gateway-" + std::to_string(runs_) + ".out");
  err_file_ = dir_.path() / ("gateway-" + std::to_string(runs_) + ".err");
  // --config before `run`: see Process.ConfigOptionAfterTheRunSubcommandIsAccepted.
  std::vector<std::string> argv{DRAWBRIDGE_BINARY, "--config", config_file_.string(), "run",
                                "--data-dir", data_dir_.string()};
  if (port_in_config_) {
    config_["gateway"]["port"] = port_;
    config_file_ = dir_.write("config.json", config_.dump(2));
  } else {
    argv.insert(argv.end(), {"--port", std::to_string(port_)});
  }
  proc_ = std::make_unique<Process>(argv, dir_.path(), out_file_, err_file_, env_);
  const auto deadline = Clock::now() + 10s;
  HttpClient probe(port_, 1s);
  while (Clock::now() < deadline) {
    if (auto st = proc_->wait(0ms)) {
      why = "exited before it was ready (" + st->describe() + ")";
      return false;
    }
    auto res = probe.request("GET", wait_for_channels_ ? "/readyz" : "/healthz");
    if (res && res->status == 200) return true;
    // An external process's readiness: polled, bounded by the deadline.
    std::this_thread::sleep_for(15ms);
  }
  why = "not ready within 10 s";
  return false;
}

void Gateway::start() {
  if (running()) fail("the gateway is already running");
  std::string why;
  for (int attempt = 0; attempt < 3; ++attempt) {
    if (spawn_and_wait_ready(why)) return;
    // Someone took the free port between our probe and the gateway's bind: try another.
    if (!proc_->status() || log().find("Address already in use") == std::string::npos) break;
  }
  const std::string l = log();
  if (running()) kill9();
  fail("gateway did not start: " + why + "\n" + tail(l));
}

void Gateway::signal(int sig) {
  if (!proc_) fail("the gateway was never started");
  proc_->signal(sig);
}

ExitStatus Gateway::wait_exit(Millis timeout) {
  if (!proc_) fail("the gateway was never started");
  auto st = proc_->wait(timeout);
  if (!st) fail("gateway still running " + std::to_string(timeout.count()) + " ms later\n" +
                tail(log()));
  return *st;
}

ExitStatus Gateway::kill9() {
  signal(SIGKILL);
  return wait_exit(10s);
}

bool Gateway::wait_for_log(const std::string& needle, Millis timeout) const {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (log().find(needle) != std::string::npos) return true;
    if (Clock::now() >= deadline) return false;
    // A log file of another process: polled, bounded by the deadline.
    std::this_thread::sleep_for(10ms);
  }
}

HttpResponse Gateway::get(const std::string& target) const {
  return http(port_, "GET", target, {}, {{"Authorization", "Bearer " + token_}});
}

HttpResponse Gateway::post_message(const json& body,
                                   const std::map<std::string, std::string>& headers) const {
  auto h = headers;
  h.emplace("Authorization", "Bearer " + token_);
  h.emplace("Content-Type", "application/json");
  return http(port_, "POST", "/v1/messages", body.dump(), h);
}

json Gateway::history(const std::string& session_key) const {
  // The whole transcript, oldest first: pages of up to 1000 entries, newest page first
  // (bounded: 100 pages).
  json all = json::array();
  std::string before;
  for (int page = 0; page < 100; ++page) {
    auto res = get("/v1/messages?sessionKey=" + session_key + "&limit=1000" +
                   (before.empty() ? "" : "&before=" + before));
    if (res.status != 200) fail("GET history of " + session_key + ": " +
                                std::to_string(res.status) + " " + res.body);
    json body = res.json_body();
    if (!body.is_object() || !body.contains("messages") || !body["messages"].is_array()) {
      fail("GET history of " + session_key + ": unexpected body " + res.body);
    }
    json older = std::move(body["messages"]);
    for (auto& m : all) older.push_back(std::move(m));
    all = std::move(older);
    if (!body.value("hasMore", false) || !body.contains("nextBefore")) return all;
    before = std::to_string(body["nextBefore"].get<std::int64_t>());
  }
  fail("GET history of " + session_key + ": more than 100 pages");
  return all;
}

std::unique_ptr<server::GatewayClient> Gateway::client(std::vector<std::string> scopes) const {
  auto c = std::make_unique<server::GatewayClient>("127.0.0.1", port_);
  c->connect(token_, scopes);
  return c;
}

// ---------------------------------------------------------------------------------------------
// Chat events

std::string ChatRun::text() const {
  if (!terminal.is_object() || !terminal.contains("message")) return {};
  std::string out;
  for (const auto& c : terminal["message"].value("content", json::array())) {
    out += c.value("text", "");
  }
  return out;
}

ChatRun await_run(server::GatewayClient& client, const std::string& run_id, Millis timeout) {
  ChatRun run;
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now());
    if (left.count() <= 0) return run;
    auto ev = client.next_event(left);
    if (!ev) return run;
    const json& p = ev->contains("payload") ? (*ev)["payload"] : json();
    if (ev->value("event", "") != "chat" || !p.is_object() || p.value("runId", "") != run_id) {
      run.other.push_back(*ev);
      continue;
    }
    if (p.value("state", "") == "delta") {
      run.deltas.push_back(p);
      continue;
    }
    run.terminal = p;
    return run;
  }
}

// ---------------------------------------------------------------------------------------------
// Raw WebSocket

struct RawWs::Impl {
  asio::io_context io;
  websocket::stream<tcp::socket> ws{io};
  beast::flat_buffer buffer;

  template <typename Start>
  beast::error_code run(Start start, Millis timeout) {
    return run_bounded(io, beast::get_lowest_layer(ws), start, Clock::now() + timeout);
  }
};

RawWs::RawWs(int port, Millis timeout) : impl_(std::make_unique<Impl>()) {
  auto& d = *impl_;
  auto ec = d.run([&](auto h) { d.ws.next_layer().async_connect(loopback(port), h); }, timeout);
  if (ec) fail("raw ws connect to " + std::to_string(port) + ": " + ec.message());
  set_cloexec(d.ws.next_layer().native_handle());
  d.ws.auto_fragment(false);
  d.ws.read_message_max(64 * 1024 * 1024);
  ec = d.run([&](auto h) {
    d.ws.async_handshake("127.0.0.1:" + std::to_string(port), "/", h);
  }, timeout);
  if (ec) fail("raw ws upgrade: " + ec.message());
}

RawWs::~RawWs() {
  beast::error_code ignored;
  impl_->ws.next_layer().close(ignored);
}

bool RawWs::send_text(const std::string& text) {
  auto& d = *impl_;
  d.ws.text(true);
  auto ec = d.run([&](auto h) { d.ws.async_write(asio::buffer(text), h); }, 5s);
  return !ec;
}

bool RawWs::send_raw_text_frame(const std::string& text) {
  // One masked FIN text frame (RFC 6455 5.2), written under Beast: a write the gateway cuts
  // short must not poison the stream for reading its close frame.
  std::string frame;
  frame.push_back(static_cast<char>(0x81));
  const std::uint64_t n = text.size();
  if (n < 126) {
    frame.push_back(static_cast<char>(0x80 | n));
  } else if (n <= 0xffff) {
    frame.push_back(static_cast<char>(0x80 | 126));
    frame.push_back(static_cast<char>(n >> 8));
    frame.push_back(static_cast<char>(n & 0xff));
  } else {
    frame.push_back(static_cast<char>(0x80 | 127));
    for (int shift = 56; shift >= 0; shift -= 8) frame.push_back(static_cast<char>(n >> shift));
  }
  const unsigned char mask[4] = {0x12, 0x34, 0x56, 0x78};
  frame.append(reinterpret_cast<const char*>(mask), 4);
  for (std::size_t i = 0; i < text.size(); ++i) {
    frame.push_back(static_cast<char>(text[i] ^ mask[i % 4]));
  }
  auto& d = *impl_;
  auto& sock = d.ws.next_layer();
  auto ec = d.run([&](auto h) { asio::async_write(sock, asio::buffer(frame), h); }, 5s);
  return !ec;
}

WsFrame RawWs::read(Millis timeout) {
  auto& d = *impl_;
  WsFrame f;
  d.buffer.consume(d.buffer.size());
  auto ec = d.run([&](auto h) { d.ws.async_read(d.buffer, h); }, timeout);
  // A close frame was received even when answering it failed (the gateway already hung up).
  if (ec == websocket::error::closed ||
      (ec && d.ws.reason().code != websocket::close_code::none)) {
    f.closed = true;
    f.close_code = d.ws.reason().code;
    f.close_reason = std::string(d.ws.reason().reason.c_str());
    return f;
  }
  if (ec == asio::error::timed_out) {
    f.error = "timeout after " + std::to_string(timeout.count()) + " ms";
    return f;
  }
  if (ec) {
    f.error = ec.message();
    return f;
  }
  f.text = beast::buffers_to_string(d.buffer.data());
  f.msg = json::parse(f.text, nullptr, false);
  return f;
}

json RawWs::read_challenge() {
  WsFrame f = read();
  if (!f.msg.is_object() || f.msg.value("event", "") != "connect.challenge") {
    fail("expected connect.challenge, got " +
         (f.closed ? "close " + std::to_string(f.close_code) : f.error.empty() ? f.text : f.error));
  }
  return f.msg;
}

json RawWs::connect(const std::string& token, const std::vector<std::string>& scopes) {
  read_challenge();
  json params = {{"minProtocol", 4},
                 {"maxProtocol", 4},
                 {"client", {{"id", "e2e"}, {"version", "1"}, {"platform", "linux"},
                             {"mode", "test"}}},
                 {"role", "operator"},
                 {"scopes", scopes},
                 {"auth", {{"token", token}}}};
  return request("connect", params);
}

json RawWs::request(const std::string& method, const json& params, Millis timeout) {
  const std::string id = "raw-" + std::to_string(++next_id_);
  if (!send_text(json{{"type", "req"}, {"id", id}, {"method", method}, {"params", params}}.dump())) {
    fail("raw ws: cannot send " + method);
  }
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now());
    if (left.count() <= 0) fail("raw ws: no response to " + method);
    WsFrame f = read(left);
    if (f.closed) fail("raw ws: closed (" + std::to_string(f.close_code) + " " + f.close_reason +
                       ") while waiting for the response to " + method);
    if (!f.error.empty()) fail("raw ws: " + f.error + " while waiting for " + method);
    if (f.msg.is_object() && f.msg.value("type", "") == "event") {
      events_.push_back(f.msg);
      continue;
    }
    if (f.msg.is_object() && f.msg.value("type", "") == "res" && f.msg.value("id", "") == id) {
      return f.msg;
    }
    fail("raw ws: unexpected frame while waiting for " + method + ": " + f.text);
  }
}

std::optional<json> RawWs::next_event(Millis timeout) {
  if (!events_.empty()) {
    json e = events_.front();
    events_.erase(events_.begin());
    return e;
  }
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now());
    if (left.count() <= 0) return std::nullopt;
    WsFrame f = read(left);
    if (!f.msg.is_object()) return std::nullopt;
    if (f.msg.value("type", "") == "event") return f.msg;
  }
}

WsFrame RawWs::read_until_close(Millis timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now());
    WsFrame f = read(std::max(left, Millis(1)));
    if (f.closed || !f.error.empty()) return f;
    if (f.msg.is_object() && f.msg.value("type", "") == "event") events_.push_back(f.msg);
  }
}

std::vector<json> entries_of_run(const json& messages, const std::string& role,
                                 const std::string& run_id) {
  std::vector<json> out;
  for (const auto& m : messages) {
    if (m.value("role", "") != role || !m.contains("__openclaw")) continue;
    if (m["__openclaw"].value("runId", "") == run_id) out.push_back(m);
  }
  return out;
}

std::string entry_text(const json& message) {
  std::string out;
  for (const auto& c : message.value("content", json::array())) out += c.value("text", "");
  return out;
}

std::uint64_t test_seed() {
  if (const char* s = std::getenv("DRAWBRIDGE_E2E_SEED"); s && *s) {
    return std::strtoull(s, nullptr, 0);
  }
  return std::random_device{}() ^ (static_cast<std::uint64_t>(std::random_device{}()) << 32);
}

json wait_until_idle(const Gateway& gw, Millis timeout) {
  auto c = gw.client({"operator.read"});
  const auto deadline = Clock::now() + timeout;
  json s;
  for (;;) {
    s = c->request("status", json::object());
    const json& store = s["store"];
    if (store.value("inboxUnfinished", -1) == 0 && store.value("outboxPending", -1) == 0 &&
        s.value("activeRuns", json::array()).empty() && s.value("queueDepth", -1) == 0 &&
        s.value("pendingDeliveries", -1) == 0) {
      return s;
    }
    if (Clock::now() >= deadline) return s;
    // Another process's progress: polled, bounded by the deadline.
    std::this_thread::sleep_for(20ms);
  }
}


}  // namespace drawbridge::e2e
