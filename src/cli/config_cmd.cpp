#include "cli/config_cmd.h"

#include <cerrno>
#include <cstring>
#include <iostream>
#include <memory>
#include <string_view>
#include <system_error>

#include <CLI/CLI.hpp>

#include "cli/restart_text.h"
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

std::string show_path(const std::string& path) {
  return path.empty() ? "(root)" : path;
}

// "  gateway.port: expected an integer in 1..65535, got \"abc\"" for each error, on stderr.
void print_errors(const std::vector<std::string>& errors) {
  for (const auto& e : errors) std::cerr << "  " << e << "\n";
}

// The errors of a CONFIG_INVALID answer or a config.get: [{path, pointer, message}].
void print_rpc_errors(const json& errors) {
  if (!errors.is_array()) return;
  for (const auto& e : errors) {
    std::cerr << "  " << show_path(e.value("path", "")) << ": " << e.value("message", "?") << "\n";
  }
}

// A string bare, anything else as JSON; --json: always JSON.
void print_value(const json& v, bool as_json) {
  if (v.is_string() && !as_json) {
    std::cout << v.get<std::string>() << "\n";
  } else {
    std::cout << v.dump(2) << "\n";
  }
}

// Standard input, at most `max_bytes`; nullopt when there is more.
std::optional<std::string> read_stdin(std::size_t max_bytes) {
  std::string text;
  char buf[65536];
  while (text.size() <= max_bytes && std::cin.read(buf, sizeof buf).gcount() > 0) {
    text.append(buf, static_cast<std::size_t>(std::cin.gcount()));
  }
  if (text.size() > max_bytes) return std::nullopt;
  return text;
}

// The gateway, connected, or nullptr when nothing listens at the address. Only a refused
// connection means "not running"; anything else (bad token, timeout, a closed handshake)
// throws, so that a gateway that is there is never edited around.
std::unique_ptr<server::GatewayClient> connect_if_running(const GatewayAddress& target,
                                                          const std::vector<std::string>& scopes) {
  auto client = std::make_unique<server::GatewayClient>(target.host, target.port);
  try {
    client->connect(target.token, scopes);
  } catch (const server::ClientError& e) {
    // The client reports the socket error's own text; compare with the same text.
    const std::string refused = std::system_category().message(ECONNREFUSED);
    if (e.code == "CONNECT" && std::string_view(e.what()).find(refused) != std::string::npos) {
      return nullptr;
    }
    throw;
  }
  return client;
}

std::string details_code(const server::ClientError& e) {
  if (!e.error.is_object()) return {};
  const auto it = e.error.find("details");
  if (it == e.error.end() || !it->is_object()) return {};
  return it->value("code", "");
}

// The patch of `config patch FILE|-`: JSON with comments, an object.
std::optional<json> read_patch(const std::string& source) {
  std::string text;
  std::string name = source;
  if (source == "-") {
    name = "stdin";
    auto in = read_stdin(runtime::max_config_bytes());
    if (!in) {
      std::cerr << "drawbridge: stdin: larger than the limit of "
                << runtime::describe_bytes(runtime::max_config_bytes()) << " for a config patch\n";
      return std::nullopt;
    }
    text = std::move(*in);
  } else {
    // Regular files only and at most max_config_bytes(): `config patch /dev/zero` or a FIFO
    // fails at once instead of reading forever or waiting for a writer.
    const runtime::ConfigFileText f = runtime::read_config_text(source);
    if (!f.exists || !f.error.empty()) {
      std::cerr << "drawbridge: "
                << (f.error.empty() ? "cannot read " + source + ": " + std::strerror(ENOENT)
                                    : f.error)
                << "\n";
      return std::nullopt;
    }
    text = std::move(f.text);
  }
  std::string error;
  auto patch = runtime::parse_config_document(name, text, error);
  if (!patch) {
    std::cerr << "drawbridge: " << error << "\n";
    return std::nullopt;
  }
  if (!patch->is_object()) {
    std::cerr << "drawbridge: " << name << ": a merge patch must be a JSON object, got "
              << patch->type_name() << "\n";
    return std::nullopt;
  }
  return patch;
}

// --- offline: the file itself ---------------------------------------------------------------

// The effective config of `file` (the built-in defaults when empty), secrets redacted like
// config.get does, so that the output does not depend on whether the gateway runs.
int offline_get(const std::string& file, const std::vector<PathStep>& steps,
                const std::string& path, bool as_json) {
  const auto loaded = runtime::load_offline_config(file);
  if (!loaded.io_error.empty()) {
    std::cerr << "drawbridge: " << loaded.io_error << "\n";
    return config_invalid;
  }
  if (!loaded.effective) {
    std::cerr << file << ": " << loaded.errors.size() << " problem(s)\n";
    print_errors(loaded.errors);
    return config_invalid;
  }
  const json* v = value_at(*loaded.effective, steps);
  if (v == nullptr) {
    std::cerr << "no such key: " << path << "\n";
    return crashed;
  }
  print_value(*v, as_json);
  return ok;
}

