#pragma once

// End-to-end harness: starts the real `drawbridge` binary on loopback, in its own temp folder,
// and talks to it over HTTP and WebSocket. Every wait is bounded and waits for something the
// test can observe (readiness, an event, a log line, the process exit), never a fixed sleep.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "server/client.h"

namespace drawbridge::e2e {

using namespace std::chrono_literals;
using nlohmann::json;
namespace fs = std::filesystem;
using Millis = std::chrono::milliseconds;

// A fresh folder under $TMPDIR (or /tmp), removed with its content when the test ends.
// DRAWBRIDGE_E2E_KEEP=1 keeps it for a post-mortem.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const fs::path& path() const { return path_; }
  fs::path write(const std::string& name, const std::string& text) const;

 private:
  fs::path path_;
};

// A loopback port nobody listens on right now (bind port 0, read it, close).
int free_port();
// A listening loopback socket holding a port, for "port already in use".
class PortHolder {
 public:
  PortHolder();
  ~PortHolder();
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

std::string read_text(const fs::path& file);

struct HttpResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  json json_body() const;  // discarded JSON when the body is not JSON
  std::string header(const std::string& lower_name) const;
};

// One keep-alive HTTP/1.1 connection to 127.0.0.1:port, reconnecting when needed. Every call
// is bounded by `timeout`; nullopt (and last_error()) when the gateway could not be reached.
class HttpClient {
 public:
  explicit HttpClient(int port, Millis timeout = 5s);
  ~HttpClient();
  std::optional<HttpResponse> request(const std::string& method, const std::string& target,
                                      const std::string& body = {},
                                      const std::map<std::string, std::string>& headers = {});
  const std::string& last_error() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// One request on a fresh connection; throws when the gateway cannot be reached.
HttpResponse http(int port, const std::string& method, const std::string& target,
                  const std::string& body = {},
                  const std::map<std::string, std::string>& headers = {}, Millis timeout = 5s);

// The value of an unlabelled sample in a Prometheus text exposition, or nullopt.
std::optional<double> metric_value(const std::string& text, const std::string& sample);

struct ExitStatus {
  bool exited = false;  // else killed by `signal`
  int code = -1;
  int signal = 0;
  std::string describe() const;
};

// A child process of the test (posix_spawn; stdin /dev/null, stdout and stderr to files,
// nothing else inherited). The destructor kills it by its pid if it still runs.
class Process {
 public:
  Process(const std::vector<std::string>& argv, const fs::path& cwd, const fs::path& out_file,
          const fs::path& err_file, const std::map<std::string, std::string>& extra_env = {});
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  void signal(int sig);
  // Waits (bounded) for the exit; nullopt when it still runs at the deadline.
  std::optional<ExitStatus> wait(Millis timeout);
  std::optional<ExitStatus> status() const { return status_; }

 private:
  pid_t pid_ = -1;
  int pidfd_ = -1;
  std::optional<ExitStatus> status_;
};

struct CliResult {
  ExitStatus status;
  std::string out;
  std::string err;
};

// Runs `drawbridge args...` in `dir` and waits (bounded) for it; `env` is added to its
// environment.
CliResult run_cli(const TempDir& dir, const std::vector<std::string>& args, Millis timeout = 10s,
                  const std::map<std::string, std::string>& env = {});

// The gateway under test: `drawbridge run --port P --data-dir D --config <dir>/config.json`.
class Gateway {
 public:
  static constexpr const char* kToken = "e2e-token";

  // gateway.auth.token defaults to kToken when `config` does not set one.
  Gateway(const TempDir& dir, json config, fs::path data_dir = {});
  ~Gateway();
  Gateway(const Gateway&) = delete;
  Gateway& operator=(const Gateway&) = delete;

  // Spawns on a free port and waits until /readyz answers 200 (10 s). A port taken in
  // between is retried with another one. Throws with the log when it does not get ready.
  void start();
  bool running() const;
  int port() const { return port_; }
  pid_t pid() const;
  const std::string& token() const { return token_; }
  std::string url() const { return "ws://127.0.0.1:" + std::to_string(port_); }
  const fs::path& data_dir() const { return data_dir_; }

  void signal(int sig);
  // The next start writes its free port into the config file (gateway.port) instead of
  // passing --port, so that a config edit can move it (issue 17).
  void set_port_in_config(bool on) { port_in_config_ = on; }
  // start() waits for /healthz (serving) instead of /readyz (serving, and every channel
  // connected): for a test whose channel is meant not to connect.
  void set_wait_for_channels(bool on) { wait_for_channels_ = on; }
  // Environment variables for the next start (the environment is otherwise fixed).
  void set_env(const std::string& name, const std::string& value) { env_[name] = value; }
  // Bounded wait for the exit; throws (with the log) when it still runs at the deadline.
  ExitStatus wait_exit(Millis timeout = 10s);
  ExitStatus kill9();
  // stdout and stderr of the current (or last) run.
  std::string log() const;
  std::string out() const;
  std::string err() const;
  // Waits (bounded) until the log of the current run contains `needle`.
  bool wait_for_log(const std::string& needle, Millis timeout = 5s) const;

