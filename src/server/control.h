#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <functional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

namespace drawbridge::server {

struct Readiness {
  bool ready = false;
  std::string reason;  // why not ready: "starting", "draining", "channel local not ready", ...
  // What else a probe should know, ready or not: {"config": {"valid": false, "errors": [...]}}
  // when the file on disk is invalid and the gateway runs on the config it had.
  nlohmann::json details = nullptr;
};

// The lifecycle as the control plane sees it.
struct LifecycleView {
  // "starting" | "running" | "draining" | "restarting" | "stopping" | "failed"
  std::string state = "running";
  // False between the server closing its connections for a restart and the next generation
  // being ready, and while stopping: new WebSocket connects are refused (retryable).
  bool accepting_connections = true;
  std::int64_t restart_expected_ms = 0;  // for retryAfterMs and shutdown events
};

struct RestartIntent {
  std::string reason;  // empty: "requested"
  bool force = false;
  // Overrides gateway.reload.deferralTimeoutMs; 0 = do not wait.
  std::optional<std::int64_t> wait_ms;
  std::optional<std::int64_t> delay_ms;  // default 2000, clamped 0..60000 by the scheduler
  std::string requested_by_run;          // run id of the turn asking: it is not waited for
  std::string source = "rpc";            // "rpc" | "signal" | "chat"
  bool fresh_process = false;            // restart in a new process (re-exec or supervised)
};

// `config.patch` (a JSON merge patch) or `config.apply` (a whole document).
struct ConfigWrite {
  std::string raw;       // the patch or the document, JSON with comments
  bool whole = false;    // config.apply
  std::optional<std::string> base_hash;
  std::optional<std::int64_t> restart_delay_ms;
  std::string note;      // for the log
};

// Why a config write was refused; the RPC answers INVALID_REQUEST (or UNAVAILABLE when
// `retryable`) with details {code, errors}.
struct ConfigWriteError {
  std::string code;  // CONFIG_INVALID | CONFIG_CONFLICT | BASE_HASH_REQUIRED | NO_CONFIG_FILE |
                     // WRITE_FAILED | GATEWAY_BUSY
  std::string message;
  nlohmann::json errors = nlohmann::json::array();  // [{path, pointer, message}]
  nlohmann::json extra = nlohmann::json::object();  // merged into details (currentHash, ...)
  bool retryable = false;
  std::int64_t retry_after_ms = 0;
};

// The answer to restart, update and a restart asked for by a config write. The server writes
// it as OpenClaw's payload: {"ok", "status", "cycle", "dueInMs", "note"}.
struct RestartAnswer {
  bool ok = true;
  // "scheduled" | "coalesced" | "ignored" | "shortened" | "refused" (an update's binary)
  std::string status;
  std::optional<std::uint64_t> cycle;      // absent when refused
  std::optional<std::int64_t> due_in_ms;   // absent when refused
  std::string note;
};

// What a config change did: its plan (none / hot / restart, the actions, the paths and their
// rule) and how it was applied.
struct ReloadReport {
  struct Action {
    std::string action;  // update-auth | swap-agent | rebind-agents | restart-channel
    std::string target;
  };
  struct Path {
    std::string path;
    std::string kind;  // none | hot | restart
    std::string rule;
    std::optional<std::string> action;
    std::string target;  // empty: none
  };
  std::string kind;         // none | hot | restart
  std::string mode;         // hybrid | off
  bool applied = false;
  std::vector<Action> actions;
  std::vector<Path> paths;
  std::string note;         // empty: none
  std::string error;        // a hot reload that failed (a restart was asked for instead)
  std::optional<RestartAnswer> restart;  // the restart it asked for
  bool cancelled_restart = false;        // a scheduled config restart was no longer needed
};

// config.patch / config.apply done: {"ok", "path", "hash", "written", "changedPaths", "plan",
// "droppedPlaceholders"?}.
struct ConfigWriteDone {
  std::string path;
  std::string hash;
  bool written = false;
  std::vector<std::string> changed_paths;
  ReloadReport plan;
  // Redacted placeholders sent back for secrets the file does not hold (a generated token):
  // left out of the written file, so those secrets stay as they were.
  std::vector<std::string> dropped_placeholders;
  // A cluster (store.driver postgres): the change is this replica's only.
  std::string warning;
};
using ConfigWriteResult = std::variant<ConfigWriteDone, ConfigWriteError>;

// One error of a config file: where (a dotted path and a JSON pointer) and what.
struct ConfigIssue {
  std::string path;
  std::string pointer;
  std::string message;
};

// config.get: {path, exists, raw, rawRedacted, hash, config, sourceConfig, valid, errors,
// appliedHash, pending, degraded, reloadMode}.
struct ConfigSnapshot {
  std::string path;
  bool exists = false;
  std::string raw;            // the file's text; "" when it holds secrets it could not redact
  bool raw_redacted = false;
  std::string hash;
  nlohmann::json config;      // the effective config, secrets redacted (a config document)
  // The file as written (parsed, comments dropped, no defaults), secrets redacted the same way:
  // what a form edits and sends back. {} without a file; null when the file is not JSON.
  nlohmann::json source_config = nullptr;
  bool valid = true;
  std::vector<ConfigIssue> errors;
  std::string applied_hash;
  bool pending = false;
  bool degraded = false;
  std::string reload_mode;
};

// The answer to gateway.stop: {"ok": true, "status": "stopping"|"already-stopping", "note"}.
struct StopAnswer {
  std::string status;
  std::string note;  // empty: none
};

// A channel's link to its chat network (pipeline::ChannelHealth, as text).
struct ChannelLink {
  std::string state;  // connecting | connected | conflict | failed | stopped
  std::string last_error;
  std::int64_t last_error_at_ms = 0;
  std::uint64_t errors = 0;
  std::uint64_t conflicts = 0;
  std::string detail;
};

// OpenClaw's health snapshot (the `health` method and event, hello-ok snapshot.health).
struct HealthReport {
  struct Channel {
    std::string id;
    bool ready = false;
    std::string agent;
    ChannelLink link;
  };
  std::int64_t ts_ms = 0;
  std::int64_t duration_ms = 0;
  std::vector<Channel> channels;  // in the gateway's order
  std::string default_agent;
};

// drawbridge's `status`: what runs, what waits, what the store holds, the lifecycle's record.
// The units that describe themselves in detail (the drain, the config file, the last restart
// and update) hand over their own documents (`details`), shown as they are.
struct StatusReport {
  struct Channel {
    std::string id;
    bool ready = false;
    std::string agent;
    std::uint64_t starts = 0;
    ChannelLink link;
  };
  struct Agent {
    std::string id;
    std::string type;
    std::string endpoint;  // the rest: backends with an endpoint only (openai)
    std::string model;
    std::string last_error;
    std::int64_t last_error_at_ms = 0;
    std::int64_t last_latency_ms = -1;
  };
  struct Run {
    std::string run_id;
    std::string session_key;
    std::int64_t started_at_ms = 0;
  };
  struct StoreCounts {
    std::int64_t inbox_total = 0, inbox_unfinished = 0, outbox_pending = 0, outbox_sent = 0,
                 outbox_stale = 0, sessions_suspended = 0, sessions = 0;
    std::string error;  // the store could not be read
  };
  struct ScheduledRestart {
    std::string reason;
    std::int64_t due_in_ms = 0;
    std::uint64_t cycle = 0;
  };
  std::string version;
  std::string state;
  std::int64_t pid = 0;
  std::int64_t uptime_ms = 0;
  std::uint64_t generation = 0;
  std::string bind;
  int port = 0;
  std::string config_path;
  std::string data_dir;
  bool clean_start = false;
  std::vector<Channel> channels;
  std::vector<Agent> agents;
  std::vector<Run> active_runs;
  std::size_t queue_depth = 0, debounced = 0, pending_deliveries = 0, connections = 0;
  StoreCounts store;
  nlohmann::json drain = nullptr;         // the drain under way (DrainRunner), or null
  nlohmann::json last_restart = nullptr;  // the last in-process restart, or null
  std::uint64_t restarts = 0;
  std::string binary;
  std::string supervisor;
  std::string restart_mode;
  bool inherited_socket = false;
  nlohmann::json last_update = nullptr;  // the update sentinel's record, or null
  nlohmann::json config = nullptr;       // the config file's health (ConfigReloader)
  nlohmann::json cluster = nullptr;      // store.driver postgres: replicas and leases, or null
  std::optional<std::string> degraded;
  std::optional<std::string> last_start_error;
  std::optional<ScheduledRestart> scheduled_restart;
};

// The agents the gateway runs, for the pickers of OpenClaw's clients (agents.list,
// models.list, agent.identity.get). Cheap: no store read.
struct AgentCatalog {
  struct Agent {
    std::string id;
    std::string type;      // echo | exec | openai
    std::string model;     // openai: the model; "" for the others
    std::string endpoint;  // openai: the base URL; "" for the others
  };
  std::string default_agent;
  std::vector<Agent> agents;  // by id
  std::vector<std::string> channels;  // the channel ids served, in the gateway's order
};

// logs.tail: a window of the gateway's own log, read from the end. Byte offsets count every
// byte the log ever held in this process, so a cursor stays meaningful as old lines go.
struct LogTailRequest {
  std::optional<std::uint64_t> cursor;  // where the last read ended; none: the newest lines
  std::size_t limit = 500;              // lines at most
  std::size_t max_bytes = 250'000;      // bytes at most
};

struct LogTail {
  std::string file;  // where the log is kept ("memory:drawbridge/<pid>")
  std::uint64_t cursor = 0;  // pass it back to read on
  std::uint64_t size = 0;    // bytes written ever
  std::vector<std::string> lines;
  bool truncated = false;  // older lines of the window were left out (limit or max_bytes)
  bool reset = false;      // the cursor was not usable (lines gone, or another process's)
  std::uint64_t skipped_bytes = 0;
};

// system.info: the host and the process, read from the kernel (uname, /proc, statvfs).
struct SystemInfo {
  std::string hostname;
  std::string release;  // kernel release
  std::string arch;
  std::string os_label;  // /etc/os-release PRETTY_NAME, else "Linux <release>"
  std::string cpu_model;  // "" when unknown
  std::string version;    // drawbridge's
  std::int64_t pid = 0;
  std::int64_t uptime_ms = 0;  // of the process
  std::int64_t cpu_count = 0;
  std::int64_t memory_total_bytes = 0;
  std::int64_t memory_free_bytes = 0;  // MemAvailable, as Node's os.freemem()
  std::optional<std::array<double, 3>> load_average;
  int port = 0;
  std::string disk_path;  // the data folder; "" when statvfs failed
  std::int64_t disk_total_bytes = 0;
  std::int64_t disk_available_bytes = 0;
};

// What the control plane asks of the gateway. The runtime implements it; the server knows
// nothing else above the pipeline.
class Control {
 public:
  virtual ~Control() = default;
  virtual Readiness readiness() = 0;
  virtual HealthReport health() = 0;
  virtual StatusReport status() = 0;
  virtual AgentCatalog agent_catalog() = 0;
  virtual std::string metrics_text() = 0;  // Prometheus text exposition
  virtual std::int64_t uptime_ms() = 0;
  virtual RestartAnswer request_restart(const RestartIntent& intent) = 0;
  virtual StopAnswer request_stop(const std::string& reason) = 0;
  virtual LifecycleView lifecycle() = 0;
  // Starts `binary` on the listening socket after a drain; falls back to an in-process restart
  // on the running binary when it does not become ready. ok false, "refused", when the binary
  // is not an executable file.
  virtual RestartAnswer request_update(const std::string& binary, const std::string& reason) = 0;
  virtual ConfigSnapshot config_get() = 0;
  // A POST to a channel's webhook path (no gateway token: the channel checks its own secret).
  // False when `path` is no channel's; else `respond(status, body)` runs once, later.
  virtual bool webhook(std::string_view path, const std::string& secret_header,
                       const std::string& body, std::function<void(int, std::string)> respond) {
    (void)path;
    (void)secret_header;
    (void)body;
    (void)respond;
    return false;
  }
  // Validates, writes, applies; `done` gets the answer once the change is applied (a hot
  // reload finished, or the restart scheduled).
  virtual void config_write(const ConfigWrite& write,
                            std::function<void(ConfigWriteResult)> done) = 0;
  // The gateway's own log (redacted like every sink), for logs.tail.
  virtual LogTail logs_tail(const LogTailRequest& request) = 0;
  virtual SystemInfo system_info() = 0;
};

}  // namespace drawbridge::server
