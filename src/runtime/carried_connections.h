#pragma once

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace drawbridge::runtime {

// A channel's connection handed from a process to its successor (a re-exec or an update):
// docs/DECISIONS.md "An IRC connection outlives a restart". The fd travels as the successor's
// fd kFirstCarriedFd + i (runtime/successor.h), the rest in the DRAWBRIDGE_CARRIED variable.
struct CarriedConnection {
  std::string channel;  // "irc" or "irc:<account>"
  std::string digest;   // settings_digest() of the account it was built from
  int fd = -1;
  nlohmann::json state;  // the channel's own (IrcChannel::release)
};

inline constexpr const char* kCarriedVariable = "DRAWBRIDGE_CARRIED";
// What `drawbridge capabilities` prints when the binary takes carried connections over.
inline constexpr const char* kCarriedCapability = "carried-connections 1";

// Whether the drawbridge at `binary` takes carried connections over (an update's new binary
// may be an older one, which would leave them open and unanswered): runs `binary
// capabilities` (at most `timeout`) and looks for kCarriedCapability.
bool takes_carried_connections(const std::string& binary,
                               std::chrono::milliseconds timeout = std::chrono::seconds(2));

// SHA-256 (hex) of an account's settings as the config has them: a successor takes a
// connection over only when its own config builds that account from the very same settings.
std::string settings_digest(const nlohmann::json& raw);

// The variable's value for `conns`, whose fds become first_fd, first_fd + 1, ... in the child.
std::string encode_carried(const std::vector<CarriedConnection>& conns, int first_fd);

// Parses the variable (untrusted: bounded, each field checked; a bad entry is skipped with
// `warnings`). Only fds in [first_fd, first_fd + max_count) are accepted, each once.
std::vector<CarriedConnection> decode_carried(const std::string& text, int first_fd,
                                              std::size_t max_count,
                                              std::vector<std::string>& warnings);

// The successor's side: reads and unsets the variable; only a process started by a
// predecessor's hand-off takes anything. Each fd taken gets FD_CLOEXEC. Call once, early, before
// any thread starts (unsetenv).
std::vector<CarriedConnection> take_carried_connections();

}  // namespace drawbridge::runtime
