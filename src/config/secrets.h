#pragma once

// The secret values themselves (not their paths), for the gateway to keep out of its logs.

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/config.h"

namespace drawbridge::config {

// Every value redact() hides in `doc`, as it would be printed: strings as they are, numbers as
// written (a hand-broken file may hold a numeric token). Booleans and nulls are not secrets.
// Sorted, without duplicates or empty strings. `doc` may be any JSON, valid config or not.
std::vector<std::string> secret_values(const nlohmann::json& doc);

// The same for a config file's text. Text that is not JSON (a hand-broken file) is scanned
// for a string or number after a secret key ("token": "...", "apiKey": 123), so that what an
// error about it might quote is known too.
std::vector<std::string> secret_values_in_text(std::string_view text);

// The same for a loaded config: its effective document, the document as loaded, and
// gateway.auth_token (which the environment may have set).
std::vector<std::string> secret_values(const Config& cfg);

}  // namespace drawbridge::config
