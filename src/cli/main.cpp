#include <unistd.h>

#include <chrono>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <random>
#include <thread>

#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "cli/agents_cmd.h"
#include "cli/channels_cmd.h"
#include "cli/config_cmd.h"
#include "cli/gateway_address.h"
#include "cli/restart_text.h"
#include "runtime/carried_connections.h"
#include "runtime/gateway.h"
#include "runtime/log_redaction.h"
#include "runtime/offline_config.h"
#include "server/client.h"

namespace {

namespace fs = std::filesystem;
using drawbridge::runtime::exit_code::crashed;
using drawbridge::runtime::exit_code::ok;
using drawbridge::runtime::exit_code::usage;
using nlohmann::json;

// --config, else $DRAWBRIDGE_CONFIG, else ./drawbridge.json when it exists, else defaults.
std::string resolve_config_path(const std::string& given) {
  if (!given.empty()) return given;
  if (const char* env = std::getenv("DRAWBRIDGE_CONFIG"); env && *env) return env;
  for (const char* name : {"drawbridge.json", "drawbridge.jsonc"}) {
    if (fs::exists(name)) return name;
  }
  return {};
}

struct Target {
  std::string host = "127.0.0.1";
  int port = 18789;
  std::string token;
};

// Where the running gateway is and how to authenticate, from the flags, the environment,
// the config file and the token the gateway generated in its data folder.
Target resolve_target(const std::string& config_path, const std::string& url,
                      const std::string& token) {
  Target t;
  const auto loaded = drawbridge::runtime::load_offline_config(config_path);
  if (loaded.effective) {
    t.port = loaded.port;
    std::string addr = drawbridge::runtime::bind_address(loaded.bind);
    t.host = addr == "0.0.0.0" ? "127.0.0.1" : addr == "::" ? "::1" : addr;
    t.token = loaded.auth_token;
    if (t.token.empty()) {
      std::ifstream in(drawbridge::runtime::token_file_path(loaded.data_dir));
      std::getline(in, t.token);
    }
  }
  // The gateway exports its address to the agent commands it runs, so that a tool calling
  // back (`drawbridge restart` from a turn) finds it whatever its working directory.
  std::string address = url;
  if (address.empty()) {
    if (const char* env = std::getenv("DRAWBRIDGE_GATEWAY_URL"); env && *env) address = env;
  }
  if (!address.empty()) {
    std::string u = address;
    for (const char* scheme : {"ws://", "http://"}) {
      if (u.rfind(scheme, 0) == 0) u = u.substr(std::strlen(scheme));
    }
    u = u.substr(0, u.find('/'));
    // host:port, [v6]:port, or a bare host
    const auto bracket = u.find(']');
    const auto colon = u.rfind(':');
    if (colon != std::string::npos && (bracket == std::string::npos || colon > bracket)) {
      t.host = u.substr(0, colon);
      t.port = std::atoi(u.c_str() + colon + 1);
    } else {
      t.host = u;
    }
    if (t.host.size() >= 2 && t.host.front() == '[') t.host = t.host.substr(1, t.host.size() - 2);
  }
  if (!token.empty()) t.token = token;
  return t;
}

std::string new_idempotency_key() {
  std::mt19937_64 rng{std::random_device{}()};
  char buf[40];
  std::snprintf(buf, sizeof buf, "cli-%016llx%08llx", static_cast<unsigned long long>(rng()),
                static_cast<unsigned long long>(rng() & 0xffffffff));
  return buf;
}

std::string format_duration(std::int64_t ms) {
  char buf[64];
  if (ms < 1000) {
    std::snprintf(buf, sizeof buf, "%lld ms", static_cast<long long>(ms));
  } else if (ms < 120000) {
    std::snprintf(buf, sizeof buf, "%.1f s", ms / 1000.0);
  } else {
    std::snprintf(buf, sizeof buf, "%lld min", static_cast<long long>(ms / 60000));
  }
  return buf;
}

// A field of an older gateway may be absent, or null when there is nothing to say.
const json* field(const json& s, const char* key) {
  auto it = s.find(key);
  return it == s.end() || it->is_null() ? nullptr : &*it;
}

using drawbridge::cli::describe_restart;
using drawbridge::cli::text_of;

// The lifecycle lines of `status`: generation, the drain under way, the last restart and the
// last failed start.
void print_lifecycle(const json& s) {
  if (const json* g = field(s, "generation")) {
    std::cout << "generation " << g->dump() << " (" << text_of(s, "state") << ")\n";
  }
  if (const json* d = field(s, "drain"); d && d->is_object()) {
    std::cout << "drain      " << text_of(*d, "kind") << ", phase " << text_of(*d, "phase");
    if (const json* started = field(*d, "startedAtMs"); started && started->is_number()) {
      const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::system_clock::now().time_since_epoch())
                              .count();
      std::cout << ", for "
                << format_duration(
                       std::max<std::int64_t>(0, now_ms - started->get<std::int64_t>()));
    }
    const json* listed = field(*d, "waitingOn");
    const json waiting = listed && listed->is_array() ? *listed : json::array();
    const json* more_field = field(*d, "more");
    const std::int64_t more =
        more_field && more_field->is_number() ? more_field->get<std::int64_t>() : 0;
    if (waiting.empty() && more == 0) {
      std::cout << ", waiting on nothing\n";
    } else {
      std::cout << ", waiting on:\n";
      for (const auto& w : waiting) {
        std::cout << "             " << text_of(w, "status") << " task " << text_of(w, "taskId")
                  << ", run " << text_of(w, "runId") << ", session " << text_of(w, "sessionKey");
        if (const std::string label = text_of(w, "label", ""); !label.empty()) {
          std::cout << " (" << label << ")";
        }
        std::cout << "\n";
      }
      if (more > 0) std::cout << "             and " << more << " more\n";
    }
  }
  if (const json* r = field(s, "lastRestart"); r && r->is_object()) {
    std::cout << "restarted  " << text_of(*r, "reason") << " (" << text_of(*r, "source")
              << "), generation " << text_of(*r, "generation");
    if (const json* ms = field(*r, "durationMs"); ms && ms->is_number()) {
      std::cout << ", took " << format_duration(ms->get<std::int64_t>());
    }
    if (const json* i = field(*r, "interrupted"); i && i->is_boolean() && i->get<bool>()) {
      std::cout << ", turns interrupted";
    } else if (i && i->is_number() && i->get<std::int64_t>() > 0) {
      std::cout << ", " << i->get<std::int64_t>() << " turn(s) interrupted";
    }
    std::cout << "\n";
  }
  if (const json* e = field(s, "lastStartError")) {
    std::cout << "start error " << (e->is_string() ? e->get<std::string>() : e->dump()) << "\n";
  }
}

