#include "server/protocol.h"

#include <limits>

namespace drawbridge::server {

std::optional<std::string> check_sizes(std::string_view session_key,
                                       std::string_view idempotency_key, std::string_view sender,
                                       std::string_view message, std::size_t max_message_bytes,
                                       std::string_view where) {
  auto over = [&](std::string_view field, std::size_t size, std::size_t max,
                  std::string_view setting) {
    std::string out = std::string(where) + "." + std::string(field) + ": " +
                      std::to_string(size) + " bytes, more than " + std::to_string(max);
    if (!setting.empty()) out += " (" + std::string(setting) + ")";
    return out;
  };
  if (session_key.size() > kMaxSessionKey) {
    return over("sessionKey", session_key.size(), kMaxSessionKey, "");
  }
  if (idempotency_key.size() > kMaxIdempotencyKey) {
    return over("idempotencyKey", idempotency_key.size(), kMaxIdempotencyKey, "");
  }
  if (sender.size() > kMaxSender) return over("sender", sender.size(), kMaxSender, "");
  if (message.size() > max_message_bytes) {
    return over("message", message.size(), max_message_bytes, "gateway.limits.maxMessageBytes");
  }
  return std::nullopt;
}

nlohmann::json RpcError::to_json() const {
  nlohmann::json e = {{"code", code}, {"message", message}};
  if (!details.is_null()) e["details"] = details;
  if (retryable) e["retryable"] = *retryable;
  if (retry_after_ms) e["retryAfterMs"] = *retry_after_ms;
  return e;
}

namespace {
std::string dump(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}
}  // namespace

// Frames are assembled around the payload's own dump: no deep copy of the payload into a
// frame object on the hot path.
std::string make_response(const std::string& id, const nlohmann::json& payload) {
  return R"({"type":"res","id":)" + dump(id) + R"(,"ok":true,"payload":)" + dump(payload) + "}";
}

std::string make_error_response(const std::string& id, const RpcError& error) {
  nlohmann::json f = {{"type", "res"}, {"id", id}, {"ok", false}, {"error", error.to_json()}};
  return f.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string make_event(std::string_view event, const nlohmann::json& payload,
                       std::optional<std::uint64_t> seq, const nlohmann::json& state_version) {
  return make_event_from_dump(event, dump(payload), seq, state_version);
}

std::string make_event_from_dump(std::string_view event, const std::string& payload_json,
                                 std::optional<std::uint64_t> seq,
                                 const nlohmann::json& state_version) {
  std::string f = R"({"type":"event","event":)" + dump(std::string(event)) + R"(,"payload":)";
  f += payload_json;
  if (seq) f += R"(,"seq":)" + std::to_string(*seq);
  if (!state_version.is_null()) f += R"(,"stateVersion":)" + dump(state_version);
  f += '}';
  return f;
}

namespace {
std::string type_name(const nlohmann::json& v) {
  if (v.is_string()) return "a string";
  if (v.is_boolean()) return "a boolean";
  if (v.is_number_integer() || v.is_number_unsigned()) return "an integer";
  if (v.is_number()) return "a number";
  if (v.is_array()) return "an array";
  if (v.is_object()) return "an object";
  return "null";
}
}  // namespace

std::optional<std::string> Params::string(const char* key, bool required, bool non_empty,
                                          std::string& error) const {
  if (!p_.is_object() || !p_.contains(key) || p_[key].is_null()) {
    if (required) error = name(key) + ": required";
    return std::nullopt;
  }
  const auto& v = p_[key];
  if (!v.is_string() || (non_empty && v.get_ref<const std::string&>().empty())) {
    error = name(key) + ": expected a " + (non_empty ? "non-empty " : "") + "string, got " +
            (v.is_string() ? "\"\"" : type_name(v));
    return std::nullopt;
  }
  return v.get<std::string>();
}

std::optional<std::int64_t> Params::integer(const char* key, std::int64_t min, std::int64_t max,
                                            std::string& error) const {
  if (!p_.is_object() || !p_.contains(key) || p_[key].is_null()) return std::nullopt;
  const auto& v = p_[key];
  constexpr auto highest = std::numeric_limits<std::int64_t>::max();
  // An unsigned value above the int64 range would wrap to a negative one.
  const bool fits = v.is_number_integer() &&
                    (!v.is_number_unsigned() || v.get<std::uint64_t>() <= std::uint64_t(highest));
  if (!fits || v.get<std::int64_t>() < min || v.get<std::int64_t>() > max) {
    const std::string expected =
        max != highest ? "an integer in " + std::to_string(min) + ".." + std::to_string(max)
        : min == 0     ? "a non-negative integer"
                       : "an integer >= " + std::to_string(min);
    error = name(key) + ": expected " + expected + ", got " + v.dump();
    return std::nullopt;
  }
  return v.get<std::int64_t>();
}

std::optional<bool> Params::boolean(const char* key, std::string& error) const {
  if (!p_.is_object() || !p_.contains(key) || p_[key].is_null()) return std::nullopt;
  const auto& v = p_[key];
  if (!v.is_boolean()) {
    error = name(key) + ": expected a boolean, got " + type_name(v);
    return std::nullopt;
  }
  return v.get<bool>();
}

}  // namespace drawbridge::server