int offline_validate(const std::string& file) {
  if (file.empty()) {
    std::cerr << "no config file given and none found (./drawbridge.json); the defaults are "
                 "valid\n";
    return ok;
  }
  const auto loaded = runtime::load_offline_config(file);
  if (!loaded.io_error.empty()) {
    std::cerr << loaded.io_error << "\n";
    return config_invalid;
  }
  if (!loaded.effective) {
    std::cerr << file << ": " << loaded.errors.size() << " problem(s)\n";
    print_errors(loaded.errors);
    return config_invalid;
  }
  std::cout << file << ": valid\n";
  return ok;
}

// Merges `patch` into `file`, validates the whole result and writes it atomically, keeping
// the old text as the last-known-good copy when it was valid. An invalid result leaves the
// file untouched. A file that does not exist yet is created (from {}).
int offline_patch(const std::string& file, const json& patch, bool as_json) {
  using Outcome = runtime::OfflineEdit::Outcome;
  const auto edit = runtime::edit_config_file(file, patch);
  if (edit.outcome == Outcome::invalid || edit.outcome == Outcome::failed) {
    std::cerr << edit.message << "\n";
    print_errors(edit.errors);
    return edit.outcome == Outcome::invalid ? config_invalid : crashed;
  }
  const bool written = edit.outcome == Outcome::written;
  if (as_json) {
    std::cout << json{{"ok", true},
                      {"path", edit.path},
                      {"hash", edit.hash},
                      {"written", written},
                      {"changedPaths", edit.changed}}
                     .dump(2)
              << "\n";
  }
  if (!written) {
    if (!as_json) std::cout << "no change\n";
    return ok;
  }
  if (!as_json) {
    std::cout << "written " << edit.path;
    if (edit.changed.empty()) {
      std::cout << " (no change in effect)";
    } else {
      std::cout << "; changed:";
      for (const auto& c : edit.changed) std::cout << " " << c;
    }
    std::cout << "\napplies when the gateway starts\n";
  }
  return ok;
}

// --- online: the running gateway --------------------------------------------------------------

int online_get(server::GatewayClient& client, const std::vector<PathStep>& steps,
               const std::string& path, bool as_json) {
  const json got = client.request("config.get", json::object());
  const json doc = got.contains("config") ? got["config"] : json::object();
  const json* v = value_at(doc, steps);
  if (v == nullptr) {
    std::cerr << "no such key: " << path << "\n";
    return crashed;
  }
  print_value(*v, as_json);
  return ok;
}

int online_validate(server::GatewayClient& client) {
  const json got = client.request("config.get", json::object());
  std::string file = got.value("path", "");
  if (file.empty()) file = "(no config file: built-in defaults)";
  if (got.value("valid", false)) {
    std::cout << file << ": valid\n";
    return ok;
  }
  const json errors = got.value("errors", json::array());
  std::cerr << file << ": " << errors.size() << " problem(s)\n";
  print_rpc_errors(errors);
  return config_invalid;
}

int online_patch(server::GatewayClient& client, const json& patch, const std::string& note,
                 bool as_json) {
  const json got = client.request("config.get", json::object());
  json params = {{"raw", patch.dump()}, {"baseHash", got.value("hash", "")}};
  if (!note.empty()) params["note"] = note;
  json answer;
  try {
    answer = client.request("config.patch", params);
  } catch (const server::ClientError& e) {
    const std::string code = details_code(e);
    if (code == "CONFIG_INVALID") {
      const json errors = e.error["details"].value("errors", json::array());
      std::cerr << "the gateway refused the change: " << errors.size()
                << " problem(s); nothing was written\n";
      print_rpc_errors(errors);
      return config_invalid;
    }
    if (code == "CONFIG_CONFLICT") {
      std::cerr << "the config changed since it was read; try again\n";
      return crashed;
    }
    throw;  // NO_CONFIG_FILE and the rest: the gateway's message says it
  }
  if (as_json) {
    std::cout << answer.dump(2) << "\n";
  } else {
    for (const auto& line : describe_patch_outcome(answer)) std::cout << line << "\n";
  }
  return ok;
}

}  // namespace

