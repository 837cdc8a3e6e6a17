#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace drawbridge::channels {

// One entry of OpenClaw's `groups` (an IRC channel, a Telegram group): `requireMention`
// (default true); its other keys are accepted with one warning each.
struct GroupEntry {
  bool require_mention = true;
};

// `key` names the entry in errors and warnings ("channels.irc.groups.#ops").
std::optional<GroupEntry> parse_group_entry(const nlohmann::json& entry, const std::string& key,
                                            std::string& error, std::vector<std::string>& warnings);

}  // namespace drawbridge::channels
