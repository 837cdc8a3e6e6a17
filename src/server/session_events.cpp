// Server: the `sessions.changed` events of OpenClaw's session list and session views.

#include <spdlog/spdlog.h>

#include "server/server.h"
#include "server/ws_connection.h"

namespace drawbridge::server {

void Server::watch_messages(std::uint64_t conn_id, const std::string& session_key, bool on) {
  if (!on) return watchers_.unwatch_messages(conn_id, session_key);
  if (!watchers_.watch_messages(conn_id, session_key)) {
    spdlog::warn("conn {}: watches {} sessions already; {} is not added", conn_id,
                 SessionWatchers::kMaxKeysPerConnection, session_key);
  }
}

void Server::notify_session_watchers(const pipeline::ChatEvent& ev) {
  using State = pipeline::ChatEvent::State;
  // A run ended (its last part, an error, an abort): the session has a new entry.
  if (ev.state == State::delta || (ev.state == State::final && !ev.final_part)) return;
  const auto& list = watchers_.list_watchers();
  const auto* own = watchers_.message_watchers(ev.session_key);
  if (list.empty() && own == nullptr) return;
  nlohmann::json payload = {
      {"sessionKey", ev.session_key}, {"phase", "message"}, {"ts", ev.ts_ms}, {"runId", ev.run_id}};
  const std::string dump = payload.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  auto send = [&](std::uint64_t id) {
    if (auto c = connections_.find(id); c != connections_.end()) {
      c->second->send_event_dump("sessions.changed", dump);
    }
  };
  for (auto id : list) send(id);
  if (own == nullptr) return;
  for (auto id : *own) {
    if (list.count(id) == 0) send(id);
  }
}

}  // namespace drawbridge::server
