#include "runtime/channel_accounts.h"

namespace drawbridge::runtime {

std::optional<std::vector<ChannelAccount>> channel_accounts(const std::string& kind,
                                                            const nlohmann::json& raw,
                                                            std::string& error) {
  const std::string at = "channels." + kind + ".";
  std::vector<ChannelAccount> out;
  if (!raw.is_object()) {
    error = "channels." + kind + ": expected an object";
    return std::nullopt;
  }
  const auto accounts = raw.find("accounts");
  if (accounts == raw.end() || (accounts->is_object() && accounts->empty())) {
    nlohmann::json base = raw;
    base.erase("accounts");
    base.erase("defaultAccount");
    out.push_back({"", kind, std::move(base)});
    return out;
  }
  if (!accounts->is_object()) {
    error = at + "accounts: expected an object keyed by account id";
    return std::nullopt;
  }
  std::string def;
  if (auto d = raw.find("defaultAccount"); d != raw.end()) {
    if (!d->is_string() || !accounts->contains(d->get<std::string>())) {
      error = at + "defaultAccount: expected the id of one of accounts";
      return std::nullopt;
    }
    def = d->get<std::string>();
  } else {
    def = accounts->contains("default") ? "default" : accounts->begin().key();
  }
  nlohmann::json base = raw;
  base.erase("accounts");
  base.erase("defaultAccount");
  for (const auto& [name, a] : accounts->items()) {
    const bool ok_name =
        !name.empty() && name.size() <= 64 &&
        name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_-") == std::string::npos;
    if (!ok_name) {
      error = at + "accounts: \"" + name.substr(0, 64) +
              "\" is not an account id (lower-case letters, digits, _ and -)";
      return std::nullopt;
    }
    if (!a.is_object()) {
      error = at + "accounts." + name + ": expected an object";
      return std::nullopt;
    }
    if (a.contains("accounts") || a.contains("defaultAccount")) {
      error = at + "accounts." + name + ": an account cannot have accounts of its own";
      return std::nullopt;
    }
    if (a.contains("enabled") && a["enabled"].is_boolean() && !a["enabled"].get<bool>()) continue;
    nlohmann::json merged = base;
    for (const auto& [k, v] : a.items()) merged[k] = v;
    out.push_back({name, name == def ? kind : kind + ":" + name, std::move(merged)});
  }
  return out;
}

}  // namespace drawbridge::runtime
