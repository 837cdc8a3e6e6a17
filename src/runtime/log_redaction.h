#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <spdlog/sinks/dist_sink.h>

namespace drawbridge::runtime {

// What replaces a secret in a log line.
inline constexpr std::string_view kRedactedMark = "***";
// Shorter secrets are not redacted: "abc" would mangle every line that happens to contain it.
// The gateway warns about them instead (a token that short is weak anyway).
inline constexpr std::size_t kMinRedactedLength = 4;

// `text` with every occurrence of every secret replaced by kRedactedMark. The longest secret
// goes first, so a secret that contains another is hidden whole.
std::string redact_secrets(std::string_view text, const std::vector<std::string>& secrets);

// The secrets a RedactingSink will hide: those of kMinRedactedLength or more, longest first,
// with their JSON-escaped spelling when it differs (a secret inside a dumped JSON document).
std::vector<std::string> redactable(std::vector<std::string> secrets);

// A sink in front of every sink of the logger (the terminal, the ring buffer whose lines go
// into the watchdog's diagnostic bundle, any file): the message reaches them with the secrets
// replaced. The secrets change with the config (set_secrets) and are read under the sink's
// lock, so a line is redacted with one set, whole.
class RedactingSink final : public spdlog::sinks::dist_sink<std::mutex> {
 public:
  explicit RedactingSink(std::vector<spdlog::sink_ptr> sinks = {});
  // Replaces the secrets; those too short are dropped (see kMinRedactedLength).
  void set_secrets(std::vector<std::string> secrets);

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override;

 private:
  std::vector<std::string> secrets_;  // redactable(), longest first
};

// Puts a RedactingSink in front of the default logger's sinks (once) and returns it.
std::shared_ptr<RedactingSink> install_redacting_sink();
// The one install_redacting_sink() put on the default logger, or nullptr.
std::shared_ptr<RedactingSink> installed_redacting_sink();

}  // namespace drawbridge::runtime
