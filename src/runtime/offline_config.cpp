#include "runtime/offline_config.h"

#include <chrono>
#include <filesystem>

#include "config/config.h"
#include "config/config_text.h"
#include "config/diff.h"
#include "config/document.h"
#include "config/edit.h"
#include "config/json_schema.h"

namespace drawbridge::runtime {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::vector<std::string> error_lines(const std::vector<config::ConfigError>& errors) {
  std::vector<std::string> out;
  out.reserve(errors.size());
  for (const auto& e : errors) out.push_back(e.to_string());
  return out;
}

std::string absolute(const std::string& path) {
  std::error_code ec;
  fs::path p = fs::absolute(path, ec);
  return ec ? path : p.lexically_normal().string();
}

}  // namespace

std::size_t max_config_bytes() {
  return config::kMaxConfigBytes;
}

std::size_t max_config_depth() {
  return config::kMaxConfigDepth;
}

std::string describe_bytes(std::size_t bytes) {
  return config::describe_bytes(bytes);
}

ConfigFileText read_config_text(const std::string& path) {
  ConfigFileText f;
  auto file = config::read_config_text_file(path);
  f.exists = file.exists;
  if (file.text) {
    f.text = std::move(*file.text);
  } else if (file.exists) {
    f.error = std::move(file.error);
  }
  return f;
}

std::optional<json> parse_config_document(const std::string& name, const std::string& text,
                                          std::string& error) {
  auto parsed = config::parse_config_json(text);
  if (parsed.ok()) return std::move(parsed.value);
  error = name + (parsed.error->kind == config::JsonErrorKind::syntax ? " is not JSON: " : ": ") +
          parsed.error->to_string();
  return std::nullopt;
}

ConfigValue parse_config_value(const std::string& text) {
  ConfigValue v;
  auto parsed = config::parse_config_json(text);
  if (parsed.ok()) {
    v.json = std::move(parsed.value);
  } else if (parsed.error->kind != config::JsonErrorKind::syntax) {
    v.refused = parsed.error->to_string();
  }
  return v;
}

OfflineConfig load_offline_config(const std::string& path) {
  OfflineConfig out;
  auto loaded = config::load_config_file(path);
  out.io_error = std::move(loaded.io_error);
  out.errors = error_lines(loaded.parsed.errors);
  if (loaded.parsed.config) {
    const auto& cfg = *loaded.parsed.config;
    out.effective = config::redact(config::effective_json(cfg));
    out.port = cfg.gateway.port;
    out.bind = cfg.gateway.bind;
    out.auth_token = cfg.gateway.auth_token;
    out.data_dir = cfg.store.data_dir;
    out.agents = cfg.agents;
    for (const auto& [id, ch] : cfg.channels) {
      out.channels[id] = {ch.enabled, ch.agent.empty() ? cfg.default_agent : ch.agent, ch.raw};
    }
  }
  return out;
}

OfflineEdit edit_config_file(const std::string& file, const json& patch) {
  OfflineEdit out;
  const auto fail = [&](OfflineEdit::Outcome outcome, std::string message,
                        std::vector<std::string> errors = {}) {
    out.outcome = outcome;
    out.message = std::move(message);
    out.errors = std::move(errors);
    return out;
  };
  ConfigFileText current = read_config_text(file);
  if (!current.error.empty()) {
    return fail(OfflineEdit::Outcome::failed, "drawbridge: " + current.error);
  }
  json before = json::object();
  if (current.exists) {
    std::string error;
    auto doc = parse_config_document(file, current.text, error);
    if (!doc) {
      return fail(OfflineEdit::Outcome::invalid, error + "; fix it by hand (nothing was written)");
    }
    before = std::move(*doc);
  }
  const auto old_parsed = config::validate_config(before);
  // Bookkeeping, as the gateway (and OpenClaw) write it.
  auto edit = config::plan_edit({before, current.exists, patch, false,
                                 config::iso_timestamp(std::chrono::system_clock::now()),
                                 DRAWBRIDGE_VERSION});
  if (!edit.errors.empty()) {
    return fail(OfflineEdit::Outcome::invalid,
                file + ": " + std::to_string(edit.errors.size()) +
                    " problem(s); nothing was written",
                error_lines(edit.errors));
  }
  out.path = absolute(file);
  if (edit.unchanged) {
    out.outcome = OfflineEdit::Outcome::unchanged;
    out.hash = config::content_hash(current.text);
    return out;
  }
  // Checked as the text that will be written, so that it passes every limit the next load
  // applies (a path and a value may together nest deeper than either alone).
  const std::string& text = edit.text;
  const auto parsed = config::parse_config(text);
  if (!parsed.config) {
    return fail(OfflineEdit::Outcome::invalid,
                file + ": the change would leave " + std::to_string(parsed.errors.size()) +
                    " problem(s); nothing was written",
                error_lines(parsed.errors));
  }
  // What changed in meaning: defaults spelled out or dropped are no change.
  out.changed = old_parsed.config
                    ? config::diff_paths(config::effective_json(*old_parsed.config),
                                         config::effective_json(*parsed.config))
                    : config::diff_paths(config::without_meta(before),
                                         config::without_meta(edit.document));
  if (current.exists && old_parsed.config) {
    if (auto saved = config::save_last_good(file, current.text); !saved.ok) {
      return fail(OfflineEdit::Outcome::failed,
                  "drawbridge: " + saved.error + " (nothing was written)");
    }
  }
  if (auto written = config::write_atomic(file, text); !written.ok) {
    return fail(OfflineEdit::Outcome::failed, "drawbridge: " + written.error);
  }
  out.outcome = OfflineEdit::Outcome::written;
  out.hash = config::content_hash(text);
  return out;
}

json config_schema_document(bool json_schema) {
  if (!json_schema) return config::describe_schema();
  const auto& doc = config::json_schema();
  return {{"schema", doc.schema},
          {"uiHints", doc.ui_hints},
          {"version", DRAWBRIDGE_VERSION},
          {"generatedAt", config::iso_timestamp(std::chrono::system_clock::now())}};
}

}  // namespace drawbridge::runtime
