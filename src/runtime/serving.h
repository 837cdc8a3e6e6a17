#pragma once

#include <optional>
#include <string>
#include <vector>

#include "config/config.h"
#include "runtime/listen_fds.h"
#include "server/server.h"

namespace drawbridge::runtime {

// How the gateway serves: the server's options from the config, the listening socket (one
// inherited from a predecessor or systemd, else bound anew) and the URL agent commands call
// back on.
server::ServerOptions server_options(const config::Config& cfg, const std::string& token);

struct Listening {
  bool inherited = false;  // serving a socket passed in (LISTEN_FDS)
  std::optional<std::string> error;
};
// Serves the first of `inherited` when it fits the config (a predecessor's socket on another
// address is closed and the configured one bound; systemd's is served whatever the config
// says), else binds the configured address.
Listening open_listening_socket(server::Server& server, std::vector<InheritedSocket> inherited,
                                const config::Config& cfg);

// The Control UI's settings from `cfg` for the next request (a reload or a new generation);
// logs what changed, and warns when the folder has no index.html.
void apply_control_ui(server::Server& server, const config::Config& cfg);
// The start's log line about the Control UI (nothing when it is not configured).
void log_control_ui(const std::string& root);

// DRAWBRIDGE_GATEWAY_URL for agent commands (`drawbridge restart --url ...`).
void export_gateway_url(const config::Config& cfg, int port);

}  // namespace drawbridge::runtime
