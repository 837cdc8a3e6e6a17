#pragma once

// The one table of config keys. Validation (validate.cpp) and describe_schema() both read it,
// so a key, its constraint, its help text and the struct member it fills are written once.

#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/config.h"

namespace drawbridge::config::schema {

using nlohmann::json;

enum class Type {
  kInteger,
  kNumber,  // integer or fraction, within min..max
  kString,
  kBoolean,
  kSection,      // an object whose keys are further rows of the same table
  kFreeObject,   // any object; not looked into
  kStringArray,  // an array of non-empty strings
  kStringMap,    // an object of string values
  kCustom,       // validated by its own code in validate.cpp (channels, agents)
};

struct Rule {
  Type type = Type::kString;
  std::int64_t min = std::numeric_limits<std::int64_t>::min();
  std::int64_t max = std::numeric_limits<std::int64_t>::max();
  std::vector<std::string_view> one_of = {};  // strings: the allowed values
  bool non_empty = false;                     // strings and arrays
  bool required = false;
  // Strings that are neither in one_of nor rejected by it: returns true when `s` is fine.
  bool (*accept)(const std::string& s) = nullptr;
  std::string_view expected = {};  // replaces the generated "expected ..." text when set
};

Rule integer(std::int64_t min = std::numeric_limits<std::int64_t>::min(),
             std::int64_t max = std::numeric_limits<std::int64_t>::max());
Rule number(std::int64_t min, std::int64_t max);
Rule text();
Rule non_empty_text();
Rule one_of(std::vector<std::string_view> values);
Rule boolean();
Rule section();
Rule free_object();
Rule string_array();
Rule string_map();
Rule custom();
Rule required(Rule rule);

// One key. `path` is dotted and relative to the object that T describes.
template <typename T>
struct Field {
  std::string_view path;
  Rule rule;
  std::string_view help;
  void (*set)(T&, const json&) = nullptr;  // stores a valid value into the struct
  json (*get)(const T&) = nullptr;         // reads the member; on T{} it gives the default
  std::string_view only = {};  // space-separated kinds (agent types, channel ids); empty: all
};

// Binds a row to a struct member: its setter and its default.
#define DRAWBRIDGE_MEMBER(T, member)                         \
  [](T& t, const nlohmann::json& v) { v.get_to(t.member); }, \
      [](const T& t) { return nlohmann::json(t.member); }

struct Kind {
  std::string_view id;
  std::string_view help;
  bool open = false;  // unknown keys are allowed (adapters not written yet)
  // Space-separated keys of the kind's own options that hold a secret (redacted by config.get
  // and marked sensitive for the dashboard's form); the adapter validates them.
  std::string_view secrets = {};
};

std::span<const Field<Config>> config_fields();  // top level; sections included
std::span<const Field<ChannelSettings>> channel_fields();
std::span<const Field<AgentSettings>> agent_fields();
std::span<const Kind> channel_kinds();
std::span<const Kind> agent_types();

// What `agents` and `channels` mean when the document leaves them out.
json default_channels();
json default_agents();

bool applies_to(std::string_view only, std::string_view kind);
std::string type_name(Type type);
// "an integer in 1..65535", "one of \"a\", \"b\"", "a string" — shared by errors and docs.
std::string expected_text(const Rule& rule);

}  // namespace drawbridge::config::schema
