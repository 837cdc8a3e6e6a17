#include "runtime/gateway_drain_target.h"

#include <boost/beast/websocket/rfc6455.hpp>
#include <spdlog/spdlog.h>

#include "pipeline/pipeline.h"
#include "runtime/generation.h"
#include "runtime/sd_notifier.h"
#include "runtime/startup.h"
#include "server/server.h"
#include "store/store.h"

namespace drawbridge::runtime {

std::size_t GatewayDrainTarget::flush_debouncers() { return p_.pipeline.flush_debouncers(); }

std::size_t GatewayDrainTarget::waiting_count() { return p_.pipeline.waiting_count(); }

void GatewayDrainTarget::set_draining() { p_.pipeline.set_draining(true); }

std::vector<pipeline::ActiveChat> GatewayDrainTarget::active_chats() {
  return p_.pipeline.active_chats();
}

void GatewayDrainTarget::when_turns_idle(std::function<void()> fn) {
  p_.pipeline.work().when_idle(std::move(fn));
}

std::vector<core::DrainBlocker> GatewayDrainTarget::blockers() {
  std::vector<core::DrainBlocker> out;
  const auto now = p_.clock.now();
  for (const auto& e : p_.pipeline.work().list()) {
    if (e.exempt) continue;
    std::int64_t elapsed = 0;
    if (e.info.started != core::TimePoint{} && now > e.info.started) {
      elapsed = std::chrono::duration_cast<core::Duration>(now - e.info.started).count();
    }
    out.push_back({e.info.task_id.empty() ? "w" + std::to_string(e.id) : e.info.task_id,
                   e.info.run_id, e.info.session, e.info.status, e.info.label, elapsed});
  }
  return out;
}

std::size_t GatewayDrainTarget::interrupt_all(const std::string& why) {
  return p_.pipeline.interrupt_all(why);
}

std::vector<pipeline::ActiveChat> GatewayDrainTarget::abort_for_drain(const std::string& why) {
  return p_.pipeline.abort_for_drain(why);
}

std::size_t GatewayDrainTarget::finish_detached() { return p_.pipeline.finish_detached(); }

std::size_t GatewayDrainTarget::pending_deliveries() { return p_.pipeline.pending_deliveries(); }

void GatewayDrainTarget::when_deliveries_idle(std::function<void()> fn) {
  p_.pipeline.when_deliveries_idle(std::move(fn));
}

void GatewayDrainTarget::stop_channels(bool keep_connections, std::function<void()> done) {
  p_.generation.stop_channels(keep_connections, std::move(done));
}

void GatewayDrainTarget::close_server(bool stopping, bool next_process,
                                      std::function<void()> done) {
  if (stopping) {
    // OpenClaw closes with 1012 on every shutdown; only restartExpectedMs tells a restart.
    p_.server.close("gateway stopping", std::nullopt,
                    boost::beast::websocket::close_code::service_restart, "service restart",
                    std::move(done));
    return;
  }
  // Connections that arrive from now on wait in the socket's backlog for whoever serves next
  // instead of being refused meanwhile: the next generation of this process (it resumes
  // accepting when it is ready, or failed), or the next process (a hand-off, or systemd
  // holding the socket).
  (void)next_process;
  p_.server.pause_accepting();
  p_.server.disconnect_all("gateway restarting", kRestartExpectedMs,
                           boost::beast::websocket::close_code::service_restart,
                           "service restart", std::move(done));
}

void GatewayDrainTarget::write_clean_marker() {
  try {
    p_.pipeline.flush_and_wait();
    std::vector<pipeline::StoreOp> ops;
    if (p_.fence && *p_.fence) ops.push_back(*p_.fence);
    ops.push_back([now = p_.clock.wall_ms(), key = p_.pipeline.clean_marker_key()](
                      store::Store& s) { s.set_value(key, std::to_string(now)); });
    if (auto error = pipeline::run_batch(p_.writer, ops); !error.empty()) {
      spdlog::error("the clean-shutdown marker is not written: {}", error);
    }
  } catch (const std::exception& e) {
    spdlog::error("cannot write the clean-shutdown marker: {}", e.what());
  }
}

void GatewayDrainTarget::flush_writes() { p_.pipeline.flush_and_wait(); }

// Best effort: a failed send is logged, never waited for.
void GatewayDrainTarget::send_notice(const pipeline::ActiveChat& chat, core::DrainNotice kind) {
  const auto& cfg = p_.cfg();
  // "telegram:<account>" has the settings of "telegram".
  const auto ch = cfg.channels.find(chat.channel.substr(0, chat.channel.find(':')));
  if (ch == cfg.channels.end() || !ch->second.notices.enabled) return;
  const auto& n = ch->second.notices;
  const std::string& text = kind == core::DrainNotice::shutting_down ? n.stopping
                            : kind == core::DrainNotice::interrupted ? n.interrupted
                                                                     : n.restarting;
  spdlog::info("notice to {}/{}: {}", chat.channel, chat.chat_id, text);
  p_.pipeline.send_notice(chat, text, [chat](const std::string& error) {
    if (!error.empty()) {
      spdlog::warn("notice to {}/{} not sent: {}", chat.channel, chat.chat_id, error);
    }
  });
}

void GatewayDrainTarget::drain_slow(core::Duration waited, const std::string& blockers_text) {
  // A drain that legitimately runs long tells systemd, so its stop timeout does not fire first
  // (the watchdog still bounds us).
  p_.notifier.extend_timeout(std::chrono::seconds(60));
  p_.notifier.status("draining for " + std::to_string(waited.count() / 1000) + " s: " +
                     blockers_text);
}

}  // namespace drawbridge::runtime
