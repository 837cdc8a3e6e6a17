#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "runtime/log_redaction.h"

namespace drawbridge::runtime {

// The token clients present, and what the log hides: the token, every secret of the running
// config and those of the config file as last read (valid or not: an error about it might
// quote one).
class AuthToken {
 public:
  AuthToken(std::string token, std::string data_dir, std::shared_ptr<RedactingSink> redactor)
      : token_(std::move(token)), data_dir_(std::move(data_dir)), redactor_(std::move(redactor)) {}

  const std::string& value() const { return token_; }
  // Called whenever the running config's or the file's secrets change.
  void hide_secrets(const config::Config& running, const std::vector<std::string>& file_secrets);
  // The token `next` asks for (configured, kept in the data folder, or a new one announced on
  // the terminal); the log hides it from now on.
  void resolve(const config::Config& next, const config::Config& running,
               const std::vector<std::string>& file_secrets);

 private:
  std::string token_;
  std::string data_dir_;
  std::shared_ptr<RedactingSink> redactor_;
  std::size_t short_secrets_warned_ = 0;
};

}  // namespace drawbridge::runtime
