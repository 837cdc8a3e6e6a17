#pragma once

// drawbridge as bench/chaos drives it: its config (echo agent, or the openai agent on a fake
// model server; the local channel, Telegram against the fake, IRC against ngircd), the process
// (spawned by this harness, which is also its supervisor: a child subreaper, so the successor
// of a re-exec or an update is reparented here), and every lifecycle event the harness
// injects, each of which returns once the gateway serves again. Only Beast (through
// bench/ws_rpc), nlohmann_json and POSIX.

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "chaos/target.h"

namespace chaos {

struct GatewaySetup {
  std::string bin;            // the drawbridge binary
  std::filesystem::path dir;  // work folder: config, data/, run/, gateway.log, a binary copy
  std::string token = "chaos-token-0123456789";
  int turn_ms = 100;    // the echo agent's delay
  // Not empty: the openai agent on this chat.completions endpoint (model "fake-echo") instead
  // of the echo agent, and messages.queue.mode "followup" written out (as for a peer).
  std::string model_base_url;
  int connections = 0;  // loopback connections the load holds (the limits get 256 more)
  std::string log_level = "info";
  std::string telegram_api_root;  // empty: no Telegram channel
  std::string telegram_token_env, telegram_token;
  int irc_port = 0;  // 0: no IRC channel
  std::string irc_password, irc_nick = "chaosbot";
};

class Gateway : public GatewayUnderTest {
 public:
  explicit Gateway(GatewaySetup setup);  // writes the config; throws when it cannot
  ~Gateway() override;                   // stops every process it started, by pid
  Gateway(const Gateway&) = delete;
  Gateway& operator=(const Gateway&) = delete;

  std::string name() const override { return "drawbridge"; }
  bool supports(EventKind, std::string&) const override { return true; }
  std::string event_notes() const override;
  // Spawns the gateway and waits (bounded) until /readyz answers 200.
  EventOutcome start() override { return start(std::chrono::seconds(20)); }
  EventOutcome start(std::chrono::milliseconds timeout);
  // The injected events (see bench/chaos/schedule.h).
  EventOutcome restart_signal() override;      // SIGUSR1: in-process restart
  EventOutcome restart_rpc() override;         // gateway.restart.request
  EventOutcome hot_patch(int n) override;      // config.patch of a hot key (n picks which)
  EventOutcome restart_patch(int n) override;  // config.patch of a restart-class key
  EventOutcome term_and_start() override;  // SIGTERM, wait for the exit, start again (a supervisor)
  EventOutcome kill_and_start() override;  // SIGKILL, start again
  EventOutcome reexec() override;          // SIGUSR2: a fresh process on the same socket
  EventOutcome update() override;  // gateway.update {binary}: the other of two binary copies
  // SIGTERM and wait; the exit status (-1: killed after the timeout, or not running).
  int stop() override { return stop(std::chrono::seconds(30)); }
  int stop(std::chrono::milliseconds timeout);

  pid_t pid() const override { return pid_; }
  int port() const override { return port_; }
  const std::string& token() const override { return setup_.token; }
  std::filesystem::path log_path() const override { return setup_.dir / "gateway.log"; }
  std::string log() const override;
  // VmRSS of the current process in KiB, -1 when unreadable.
  long rss_kib() const override;
  // Exits seen that were not asked for, or not clean where a clean one was due.
  const std::vector<std::string>& bad_exits() const override { return bad_exits_; }

 private:
  struct Status {
    pid_t pid = -1;
    std::int64_t generation = -1;
  };
  void write_config();
  pid_t spawn();
  bool status(Status& out, std::string& why) const;
  // Waits until `status` is answered by a process or generation other than `before`.
  EventOutcome wait_changed(const Status& before, std::chrono::steady_clock::time_point t0,
                            bool new_process);
  bool wait_ready(std::chrono::steady_clock::time_point deadline);
  std::optional<nlohmann::json> rpc(const std::string& method, const nlohmann::json& params,
                                    std::string& why) const;
  EventOutcome patch(const nlohmann::json& merge, bool new_generation);
  void reap_others();
  bool send(int sig);  // to the current process only
  // status, then `fire` (empty: done; else why it failed), then wait_changed.
  EventOutcome trigger(bool new_process, const std::function<std::string()>& fire);
  int wait_exit(pid_t pid, std::chrono::milliseconds timeout);

  GatewaySetup setup_;
  int port_ = 0;
  std::atomic<pid_t> pid_{-1};  // read by the RSS sampler's thread
  int update_flip_ = 0;
  std::vector<std::string> bad_exits_;
};

}  // namespace chaos