int print_status(const json& s) {
  std::cout << "drawbridge " << s.value("version", "?") << " — " << s.value("state", "?")
            << " (pid " << s.value("pid", 0) << ", up "
            << format_duration(s.value("uptimeMs", std::int64_t{0})) << ")\n";
  std::cout << "listening  " << s.value("bind", "?") << ":" << s.value("port", 0) << "\n";
  std::cout << "data       " << s.value("dataDir", "?") << "\n";
  if (!s.value("configPath", "").empty()) std::cout << "config     " << s["configPath"].get<std::string>() << "\n";
  std::cout << "channels  ";
  for (const auto& c : s.value("channels", json::array())) {
    std::cout << " " << c.value("id", "?") << " (" << (c.value("ready", false) ? "ready" : "not ready")
              << ", agent " << c.value("agent", "?") << ")";
  }
  std::cout << "\nagents    ";
  for (const auto& a : s.value("agents", json::array())) {
    std::cout << " " << a.value("id", "?") << " (" << a.value("type", "?") << ")";
  }
  std::cout << "\nwork       " << s.value("activeRuns", json::array()).size() << " active turn(s), "
            << s.value("queueDepth", 0) << " queued, " << s.value("pendingDeliveries", 0)
            << " delivery(ies) in flight\n";
  const auto& st = s.value("store", json::object());
  std::cout << "store      " << st.value("inboxTotal", 0) << " message(s), "
            << st.value("inboxUnfinished", 0) << " unfinished, " << st.value("outboxPending", 0)
            << " reply part(s) pending\n";
  if (const auto& c = s.value("cluster", json()); c.is_object()) {
    std::cout << "cluster    replica " << c.value("replicaId", "?");
    for (const auto& r : c.value("replicas", json::array())) {
      std::cout << "; " << r.value("id", "?") << " " << r.value("sessions", 0) << " session(s)";
    }
    for (const auto& a : c.value("accounts", json::array())) {
      std::cout << "; " << a.value("name", "?") << " held by " << a.value("holder", "-");
    }
    std::cout << "\n";
  }
  print_lifecycle(s);
  return ok;
}

