#pragma once

// `drawbridge config get|set|patch|validate|schema`: through the running gateway (RPCs config.get and
// config.patch) when one answers, else on the config file itself. Only "connection refused"
// means "no gateway": any other failure to connect (a wrong token, a timeout) is an error,
// because editing the file behind a running gateway's back would bypass its reload plan.

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/gateway_address.h"

namespace CLI {
class App;
}

namespace drawbridge::cli {

// One step of a dotted config path: a key, or an array index ("command[1]").
struct PathStep {
  std::string key;
  std::optional<std::size_t> index;  // set for "[N]"; key is then empty
};

// "agents.shell.command[1]" -> agents, shell, command, [1]. "" is the root (no steps).
// nullopt and `error` set when the path is malformed ("a.", "a[x]", "a..b").
std::optional<std::vector<PathStep>> parse_config_path(const std::string& path, std::string& error);

// The value at `path` in `doc`; nullptr when there is none.
const nlohmann::json* value_at(const nlohmann::json& doc, const std::vector<PathStep>& path);

// VALUE of `config set`: JSON when it parses as JSON (18800, true, null, [..], {..}, "a b"),
// else the text itself as a string.
nlohmann::json parse_set_value(const std::string& text);

// The RFC 7396 merge patch that sets `path` (keys only, no indexes, not empty) to `value`:
// {"a": {"b": value}}. A null value deletes the key; an object value is merged into what is
// there.
nlohmann::json merge_patch_setting(const std::vector<PathStep>& path, nlohmann::json value);

// The lines `config set`/`config patch` print for people about a config.patch answer.
std::vector<std::string> describe_patch_outcome(const nlohmann::json& answer);

// The `config` command and its subcommands, bound to the CLI11 app. Holds the parsed values,
// so it must stay where it is until run() (CLI11 keeps pointers to the members).
class ConfigCommands {
 public:
  // Adds `config` to `app`; `add_target` adds --url/--token to the subcommands that may talk to
  // the gateway.
  ConfigCommands(CLI::App& app, const std::function<void(CLI::App*)>& add_target);
  ConfigCommands(const ConfigCommands&) = delete;
  ConfigCommands& operator=(const ConfigCommands&) = delete;

  // True when the command line chose `config ...`.
  bool selected() const;

  // Runs the chosen subcommand and returns the exit code. `config_path` is the resolved
  // --config file (empty: none); `resolve_target` is called only when the gateway is asked.
  int run(const std::string& config_path,
          const std::function<GatewayAddress()>& resolve_target) const;

 private:
  CLI::App* config_ = nullptr;
  CLI::App* get_ = nullptr;
  CLI::App* set_ = nullptr;
  CLI::App* patch_ = nullptr;
  CLI::App* validate_ = nullptr;
  CLI::App* schema_ = nullptr;
  std::string path_;
  std::string value_;
  std::string patch_file_;
  std::string validate_file_;
  bool json_ = false;
  bool json_schema_ = false;
};

}  // namespace drawbridge::cli
