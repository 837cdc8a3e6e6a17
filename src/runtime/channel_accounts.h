#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace drawbridge::runtime {

// One account of a channel kind that has several (channels.telegram, channels.irc): a bot or
// a connection of its own, with its own channel id and keys.
struct ChannelAccount {
  std::string name;        // the key under accounts, "" without accounts
  std::string channel_id;  // "<kind>" (the default account) or "<kind>:<name>"
  nlohmann::json raw;      // the top-level keys overlaid by the account's
};

// channels.<kind>'s accounts in OpenClaw's shape: the channel itself when it has no
// `accounts`, else one per enabled account, its keys laid over the top-level ones. The
// default account (defaultAccount, else "default", else the first by name) runs as "<kind>",
// the others as "<kind>:<name>". An account id is 1..64 of [a-z0-9_-]. nullopt and `error`
// for a shape that cannot be read.
std::optional<std::vector<ChannelAccount>> channel_accounts(const std::string& kind,
                                                            const nlohmann::json& raw,
                                                            std::string& error);

}  // namespace drawbridge::runtime
