#include "config/secrets.h"

#include <algorithm>
#include <utility>

#include "config/diff.h"
#include "config/document.h"

namespace drawbridge::config {

namespace {

using nlohmann::json;

// Walks `doc` beside redact(doc): where the copy holds the placeholder and the original does
// not, the original is a secret. Iterative, so the depth of a hostile file costs no stack.
void collect(const json& doc, std::vector<std::string>& out) {
  const json hidden = redact(doc);
  std::vector<std::pair<const json*, const json*>> todo{{&doc, &hidden}};
  while (!todo.empty()) {
    auto [node, mask] = todo.back();
    todo.pop_back();
    if (node->is_object() && mask->is_object()) {
      for (auto it = node->begin(); it != node->end(); ++it) {
        if (auto m = mask->find(it.key()); m != mask->end()) todo.emplace_back(&*it, &*m);
      }
    } else if (node->is_array() && mask->is_array() && node->size() == mask->size()) {
      for (std::size_t i = 0; i < node->size(); ++i) todo.emplace_back(&(*node)[i], &(*mask)[i]);
    } else if (mask->is_string() && mask->get_ref<const std::string&>() == kRedacted &&
               *node != *mask) {
      if (node->is_string()) {
        out.push_back(node->get<std::string>());
      } else if (node->is_number()) {
        out.push_back(node->dump());
      }
    }
  }
}

void tidy(std::vector<std::string>& v) {
  std::erase_if(v, [](const std::string& s) { return s.empty(); });
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
}

// Whether redact() hides the value of `key` (outside agents.<id>.env): the rule stays in
// one place, document.cpp.
bool secret_key(const std::string& key) {
  const json probe = redact(json{{key, 0}});
  const auto it = probe.find(key);
  return it != probe.end() && it->is_string();
}

// The end of the JSON string whose opening quote is at `open` (the closing quote), or npos.
std::size_t string_end(std::string_view text, std::size_t open) {
  for (std::size_t i = open + 1; i < text.size(); ++i) {
    if (text[i] == '\\') {
      ++i;
    } else if (text[i] == '"') {
      return i;
    }
  }
  return std::string_view::npos;
}

std::size_t skip_space(std::string_view text, std::size_t i) {
  while (i < text.size() &&
         (text[i] == ' ' || text[i] == '\t' || text[i] == '\n' || text[i] == '\r')) {
    ++i;
  }
  return i;
}

// "key": "value" and "key": 123 pairs whose key is a secret one, in text that is not JSON.
void scan(std::string_view text, std::vector<std::string>& out) {
  for (std::size_t open = text.find('"'); open != std::string_view::npos;) {
    const std::size_t close = string_end(text, open);
    if (close == std::string_view::npos) return;
    std::size_t next = close + 1;
    std::size_t colon = skip_space(text, close + 1);
    if (colon < text.size() && text[colon] == ':' &&
        secret_key(std::string(text.substr(open + 1, close - open - 1)))) {
      const std::size_t value = skip_space(text, colon + 1);
      if (value < text.size() && text[value] == '"') {
        const std::size_t end = string_end(text, value);
        const std::size_t stop = end == std::string_view::npos ? text.size() : end;
        // The JSON escapes stay as written: the text is what an error would quote.
        out.emplace_back(text.substr(value + 1, stop - value - 1));
        next = stop + 1;
      } else if (value < text.size() &&
                 (text[value] == '-' || (text[value] >= '0' && text[value] <= '9'))) {
        std::size_t end = value + 1;
        while (end < text.size() &&
               std::string_view("0123456789.eE+-").find(text[end]) != std::string_view::npos) {
          ++end;
        }
        out.emplace_back(text.substr(value, end - value));
        next = end;
      }
    }
    open = next < text.size() ? text.find('"', next) : std::string_view::npos;
  }
}

}  // namespace

std::vector<std::string> secret_values_in_text(std::string_view text) {
  std::vector<std::string> out;
  std::string error;
  if (auto doc = parse_json_text(std::string(text), error)) {
    collect(*doc, out);
  } else {
    scan(text, out);
  }
  tidy(out);
  return out;
}

std::vector<std::string> secret_values(const json& doc) {
  std::vector<std::string> out;
  collect(doc, out);
  tidy(out);
  return out;
}

std::vector<std::string> secret_values(const Config& cfg) {
  std::vector<std::string> out;
  collect(effective_json(cfg), out);
  collect(cfg.raw, out);
  out.push_back(cfg.gateway.auth_token);
  tidy(out);
  return out;
}

}  // namespace drawbridge::config