  // HTTP helpers with the bearer token.
  HttpResponse get(const std::string& target) const;
  HttpResponse post_message(const json& body,
                            const std::map<std::string, std::string>& headers = {}) const;
  json history(const std::string& session_key) const;  // GET /v1/messages, the messages array

  // A connected GatewayClient (all operator scopes unless given).
  std::unique_ptr<server::GatewayClient> client(
      std::vector<std::string> scopes = {"operator.read", "operator.write"}) const;

 private:
  bool spawn_and_wait_ready(std::string& why);

  const TempDir& dir_;
  json config_;
  fs::path data_dir_;
  fs::path config_file_;
  std::string token_;
  int port_ = 0;
  int runs_ = 0;
  fs::path out_file_, err_file_;
  std::unique_ptr<Process> proc_;
  std::map<std::string, std::string> env_;
  bool port_in_config_ = false;
  bool wait_for_channels_ = true;
};

// What one run looked like from a subscribed client.
struct ChatRun {
  std::vector<json> deltas;  // payloads of state "delta", in arrival order
  json terminal;             // payload of the final / error / aborted event (null on timeout)
  std::vector<json> other;   // other events seen meanwhile (other runs, tick, shutdown...)
  std::string state() const { return terminal.is_object() ? terminal.value("state", "") : ""; }
  std::string text() const;  // text of the terminal event's message
};

// Reads events until the run `run_id` ends (final / error / aborted) or the deadline.
ChatRun await_run(server::GatewayClient& client, const std::string& run_id, Millis timeout = 5s);

// A raw WebSocket on Boost.Beast, for what GatewayClient will not send or show: malformed
// frames, oversized frames, error details and close codes.
struct WsFrame {
  bool closed = false;     // the gateway closed the WebSocket (close_code, close_reason)
  int close_code = 0;
  std::string close_reason;
  std::string error;       // the connection failed another way ("timeout", a reset...)
  std::string text;        // the frame
  json msg;                // the frame as JSON (discarded when it is not JSON)
};

class RawWs {
 public:
  explicit RawWs(int port, Millis timeout = 5s);  // TCP connect + upgrade
  ~RawWs();
  RawWs(const RawWs&) = delete;
  RawWs& operator=(const RawWs&) = delete;

  json read_challenge();  // the connect.challenge event
  // Sends a text frame (one frame, no fragmentation); false when the write failed.
  bool send_text(const std::string& text);
  // The same, written to the socket directly; for frames the gateway may refuse mid-write.
  bool send_raw_text_frame(const std::string& text);
  WsFrame read(Millis timeout = 5s);
  // Challenge, then `connect`; returns the whole response frame.
  json connect(const std::string& token, const std::vector<std::string>& scopes);
  // Sends a request and returns its whole response frame; events meanwhile are kept.
  json request(const std::string& method, const json& params, Millis timeout = 5s);
  std::optional<json> next_event(Millis timeout = 5s);
  // Reads (keeping events) until the gateway closes; returns the close (or the failure).
  WsFrame read_until_close(Millis timeout = 5s);
  std::vector<json>& events() { return events_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::vector<json> events_;
  int next_id_ = 0;
};

// A config with one echo agent answering the local channel.
inline json echo_config(int delay_ms = 0, int chunk_chars = 0) {
  json agent = {{"type", "echo"}};
  if (delay_ms > 0) agent["delayMs"] = delay_ms;
  if (chunk_chars > 0) agent["chunkChars"] = chunk_chars;
  return {{"agents", {{"main", agent}}}, {"channels", {{"local", {{"maxMessageChars", 0}}}}}};
}

// Transcript messages (GET /v1/messages or chat.history) of `role` carrying `run_id`.
std::vector<json> entries_of_run(const json& messages, const std::string& role,
                                 const std::string& run_id);
std::string entry_text(const json& message);

// Waits (bounded) until the gateway reports no unfinished work (status: inbox, outbox, runs,
// queue and deliveries all empty); returns the last status.
json wait_until_idle(const Gateway& gw, Millis timeout);

// The random seed of a randomized test: $DRAWBRIDGE_E2E_SEED or a fresh one.
std::uint64_t test_seed();

}  // namespace drawbridge::e2e
