#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace drawbridge::config {

struct ReloadSettings {
  std::string mode = "hybrid";  // "hybrid" | "off"
  int debounce_ms = 300;
  std::int64_t deferral_timeout_ms = 300000;  // 0 = wait without limit
};

struct RestartSettings {
  int delay_ms = 2000;      // a requested restart begins this long after the request
  int cooldown_ms = 30000;  // least time between the starts of two restarts
  // "auto" | "in-process" | "re-exec" | "supervised" (runtime/supervisor.h)
  std::string mode = "auto";
};

// What one client, or all of them together, may cost the process (issue 10).
struct LimitSettings {
  int max_connections = 512;           // open TCP connections, HTTP and WebSocket
  int max_connections_per_peer = 128;  // from one remote address (loopback included)
  int max_message_bytes = 256 * 1024;  // text of one inbound message
  int max_history_bytes = 4 * 1024 * 1024;  // text of one history answer
};

struct GatewaySettings {
  int port = 18789;
  std::string bind = "loopback";  // "loopback" | "lan" | an IP address literal
  std::string auth_token;         // empty: generated and kept in the data folder
  ReloadSettings reload;
  RestartSettings restart;
  LimitSettings limits;
  // Browser origins allowed to open the WebSocket ("*" = any); a page on the gateway's own
  // loopback origin is always allowed, a request without Origin (not a browser) too.
  std::vector<std::string> allowed_origins;
  // Host header values accepted besides the bind address and loopback names ("*" = any).
  std::vector<std::string> allowed_hosts;
  // The folder of OpenClaw's Control UI served on the gateway's port (empty: not served);
  // relative paths resolve against the config file's folder.
  std::string control_ui_root;
  std::string control_ui_assistant_name = "drawbridge";  // in /control-ui-config.json
};

struct CommandsSettings {
  bool restart = true;  // allow /restart in chat and SIGUSR1 from outside
};

struct QueueSettings {
  std::string mode = "followup";  // "steer" | "followup" | "collect" | "interrupt"
  int cap = 20;
  std::string drop = "summarize";  // "old" | "new" | "summarize"
};

struct MessagesSettings {
  int inbound_debounce_ms = 0;
  QueueSettings queue;
  // A reply still undelivered when the gateway starts again is not sent once it is older than
  // this (it is marked stale); 0 = never stale.
  std::int64_t reply_ttl_ms = 21'600'000;
};

// What a chat is told when the gateway's lifecycle touches its turn (one notice per chat).
struct NoticeSettings {
  bool enabled = true;
  std::string restarting = "The gateway is restarting; it will finish your reply first.";
  std::string interrupted =
      "Your task was interrupted by a gateway restart. Send a message to continue.";
  std::string stopping = "The gateway is shutting down; your reply will come when it is back.";
};

struct ChannelSettings {
  std::string id;    // key under `channels`, e.g. "local"
  bool enabled = true;
  std::string agent;  // agent id answering this channel; empty: agents.default
  int max_message_chars = 0;  // split replies into parts of at most this many chars; 0 = no split
  int history_limit = 0;      // earlier messages a turn of this channel sees; 0: the gateway's (50)
  NoticeSettings notices;
  nlohmann::json raw = nlohmann::json::object();  // the channel's whole object, for adapters
};

struct AgentSettings {
  std::string id;
  std::string type;  // "echo" | "exec" | "openai"
  // echo
  int delay_ms = 0;     // wait this long before replying (simulates a slow turn)
  int chunk_chars = 0;  // stream the reply as deltas of this many chars; 0 = one delta
  std::string prefix;   // prepended to the echoed text
  // exec
  std::vector<std::string> command;  // argv; command[0] is looked up in PATH
  std::int64_t timeout_ms = 120000;  // exec and openai: a turn running longer is cancelled
  int kill_grace_ms = 2000;          // SIGTERM, then SIGKILL after this long
  std::string cwd;
  std::map<std::string, std::string> env;
  // openai
  std::string base_url = "https://api.openai.com/v1";
  std::string model;
  std::string api_key;      // literal (warned) or "${VAR}" (OpenClaw's substitution)
  std::string api_key_env;  // the variable holding the key
  std::string system_prompt;
  std::optional<double> temperature;
  std::int64_t max_tokens = 0;  // 0: the endpoint's default
  nlohmann::json params = nlohmann::json::object();  // more request fields, passed through
  int max_history_turns = 20;
  std::int64_t max_history_tokens = 0;  // 0: no budget
  bool stream = true;
  std::int64_t connect_timeout_ms = 10000;
  std::int64_t first_token_timeout_ms = 60000;
  std::int64_t idle_timeout_ms = 30000;
  int max_retries = 3;
  nlohmann::json raw = nlohmann::json::object();
};