using Clock = std::chrono::steady_clock;

struct RestartOptions {
  bool force = false;
  std::optional<std::int64_t> wait_ms;
  std::optional<std::int64_t> delay_ms;
  std::string reason;
  bool wait = false;
  int timeout_s = 60;
  bool json = false;
  bool process = false;     // a fresh process (re-exec, or exit 75 under a supervisor)
  std::string binary;       // `update`: the binary to start
};

// The status of the gateway through a fresh connection, or nullopt while it cannot answer
// (restarting: refused, closed, or not listening for a moment).
std::optional<json> poll_status(const Target& target) {
  try {
    drawbridge::server::GatewayClient c(target.host, target.port);
    c.connect(target.token, {"operator.read"}, std::chrono::seconds(2));
    return c.request("status", json::object(), std::chrono::seconds(2));
  } catch (const drawbridge::server::ClientError&) {
    return std::nullopt;
  }
}

int run_restart(const Target& target, const RestartOptions& o) {
  drawbridge::server::GatewayClient client(target.host, target.port);
  client.connect(target.token, {"operator.admin"});
  std::int64_t before = 0;
  std::int64_t before_pid = 0;
  if (o.wait) {
    json s = client.request("status", json::object());
    before_pid = s.value("pid", std::int64_t{0});
    const json* g = field(s, "generation");
    if (!g || !g->is_number_integer()) {
      std::cerr << "drawbridge: this gateway does not report its generation; --wait needs a "
                   "newer gateway (nothing was requested)\n";
      return crashed;
    }
    before = g->get<std::int64_t>();
  }
  json params = json::object();
  if (!o.reason.empty()) params["reason"] = o.reason;
  if (o.force) params["force"] = true;
  if (o.wait_ms) params["waitMs"] = *o.wait_ms;
  if (o.delay_ms) params["delayMs"] = *o.delay_ms;
  if (o.process) params["freshProcess"] = true;
  // Set by the exec agent for its turns: a turn asking for the restart is not waited for,
  // which would otherwise hold the restart until the deferral timeout.
  if (const char* run_id = std::getenv("DRAWBRIDGE_RUN_ID"); run_id && *run_id) {
    params["runId"] = run_id;
  }
  json res;
  if (!o.binary.empty()) {
    json up = {{"binary", o.binary}};
    if (!o.reason.empty()) up["reason"] = o.reason;
    res = client.request("gateway.update", up);
  } else {
    res = client.request("gateway.restart.request", params);
  }
  if (o.json) {
    std::cout << res.dump(2) << "\n";
  } else {
    std::cout << describe_restart(res) << "\n";
  }
  if (!o.wait) return ok;
  if (res.value("status", "") == "ignored" && res.value("note", "") == "stopping") {
    std::cerr << "drawbridge: the gateway is stopping: no new generation will come\n";
    return crashed;
  }
  client.close();

  const auto deadline = Clock::now() + std::chrono::seconds(o.timeout_s);
  json last;
  while (Clock::now() < deadline) {
    if (auto s = poll_status(target)) {
      last = *s;
      const json* g = field(last, "generation");
      const auto pid = last.value("pid", std::int64_t{0});
      if (pid != before_pid && pid != 0 && last.value("state", "") == "running") {
        // A fresh process serves (re-exec, update, or the supervisor started one).
        if (!o.json) {
          std::cout << "pid " << pid << " running (version " << text_of(last, "version") << ")\n";
        }
        const json* u = field(last, "lastUpdate");
        if (!o.binary.empty() && u && u->is_object() && u->value("outcome", "") != "ok") {
          std::cerr << "drawbridge: the update did not report success: " << u->dump() << "\n";
          return crashed;
        }
        return ok;
      }
      if (g && g->is_number_integer() && g->get<std::int64_t>() > before &&
          last.value("state", "") == "running") {
        const json* u = field(last, "lastUpdate");
        if (!o.binary.empty()) {
          // Same process, next generation: the new binary did not become ready.
          std::cerr << "drawbridge: update failed, the gateway restarted on its old binary: "
                    << (u && u->is_object() ? u->value("error", std::string("?")) : "?") << "\n";
          return crashed;
        }
        if (!o.json) std::cout << "generation " << g->dump() << " running\n";
        return ok;
      }
      if (const json* e = field(last, "lastStartError"); e && last.value("state", "") == "failed") {
        std::cerr << "drawbridge: the new generation did not start: "
                  << (e->is_string() ? e->get<std::string>() : e->dump()) << "\n";
        return crashed;
      }
    }
    // A client command polling a process it does not own: there is no event to wait on.
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  std::cerr << "drawbridge: no new generation running within " << o.timeout_s << " s";
  if (!last.is_null()) {
    std::cerr << " (generation " << text_of(last, "generation") << ", " << text_of(last, "state")
              << ")";
  }
  std::cerr << "\n";
  return crashed;
}

int run_stop(const Target& target, const std::string& reason, int timeout_s) {
  {
    drawbridge::server::GatewayClient client(target.host, target.port);
    client.connect(target.token, {"operator.admin"});
    json params = json::object();
    if (!reason.empty()) params["reason"] = reason;
    json res = client.request("gateway.stop", params);
    // What it did: a stop, one already under way, or a stop that takes a restart over.
    const std::string note = res.value("note", "");
    std::cout << (res.value("status", "") == "already-stopping" ? "already stopping"
                                                                : "stopping")
              << (note.empty() ? "" : ": " + note) << "\n";
  }
  // Stopped means the port is free: a supervisor or a new `drawbridge run` can take it.
  const auto deadline = Clock::now() + std::chrono::seconds(timeout_s);
  while (Clock::now() < deadline) {
    if (!drawbridge::server::accepts_connections(target.host, target.port,
                                                 std::chrono::milliseconds(500))) {
      std::cout << "stopped\n";
      return ok;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::cerr << "drawbridge: the gateway still accepts connections on " << target.host << ":"
            << target.port << " after " << timeout_s << " s (it may be waiting for turns: see "
            << "`drawbridge status`)\n";
  return crashed;
}

}  // namespace

int main(int argc, char** argv) {
  // Logs go to stderr: stdout is for what a command prints (status, replies).
  spdlog::set_default_logger(spdlog::stderr_color_mt("drawbridge"));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  // Every line passes it: `run` tells it the token and the config's secrets (sinks added later,
  // such as the watchdog's ring buffer, go behind it too).
  drawbridge::runtime::install_redacting_sink();
  CLI::App app{
      "drawbridge: a multi-channel AI agent gateway that never loses a message.\n"
      "Run `drawbridge run` to start it, then `drawbridge send hello`."};
  app.set_version_flag("--version", std::string("drawbridge ") + DRAWBRIDGE_VERSION);
  app.require_subcommand(1);
  app.fallthrough();  // --config is accepted after the subcommand too
  std::string config_path;
  app.add_option("-c,--config", config_path,
                 "Config file (JSON with comments); default: $DRAWBRIDGE_CONFIG, then "
                 "./drawbridge.json");

  auto* run = app.add_subcommand("run", "Run the gateway in the foreground");
  drawbridge::runtime::RunOptions run_opts;
  int port = 0;
  std::string bind, data_dir;
  run->fallthrough();
  run->add_option("-p,--port", port, "Port to listen on (overrides gateway.port)")
      ->check(CLI::Range(1, 65535));
  run->add_option("--bind", bind, "loopback, lan or an IP address (overrides gateway.bind)");
  run->add_option("--data-dir", data_dir, "Data folder (overrides store.dataDir)");

  std::string url, token;
  auto add_target = [&](CLI::App* sub) {
    sub->add_option("--url", url, "Gateway address, e.g. ws://127.0.0.1:18789");
    sub->add_option("--token", token, "Auth token (default: config, env, data folder)");
  };

  auto* status = app.add_subcommand("status", "Show what the running gateway is doing");
  add_target(status);
  bool status_json = false;
  status->add_flag("--json", status_json, "Print the raw status payload");

  auto* send = app.add_subcommand("send", "Send a message through the local channel and print the reply");
  add_target(send);
  std::string session = "main", idem_key;
  std::vector<std::string> words;
  bool no_wait = false;
  int timeout_s = 60;
  send->add_option("-s,--session", session, "Session key")->capture_default_str();
  send->add_option("--idempotency-key", idem_key, "Resend safely: the same key is answered once");
  send->add_flag("--no-wait", no_wait, "Print the acknowledgement and return");
  send->add_option("--timeout", timeout_s, "Seconds to wait for the reply")->capture_default_str();
  send->add_option("text", words, "The message")->required();

  auto* restart = app.add_subcommand(
      "restart", "Restart the gateway in place once its active turns are done (bounded)");
  add_target(restart);
  RestartOptions restart_opts;
  std::int64_t wait_ms = -1, delay_ms = -1;
  restart->add_flag("--force", restart_opts.force,
                    "Do not wait for active turns: interrupt them (they run again afterwards)");
  restart
      ->add_option("--wait-ms", wait_ms,
                   "Wait at most this long for active turns (default: "
                   "gateway.reload.deferralTimeoutMs; 0 = do not wait)")
      ->check(CLI::NonNegativeNumber);
  restart
      ->add_option("--delay-ms", delay_ms,
                   "Begin the restart this long after the request (default 2000; requests "
                   "meanwhile coalesce)")
      ->check(CLI::Range(0, 60000));
  restart->add_option("--reason", restart_opts.reason, "Why, for the logs and `status`");
  restart->add_flag("--wait", restart_opts.wait,
                    "Return once the new generation is running (exit 1 if not within --timeout)");
  restart->add_option("--timeout", restart_opts.timeout_s, "Seconds --wait waits")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  restart->add_flag("--json", restart_opts.json, "Print the gateway's answer as JSON");

  restart->add_flag("--process", restart_opts.process,
                    "Restart in a fresh process: re-exec on the same socket, or exit 75 for "
                    "systemd/launchd to start one (default: in the same process)");
  RestartOptions update_opts;
  auto* update = app.add_subcommand(
      "update", "Start another drawbridge binary on the running gateway's socket once active "
                "turns are done; if it does not become ready within 10 s, the gateway restarts "
                "on its old binary");
  add_target(update);
  update->add_option("--binary", update_opts.binary, "The new binary")->required();
  update->add_option("--reason", update_opts.reason, "Why, for the logs and `status`");
  update->add_flag("--wait", update_opts.wait, "Wait until the new process serves (or failed)");
  update->add_option("--timeout", update_opts.timeout_s, "Seconds --wait waits")
      ->capture_default_str();
  update->add_flag("--json", update_opts.json, "Print the gateway's answer as JSON");

  auto* stop = app.add_subcommand(
      "stop", "Stop the gateway once its active turns are done, and wait until it has exited");
  add_target(stop);
  std::string stop_reason;
  int stop_timeout_s = 60;
  stop->add_option("--reason", stop_reason, "Why, for the logs");
  stop->add_option("--timeout", stop_timeout_s,
                   "Seconds to wait for the port to close (exit 1 if it does not)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);

  // Hidden: what this binary can take from a predecessor (an update asks before it hands over).
  auto* capabilities = app.add_subcommand("capabilities", "")->group("");

  drawbridge::cli::ConfigCommands config_cmd(app, add_target);
  drawbridge::cli::ChannelsCommands channels_cmd(app, add_target);
  drawbridge::cli::AgentsCommands agents_cmd(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return e.get_exit_code() == 0 ? ok : (rc == 0 ? ok : usage);
  }

  if (*capabilities) {
    std::printf("%s\n", drawbridge::runtime::kCarriedCapability);
    return ok;
  }

  const std::string cfg_path = resolve_config_path(config_path);

  if (*run) {
    run_opts.config_path = cfg_path;
    run_opts.argv.assign(argv, argv + argc);
    if (port) run_opts.port = port;
    if (!bind.empty()) run_opts.bind = bind;
    if (!data_dir.empty()) run_opts.data_dir = data_dir;
    try {
      return drawbridge::runtime::run_gateway(run_opts);
    } catch (const std::exception& e) {
      spdlog::critical("fatal: {}", e.what());
      return crashed;
    }
  }

  if (config_cmd.selected()) {
    return config_cmd.run(cfg_path, [&] {
      const Target t = resolve_target(cfg_path, url, token);
      return drawbridge::cli::GatewayAddress{t.host, t.port, t.token};
    });
  }

  if (agents_cmd.selected()) return agents_cmd.run(cfg_path);

  if (channels_cmd.selected()) {
    return channels_cmd.run(cfg_path, [&] {
      const Target t = resolve_target(cfg_path, url, token);
      return drawbridge::cli::GatewayAddress{t.host, t.port, t.token};
    });
  }

  Target target = resolve_target(cfg_path, url, token);
  try {
    drawbridge::server::GatewayClient client(target.host, target.port);
    if (*status) {
      json s = drawbridge::cli::request_status({target.host, target.port, target.token});
      if (status_json) {
        std::cout << s.dump(2) << "\n";
        return ok;
      }
      return print_status(s);
    }
    if (*restart) {
      if (wait_ms >= 0) restart_opts.wait_ms = wait_ms;
      if (delay_ms >= 0) restart_opts.delay_ms = delay_ms;
      return run_restart(target, restart_opts);
    }
    if (*stop) return run_stop(target, stop_reason, stop_timeout_s);
    if (*update) {
      std::error_code ec;
      update_opts.binary = std::filesystem::absolute(update_opts.binary, ec).string();
      return run_restart(target, update_opts);
    }
    if (*send) {
      std::string text;
      for (const auto& w : words) text += (text.empty() ? "" : " ") + w;
      if (idem_key.empty()) idem_key = new_idempotency_key();
      client.connect(target.token, {"operator.write", "operator.read"});
      json ack = client.request("chat.send", {{"sessionKey", session},
                                              {"message", text},
                                              {"idempotencyKey", idem_key}});
      const std::string run_id = ack.value("runId", "");
      if (no_wait) {
        std::cout << ack.dump() << "\n";
        return ok;
      }
      if (ack.value("status", "") == "done") {
        std::cerr << "(already answered: this idempotency key was sent before; see chat.history)\n";
        return ok;
      }
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
      for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        auto ev = left.count() > 0 ? client.next_event(left) : std::nullopt;
        if (!ev) {
          std::cerr << "no reply within " << timeout_s << " s; the message is accepted (run "
                    << run_id << ") and will be answered: see `chat.history`\n";
          return crashed;
        }
        if (ev->value("event", "") != "chat") continue;
        const auto& p = (*ev)["payload"];
        if (p.value("runId", "") != run_id) continue;
        const std::string state = p.value("state", "");
        if (state == "final") {
          std::string reply;
          for (const auto& c : p["message"].value("content", json::array())) {
            reply += c.value("text", "");
          }
          std::cout << reply << "\n";
          return ok;
        }
        if (state == "error" || state == "aborted") {
          std::cerr << "run " << run_id << " " << state << ": " << p.value("errorMessage", state)
                    << "\n";
          return crashed;
        }
      }
    }
  } catch (const drawbridge::server::ClientError& e) {
    std::cerr << "drawbridge: " << e.what() << "\n";
    return crashed;
  }
  return ok;
}
