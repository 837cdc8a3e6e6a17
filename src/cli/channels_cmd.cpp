#include "cli/channels_cmd.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <optional>

#include "channels/irc/irc_probe.h"
#include "channels/telegram/telegram_channel.h"
#include "channels/telegram/telegram_probe.h"
#include "runtime/gateway.h"
#include "runtime/offline_config.h"
#include "server/client.h"

namespace drawbridge::cli {

namespace {

using nlohmann::json;
using runtime::exit_code::config_invalid;
using runtime::exit_code::crashed;
using runtime::exit_code::ok;
using runtime::exit_code::usage;

std::string text(const json& j, const char* key) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return {};
  return it->is_string() ? it->get<std::string>() : it->dump();
}

std::string padded(std::string s, std::size_t width) {
  if (s.size() < width) s.append(width - s.size(), ' ');
  return s;
}

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A variable of the environment, as the gateway looks up botTokenEnv and passwordEnv.
std::optional<std::string> env(const std::string& name) {
  const char* v = std::getenv(name.c_str());
  return v ? std::optional<std::string>(v) : std::nullopt;
}

// The outcome of one probe, for printing.
struct Outcome {
  bool ok = false;
  std::string message;
  json details = json::object();
};

// Runs the loop until the probe is done and has let go of its sockets; the probe bounds
// itself, the loop's own bound is a backstop against a handler that never comes.
template <class Start>
Outcome run_probe(std::chrono::milliseconds timeout, Start start) {
  boost::asio::io_context io;
  std::optional<Outcome> outcome;
  start(io, [&](Outcome o) { outcome = std::move(o); });
  io.run_for(timeout + std::chrono::seconds(2));
  if (!outcome) return {false, "no answer within the timeout", json::object()};
  return *outcome;
}

Outcome probe_telegram(const json& raw, std::chrono::milliseconds timeout) {
  std::string error;
  auto options = channels::TelegramOptions::parse(raw, error, env);
  if (!options) return {false, error, json::object()};
  return run_probe(timeout, [&](boost::asio::io_context& io, auto report) {
    channels::telegram::probe(io, options->api_root, options->token, timeout,
                              [report](channels::telegram::ProbeResult r) {
                                // Filled key by key: LeakSanitizer (clang 14) reported the
                                // object of an initializer-list assignment here as leaked.
                                json details = json::object();
                                if (r.ok) {
                                  details["username"] = r.username;
                                  details["id"] = r.bot_id;
                                }
                                report({r.ok, r.message, details});
                              });
  });
}

Outcome probe_irc(const json& raw, std::chrono::milliseconds timeout) {
  std::string error;
  auto options = channels::IrcOptions::parse(raw, error, env);
  if (!options) return {false, error, json::object()};
  return run_probe(timeout, [&](boost::asio::io_context& io, auto report) {
    channels::irc::probe(io, *options, timeout, [report](channels::irc::ProbeResult r) {
      json details = json::object();
      if (r.ok) {
        details["server"] = r.server;
        details["nick"] = r.nick;
      }
      report({r.ok, r.ok ? "ok, " + r.message : r.message, details});
    });
  });
}

}  // namespace

std::string describe_age(std::int64_t ms) {
  const std::int64_t s = std::max<std::int64_t>(0, ms) / 1000;
  if (s < 120) return std::to_string(s) + " s ago";
  if (s < 120 * 60) return std::to_string(s / 60) + " min ago";
  if (s < 48 * 3600) return std::to_string(s / 3600) + " h ago";
  return std::to_string(s / 86400) + " d ago";
}

bool channel_connected(const json& channel) {
  const std::string state = text(channel, "state");
  if (state.empty()) return channel.value("ready", false);
  return state == "connected";
}

std::string describe_channel(const json& channel, std::int64_t now) {
  std::string state = text(channel, "state");
  if (state.empty()) state = channel.value("ready", false) ? "ready" : "not ready";
  std::string line = padded(text(channel, "id"), 10) + " " + padded(state, 10) + " agent " +
                     text(channel, "agent");
  if (const std::string detail = text(channel, "detail"); !detail.empty()) line += ", " + detail;
  if (const std::string error = text(channel, "lastError"); !error.empty()) {
    line += "; last error";
    const auto at = channel.find("lastErrorAt");
    if (at != channel.end() && at->is_number_integer()) {
      line += " " + describe_age(now - at->get<std::int64_t>());
    }
    line += ": " + error;
  }
  return line;
}

