#pragma once

// The config file when no gateway runs, for `drawbridge config get|set|patch|validate` and for
// finding the gateway: the CLI reaches config/ only through here (the layer table of
// shared/DESIGN.md). An edit uses config::plan_edit, the same recipe as the gateway's
// config.patch.

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/config.h"

namespace drawbridge::runtime {

// Limits on config text from outside (config/config_text.h).
std::size_t max_config_bytes();
std::size_t max_config_depth();
// "1 MiB (1048576 bytes)".
std::string describe_bytes(std::size_t bytes);

struct ConfigFileText {
  bool exists = false;
  std::string text;
  std::string error;  // set when the file exists but cannot be read (not regular, too large)
};
// Regular files only and at most max_config_bytes().
ConfigFileText read_config_text(const std::string& path);

// `text` as a config document or patch (JSON with comments, within the limits); nullopt and
// `error` ("NAME is not JSON: line 3, ...", "NAME: line 1, column 66: nested deeper than 64
// levels (at meta)") when it is refused.
std::optional<nlohmann::json> parse_config_document(const std::string& name,
                                                    const std::string& text, std::string& error);

// A value given on the command line: `json` when it parses as JSON; `refused` when it is JSON
// that crosses a limit (too deep, a repeated key), which is an error rather than text.
struct ConfigValue {
  std::optional<nlohmann::json> json;
  std::string refused;
};
ConfigValue parse_config_value(const std::string& text);

// The config of `path` (empty: the built-in defaults) as the gateway would load it.
struct OfflineConfig {
  std::string io_error;             // the file cannot be read
  std::vector<std::string> errors;  // "gateway.port: expected ..." for each problem
  // Valid: the effective config with secrets redacted, as config.get shows it.
  std::optional<nlohmann::json> effective;
  int port = 0;
  std::string bind;
  std::string auth_token;
  std::string data_dir;
  // Each channel under `channels`, as the gateway builds it: its object is NOT redacted, so
  // that `drawbridge channels probe` can parse the options (and find the secrets) the way the
  // gateway does. Never print `raw`.
  struct Channel {
    bool enabled = true;
    std::string agent;  // resolved: agents.default when the channel names none
    nlohmann::json raw;
  };
  std::map<std::string, Channel> channels;
  // Each agent as the gateway reads it (not redacted either: `drawbridge agents probe`).
  std::map<std::string, config::AgentSettings> agents;
};
OfflineConfig load_offline_config(const std::string& path);

// Merges `patch` into `path`, validates the whole result and writes it atomically, keeping the
// old text as the last-known-good copy when it was valid. An invalid result leaves the file
// untouched. A file that does not exist yet is created (from {}).
struct OfflineEdit {
  enum class Outcome { written, unchanged, invalid, failed };
  Outcome outcome = Outcome::failed;
  // invalid, failed: the line to print on stderr; `errors` follow it, one per problem.
  std::string message;
  std::vector<std::string> errors;
  std::string path;  // absolute
  std::string hash;  // of the file as it is now
  std::vector<std::string> changed;  // written: the dotted paths that changed in meaning
};
OfflineEdit edit_config_file(const std::string& path, const nlohmann::json& patch);

// `drawbridge config schema`: every key with its type, default and help; with `json_schema`,
// what config.schema answers ({schema, uiHints, version, generatedAt}).
nlohmann::json config_schema_document(bool json_schema);

}  // namespace drawbridge::runtime
