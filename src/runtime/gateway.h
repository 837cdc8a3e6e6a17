#pragma once

#include <optional>
#include <string>
#include <vector>

namespace drawbridge::runtime {

// Exit codes of shared/DESIGN.md.
namespace exit_code {
inline constexpr int ok = 0;
inline constexpr int crashed = 1;
inline constexpr int usage = 64;
inline constexpr int restart = 75;
inline constexpr int config_invalid = 78;
}  // namespace exit_code

struct RunOptions {
  std::string config_path;  // empty: defaults only
  std::optional<int> port;
  std::optional<std::string> bind;
  std::optional<std::string> data_dir;
  // The command line this process was started with: a re-exec starts its successor with it.
  std::vector<std::string> argv;
};

// Runs the gateway until it is stopped; returns the process exit code.
int run_gateway(const RunOptions& options);

// Where the generated token is kept, so the CLI on the same machine can find it.
std::string token_file_path(const std::string& data_dir);
// Resolves gateway.bind to an address to listen on ("loopback" -> 127.0.0.1, "lan" -> 0.0.0.0).
std::string bind_address(const std::string& bind);

}  // namespace drawbridge::runtime