ChannelsCommands::ChannelsCommands(CLI::App& app,
                                   const std::function<void(CLI::App*)>& add_target) {
  channels_ = app.add_subcommand(
      "channels",
      "How the chat channels' links are doing: from the running gateway (status), or tested "
      "once from here without a gateway (probe ID)");
  channels_->require_subcommand(1);
  channels_->fallthrough();

  status_ = channels_->add_subcommand(
      "status",
      "One line per channel from the running gateway: id, link state (connecting, connected, "
      "conflict, failed, stopped), agent, bot name or nick, and the last error with its age. "
      "Exit 0 when every channel is connected, 1 when one is not, 2 when the gateway cannot be "
      "asked (not running, wrong token)");
  status_->add_flag("--json", json_, "Print the channels array as the gateway sent it");
  add_target(status_);

  probe_ = channels_->add_subcommand(
      "probe",
      "Test one channel's link once, without a running gateway, from the --config file (secrets "
      "from the environment as the gateway reads them): telegram calls getMe (never getUpdates, "
      "so a running bot is not disturbed); irc connects, registers as <nick>-probe, waits for the "
      "welcome and quits; local is served by the gateway itself. Exit 0 when the link works, 1 "
      "when it does not, 64 for a channel that is not configured or not enabled, 78 for an "
      "invalid config file");
  probe_->add_option("id", id_, "The channel: local, telegram or irc")->required();
  probe_->add_option("--timeout", timeout_s_, "Seconds the test may take")
      ->capture_default_str()
      ->check(CLI::Range(1, 3600));
  probe_->add_flag("--json", json_, "Print the outcome as JSON");

  for (CLI::App* sub : {status_, probe_}) sub->fallthrough();
}

bool ChannelsCommands::selected() const {
  return channels_ != nullptr && channels_->parsed();
}

int ChannelsCommands::run(const std::string& config_path,
                          const std::function<GatewayAddress()>& resolve_target) const {
  if (probe_->parsed()) return probe(config_path);
  return status(resolve_target());
}

int ChannelsCommands::status(const GatewayAddress& target) const {
  json s;
  try {
    s = request_status(target);
  } catch (const server::ClientError& e) {
    std::cerr << "drawbridge: " << e.what() << "\n";
    return kGatewayUnreachable;
  }
  const json channels = s.value("channels", json::array());
  bool all_connected = true;
  for (const auto& c : channels) all_connected = all_connected && channel_connected(c);
  if (json_) {
    std::cout << channels.dump(2) << "\n";
  } else if (channels.empty()) {
    std::cout << "no channel is enabled\n";
  } else {
    const auto now = now_ms();
    for (const auto& c : channels) std::cout << describe_channel(c, now) << "\n";
  }
  return all_connected ? ok : crashed;
}

int ChannelsCommands::probe(const std::string& config_path) const {
  const auto loaded = runtime::load_offline_config(config_path);
  if (!loaded.io_error.empty()) {
    std::cerr << "drawbridge: " << loaded.io_error << "\n";
    return config_invalid;
  }
  if (!loaded.effective) {
    std::cerr << config_path << ": " << loaded.errors.size() << " problem(s)\n";
    for (const auto& e : loaded.errors) std::cerr << "  " << e << "\n";
    return config_invalid;
  }
  const std::string source = config_path.empty() ? "the built-in defaults" : config_path;
  const auto it = loaded.channels.find(id_);
  if (it == loaded.channels.end()) {
    std::string known;
    for (const auto& [id, ch] : loaded.channels) known += (known.empty() ? "" : ", ") + id;
    std::cerr << "drawbridge: no channel \"" << id_ << "\" in " << source
              << " (configured: " << (known.empty() ? "none" : known) << ")\n";
    return usage;
  }
  if (!it->second.enabled) {
    std::cerr << "drawbridge: channels." << id_ << " is disabled in " << source << "\n";
    return usage;
  }
  const auto timeout = std::chrono::milliseconds(std::int64_t{timeout_s_} * 1000);
  Outcome outcome;
  if (id_ == "local") {
    outcome = {true, "ok, served by the gateway itself", json::object()};
  } else if (id_ == "telegram") {
    outcome = probe_telegram(it->second.raw, timeout);
  } else if (id_ == "irc") {
    outcome = probe_irc(it->second.raw, timeout);
  } else {
    std::cerr << "drawbridge: channels." << id_
              << ": this adapter is not available in this build (the gateway ignores it)\n";
    return usage;
  }
  if (json_) {
    json out = {{"channel", id_}, {"ok", outcome.ok}, {"message", outcome.message}};
    out.update(outcome.details);
    std::cout << out.dump(2) << "\n";
  } else {
    (outcome.ok ? std::cout : std::cerr) << id_ << ": " << outcome.message << "\n";
  }
  return outcome.ok ? ok : crashed;
}

}  // namespace drawbridge::cli
