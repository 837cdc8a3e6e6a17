#pragma once

// `drawbridge channels status|probe`: how each channel's link is doing, from the running
// gateway (`status`), or tested once from here without a gateway (`probe ID`).

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/gateway_address.h"

namespace CLI {
class App;
}

namespace drawbridge::cli {

// Exit code of `channels status` when the gateway cannot be asked (refused, timed out, the
// token refused): distinct from 1, "a channel is not connected", so that a script can tell them
// apart.
inline constexpr int kGatewayUnreachable = 2;

// "3 s ago", "5 min ago", "2 h ago", "3 d ago" for an age in milliseconds (negative, from a
// clock that went back: "0 s ago").
std::string describe_age(std::int64_t ms);

// One line of `channels status` for an entry of status.channels: id, state, agent, detail and
// the last error with its age at `now_ms`.
std::string describe_channel(const nlohmann::json& channel, std::int64_t now_ms);

// True when the entry's link is connected (an older gateway without `state`: when ready).
bool channel_connected(const nlohmann::json& channel);

// The `channels` command and its subcommands, bound to the CLI11 app; like ConfigCommands it
// must stay where it is until run().
class ChannelsCommands {
 public:
  ChannelsCommands(CLI::App& app, const std::function<void(CLI::App*)>& add_target);
  ChannelsCommands(const ChannelsCommands&) = delete;
  ChannelsCommands& operator=(const ChannelsCommands&) = delete;

  bool selected() const;

  // Runs the chosen subcommand and returns the exit code. `config_path` is the resolved
  // --config file (empty: none); `resolve_target` is called only by `status`.
  int run(const std::string& config_path,
          const std::function<GatewayAddress()>& resolve_target) const;

 private:
  int status(const GatewayAddress& target) const;
  int probe(const std::string& config_path) const;

  CLI::App* channels_ = nullptr;
  CLI::App* status_ = nullptr;
  CLI::App* probe_ = nullptr;
  std::string id_;
  int timeout_s_ = 10;
  bool json_ = false;
};

}  // namespace drawbridge::cli
