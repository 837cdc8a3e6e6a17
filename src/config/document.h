#pragma once

// The config file as the gateway writes it: hashes, RFC 7396 merge patches, atomic writes with a
// last-known-good copy, and redaction of secrets for config.get.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/config.h"

namespace drawbridge::config {

// Lowercase hex SHA-256 of the bytes.
std::string sha256_hex(std::string_view bytes);

// The hash clients pass back as baseHash: sha256_hex of the file's bytes; of "" when there is
// no file.
inline std::string content_hash(std::string_view text) { return sha256_hex(text); }

// Parses JSON with comments (like parse_config) without validating, within the limits of
// config_json_limits() (config/config_text.h); nullopt and `error` set ("line 3, column 5: ...",
// never a quote of the text) when it is not JSON or crosses a limit.
std::optional<nlohmann::json> parse_json_text(const std::string& text, std::string& error);

// RFC 7396: objects merge recursively, null deletes, anything else (arrays too) replaces.
nlohmann::json merge_patch(const nlohmann::json& target, const nlohmann::json& patch);

// The text the gateway writes for a document: 2-space indented JSON and a final newline.
std::string serialize(const nlohmann::json& doc);

// Where the last-known-good copy of `config_path` lives: "<config_path>.last-good".
std::string last_good_path(const std::string& config_path);

struct WriteOutcome {
  bool ok = false;
  std::string error;  // "cannot write /x/drawbridge.json: Permission denied"
};

// Writes `text` to `path` atomically: a temp file in the same folder, fsync, rename over
// `path`, fsync the folder. The file keeps the old file's permission bits (0600 when new).
// Readers see the old or the new content, never a part.
WriteOutcome write_atomic(const std::string& path, std::string_view text);

// Saves `text` (a config that was valid and running) as the last-known-good copy of
// `config_path`, atomically. Does nothing when the copy already holds exactly `text`.
WriteOutcome save_last_good(const std::string& config_path, std::string_view text);

// Secrets: any key named (case-insensitively) token, apiKey, botToken, password, secret, or
// ending in Token/Secret/Password/ApiKey, and every value of agents.<id>.env.
inline constexpr std::string_view kRedacted = "__DRAWBRIDGE_REDACTED__";
nlohmann::json redact(const nlohmann::json& doc);
// True when `doc` holds a secret redact() would hide.
bool has_secrets(const nlohmann::json& doc);
// True for the keys redact() hides: token, apiKey, botToken, password, secret, and any key
// ending in token/secret/password/apiKey (case-insensitive).
bool is_secret_key(std::string_view key);
// True when the value at `pointer` ("/gateway/auth/token") may be or hold a secret, so that an
// error about it names its type, never its value. Errs on the side of secrecy: everything
// under a secret key or under agents.<id>.env, and that env object itself.
bool secret_pointer(std::string_view pointer);
// A client sent back a redacted document (or a patch built from one): every kRedacted string
// in `doc` is replaced by the value at the same path in `current`. Where `current` has none:
// under a secret key (secret_pointer) the key is dropped from `doc`, so the secret stays as it
// was (a generated token, one from the environment, unset), and its path is in `dropped`;
// elsewhere (an array element, a key that holds no secret, a file that holds the placeholder
// itself) an error names the path ("list[1]: the redacted placeholder has no value to restore;
// send the secret itself"). `doc` is restored where possible.
struct RestoreOutcome {
  std::vector<ConfigError> errors;
  std::vector<std::string> dropped;  // dotted paths, "gateway.auth.token"
};
RestoreOutcome restore_redacted(nlohmann::json& doc, const nlohmann::json& current);

}  // namespace drawbridge::config
