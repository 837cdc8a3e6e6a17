#include "runtime/auth_token.h"

#include <set>

#include <spdlog/spdlog.h>

#include "config/secrets.h"
#include "runtime/gateway.h"
#include "runtime/startup.h"

namespace drawbridge::runtime {

void AuthToken::hide_secrets(const config::Config& running,
                             const std::vector<std::string>& file_secrets) {
  if (!redactor_) return;
  std::vector<std::string> secrets = config::secret_values(running);
  secrets.insert(secrets.end(), file_secrets.begin(), file_secrets.end());
  secrets.push_back(token_);
  std::set<std::string> too_short;
  for (const auto& s : secrets) {
    // A token that short gets the weak-token warning instead.
    if (!s.empty() && s.size() < kMinRedactedLength && s != token_) too_short.insert(s);
  }
  redactor_->set_secrets(std::move(secrets));
  if (!too_short.empty() && too_short.size() != short_secrets_warned_) {
    spdlog::warn("{} secret value(s) of the config are shorter than {} characters: the log "
                 "does not hide them (it would mangle every line); use longer ones",
                 too_short.size(), kMinRedactedLength);
  }
  short_secrets_warned_ = too_short.size();
}

void AuthToken::resolve(const config::Config& next, const config::Config& running,
                        const std::vector<std::string>& file_secrets) {
  bool generated = false;
  token_ = resolve_token(next, data_dir_, generated);
  hide_secrets(running, file_secrets);
  if (generated) announce_generated_token(token_, token_file_path(data_dir_));
  warn_if_weak(token_, generated);
}

}  // namespace drawbridge::runtime
