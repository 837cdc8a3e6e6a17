#include "config/schema.h"

#include <arpa/inet.h>

#include <array>

namespace drawbridge::config::schema {

Rule integer(std::int64_t min, std::int64_t max) {
  return {.type = Type::kInteger, .min = min, .max = max};
}
Rule number(std::int64_t min, std::int64_t max) {
  return {.type = Type::kNumber, .min = min, .max = max};
}
Rule text() {
  return {.type = Type::kString};
}
Rule non_empty_text() {
  return {.type = Type::kString, .non_empty = true};
}
Rule one_of(std::vector<std::string_view> values) {
  return {.type = Type::kString, .one_of = std::move(values)};
}
Rule boolean() {
  return {.type = Type::kBoolean};
}
Rule section() {
  return {.type = Type::kSection};
}
Rule free_object() {
  return {.type = Type::kFreeObject};
}
Rule string_array() {
  return {.type = Type::kStringArray, .non_empty = true};
}
Rule string_map() {
  return {.type = Type::kStringMap};
}
Rule custom() {
  return {.type = Type::kCustom};
}
Rule required(Rule rule) {
  rule.required = true;
  return rule;
}

namespace {

bool is_ip_literal(const std::string& s) {
  unsigned char buf[16];
  return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

Rule bind_rule() {
  Rule r = one_of({"loopback", "lan"});
  r.accept = is_ip_literal;
  r.expected = R"("loopback", "lan" or an IP address literal)";
  return r;
}

}  // namespace

std::span<const Field<Config>> config_fields() {
  static const std::vector<Field<Config>> fields = {
      {"$schema", text(), "URL of a JSON schema, for editors; ignored by the gateway"},
      {"meta", free_object(),
       "Bookkeeping the gateway writes (last write, version); not validated"},

      {"gateway", section(), "The gateway process: listening address, auth and reload"},
      {"gateway.port", integer(1, 65535), "TCP port of the control plane (HTTP and WebSocket)",
       DRAWBRIDGE_MEMBER(Config, gateway.port)},
      {"gateway.bind", bind_rule(),
       "Listening address: \"loopback\" (127.0.0.1), \"lan\" (all interfaces) or an IP literal",
       DRAWBRIDGE_MEMBER(Config, gateway.bind)},
      {"gateway.auth", section(), "How clients of the control plane authenticate"},
      {"gateway.auth.mode", one_of({"token"}), "Authentication mode; only \"token\" for now",
       nullptr, [](const Config&) { return json("token"); }},
      {"gateway.auth.token", non_empty_text(),
       "Shared secret clients present; absent: generated and kept in the data folder",
       DRAWBRIDGE_MEMBER(Config, gateway.auth_token)},
      {"gateway.reload", section(), "What happens when the config file changes"},
      {"gateway.reload.mode", one_of({"hybrid", "off"}),
       "\"hybrid\": apply hot what can be, restart for the rest; \"off\": ignore file changes",
       DRAWBRIDGE_MEMBER(Config, gateway.reload.mode)},
      {"gateway.reload.debounceMs", integer(0, 60000),
       "Wait this long after the last file change before reloading",
       DRAWBRIDGE_MEMBER(Config, gateway.reload.debounce_ms)},
      {"gateway.reload.deferralTimeoutMs", integer(0),
       "How long a restart waits for active turns before aborting them; 0 = no limit",
       DRAWBRIDGE_MEMBER(Config, gateway.reload.deferral_timeout_ms)},
      {"gateway.restart", section(), "How requested restarts are scheduled"},
      {"gateway.restart.delayMs", integer(0, 60000),
       "A restart begins this long after it is requested (requests meanwhile coalesce)",
       DRAWBRIDGE_MEMBER(Config, gateway.restart.delay_ms)},
      {"gateway.restart.mode", one_of({"auto", "in-process", "re-exec", "supervised"}),
       "auto: in the same process, or a fresh one when asked (SIGUSR2, update): exit 75 for "
       "systemd/launchd, else re-exec on the same socket; the others force one way",
       DRAWBRIDGE_MEMBER(Config, gateway.restart.mode)},
      {"gateway.restart.cooldownMs", integer(0, 3600000),
       "At least this long between the starts of two restarts; later requests wait for it",
       DRAWBRIDGE_MEMBER(Config, gateway.restart.cooldown_ms)},

      {"gateway.limits", section(), "What clients may cost the process"},
      {"gateway.limits.maxConnections", integer(1, 100000),
       "Open connections (HTTP and WebSocket) at most; more are closed at once",
       DRAWBRIDGE_MEMBER(Config, gateway.limits.max_connections)},
      {"gateway.limits.maxConnectionsPerPeer", integer(1, 100000),
       "Open connections from one remote address at most (loopback included)",
       DRAWBRIDGE_MEMBER(Config, gateway.limits.max_connections_per_peer)},
      {"gateway.limits.maxMessageBytes", integer(1, 16 * 1024 * 1024),
       "Largest inbound message text in bytes; larger ones are refused with an error",
       DRAWBRIDGE_MEMBER(Config, gateway.limits.max_message_bytes)},
      {"gateway.limits.maxHistoryBytes", integer(1024, 64 * 1024 * 1024),
       "Most message text in one history answer; older messages are paged with `before`",
       DRAWBRIDGE_MEMBER(Config, gateway.limits.max_history_bytes)},
      {"gateway.controlUi", section(), "Browser access to the control plane"},
      {"gateway.controlUi.allowedOrigins", Rule{.type = Type::kStringArray},
       "Origins (scheme://host:port) whose pages may open the WebSocket; \"*\" = any. The "
       "gateway's own loopback origin and clients that send no Origin are always allowed",
       DRAWBRIDGE_MEMBER(Config, gateway.allowed_origins)},
      {"gateway.controlUi.root", text(),
       "Folder of OpenClaw's Control UI (scripts/install-control-ui.sh installs it), served on "
       "the gateway's port; relative to the config file's folder; empty: not served",
       DRAWBRIDGE_MEMBER(Config, gateway.control_ui_root)},
      {"gateway.controlUi.assistantName", non_empty_text(),
       "The assistant's name the Control UI shows (its /control-ui-config.json)",
       DRAWBRIDGE_MEMBER(Config, gateway.control_ui_assistant_name)},
      {"gateway.allowedHosts", Rule{.type = Type::kStringArray},
       "Host header names accepted besides loopback names and the bind address; \"*\" = any "
       "(guards a loopback gateway against DNS rebinding)",
       DRAWBRIDGE_MEMBER(Config, gateway.allowed_hosts)},

      {"commands", section(), "Commands accepted from chats and signals"},
      {"commands.restart", boolean(), "Allow /restart in chat and SIGUSR1 from outside",
       DRAWBRIDGE_MEMBER(Config, commands.restart)},

      {"messages", section(), "How inbound messages become agent turns"},
      {"messages.inbound", section(), "Inbound batching"},
      {"messages.inbound.debounceMs", integer(0, 600000),
       "Messages of one chat arriving within this window become one turn; 0 = no batching",
       DRAWBRIDGE_MEMBER(Config, messages.inbound_debounce_ms)},
      {"messages.queue", section(), "Messages arriving while a turn of the same session runs"},
      {"messages.queue.mode", one_of({"steer", "followup", "collect", "interrupt"}),
       "steer: into the running turn; followup: one turn each afterwards; collect: one turn "
       "for all afterwards; interrupt: cancel the running turn",
       DRAWBRIDGE_MEMBER(Config, messages.queue.mode)},
      {"messages.queue.cap", integer(1, 1000), "Most messages waiting per session",
       DRAWBRIDGE_MEMBER(Config, messages.queue.cap)},
      {"messages.queue.drop", one_of({"old", "new", "summarize"}),
       "When the queue is full: drop the oldest, drop the newest, or summarize the dropped",
       DRAWBRIDGE_MEMBER(Config, messages.queue.drop)},
      {"messages.replyTtlMs", integer(0),
       "A reply still undelivered when the gateway starts again (after a crash or a long stop) "
       "is not sent once it is older than this; 0 = send it however late",
       DRAWBRIDGE_MEMBER(Config, messages.reply_ttl_ms)},

      {"channels", custom(), "Chat channels by id (local, telegram, irc)"},
      {"agents", custom(), "Agent backends by id, and \"default\": the id answering by default"},

      {"store", section(), "Durable storage of inbox, outbox, sessions and tasks"},
      {"store.driver", one_of({"sqlite", "postgres"}),
       "Storage engine: sqlite (one machine, embedded) or postgres (replicas share it)",
       DRAWBRIDGE_MEMBER(Config, store.driver)},
      {"store.dataDir", non_empty_text(),
       "Folder for the database and generated secrets; relative to the config file's folder",
       DRAWBRIDGE_MEMBER(Config, store.data_dir)},
      {"store.durability", one_of({"process", "power"}),
       "process: a commit survives the gateway being killed (WAL, synchronous=NORMAL); power: "
       "it also survives power loss (synchronous=FULL, one fsync per commit, much slower)",
       DRAWBRIDGE_MEMBER(Config, store.durability)},
      {"store.url", text(),
       "store.driver postgres: libpq connection string or URI (host=... dbname=... or "
       "postgresql://user@host/db), without the password",
       DRAWBRIDGE_MEMBER(Config, store.url)},
      {"store.passwordEnv", text(),
       "store.driver postgres: environment variable holding the database password (empty: "
       "libpq's PGPASSWORD or ~/.pgpass)",
       DRAWBRIDGE_MEMBER(Config, store.password_env)},

      {"cluster", section(), "Replicas sharing one PostgreSQL store"},
      {"cluster.replicaId", text(),
       "This replica's name, unique in the cluster; empty: <host name>:<gateway port>",
       DRAWBRIDGE_MEMBER(Config, cluster.replica_id)},
      {"cluster.leaseMs", integer(500, 600000),
       "Lease time of a channel account or a session: a replica that stops renewing (dead, "
       "paused, cut off) loses them after this, and another replica takes them over",
       DRAWBRIDGE_MEMBER(Config, cluster.lease_ms)},

      {"logging", section(), "Log output"},
      {"logging.level", one_of({"trace", "debug", "info", "warn", "error"}),
       "Least severe level written", DRAWBRIDGE_MEMBER(Config, logging.level)},
  };
  return fields;
}

std::span<const Field<ChannelSettings>> channel_fields() {
  static const std::vector<Field<ChannelSettings>> fields = {
      {"enabled", boolean(), "Start this channel", DRAWBRIDGE_MEMBER(ChannelSettings, enabled)},
      {"agent", non_empty_text(), "Agent id answering this channel; absent: agents.default",
       DRAWBRIDGE_MEMBER(ChannelSettings, agent)},
      {"maxMessageChars", integer(0),
       "Split replies into parts of at most this many chars; 0 = no split",
       DRAWBRIDGE_MEMBER(ChannelSettings, max_message_chars)},
      {"historyLimit", integer(0, 50),
       "Earlier messages of the chat a turn sees (OpenClaw's key); 0 = the gateway's 50",
       DRAWBRIDGE_MEMBER(ChannelSettings, history_limit)},
      {"notices", section(),
       "What a chat with a turn in progress is told when the gateway restarts or stops"},
      {"notices.enabled", boolean(), "Send these notices (one per chat and restart)",
       DRAWBRIDGE_MEMBER(ChannelSettings, notices.enabled)},
      {"notices.restarting", non_empty_text(),
       "Sent when a restart begins and the turn will finish first",
       DRAWBRIDGE_MEMBER(ChannelSettings, notices.restarting)},
      {"notices.interrupted", non_empty_text(),
       "Sent when a restart interrupted the turn (it did not finish within the deferral budget)",
       DRAWBRIDGE_MEMBER(ChannelSettings, notices.interrupted)},
      {"notices.stopping", non_empty_text(),
       "Sent when the gateway stops while the turn runs; the reply follows at the next start",
       DRAWBRIDGE_MEMBER(ChannelSettings, notices.stopping)},
  };
  return fields;
}

std::span<const Field<AgentSettings>> agent_fields() {
  static const std::vector<Field<AgentSettings>> fields = {
      {"type", required(one_of({"echo", "exec", "openai"})), "Backend kind",
       DRAWBRIDGE_MEMBER(AgentSettings, type)},
      {"delayMs", integer(0, 3600000), "Wait this long before replying (simulates a slow turn)",
       DRAWBRIDGE_MEMBER(AgentSettings, delay_ms), "echo"},
      {"chunkChars", integer(0), "Stream the reply in deltas of this many chars; 0 = one delta",
       DRAWBRIDGE_MEMBER(AgentSettings, chunk_chars), "echo"},
      {"prefix", text(), "Prepended to the echoed text", DRAWBRIDGE_MEMBER(AgentSettings, prefix),
       "echo"},
      {"command", required(string_array()),
       "argv of the command run per turn; command[0] is looked up in PATH",
       DRAWBRIDGE_MEMBER(AgentSettings, command), "exec"},
      {"timeoutMs", integer(1, 86400000), "A turn running longer than this is cancelled",
       DRAWBRIDGE_MEMBER(AgentSettings, timeout_ms), "exec openai"},
      {"killGraceMs", integer(0, 60000), "After SIGTERM, wait this long before SIGKILL",
       DRAWBRIDGE_MEMBER(AgentSettings, kill_grace_ms), "exec"},
      {"cwd", text(), "Working directory of the command; empty: the gateway's",
       DRAWBRIDGE_MEMBER(AgentSettings, cwd), "exec"},
      {"env", string_map(), "Extra environment variables for the command",
       DRAWBRIDGE_MEMBER(AgentSettings, env), "exec"},
      {"baseUrl", non_empty_text(), "Base URL of the OpenAI-compatible API",
       DRAWBRIDGE_MEMBER(AgentSettings, base_url), "openai"},
      {"model", text(), "Model name sent with each request",
       DRAWBRIDGE_MEMBER(AgentSettings, model), "openai"},
      {"apiKey", text(),
       "Bearer token for the API: \"${OPENAI_API_KEY}\" reads the variable; a literal key is "
       "accepted with a warning",
       DRAWBRIDGE_MEMBER(AgentSettings, api_key), "openai"},
      {"apiKeyEnv", text(), "Environment variable holding the API key (e.g. OPENAI_API_KEY)",
       DRAWBRIDGE_MEMBER(AgentSettings, api_key_env), "openai"},
      {"systemPrompt", text(), "System message sent first with every request",
       DRAWBRIDGE_MEMBER(AgentSettings, system_prompt), "openai"},
      {"temperature", number(0, 2), "Sampling temperature; unset: the endpoint's default",
       [](AgentSettings& a, const json& v) { a.temperature = v.get<double>(); },
       [](const AgentSettings& a) { return a.temperature ? json(*a.temperature) : json(); },
       "openai"},
      {"maxTokens", integer(0, 10000000), "max_tokens of each request; 0: the endpoint's default",
       DRAWBRIDGE_MEMBER(AgentSettings, max_tokens), "openai"},
      {"params", free_object(),
       "More request fields passed through as they are (top_p, stop, seed, ...)",
       DRAWBRIDGE_MEMBER(AgentSettings, params), "openai"},
      {"maxHistoryTurns", integer(0, 1000),
       "Earlier user messages (with their replies) sent along with each request",
       DRAWBRIDGE_MEMBER(AgentSettings, max_history_turns), "openai"},
      {"maxHistoryTokens", integer(0, 100000000),
       "Budget of the history sent, estimated at 4 bytes a token; 0: no budget",
       DRAWBRIDGE_MEMBER(AgentSettings, max_history_tokens), "openai"},
      {"stream", boolean(), "Stream the reply (server-sent events); false: one answer",
       DRAWBRIDGE_MEMBER(AgentSettings, stream), "openai"},
      {"connectTimeoutMs", integer(1, 600000),
       "Bound on resolving, connecting, TLS and sending a request",
       DRAWBRIDGE_MEMBER(AgentSettings, connect_timeout_ms), "openai"},
      {"firstTokenTimeoutMs", integer(1, 86400000),
       "A request with no token of the reply after this long fails",
       DRAWBRIDGE_MEMBER(AgentSettings, first_token_timeout_ms), "openai"},
      {"idleTimeoutMs", integer(1, 86400000),
       "A stream that sends nothing for this long fails (a stalled endpoint)",
       DRAWBRIDGE_MEMBER(AgentSettings, idle_timeout_ms), "openai"},
      {"maxRetries", integer(0, 10),
       "Retries of 429, 5xx and lost connections before the first token",
       DRAWBRIDGE_MEMBER(AgentSettings, max_retries), "openai"},
  };
  return fields;
}

std::span<const Kind> channel_kinds() {
  static constexpr std::array<Kind, 3> kinds = {{
      {"irc", "IRC client (host, port, tls, tlsInsecure, nick, username, realname, password/passwordEnv, channels, groupPolicy, groups, dmPolicy, allowFrom, commandPrefix; other keys are accepted with a warning)", true, "password"},
      {"local", "Local HTTP/WebSocket chat served by the gateway itself", false},
      {"telegram", "Telegram bot by long polling (botToken/botTokenEnv/tokenFile, apiRoot, dmPolicy, allowFrom, pollTimeoutSeconds; other keys are accepted)", true, "botToken"},
  }};
  return kinds;
}

std::span<const Kind> agent_types() {
  static constexpr std::array<Kind, 3> types = {{
      {"echo", "Replies with the inbound text; for tests and demos"},
      {"exec", "Runs a local command per turn: the message on stdin, the reply from stdout"},
      {"openai", "Any OpenAI-compatible chat completions endpoint"},
  }};
  return types;
}

json default_channels() {
  return {{"local", {{"enabled", true}}}};
}

json default_agents() {
  return {{"default", "main"}, {"main", {{"type", "echo"}}}};
}

bool applies_to(std::string_view only, std::string_view kind) {
  if (only.empty()) return true;
  while (!only.empty()) {
    const auto space = only.find(' ');
    if (only.substr(0, space) == kind) return true;
    if (space == std::string_view::npos) break;
    only.remove_prefix(space + 1);
  }
  return false;
}

std::string type_name(Type type) {
  switch (type) {
    case Type::kInteger:
      return "integer";
    case Type::kNumber:
      return "number";
    case Type::kString:
      return "string";
    case Type::kBoolean:
      return "boolean";
    case Type::kStringArray:
      return "array";
    case Type::kSection:
    case Type::kFreeObject:
    case Type::kStringMap:
    case Type::kCustom:
      return "object";
  }
  return "object";
}

std::string expected_text(const Rule& rule) {
  if (!rule.expected.empty()) return std::string(rule.expected);
  constexpr auto lowest = std::numeric_limits<std::int64_t>::min();
  constexpr auto highest = std::numeric_limits<std::int64_t>::max();
  switch (rule.type) {
    case Type::kInteger:
      if (rule.min != lowest && rule.max != highest)
        return "an integer in " + std::to_string(rule.min) + ".." + std::to_string(rule.max);
      if (rule.min != lowest) return "an integer >= " + std::to_string(rule.min);
      if (rule.max != highest) return "an integer <= " + std::to_string(rule.max);
      return "an integer";
    case Type::kNumber:
      return "a number in " + std::to_string(rule.min) + ".." + std::to_string(rule.max);
    case Type::kString: {
      if (rule.one_of.empty()) return rule.non_empty ? "a non-empty string" : "a string";
      std::string out = "one of ";
      for (std::size_t i = 0; i < rule.one_of.size(); ++i) {
        if (i > 0) out += ", ";
        out += json(rule.one_of[i]).dump();
      }
      return out;
    }
    case Type::kBoolean:
      return "a boolean";
    case Type::kStringArray:
      return rule.non_empty ? "a non-empty array of strings" : "an array of strings";
    case Type::kStringMap:
      return "an object of strings";
    case Type::kSection:
    case Type::kFreeObject:
    case Type::kCustom:
      return "an object";
  }
  return "an object";
}

}  // namespace drawbridge::config::schema
