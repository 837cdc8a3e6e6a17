#include "config/check.h"

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <limits>

#include "config/document.h"

namespace drawbridge::config::check {

namespace {

std::string escape_pointer_token(std::string_view k) {
  std::string out;
  for (char c : k) {
    if (c == '~') {
      out += "~0";
    } else if (c == '/') {
      out += "~1";
    } else {
      out += c;
    }
  }
  return out;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// nlohmann keeps non-negative literals as unsigned; both kinds must fit int64 to be compared.
std::optional<std::int64_t> as_int64(const json& v) {
  if (v.is_number_unsigned()) {
    const auto u = v.get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      return std::nullopt;
    }
    return static_cast<std::int64_t>(u);
  }
  if (v.is_number_integer()) return v.get<std::int64_t>();
  return std::nullopt;
}

bool fail(const schema::Rule& rule, const json& value, const Location& at, Errors& errors) {
  errors.add(at, "expected " + schema::expected_text(rule) + ", got " + show_at(value, at));
  return false;
}

}  // namespace

Location Location::key(std::string_view k) const {
  return {pointer + "/" + escape_pointer_token(k),
          path.empty() ? std::string(k) : path + "." + std::string(k)};
}

Location Location::index(std::size_t i) const {
  return {pointer + "/" + std::to_string(i), path + "[" + std::to_string(i) + "]"};
}

void Errors::add(const Location& at, std::string message) {
  errors_.push_back({at.pointer, at.path, std::move(message)});
}

std::string show(const json& value) {
  constexpr std::size_t kMax = 80;
  // replace: a document built in code may hold invalid UTF-8; dump must not throw for it.
  std::string out = value.dump(-1, ' ', false, json::error_handler_t::replace);
  if (out.size() > kMax) {
    // Cut between characters: a message must stay valid UTF-8 to be sent as JSON.
    std::size_t cut = kMax;
    while (cut > 0 && (static_cast<unsigned char>(out[cut]) & 0xC0) == 0x80) --cut;
    out = out.substr(0, cut) + "...";
  }
  return out;
}

std::string kind_of(const json& value) {
  switch (value.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
    case json::value_t::number_float:
      return "a number";
    case json::value_t::string:
      return value.get_ref<const std::string&>().empty() ? "an empty string" : "a string";
    case json::value_t::array:
      return "an array";
    case json::value_t::object:
      return "an object";
    default:
      return "a value";
  }
}

std::string show_at(const json& value, const Location& at) {
  return secret_pointer(at.pointer) ? kind_of(value) : show(value);
}

std::optional<std::string_view> closest(std::string_view key,
                                        std::span<const std::string_view> candidates) {
  if (key.empty()) return std::nullopt;
  const std::string k = lower(key);
  std::optional<std::string_view> best;
  std::size_t best_score = std::numeric_limits<std::size_t>::max();
  for (const auto candidate : candidates) {
    const std::string c = lower(candidate);
    std::size_t score = edit_distance(k, c);
    // Replacing the whole key ("ab" -> "cd") is no typo.
    if (score > 2 || score >= k.size()) {
      // A prefix either way ("debounce" for "debounceMs") is a good hint, ranked after typos.
      if (!c.starts_with(k) && !k.starts_with(c)) continue;
      score = 3;
    }
    if (score < best_score) {
      best_score = score;
      best = candidate;
    }
  }
  return best;
}

std::string unknown_message(std::string_view what, std::string_view key, std::string_view context,
                            std::span<const std::string_view> candidates,
                            std::string_view list_label) {
  std::string out =
      "unknown " + std::string(what) + " " + show(json(std::string(key))) + std::string(context);
  if (const auto hint = closest(key, candidates)) {
    return out + "; did you mean " + show(json(std::string(*hint))) + "?";
  }
  if (candidates.empty()) return out;
  std::vector<std::string_view> sorted(candidates.begin(), candidates.end());
  std::sort(sorted.begin(), sorted.end());
  out += "; " + std::string(list_label) + ": ";
  for (std::size_t i = 0; i < sorted.size(); ++i) {
    if (i > 0) out += ", ";
    out += sorted[i];
  }
  return out;
}

bool check_value(const schema::Rule& rule, const json& value, const Location& at, Errors& errors) {
  switch (rule.type) {
    case schema::Type::kInteger: {
      const auto n = as_int64(value);
      if (!n || *n < rule.min || *n > rule.max) return fail(rule, value, at, errors);
      return true;
    }
    case schema::Type::kNumber: {
      if (!value.is_number()) return fail(rule, value, at, errors);
      const double d = value.get<double>();
      if (!(d >= static_cast<double>(rule.min) && d <= static_cast<double>(rule.max))) {
        return fail(rule, value, at, errors);
      }
      return true;
    }
    case schema::Type::kString: {
      if (!value.is_string()) return fail(rule, value, at, errors);
      const auto& s = value.get_ref<const std::string&>();
      if (rule.non_empty && s.empty()) return fail(rule, value, at, errors);
      if (rule.one_of.empty() && rule.accept == nullptr) return true;
      if (std::find(rule.one_of.begin(), rule.one_of.end(), s) != rule.one_of.end()) return true;
      if (rule.accept != nullptr && rule.accept(s)) return true;
      return fail(rule, value, at, errors);
    }
    case schema::Type::kBoolean:
      return value.is_boolean() || fail(rule, value, at, errors);
    case schema::Type::kSection:
    case schema::Type::kFreeObject:
    case schema::Type::kCustom:
      return value.is_object() || fail(rule, value, at, errors);
    case schema::Type::kStringArray: {
      if (!value.is_array() || (rule.non_empty && value.empty())) {
        return fail(rule, value, at, errors);
      }
      bool ok = true;
      for (std::size_t i = 0; i < value.size(); ++i) {
        ok = check_value(schema::non_empty_text(), value[i], at.index(i), errors) && ok;
      }
      return ok;
    }
    case schema::Type::kStringMap: {
      if (!value.is_object()) return fail(rule, value, at, errors);
      bool ok = true;
      for (const auto& [k, v] : value.items()) {
        ok = check_value(schema::text(), v, at.key(k), errors) && ok;
      }
      return ok;
    }
  }
  return true;
}

}  // namespace drawbridge::config::check