std::optional<std::vector<PathStep>> parse_config_path(const std::string& path,
                                                       std::string& error) {
  std::vector<PathStep> steps;
  if (path.empty()) return steps;
  std::size_t i = 0;
  const auto fail = [&](const std::string& why) {
    error = "invalid path \"" + path + "\": " + why;
    return std::nullopt;
  };
  for (;;) {
    std::string key;
    while (i < path.size() && path[i] != '.' && path[i] != '[' && path[i] != ']') {
      key += path[i++];
    }
    if (key.empty() && (i >= path.size() || path[i] != '[' || !steps.empty())) {
      return fail("empty key at offset " + std::to_string(i));
    }
    if (!key.empty()) steps.push_back({key, std::nullopt});
    if (steps.size() > runtime::max_config_depth()) {
      return fail("more than " + std::to_string(runtime::max_config_depth()) + " levels");
    }
    while (i < path.size() && path[i] == '[') {
      const std::size_t close = path.find(']', i);
      const std::string digits =
          close == std::string::npos ? "" : path.substr(i + 1, close - i - 1);
      if (digits.empty() || digits.size() > 9 ||
          digits.find_first_not_of("0123456789") != std::string::npos) {
        return fail("expected an index like [0] at offset " + std::to_string(i));
      }
      steps.push_back({"", static_cast<std::size_t>(std::stoul(digits))});
      if (steps.size() > runtime::max_config_depth()) {
        return fail("more than " + std::to_string(runtime::max_config_depth()) + " levels");
      }
      i = close + 1;
    }
    if (i == path.size()) return steps;
    if (path[i] != '.') return fail("unexpected '" + std::string(1, path[i]) + "'");
    ++i;
    if (i == path.size()) return fail("ends with '.'");
  }
}

const json* value_at(const json& doc, const std::vector<PathStep>& path) {
  const json* v = &doc;
  for (const auto& step : path) {
    if (step.index) {
      if (!v->is_array() || *step.index >= v->size()) return nullptr;
      v = &(*v)[*step.index];
    } else {
      if (!v->is_object()) return nullptr;
      const auto it = v->find(step.key);
      if (it == v->end()) return nullptr;
      v = &*it;
    }
  }
  return v;
}

json parse_set_value(const std::string& text) {
  auto parsed = runtime::parse_config_value(text);
  return parsed.json ? std::move(*parsed.json) : json(text);
}

json merge_patch_setting(const std::vector<PathStep>& path, json value) {
  json patch = std::move(value);
  for (auto it = path.rbegin(); it != path.rend(); ++it) patch = json{{it->key, std::move(patch)}};
  return patch;
}

std::vector<std::string> describe_patch_outcome(const json& answer) {
  std::vector<std::string> lines;
  const json changed = answer.value("changedPaths", json::array());
  if (!answer.value("written", false)) {
    lines.push_back("no change");
    return lines;
  }
  if (changed.empty()) {
    lines.push_back("written (no change in effect)");
    return lines;
  }
  std::string list = "changed:";
  for (const auto& p : changed) list += " " + (p.is_string() ? p.get<std::string>() : p.dump());
  lines.push_back(list);
  const json plan = answer.value("plan", json::object());
  const std::string kind = plan.value("kind", "");
  if (plan.value("mode", "") == "off" || (kind != "none" && !plan.value("applied", true))) {
    lines.push_back("written; reload is off: applies at the next restart");
    return lines;
  }
  if (kind == "none") {
    lines.push_back("applied: no reload needed");
  } else if (kind == "hot") {
    std::string line = "hot:";
    const json actions = plan.value("actions", json::array());
    for (std::size_t i = 0; i < actions.size(); ++i) {
      line += (i == 0 ? " " : ", ") + actions[i].value("action", "?");
      if (const std::string target = actions[i].value("target", ""); !target.empty()) {
        line += " " + target;
      }
    }
    lines.push_back(actions.empty() ? "hot: applied" : line);
  } else if (kind == "restart") {
    const auto r = plan.find("restart");
    lines.push_back(r != plan.end() && r->is_object()
                        ? describe_restart(*r)
                        : "a restart is needed: run `drawbridge restart`");
  } else {
    lines.push_back("written; reload plan: " + (kind.empty() ? "unknown" : kind));
  }
  return lines;
}

