#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/config.h"

namespace drawbridge::config {

// The dotted paths where `before` and `after` differ, sorted. Objects are recursed; a key
// present on one side only is one path (its whole subtree); any other value, arrays included,
// is compared whole: a changed array is the array's path ("agents.shell.command"), never its
// elements. Equal documents give no paths. A non-object root that differs gives "" (root).
std::vector<std::string> diff_paths(const nlohmann::json& before, const nlohmann::json& after);

// The effective config as a JSON document in the file's shape: every key the schema knows,
// with its value after defaults and the environment overrides (gateway.port, ...), plus the
// extra keys of open channel kinds (telegram, irc). Two files that mean the same config give
// the same document, so diffing these (not the raw files) ignores defaults spelled out.
// `meta` and `$schema` are not part of it.
nlohmann::json effective_json(const Config& config);

}  // namespace drawbridge::config
