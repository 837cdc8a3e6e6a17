#include "channels/group_entry.h"

namespace drawbridge::channels {

std::optional<GroupEntry> parse_group_entry(const nlohmann::json& entry, const std::string& key,
                                            std::string& error,
                                            std::vector<std::string>& warnings) {
  if (!entry.is_object()) {
    error = key + ": expected an object";
    return std::nullopt;
  }
  GroupEntry group;
  for (const auto& [k, v] : entry.items()) {
    if (k == "requireMention") {
      if (!v.is_boolean()) {
        error = key + ".requireMention: expected true or false";
        return std::nullopt;
      }
      group.require_mention = v.get<bool>();
    } else {
      warnings.push_back(key + "." + k + ": not supported by drawbridge yet; ignored");
    }
  }
  return group;
}

}  // namespace drawbridge::channels
