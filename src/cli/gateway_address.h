#pragma once

// The running gateway as the client commands find it, and the requests several commands share.

#include <nlohmann/json.hpp>
#include <string>

namespace drawbridge::cli {

// Where the running gateway is and how to authenticate (resolve_target in main.cpp).
struct GatewayAddress {
  std::string host;
  int port = 0;
  std::string token;
};

// The gateway's `status` answer, through a fresh connection with the operator.read scope.
// Throws server::ClientError when the gateway cannot be reached or refuses.
nlohmann::json request_status(const GatewayAddress& target);

}  // namespace drawbridge::cli
