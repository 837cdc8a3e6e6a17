#pragma once

// Checking JSON values against schema rows, with errors that name where and why.

#include <algorithm>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/config.h"
#include "config/document.h"
#include "config/schema.h"

namespace drawbridge::config::check {

using nlohmann::json;

// Where a value sits, in both notations a ConfigError carries.
struct Location {
  std::string pointer;  // "/agents/shell/command/1"
  std::string path;     // "agents.shell.command[1]"

  Location key(std::string_view k) const;
  Location index(std::size_t i) const;
};

class Errors {
 public:
  void add(const Location& at, std::string message);
  bool empty() const { return errors_.empty(); }
  std::size_t size() const { return errors_.size(); }
  std::vector<ConfigError> take() { return std::move(errors_); }

 private:
  std::vector<ConfigError> errors_;
};

// Compact JSON for messages; long values are cut so one bad blob cannot flood the log.
std::string show(const json& value);
// The kind of a value, for messages that must not show it: "a number", "an empty string".
std::string kind_of(const json& value);
// show(value), or only kind_of(value) when `at` may hold a secret (config::secret_pointer):
// "gateway.auth.token: expected a non-empty string, got a number".
std::string show_at(const json& value, const Location& at);

// The closest candidate by edit distance (<= 2, case-insensitive) or prefix, if any.
std::optional<std::string_view> closest(std::string_view key,
                                        std::span<const std::string_view> candidates);

// `unknown <what> "k"<context>; did you mean "x"?` or `...; <list_label>: a, b, c`.
std::string unknown_message(std::string_view what, std::string_view key, std::string_view context,
                            std::span<const std::string_view> candidates,
                            std::string_view list_label = "allowed");

// Checks one value against a leaf rule; on failure adds errors and returns false.
bool check_value(const schema::Rule& rule, const json& value, const Location& at, Errors& errors);

// Checks `object` against the rows under `prefix` ("" or "gateway.") that apply to `kind`,
// storing every valid value into `target`. Rows of type kCustom are left to the caller; when
// `open`, keys without a row are accepted.
template <typename T>
void check_fields(const json& object, std::string_view prefix,
                  std::span<const schema::Field<T>> fields, std::string_view kind, bool open,
                  std::string_view unknown_context, const Location& at, Errors& errors, T& target) {
  if (!object.is_object()) {
    // A section with a secret in it ("auth": "s3cret" for "auth": {"token": "s3cret"}) may be
    // that secret one level too high: only its kind is shown.
    const bool holds_secret = std::any_of(fields.begin(), fields.end(), [&](const auto& f) {
      if (!f.path.starts_with(prefix)) return false;
      const auto key = f.path.substr(prefix.size());
      return key.find('.') == std::string_view::npos && is_secret_key(key);
    });
    errors.add(at,
               "expected an object, got " + (holds_secret ? kind_of(object) : show_at(object, at)));
    return;
  }
  std::vector<const schema::Field<T>*> level;  // rows directly under prefix
  for (const auto& field : fields) {
    if (!field.path.starts_with(prefix) || !schema::applies_to(field.only, kind)) continue;
    if (field.path.substr(prefix.size()).find('.') != std::string_view::npos) continue;
    level.push_back(&field);
  }
  for (const auto& [key, value] : object.items()) {
    const schema::Field<T>* row = nullptr;
    for (const auto* candidate : level) {
      if (candidate->path.substr(prefix.size()) == key) row = candidate;
    }
    if (row == nullptr) {
      if (open) continue;
      std::vector<std::string_view> names;
      for (const auto* candidate : level) names.push_back(candidate->path.substr(prefix.size()));
      errors.add(at.key(key), unknown_message("key", key, unknown_context, names));
      continue;
    }
    switch (row->rule.type) {
      case schema::Type::kCustom:
        break;
      case schema::Type::kSection:
        // A section the table describes is closed even in an open kind: a typo in
        // channels.telegram.notices is reported, not ignored.
        check_fields(value, std::string(row->path) + ".", fields, kind, false, unknown_context,
                     at.key(key), errors, target);
        break;
      default:
        if (check_value(row->rule, value, at.key(key), errors) && row->set != nullptr) {
          row->set(target, value);
        }
    }
  }
  for (const auto* row : level) {
    const auto key = row->path.substr(prefix.size());
    if (row->rule.required && !object.contains(std::string(key))) {
      errors.add(at.key(key), "missing required key; expected " + schema::expected_text(row->rule));
    }
  }
}

}  // namespace drawbridge::config::check
