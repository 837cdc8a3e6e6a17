#include "runtime/serving.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include <spdlog/spdlog.h>

#include "runtime/gateway.h"
#include "runtime/successor.h"

namespace drawbridge::runtime {

server::ServerOptions server_options(const config::Config& cfg, const std::string& token) {
  server::ServerOptions so;
  so.bind_address = bind_address(cfg.gateway.bind);
  so.port = cfg.gateway.port;
  so.token = token;
  so.version = DRAWBRIDGE_VERSION;
  so.local_channel = "local";
  const auto& limits = cfg.gateway.limits;
  so.max_connections = static_cast<std::size_t>(limits.max_connections);
  so.max_connections_per_peer = static_cast<std::size_t>(limits.max_connections_per_peer);
  so.max_message_bytes = static_cast<std::size_t>(limits.max_message_bytes);
  so.max_history_bytes = static_cast<std::size_t>(limits.max_history_bytes);
  so.allowed_origins = cfg.gateway.allowed_origins;
  so.allowed_hosts = cfg.gateway.allowed_hosts;
  so.control_ui_root = cfg.gateway.control_ui_root;
  so.control_ui_assistant_name = cfg.gateway.control_ui_assistant_name;
  // A testing knob: conformance tests need a tick sooner than OpenClaw's 30 s.
  if (const char* t = std::getenv("DRAWBRIDGE_TICK_INTERVAL_MS")) {
    so.tick_interval_ms = std::clamp(std::atoi(t), 100, 3'600'000);
  }
  return so;
}

Listening open_listening_socket(server::Server& server, std::vector<InheritedSocket> inherited,
                                const config::Config& cfg) {
  const std::string want = bind_address(cfg.gateway.bind);
  if (!inherited.empty()) {
    // The predecessor's socket serves the address it was configured with; when the config now
    // asks for another one, that is what this process binds (the predecessor closes the old
    // one when it exits). A socket from systemd is the socket unit's to choose: served
    // whatever the config says.
    const auto have = local_address(inherited[0].fd);
    if (have && !same_listen_address(have->first, have->second, want, cfg.gateway.port)) {
      if (started_by_predecessor()) {
        spdlog::info("the inherited socket listens on {}:{}, the config asks for {}:{}: "
                     "binding the new address (the old one closes)",
                     have->first, have->second, want, cfg.gateway.port);
        for (const auto& s : inherited) ::close(s.fd);
        inherited.clear();
      } else {
        spdlog::warn("the inherited socket (socket activation) listens on {}:{}, the config "
                     "asks for {}:{}: serving the inherited one (change the socket unit)",
                     have->first, have->second, want, cfg.gateway.port);
      }
    }
  }
  if (!inherited.empty()) {
    // A predecessor's hand-off (re-exec, update) or systemd socket activation.
    for (std::size_t i = 1; i < inherited.size(); ++i) {
      spdlog::warn("ignoring inherited socket fd {} ({}): one listening socket is served",
                   inherited[i].fd, inherited[i].name);
      ::close(inherited[i].fd);
    }
    if (auto err = server.adopt(inherited[0].fd)) {
      spdlog::error("cannot serve the inherited socket ({}); binding {}:{} instead", *err, want,
                    cfg.gateway.port);
    } else {
      spdlog::info("serving on an inherited listening socket (fd {}, name \"{}\")",
                   inherited[0].fd, inherited[0].name);
      return {true, std::nullopt};
    }
  }
  return {false, server.listen()};
}

void apply_control_ui(server::Server& server, const config::Config& cfg) {
  const auto& root = cfg.gateway.control_ui_root;
  const bool moved = root != server.options().control_ui_root;
  server.set_control_ui(root, cfg.gateway.control_ui_assistant_name);
  if (!moved) return;
  if (root.empty()) {
    spdlog::info("gateway.controlUi.root removed: the Control UI is no longer served");
  } else {
    log_control_ui(root);
  }
}

void log_control_ui(const std::string& root) {
  if (root.empty()) return;
  std::error_code ec;
  if (!std::filesystem::is_regular_file(std::filesystem::path(root) / "index.html", ec)) {
    spdlog::warn("gateway.controlUi.root: no index.html in {}; the Control UI answers 503 until "
                 "its files are there (scripts/install-control-ui.sh installs them)",
                 root);
    return;
  }
  spdlog::info("Control UI served from {}", root);
}

void export_gateway_url(const config::Config& cfg, int port) {
  std::string host = bind_address(cfg.gateway.bind);
  if (host == "0.0.0.0") host = "127.0.0.1";
  if (host.find(':') != std::string::npos) host = "[" + host + "]";
  const std::string url = "ws://" + host + ":" + std::to_string(port);
  ::setenv("DRAWBRIDGE_GATEWAY_URL", url.c_str(), 1);
}

}  // namespace drawbridge::runtime
