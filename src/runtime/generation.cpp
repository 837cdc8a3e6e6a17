#include "runtime/generation.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <set>
#include <utility>

#include "agents/echo_agent.h"
#include "agents/exec_agent.h"
#include "agents/openai/openai_agent.h"
#include "channels/irc/irc_channel.h"
#include "channels/local/local_channel.h"
#include "channels/telegram/telegram_channel.h"
#include "runtime/channel_accounts.h"
#include "runtime/openai_config.h"

namespace drawbridge::runtime {

namespace {

constexpr const char* kAgentTypes = "echo, exec, openai";

bool buildable_agent(const std::string& type) {
  return type == "echo" || type == "exec" || type == "openai";
}

std::optional<std::string> from_env(const std::string& name) {
  const char* v = std::getenv(name.c_str());
  return v ? std::optional<std::string>(v) : std::nullopt;
}

std::string of_account(const ChannelAccount& a) {
  return a.name.empty() ? std::string() : " (account " + a.name + ")";
}

}  // namespace

Generation::Generation(boost::asio::io_context& io, core::Executor& executor,
                       pipeline::Pipeline& pipeline)
    : io_(io), executor_(executor), pipeline_(pipeline) {}

std::unique_ptr<pipeline::Agent> Generation::make_agent(const config::AgentSettings& a,
                                                        std::string& error) {
  if (a.type == "echo") {
    return std::make_unique<agents::EchoAgent>(
        executor_, agents::EchoSettings{a.delay_ms, a.chunk_chars, a.prefix});
  }
  if (a.type == "exec") {
    return std::make_unique<agents::ExecAgent>(
        io_, executor_,
        agents::ExecSettings{a.command, a.timeout_ms, a.kill_grace_ms, a.cwd, a.env});
  }
  if (a.type == "openai") {
    std::vector<std::string> warnings;
    auto s = openai_settings(a, error, warnings, from_env);
    if (!s) return nullptr;
    for (const auto& w : warnings) spdlog::warn("{}", w);
    return std::make_unique<agents::openai::OpenAiAgent>(io_, executor_, pipeline_.clock(),
                                                         std::move(*s));
  }
  error = "agents." + a.id + ".type: \"" + a.type + "\" is not available in this build " +
          "(available: " + kAgentTypes + ")";
  return nullptr;
}

std::vector<config::ConfigError> Generation::unbuildable(const config::Config& cfg) {
  std::vector<config::ConfigError> out;
  for (const auto& [id, a] : cfg.agents) {
    if (!buildable_agent(a.type)) {
      out.push_back(
          {"/agents/" + id + "/type", "agents." + id + ".type",
           "\"" + a.type + "\" is not available in this build (available: " + kAgentTypes + ")"});
    } else if (a.type == "openai") {
      // What the schema cannot see: the key's variable unset, no model, a URL it cannot call.
      std::string error;
      std::vector<std::string> warnings;
      if (!openai_settings(a, error, warnings, from_env)) {
        const auto colon = error.find(": ");
        const std::string path = error.substr(0, colon);
        std::string pointer = "/" + path;
        std::replace(pointer.begin(), pointer.end(), '.', '/');
        out.push_back({pointer, path, error.substr(colon + 2)});
      }
    }
  }
  return out;
}

std::string Generation::agent_of(const std::string& channel, const config::Config& cfg) {
  // "telegram:<account>" answers with the agent of "telegram".
  auto it = cfg.channels.find(channel.substr(0, channel.find(':')));
  if (it == cfg.channels.end() || it->second.agent.empty()) return cfg.default_agent;
  return it->second.agent;
}

std::optional<std::string> Generation::build(const config::Config& cfg) {
  stopping_ = false;
  for (const auto& [id, a] : cfg.agents) {
    std::string error;
    auto agent = make_agent(a, error);
    if (!agent) return error;
    agents_[id] = std::move(agent);
  }
  for (const auto& [id, ch] : cfg.channels) {
    if (auto err = add_channel(id, cfg)) return err;
  }
  if (!channels_.count("local")) {
    spdlog::warn(
        "the local channel is disabled: chat.send and POST /v1/messages will refuse "
        "messages");
  }
  return std::nullopt;
}

// Creates channel `id` of `cfg` (when enabled and available) and wires it into the pipeline;
// it starts with start_channels() or, in a hot reload, right after.
std::optional<std::string> Generation::add_channel(const std::string& target,
                                                   const config::Config& cfg) {
  // `target`: a channel of the config ("telegram"), or one account of it ("telegram:<name>").
  const std::string id = target.substr(0, target.find(':'));
  const std::string only_account =
      target.find(':') == std::string::npos ? std::string() : target.substr(target.find(':') + 1);
  auto settings = cfg.channels.find(id);
  if (settings == cfg.channels.end() || !settings->second.enabled) return std::nullopt;
  const std::string agent_id = agent_of(id, cfg);
  auto agent = agents_.find(agent_id);
  if (agent == agents_.end()) return "channels." + id + ".agent: unknown agent " + agent_id;
  int max_chars = settings->second.max_message_chars;
  if (id == "local") {
    channels_[id] = std::make_unique<channels::LocalChannel>(id);
  } else if (id == "telegram" || id == "irc") {
    std::string error;
    auto accounts = channel_accounts(id, settings->second.raw, error);
    if (!accounts) return error;
    // Options of every account first: a bad account refuses the reload before any starts.
    struct Made {
      const ChannelAccount* account;
      std::unique_ptr<pipeline::Channel> channel;  // null: take over the carried one
      int chars;
      std::string settings;
    };
    std::vector<Made> made;
    std::set<std::string> paths;
    for (const auto& account : *accounts) {
      if (!only_account.empty() && account.name != only_account) continue;
      int chars = max_chars;
      std::unique_ptr<pipeline::Channel> channel;
      std::string built_from = settings_digest(account.raw);
      if (id == "telegram") {
        auto options = channels::TelegramOptions::parse(account.raw, error, from_env);
        if (!options) return error + of_account(account);
        if (!options->webhook_url.empty() && !paths.insert(options->webhook_path).second) {
          return "channels.telegram.accounts." + account.name +
                 ".webhookPath: " + options->webhook_path + " is another account's too";
        }
        for (const auto& w : options->warnings) spdlog::warn("{}{}", w, of_account(account));
        // Telegram refuses a message over 4096 characters: replies are split below that.
        chars = max_chars > 0 ? std::min(max_chars, options->max_message_chars)
                              : options->max_message_chars;
        channel = std::make_unique<channels::TelegramChannel>(
            account.channel_id, std::move(*options), io_, executor_, pipeline_);
      } else {
        auto options = channels::IrcOptions::parse(account.raw, error, from_env);
        if (!options) return error + of_account(account);
        for (const auto& w : options->warnings) spdlog::warn("{}{}", w, of_account(account));
        // The channel splits replies into lines of at most 512 bytes itself.
        auto kept = carried_.find(account.channel_id);
        if (kept == carried_.end() || kept->second.settings != built_from) {
          channel = std::make_unique<channels::IrcChannel>(account.channel_id, std::move(*options),
                                                           io_, executor_, pipeline_.clock(),
                                                           pipeline_);
        }
      }
      made.push_back({&account, std::move(channel), chars, std::move(built_from)});
    }
    for (auto& [account, channel, chars, built_from] : made) {
      if (!account->name.empty()) account_channels_[id + ":" + account->name] = account->channel_id;
      if (!channel) {
        // Running since the last generation with these very settings: taken over as it is.
        auto kept = carried_.find(account->channel_id);
        channel = std::move(kept->second.channel);
        carried_.erase(kept);
        adopted_.insert(account->channel_id);
      } else if (auto in = inherited_.find(account->channel_id);
                 id == "irc" && in != inherited_.end() && in->second.digest == built_from) {
        // Handed over by the predecessor process with these very settings: start() reads from
        // it instead of connecting.
        channels::IrcHandover h{in->second.fd, in->second.state};
        std::string error;
        if (static_cast<channels::IrcChannel*>(channel.get())->adopt(h, error)) {
          inherited_.erase(in);
        } else {
          spdlog::warn("channel {}: cannot take the handed-over connection over: {}",
                       account->channel_id, error);
        }
      }
      settings_[account->channel_id] = std::move(built_from);
      auto* ch = channel.get();
      channels_[account->channel_id] = std::move(channel);
      pipeline_.add_channel(ch, agent->second.get(), chars, agent_id,
                            settings->second.history_limit);
    }
    return std::nullopt;
  } else {
    spdlog::warn("channels.{}: this adapter is not available in this build; ignored", id);
    return std::nullopt;
  }
  pipeline_.add_channel(channels_[id].get(), agent->second.get(), max_chars, agent_id,
                        settings->second.history_limit);
  return std::nullopt;
}

void Generation::start_channel(const std::string& id) {
  auto it = channels_.find(id);
  if (it == channels_.end()) return;
  it->second->start();
  const auto n = ++starts_[id];
  spdlog::info("channel {} started (start {} in this process)", id, n);
}

std::uint64_t Generation::starts(const std::string& id) const {
  auto it = starts_.find(id);
  return it == starts_.end() ? 0 : it->second;
}

void Generation::retire_agent(std::unique_ptr<pipeline::Agent> agent) {
  // Its running turns may still use it: freed once no turn runs.
  retired_.push_back(std::move(agent));
  pipeline_.work().when_idle([this, alive = alive_, epoch = epoch_] {
    executor_.post([this, alive, epoch] {
      if (*alive && epoch == epoch_ && pipeline_.active_runs().empty()) retired_.clear();
    });
  });
}

std::optional<std::string> Generation::swap_agent(const std::string& id,
                                                  const config::Config& next) {
  auto it = next.agents.find(id);
  if (it == next.agents.end()) {
    if (auto old = agents_.find(id); old != agents_.end()) {
      retire_agent(std::move(old->second));
      agents_.erase(old);
      spdlog::info("agent {} removed", id);
    }
    return std::nullopt;
  }
  std::string error;
  auto agent = make_agent(it->second, error);
  if (!agent) return error;
  if (auto old = agents_.find(id); old != agents_.end()) retire_agent(std::move(old->second));
  agents_[id] = std::move(agent);
  spdlog::info("agent {} ({}) swapped: new turns use the new settings", id, it->second.type);
  return std::nullopt;
}

std::optional<std::string> Generation::rebind(const config::Config& next,
                                              const std::vector<std::string>& except) {
  for (auto& [id, ch] : channels_) {
    if (std::find(except.begin(), except.end(), id) != except.end()) continue;
    const std::string agent_id = agent_of(id, next);
    auto agent = agents_.find(agent_id);
    if (agent == agents_.end()) return "channels." + id + ": unknown agent " + agent_id;
    pipeline_.set_agent(id, agent->second.get(), agent_id);
  }
  return std::nullopt;
}

void Generation::restart_channel(const std::string& target, const config::Config& next,
                                 std::function<bool()> still_wanted,
                                 std::function<void(const std::string&)> done) {
  // The channels `target` runs as now: "telegram" is every account of it, "telegram:<name>"
  // the one account.
  std::vector<std::string> old_ids;
  if (target.find(':') == std::string::npos) {
    for (const auto& [id, ch] : channels_) {
      if (id == target || id.rfind(target + ":", 0) == 0) old_ids.push_back(id);
    }
    std::erase_if(account_channels_,
                  [&](const auto& kv) { return kv.first.rfind(target + ":", 0) == 0; });
  } else if (auto a = account_channels_.find(target); a != account_channels_.end()) {
    if (channels_.count(a->second)) old_ids.push_back(a->second);
    account_channels_.erase(a);
  }
  auto start_new = [this, alive = alive_, target, next, still_wanted, done, old_ids,
                    epoch = epoch_](std::vector<std::shared_ptr<pipeline::Channel>> olds) {
    // Runs after the old ones stopped; they stay alive until their routes are replaced.
    if (!*alive || epoch != epoch_ || stopping_ || !still_wanted()) {
      return done({});  // a drain took over: the next generation starts channels
    }
    const std::string kind = target.substr(0, target.find(':'));
    std::optional<std::string> error;
    std::set<std::string> existing;
    for (const auto& [id, ch] : channels_) existing.insert(id);
    if (next.channels.count(kind) && next.channels.at(kind).enabled) {
      error = add_channel(target, next);
    }
    std::vector<std::string> started;
    for (const auto& [id, ch] : channels_) {
      if (!existing.count(id)) started.push_back(id);
    }
    for (const auto& id : old_ids) {
      if (!channels_.count(id)) {
        pipeline_.remove_channel(id);
        spdlog::info("channel {} stopped and removed", id);
      }
    }
    olds.clear();
    if (error) return done(*error);
    for (const auto& id : started) start_channel(id);
    done({});
  };
  if (old_ids.empty()) {
    start_new({});
    return;
  }
  std::vector<std::shared_ptr<pipeline::Channel>> olds;
  for (const auto& id : old_ids) {
    olds.emplace_back(std::move(channels_[id]));
    channels_.erase(id);
    adopted_.erase(id);
    spdlog::info("channel {}: stopping for a config reload", id);
  }
  auto remaining = std::make_shared<std::size_t>(olds.size());
  for (auto& old : olds) {
    old->stop([this, remaining, olds, start_new]() mutable {
      if (--*remaining > 0) return;
      executor_.post([olds, start_new]() mutable { start_new(std::move(olds)); });
    });
  }
}

void Generation::apply_hot(const config::Config& next, const core::ReloadPlan& plan,
                           std::function<void()> auth_changed, std::function<bool()> still_wanted,
                           std::function<void(const std::string&)> done) {
  std::vector<std::string> channels;
  bool rebind_all = false;
  for (const auto& a : plan.actions) {
    switch (a.action) {
      case core::HotAction::update_auth:
        auth_changed();
        break;
      case core::HotAction::swap_agent:
        if (auto err = swap_agent(a.target, next)) return done(*err);
        rebind_all = true;
        break;
      case core::HotAction::rebind_agents:
        rebind_all = true;
        break;
      case core::HotAction::restart_channel:
        channels.push_back(a.target);
        break;
    }
  }
  if (rebind_all) {
    if (auto err = rebind(next, channels)) return done(*err);
  }
  restart_channels(std::move(channels), 0, next, std::move(still_wanted), std::move(done));
}

void Generation::restart_channels(std::vector<std::string> ids, std::size_t i, config::Config next,
                                  std::function<bool()> still_wanted,
                                  std::function<void(const std::string&)> done) {
  if (i == ids.size()) return done({});
  const std::string id = ids[i];
  auto proceed = [this, ids = std::move(ids), i, next, still_wanted,
                  done = std::move(done)](const std::string& error) mutable {
    if (!error.empty()) return done(error);
    restart_channels(std::move(ids), i + 1, std::move(next), std::move(still_wanted),
                     std::move(done));
  };
  restart_channel(id, next, still_wanted, std::move(proceed));
}

}  // namespace drawbridge::runtime