ConfigCommands::ConfigCommands(CLI::App& app, const std::function<void(CLI::App*)>& add_target) {
  config_ = app.add_subcommand(
      "config",
      "Read and change the configuration: through the running gateway (which reloads what "
      "changed), or the --config file directly when no gateway runs");
  config_->require_subcommand(1);
  config_->fallthrough();

  get_ = config_->add_subcommand(
      "get",
      "Print the effective config (defaults filled in, secrets redacted), or the value at PATH");
  get_->add_option("path", path_,
                   "Dotted path, e.g. gateway.port, channels.local.maxMessageChars, "
                   "agents.shell.command[1]; a string prints bare, anything else as JSON");
  get_->add_flag("--json", json_, "Print the value as JSON, strings too");

  set_ = config_->add_subcommand(
      "set",
      "Set the value at PATH and apply it (the whole config is validated first; an invalid "
      "result changes nothing and exits 78)");
  set_->add_option("path", path_, "Dotted path, e.g. gateway.port (no array indexes)")->required();
  set_->add_option("value", value_,
                   "JSON if it parses (18800, true, null, [\"a\"], {\"k\":1}, '\"text\"'), "
                   "else the text as a string; null deletes the key; an object is merged into "
                   "what is there (RFC 7396)")
      ->required();
  set_->add_flag("--json", json_, "Print the gateway's whole answer as JSON");

  patch_ = config_->add_subcommand(
      "patch",
      "Apply a JSON merge patch (RFC 7396: objects merge, null deletes, anything else "
      "replaces) from a file or stdin, after validating the whole result");
  patch_->add_option("file", patch_file_, "Patch file (JSON with comments), or - for stdin")
      ->required();
  patch_->add_flag("--json", json_, "Print the gateway's whole answer as JSON");

  validate_ = config_->add_subcommand(
      "validate",
      "Check a config file and list every problem; without FILE, the running gateway's file "
      "(or the --config file when no gateway runs)");
  validate_->add_option("file", validate_file_,
                        "File to check offline (default: ask the running gateway, else the "
                        "--config file)");

  schema_ = config_->add_subcommand(
      "schema", "Print every config key with its type, default and help (no gateway needed)");
  schema_->add_flag("--json-schema", json_schema_,
                    "Print what config.schema answers: a draft-07 JSON Schema and the "
                    "dashboard's per-path hints");

  for (CLI::App* sub : {get_, set_, patch_, validate_}) {
    sub->fallthrough();
    add_target(sub);
  }
}

bool ConfigCommands::selected() const {
  return config_ != nullptr && config_->parsed();
}

int ConfigCommands::run(const std::string& config_path,
                        const std::function<GatewayAddress()>& resolve_target) const {
  if (validate_->parsed() && !validate_file_.empty()) return offline_validate(validate_file_);
  if (schema_->parsed()) {
    std::cout << runtime::config_schema_document(json_schema_).dump(2) << "\n";
    return 0;
  }

  // Usage problems first, before any connection.
  std::vector<PathStep> steps;
  std::optional<json> patch;
  if (get_->parsed() || set_->parsed()) {
    std::string error;
    auto parsed = parse_config_path(path_, error);
    if (!parsed) {
      std::cerr << "drawbridge: " << error << "\n";
      return usage;
    }
    steps = std::move(*parsed);
  }
  if (set_->parsed()) {
    if (steps.empty()) {
      std::cerr << "drawbridge: config set needs a PATH; use config patch to change the whole "
                   "config\n";
      return usage;
    }
    for (const auto& s : steps) {
      if (s.index) {
        std::cerr << "drawbridge: config set cannot address array elements; set the whole "
                     "array\n";
        return usage;
      }
    }
    // JSON that is refused for a limit (too deep, a repeated key) is an error, not text.
    if (auto parsed = runtime::parse_config_value(value_); !parsed.refused.empty()) {
      std::cerr << "drawbridge: VALUE: " << parsed.refused << "\n";
      return config_invalid;
    }
    patch = merge_patch_setting(steps, parse_set_value(value_));
  }
  if (patch_->parsed()) {
    patch = read_patch(patch_file_);
    if (!patch) return crashed;
  }
  const bool edits = set_->parsed() || patch_->parsed();
  const std::string note = set_->parsed()     ? "drawbridge config set " + path_
                           : patch_->parsed() ? "drawbridge config patch " + patch_file_
                                              : "";

  try {
    const GatewayAddress target = resolve_target();
    auto client = connect_if_running(target, edits ? std::vector<std::string>{"operator.admin"}
                                                   : std::vector<std::string>{"operator.read"});
    if (client) {
      if (get_->parsed()) return online_get(*client, steps, path_, json_);
      if (validate_->parsed()) return online_validate(*client);
      return online_patch(*client, *patch, note, json_);
    }
  } catch (const server::ClientError& e) {
    std::cerr << "drawbridge: " << e.what() << "\n";
    return crashed;
  }

  if (get_->parsed()) {
    std::cerr << "gateway not running; "
              << (config_path.empty() ? "showing the built-in defaults (no config file)"
                                      : "reading " + config_path + " directly")
              << "\n";
    return offline_get(config_path, steps, path_, json_);
  }
  if (validate_->parsed()) {
    if (!config_path.empty()) std::cerr << "gateway not running; checking " << config_path << "\n";
    return offline_validate(config_path);
  }
  if (config_path.empty()) {
    std::cerr << "drawbridge: gateway not running and no config file to edit: pass --config FILE "
                 "(or set $DRAWBRIDGE_CONFIG)\n";
    return crashed;
  }
  std::cerr << "gateway not running; editing " << config_path << " directly\n";
  return offline_patch(config_path, *patch, json_);
}

}  // namespace drawbridge::cli
