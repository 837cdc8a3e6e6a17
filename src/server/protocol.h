#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace drawbridge::server {

inline constexpr int kProtocolVersion = 4;

namespace scope {
inline constexpr std::string_view read = "operator.read";
inline constexpr std::string_view write = "operator.write";
inline constexpr std::string_view admin = "operator.admin";
inline constexpr std::string_view pairing = "operator.pairing";
}  // namespace scope

// The top-level codes OpenClaw's gateway uses; the precise reason goes in details.code.
namespace error_code {
inline constexpr std::string_view invalid_request = "INVALID_REQUEST";
inline constexpr std::string_view forbidden = "FORBIDDEN";
inline constexpr std::string_view unavailable = "UNAVAILABLE";
// HTTP-only (REST bodies of the local channel); never sent on the WebSocket.
inline constexpr std::string_view unauthorized = "UNAUTHORIZED";
inline constexpr std::string_view not_found = "NOT_FOUND";
}  // namespace error_code

// Sizes of client-chosen identifiers; a message's text is bounded by
// gateway.limits.maxMessageBytes.
inline constexpr std::size_t kMaxSessionKey = 512;
inline constexpr std::size_t kMaxIdempotencyKey = 256;
inline constexpr std::size_t kMaxSender = 256;

// The first size a message breaks, named with `where` ("params.sessionKey: longer than 512
// bytes"), or nullopt.
std::optional<std::string> check_sizes(std::string_view session_key,
                                       std::string_view idempotency_key, std::string_view sender,
                                       std::string_view message, std::size_t max_message_bytes,
                                       std::string_view where);

struct RpcError {
  std::string code;
  std::string message;
  nlohmann::json details;  // null: omitted
  std::optional<bool> retryable;
  std::optional<std::int64_t> retry_after_ms;

  nlohmann::json to_json() const;
};

std::string make_response(const std::string& id, const nlohmann::json& payload);
std::string make_error_response(const std::string& id, const RpcError& error);
std::string make_event(std::string_view event, const nlohmann::json& payload,
                       std::optional<std::uint64_t> seq,
                       const nlohmann::json& state_version = nullptr);
// The same with the payload already serialized (one dump for many connections).
std::string make_event_from_dump(std::string_view event, const std::string& payload_json,
                                 std::optional<std::uint64_t> seq,
                                 const nlohmann::json& state_version = nullptr);

// A method's params, checked field by field; errors name the field ("params.sessionKey:
// expected a non-empty string"). `where` prefixes the names, so a nested object reports
// "params.restartIntent.waitMs".
class Params {
 public:
  explicit Params(const nlohmann::json& params, std::string where = "params")
      : p_(params), where_(std::move(where)) {}
  bool is_object() const { return p_.is_object(); }
  std::optional<std::string> string(const char* key, bool required, bool non_empty,
                                    std::string& error) const;
  std::optional<std::int64_t> integer(const char* key, std::int64_t min, std::int64_t max,
                                      std::string& error) const;
  std::optional<bool> boolean(const char* key, std::string& error) const;

 private:
  std::string name(const char* key) const { return where_ + "." + key; }

  const nlohmann::json& p_;
  std::string where_;
};

}  // namespace drawbridge::server
