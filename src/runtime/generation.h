#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "config/config.h"
#include "core/executor.h"
#include "core/reload_plan.h"
#include "pipeline/agent.h"
#include "pipeline/channel.h"
#include "pipeline/pipeline.h"
#include "runtime/carried_connections.h"

namespace drawbridge::runtime {

// The agents and channels of one config, wired into the pipeline. Built at a start, changed in
// place by a hot reload (an agent swapped, a channel restarted: the old instance has stopped
// before the new one starts, so there is one poller per channel account at every instant),
// stopped by the drain and cleared for the next generation. The table of agent types and
// channel adapters this build has lives here and nowhere else.
class Generation {
 public:
  Generation(boost::asio::io_context& io, core::Executor& executor, pipeline::Pipeline& pipeline);
  ~Generation() { *alive_ = false; }
  Generation(const Generation&) = delete;
  Generation& operator=(const Generation&) = delete;

  // Builds every agent and enabled channel of `cfg`; the first error, if any.
  std::optional<std::string> build(const config::Config& cfg);
  // Starts every channel built; a channel taken over running from the previous generation is
  // not started again, and one whose predecessor still runs starts once that one has stopped.
  void start_channels();
  // The drain stops every channel; `done` once all have stopped. From then on a hot reload
  // starts none (the next generation does). With `keep_connections` (an in-process restart), a
  // channel that carries_over() is left running for the next generation instead.
  void stop_channels(bool keep_connections, std::function<void()> done);
  // Forgets agents and channels for the next generation (the drain stopped them). Channels the
  // drain left running are kept aside: build() takes each over when the next config has its
  // settings unchanged; start_channels() stops the rest (before their successors start).
  void clear();
  // A re-exec's last step in the process that ends: every channel the drain kept gives its
  // connection up for the successor (`hand_over`; false for an update to a binary that cannot
  // take them: they are stopped instead); one that cannot is stopped (QUIT). `done` with what
  // the successor gets.
  void release_for_successor(bool hand_over,
                             std::function<void(std::vector<CarriedConnection>)> done);
  // The successor's side, before build(): connections its predecessor handed over. build()
  // gives each to the channel of its account when the settings are the same; start_channels()
  // QUITs the others (their successors connect after).
  void inherit(std::vector<CarriedConnection> conns);
  // Stops every channel still running from an earlier generation (the next one did not start,
  // or a stop came instead); `done` once all have stopped.
  void stop_carried(std::function<void()> done);


  // What validation cannot know: the parts of `cfg` this build cannot run.
  static std::vector<config::ConfigError> unbuildable(const config::Config& cfg);
  static std::string agent_of(const std::string& channel, const config::Config& cfg);

  // Hot reload. Agent `id` of `next` replaces the running one (removed when `next` has none);
  // the old one lives until its turns end.
  std::optional<std::string> swap_agent(const std::string& id, const config::Config& next);
  // Every channel but `except` follows the agent `next` routes it to.
  std::optional<std::string> rebind(const config::Config& next,
                                    const std::vector<std::string>& except);
  // Stops channel `id`, then starts it as `next` has it (or removes it); `done` with an error
  // or "". `still_wanted` is asked after the stop: false when a drain began meanwhile.
  void restart_channel(const std::string& id, const config::Config& next,
                       std::function<bool()> still_wanted,
                       std::function<void(const std::string&)> done);

  // Runs a hot reload plan against `next`: agents first (channels restarted next wire to the
  // new ones), then the channels one after the other, each stopped completely before its
  // successor starts. `update_auth` is the caller's (`auth_changed`). `done` with an error or "".
  void apply_hot(const config::Config& next, const core::ReloadPlan& plan,
                 std::function<void()> auth_changed, std::function<bool()> still_wanted,
                 std::function<void(const std::string&)> done);

  const std::map<std::string, std::unique_ptr<pipeline::Channel>>& channels() const {
    return channels_;
  }
  const std::map<std::string, std::unique_ptr<pipeline::Agent>>& agents() const {
    return agents_;
  }
  // Starts of channel `id` in this process (a restarted poller shows here).
  std::uint64_t starts(const std::string& id) const;

 private:
  std::unique_ptr<pipeline::Agent> make_agent(const config::AgentSettings& a, std::string& error);
  std::optional<std::string> add_channel(const std::string& id, const config::Config& cfg);
  void start_channel(const std::string& id);
  void retire_agent(std::unique_ptr<pipeline::Agent> agent);
  void restart_channels(std::vector<std::string> ids, std::size_t i, config::Config next,
                        std::function<bool()> still_wanted,
                        std::function<void(const std::string&)> done);

  boost::asio::io_context& io_;
  core::Executor& executor_;
  pipeline::Pipeline& pipeline_;
  std::map<std::string, std::unique_ptr<pipeline::Agent>> agents_;
  std::map<std::string, std::unique_ptr<pipeline::Channel>> channels_;
  std::map<std::string, std::uint64_t> starts_;  // per channel id, in this process
  // "telegram:<account>" -> the channel id that account runs as ("telegram" for the default).
  std::map<std::string, std::string> account_channels_;
  std::vector<std::unique_ptr<pipeline::Agent>> retired_;
  // An in-process restart's channels that carry over (docs/DECISIONS.md "An IRC connection
  // outlives an in-process restart"): left running by the drain (`carrying_`, ids), kept aside
  // with the settings they were built from (`carried_`), taken over by this generation
  // (`adopted_`), or stopping because the new config changed or dropped them (`retiring_`).
  struct Carried {
    std::unique_ptr<pipeline::Channel> channel;
    std::string settings;
  };
  std::set<std::string> carrying_;
  std::map<std::string, Carried> carried_;
  std::set<std::string> adopted_;
  std::map<std::string, std::unique_ptr<pipeline::Channel>> retiring_;
  std::vector<std::function<void()>> on_retired_;  // a drain waiting for retiring_ to empty
  std::map<std::string, std::string> settings_;    // channel id -> settings_digest() built from
  std::map<std::string, CarriedConnection> inherited_;  // channel id -> from the predecessor
  void retire(const std::string& id, std::unique_ptr<pipeline::Channel> channel, const char* why);
  bool stopping_ = false;
  std::uint64_t epoch_ = 0;  // callbacks of a cleared generation carry an older one
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace drawbridge::runtime