struct StoreSettings {
  std::string driver = "sqlite";       // "sqlite" | "postgres"
  std::string durability = "process";  // "process" | "power", see store::Durability
  std::string data_dir = "data";  // relative paths resolve against the config file's folder
  // driver "postgres": a libpq connection string or URI without the password, and the name of
  // the environment variable holding it ("": libpq's own PGPASSWORD or ~/.pgpass).
  std::string url;
  std::string password_env;
  bool operator==(const StoreSettings&) const = default;
};

// Replicas sharing one PostgreSQL (docs/DECISIONS.md "Replicas").
struct ClusterSettings {
  std::string replica_id;        // "": <host name>:<gateway port>
  std::int64_t lease_ms = 5000;  // a dead holder's channels and sessions move after this
  bool operator==(const ClusterSettings&) const = default;
};

struct LoggingSettings {
  std::string level = "info";  // "trace" | "debug" | "info" | "warn" | "error"
};

struct Config {
  GatewaySettings gateway;
  CommandsSettings commands;
  MessagesSettings messages;
  std::map<std::string, ChannelSettings> channels;  // by id
  ClusterSettings cluster;
  std::string default_agent = "main";
  std::map<std::string, AgentSettings> agents;  // by id
  StoreSettings store;
  LoggingSettings logging;
  nlohmann::json raw = nlohmann::json::object();  // the document as loaded (comments stripped)
};

struct ConfigError {
  std::string pointer;  // JSON pointer, "/gateway/port"
  std::string path;     // dotted form for people, "gateway.port"; "channels.x[2]" for arrays
  std::string message;  // "expected an integer in 1..65535, got \"abc\""
  std::string to_string() const { return (path.empty() ? "(root)" : path) + ": " + message; }
};

struct ParseResult {
  std::optional<Config> config;      // set when errors is empty
  std::vector<ConfigError> errors;  // every problem found, not only the first
};

// Parses JSON with comments and validates it whole. Unknown keys are errors with a
// did-you-mean hint. Defaults fill what is absent: an empty document is a valid config
// (loopback:18789, local channel, echo agent "main", SQLite under ./data).
ParseResult parse_config(const std::string& text);
ParseResult validate_config(const nlohmann::json& doc);

struct LoadResult {
  ParseResult parsed;
  std::string path;  // absolute path of the file read; empty when none
  std::string raw_text;
  std::string io_error;  // set when the file is missing or cannot be read (parsed is then empty)
};

// Reads `path` (empty: no file, defaults only), then applies the environment overrides
// DRAWBRIDGE_GATEWAY_TOKEN / OPENCLAW_GATEWAY_TOKEN and DRAWBRIDGE_GATEWAY_PORT /
// OPENCLAW_GATEWAY_PORT (an invalid port in the environment is an error at path
// "env.DRAWBRIDGE_GATEWAY_PORT") and DRAWBRIDGE_DATA_DIR (relative to the current directory),
// and makes store.data_dir absolute: a relative one resolves against the file's folder, or
// against the current directory when there is no file.
LoadResult load_config_file(const std::string& path);
// The whole file; nullopt and `error` ("cannot read PATH: <strerror>") when it cannot be read.
std::optional<std::string> read_text_file(const std::string& path, std::string& error);
// The same for a text already read (the watcher's, or a write about to be made): `path` only
// places relative paths; empty `path` means no file (defaults only, `text` ignored).
LoadResult load_config_text(const std::string& path, std::string text);

// The JSON Schema-like description used by `config.get` and docs: every key with its type,
// default and help text.
nlohmann::json describe_schema();

}  // namespace drawbridge::config
