#include "runtime/generation_starter.h"

#include <spdlog/spdlog.h>

#include "pipeline/pipeline.h"
#include "runtime/config_reloader.h"
#include "runtime/gateway.h"
#include "runtime/gateway_lock.h"
#include "runtime/generation.h"
#include "runtime/restart_coordinator.h"
#include "runtime/sd_notifier.h"
#include "runtime/serving.h"
#include "runtime/startup.h"
#include "server/server.h"
#include "store/store.h"

namespace drawbridge::runtime {

core::ListenAddress configured_address(const config::Config& cfg) {
  return {bind_address(cfg.gateway.bind), cfg.gateway.port};
}

std::optional<std::string> GenerationStarter::wire() {
  const auto& cfg = p_.reloader.running();
  p_.pipeline.configure(pipeline_settings(cfg));
  return p_.generation.build(cfg);
}

void GenerationStarter::repair_if_unclean() {
  try {
    const auto key = p_.pipeline.clean_marker_key();
    clean_start_ = p_.writer.get_value(key).has_value();
    p_.writer.erase_value(key);
    if (auto* leases = p_.pipeline.session_leases()) {
      // A replica repairs the sessions it holds, not the others' (they may be mid-turn).
      const auto held = leases->held_sessions();
      if (held.empty()) return;
      auto repair = p_.writer.repair_sessions(
          held, clean_start_ ? std::vector<std::string>{} : held);
      if (!clean_start_ && (!repair.sessions.empty() || repair.removed_entries > 0)) {
        spdlog::warn("the last run of this replica did not shut down cleanly: {} of its "
                     "session(s) had unfinished messages; removed {} dangling transcript "
                     "entr(ies); their turns run again",
                     repair.sessions.size(), repair.removed_entries);
      }
      return;
    }
    if (!clean_start_) {
      auto repair = p_.writer.repair_interrupted();
      if (!repair.sessions.empty() || repair.removed_entries > 0) {
        spdlog::warn("the last run did not shut down cleanly: {} session(s) were mid-turn; "
                     "removed {} dangling transcript entr(ies); their turns run again (a session "
                     "interrupted 3 restarts in a row gets paused instead)",
                     repair.sessions.size(), repair.removed_entries);
      }
    }
  } catch (const std::exception& e) {
    spdlog::error("cannot check the clean-shutdown marker: {}", e.what());
  }
}

void GenerationStarter::start_io() {
  ++generation_;
  clean_start_ = false;
  repair_if_unclean();
  p_.pipeline.start();
  p_.generation.start_channels();
  p_.lifecycle.generation_started(configured_address(p_.reloader.running()),
                                  p_.reloader.applied_hash());
}

// What ran before goes back: a failed start must leave the running config, its hash and the
// listening address describing the same thing (the retry applies the config that failed).
void GenerationStarter::fail(std::optional<config::Config>& previous, const std::string& why) {
  if (previous) {
    const bool token_back =
        previous->gateway.auth_token != p_.reloader.running().gateway.auth_token;
    p_.reloader.swap_running(std::move(*previous));
    if (token_back) p_.token_changed(p_.reloader.running());
    apply_control_ui(p_.server, p_.reloader.running());
  }
  p_.lifecycle.generation_failed();
  last_error_ = why;
  // No generation serves: a connection the last one left running is closed.
  p_.generation.stop_carried(nullptr);
  if (p_.lock) {
    p_.lock->release();
    p_.lock.reset();
  }
  p_.restarts.generation_finished();
  p_.server.resume_accepting();  // status and health answer while failed
  spdlog::critical("generation {} failed to start: {}", generation_ + 1, why);
  p_.notifier.ready("failed: " + why);
  spdlog::critical("the process stays alive without serving chats and has released the "
                   "gateway lock; fix the cause, then `drawbridge restart` (or SIGUSR1) to try "
                   "again, or stop it");
}

// The drain finished, the old channels are stopped and the server's clients are gone.
void GenerationStarter::start_next() {
  const auto t0 = p_.clock.now();
  if (p_.lifecycle.stop_pending()) {
    // A stop arrived after the drain: the process exits instead (the marker is written).
    spdlog::info("a stop was asked for during the restart: not starting generation {}",
                 generation_ + 1);
    // A connection the drain kept for the next generation is stopped as a stop stops it (an
    // IRC QUIT); what it received meanwhile is committed before the process ends.
    return p_.generation.stop_carried([this] {
      p_.pipeline.flush_and_wait();
      p_.finish_process();
    });
  }
  p_.lifecycle.generation_starting();
  p_.pipeline.reset();
  p_.generation.clear();

  std::optional<config::Config> previous;
  const auto& running = p_.reloader.running();
  if (!p_.lock) {
    std::string error;
    p_.lock = GatewayLock::acquire(p_.data_dir, running.gateway.port, error);
    if (!p_.lock) return fail(previous, error);
  }
  std::string read_error;
  auto read = p_.reloader.read_for_generation(read_error);
  if (!read) return fail(previous, read_error);
  const std::string text = read->text;
  config::Config next = std::move(read->config);
  if (next.store.data_dir != p_.data_dir || !(next.store == running.store) ||
      !(next.cluster == running.cluster)) {
    spdlog::warn("store.*/cluster.* changed: they take effect when the process restarts; "
                 "keeping {} ({})",
                 running.store.driver, p_.data_dir);
    next.store = running.store;
    next.cluster = running.cluster;
  }
  // Compared with what listens, not with the config of an attempt that failed.
  const bool address_changed = p_.lifecycle.needs_relisten(configured_address(next));
  const bool token_changed = next.gateway.auth_token != running.gateway.auth_token;
  previous = p_.reloader.swap_running(std::move(next));
  const auto& cfg = p_.reloader.running();
  if (token_changed) p_.token_changed(cfg);
  spdlog::set_level(spdlog::level::from_str(cfg.logging.level));
  p_.restarts.set_options(scheduler_options(cfg));
  apply_control_ui(p_.server, cfg);
  if (auto err = wire()) return fail(previous, *err);
  if (address_changed) {
    if (auto err = p_.server.relisten(bind_address(cfg.gateway.bind), cfg.gateway.port)) {
      return fail(previous, *err);
    }
    export_gateway_url(cfg, p_.server.port());
  }
  last_error_.clear();
  p_.reloader.generation_started(text);
  start_io();
  p_.restarts.generation_finished();
  const auto now = p_.clock.now();
  p_.restarts.record_restart(generation_, t0, now);
  // Connections that waited in the backlog since the teardown are served now, by this
  // generation: none was refused.
  p_.server.resume_accepting();
  p_.notifier.ready(p_.status_line());
  spdlog::info("generation {} ready: restart ({}) took {:.1f} ms, the new generation started "
               "in {:.1f} ms",
               generation_, p_.restarts.reason(), ms_since(p_.restarts.drain_started(), now),
               ms_since(t0, now));
}

}  // namespace drawbridge::runtime
