#include "config/config.h"

#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string_view>
#include <vector>

#include "config/check.h"

namespace drawbridge::config {

namespace {

namespace fs = std::filesystem;

struct EnvValue {
  std::string name;  // the variable that was set, for error paths
  std::string value;
};

// The DRAWBRIDGE_ name wins over the OpenClaw one; an empty value counts as unset.
std::optional<EnvValue> env_value(const char* name, const char* fallback = nullptr) {
  for (const char* n : {name, fallback}) {
    if (n == nullptr) continue;
    const char* v = std::getenv(n);
    if (v != nullptr && *v != '\0') return EnvValue{n, v};
  }
  return std::nullopt;
}

std::optional<int> parse_port(std::string_view s) {
  if (s.empty() || s.size() > 5) return std::nullopt;
  int port = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    port = port * 10 + (c - '0');
  }
  if (port < 1 || port > 65535) return std::nullopt;
  return port;
}

fs::path absolute_path(const fs::path& p, const fs::path& base) {
  std::error_code ec;
  const fs::path joined = p.is_absolute() ? p : base / p;
  fs::path out = fs::absolute(joined, ec);
  return (ec ? joined : out).lexically_normal();
}

fs::path current_dir() {
  std::error_code ec;
  auto cwd = fs::current_path(ec);
  return ec ? fs::path(".") : cwd;
}

void apply_environment(const fs::path& base, ParseResult& parsed) {
  std::vector<ConfigError> errors;
  const auto port = env_value("DRAWBRIDGE_GATEWAY_PORT", "OPENCLAW_GATEWAY_PORT");
  std::optional<int> port_value;
  if (port) {
    port_value = parse_port(port->value);
    if (!port_value) {
      errors.push_back(
          {"", "env." + port->name,
           "expected an integer in 1..65535, got " + check::show(nlohmann::json(port->value))});
    }
  }
  if (!errors.empty()) {
    parsed.errors.insert(parsed.errors.end(), errors.begin(), errors.end());
    parsed.config.reset();  // config is set only when there are no errors
  }
  if (!parsed.config) return;

  Config& config = *parsed.config;
  if (port_value) config.gateway.port = *port_value;
  if (const auto token = env_value("DRAWBRIDGE_GATEWAY_TOKEN", "OPENCLAW_GATEWAY_TOKEN")) {
    config.gateway.auth_token = token->value;
  }
  if (const auto data_dir = env_value("DRAWBRIDGE_DATA_DIR")) {
    config.store.data_dir = absolute_path(data_dir->value, current_dir()).string();
  } else {
    config.store.data_dir = absolute_path(config.store.data_dir, base).string();
  }
  if (!config.gateway.control_ui_root.empty()) {
    config.gateway.control_ui_root = absolute_path(config.gateway.control_ui_root, base).string();
  }
}

}  // namespace

LoadResult load_config_file(const std::string& path) {
  if (path.empty()) return load_config_text({}, {});
  LoadResult result;
  auto text = read_text_file(path, result.io_error);
  if (!text) {
    result.path = absolute_path(path, current_dir()).string();
    return result;
  }
  return load_config_text(path, std::move(*text));
}

LoadResult load_config_text(const std::string& path, std::string text) {
  LoadResult result;
  fs::path base = current_dir();
  try {
    if (path.empty()) {
      result.parsed = validate_config(nlohmann::json::object());
    } else {
      const fs::path file = absolute_path(path, current_dir());
      result.path = file.string();
      result.raw_text = std::move(text);
      result.parsed = parse_config(result.raw_text);
      base = file.parent_path();
    }
    apply_environment(base, result.parsed);
  } catch (const std::exception& e) {
    result.parsed.config.reset();
    result.parsed.errors.push_back(
        {"", "", std::string("internal error while loading: ") + e.what()});
  }
  return result;
}

}  // namespace drawbridge::config
