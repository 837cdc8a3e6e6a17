#include "runtime/log_redaction.h"

#include <algorithm>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

namespace drawbridge::runtime {

std::string redact_secrets(std::string_view text, const std::vector<std::string>& secrets) {
  std::string out(text);
  for (const auto& secret : secrets) {
    if (secret.empty()) continue;
    for (std::size_t at = out.find(secret); at != std::string::npos;
         at = out.find(secret, at + kRedactedMark.size())) {
      out.replace(at, secret.size(), kRedactedMark);
    }
  }
  return out;
}

std::vector<std::string> redactable(std::vector<std::string> secrets) {
  std::vector<std::string> out;
  for (auto& s : secrets) {
    if (s.size() < kMinRedactedLength) continue;
    const std::string quoted =
        nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    std::string escaped = quoted.substr(1, quoted.size() - 2);
    if (escaped != s) out.push_back(std::move(escaped));
    out.push_back(std::move(s));
  }
  std::sort(out.begin(), out.end(), [](const std::string& a, const std::string& b) {
    return a.size() != b.size() ? a.size() > b.size() : a < b;
  });
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

RedactingSink::RedactingSink(std::vector<spdlog::sink_ptr> sinks)
    : spdlog::sinks::dist_sink<std::mutex>(std::move(sinks)) {}

void RedactingSink::set_secrets(std::vector<std::string> secrets) {
  auto next = redactable(std::move(secrets));
  std::lock_guard lock(mutex_);
  secrets_ = std::move(next);
}

void RedactingSink::sink_it_(const spdlog::details::log_msg& msg) {
  // Called under mutex_ (base_sink::log), like set_secrets.
  const std::string_view payload(msg.payload.data(), msg.payload.size());
  bool found = false;
  for (const auto& s : secrets_) {
    if (payload.find(s) != std::string_view::npos) {
      found = true;
      break;
    }
  }
  if (!found) return dist_sink::sink_it_(msg);
  const std::string clean = redact_secrets(payload, secrets_);
  spdlog::details::log_msg copy(msg);
  copy.payload = spdlog::string_view_t(clean.data(), clean.size());
  dist_sink::sink_it_(copy);
}

std::shared_ptr<RedactingSink> installed_redacting_sink() {
  auto logger = spdlog::default_logger();
  if (!logger) return nullptr;
  for (const auto& s : logger->sinks()) {
    if (auto r = std::dynamic_pointer_cast<RedactingSink>(s)) return r;
  }
  return nullptr;
}

std::shared_ptr<RedactingSink> install_redacting_sink() {
  if (auto existing = installed_redacting_sink()) return existing;
  auto logger = spdlog::default_logger();
  auto& sinks = logger->sinks();
  auto redacting = std::make_shared<RedactingSink>(sinks);
  // Its children keep their own formatters; the logger's level decides what reaches it.
  redacting->set_level(spdlog::level::trace);
  sinks.assign({redacting});
  return redacting;
}

}  // namespace drawbridge::runtime
