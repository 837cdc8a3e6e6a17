#include "cli/gateway_address.h"

#include "server/client.h"

namespace drawbridge::cli {

nlohmann::json request_status(const GatewayAddress& target) {
  server::GatewayClient client(target.host, target.port);
  client.connect(target.token, {"operator.read"});
  return client.request("status", nlohmann::json::object());
}

}  // namespace drawbridge::cli
