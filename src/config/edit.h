#pragma once

// One edit of the config document, shared by the gateway's config.patch/config.apply and the
// offline `drawbridge config set|patch`: the change is merged (or replaces the document), the
// redacted secrets a client sent back are restored, an edit of `meta` alone is no change, and
// the result is stamped and serialized. Pure: no file, no clock; the caller reads the file,
// validates the text as it loads configs, and writes it.

#include <chrono>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/config.h"

namespace drawbridge::config {

struct EditRequest {
  nlohmann::json current = nlohmann::json::object();  // the document on disk ({} when none)
  bool file_exists = false;
  nlohmann::json change;  // an RFC 7396 merge patch, or the whole document when `whole`
  bool whole = false;
  std::string touched_at;       // meta.lastTouchedAt (iso_timestamp)
  std::string touched_version;  // meta.lastTouchedVersion
};

struct EditPlan {
  // Why nothing can be written: the result is not an object, or a redacted placeholder has no
  // value to restore. The resulting document is not validated here.
  std::vector<ConfigError> errors;
  // Placeholders dropped because the file holds no secret to restore (restore_redacted).
  std::vector<std::string> dropped_placeholders;
  // The file exists and the result differs from it in `meta` at most: nothing to write.
  bool unchanged = false;
  nlohmann::json document;  // stamped; set when there are no errors and it is not unchanged
  std::string text;         // serialize(document)
};

EditPlan plan_edit(const EditRequest& request);

// `doc` without its `meta` (bookkeeping: lastTouchedAt, ...).
nlohmann::json without_meta(nlohmann::json doc);

// "2026-12-05T13:58:04.123Z", as OpenClaw stamps meta.lastTouchedAt.
std::string iso_timestamp(std::chrono::system_clock::time_point when);

}  // namespace drawbridge::config
