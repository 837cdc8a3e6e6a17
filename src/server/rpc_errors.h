#pragma once

#include <spdlog/spdlog.h>

#include <exception>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "server/protocol.h"

namespace drawbridge::server {

// The errors every method group answers with, in one shape.
inline RpcError invalid(std::string message) {
  return RpcError{std::string(error_code::invalid_request), std::move(message), nullptr, {}, {}};
}

inline RpcError store_unavailable(const std::exception& e) {
  spdlog::error("store error: {}", e.what());
  return RpcError{std::string(error_code::unavailable),
                  std::string("the message store cannot commit right now: ") + e.what(),
                  nlohmann::json{{"reason", "store-unavailable"}}, true, 1000};
}

inline RpcError control_failed(std::string_view what, const std::exception& e) {
  spdlog::error("{} failed: {}", what, e.what());
  return RpcError{std::string(error_code::unavailable), std::string(what) + " failed: " + e.what(),
                  nullptr, true, 1000};
}

}  // namespace drawbridge::server
