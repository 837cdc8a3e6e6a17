#pragma once

// The config as a JSON Schema (draft-07, what OpenClaw's config.schema answers and its
// dashboard renders as a form) and OpenClaw's per-path UI hints, both generated from the one
// table of keys (schema.h): types, enums, ranges, defaults, help and required keys.

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace drawbridge::config {

struct SchemaDocument {
  nlohmann::json schema;    // draft-07; title = label, description = help
  nlohmann::json ui_hints;  // "gateway.auth.token" -> {label, help, group, order, sensitive?}
};

// Built once; the table does not change while the process runs.
const SchemaDocument& json_schema();

// "maxConnectionsPerPeer" -> "Max connections per peer", "debounceMs" -> "Debounce (ms)",
// "baseUrl" -> "Base URL".
std::string field_label(std::string_view key);

}  // namespace drawbridge::config
