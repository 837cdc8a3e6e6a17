// The channels that outlive a restart (docs/DECISIONS.md "An IRC connection outlives a
// restart"): kept by the drain of an in-process restart and taken over by the next generation,
// or handed to the process of a re-exec and taken over there; stopped (QUIT) when the new
// config changed the account, before its successor connects.

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <utility>

#include "channels/irc/irc_channel.h"
#include "runtime/generation.h"

namespace drawbridge::runtime {

void Generation::start_channels() {
  stopping_ = false;
  // Connections a predecessor process handed over that no channel of this config took: their
  // account changed or is gone. Each is taken over by a channel of its own only to QUIT.
  for (auto& entry : std::exchange(inherited_, {})) {
    const std::string& id = entry.first;
    CarriedConnection& in = entry.second;
    auto text = [&in](const char* key) {
      auto it = in.state.find(key);
      return it != in.state.end() && it->is_string() ? it->get<std::string>() : std::string("?");
    };
    channels::IrcOptions o;
    o.host = text("host");
    o.nick = text("nick");
    o.group_policy = o.dm_policy = "disabled";
    auto orphan = std::make_unique<channels::IrcChannel>(id, std::move(o), io_, executor_,
                                                         pipeline_.clock(), pipeline_);
    channels::IrcHandover h{in.fd, in.state};
    std::string error;
    if (!orphan->adopt(h, error)) {
      spdlog::warn("channel {}: the connection handed over is not usable ({}); closed", id, error);
      ::close(in.fd);
      continue;
    }
    orphan->start();
    retire(id, std::move(orphan),
           "a predecessor handed its connection over, but this config "
           "changed or removed the account");
  }
  // Carried channels this generation did not take over (settings changed, or gone): stopped
  // now, and a successor with the same id starts once its predecessor has stopped (one
  // connection per account at every instant).
  for (auto& [id, kept] : std::exchange(carried_, {})) {
    retire(id, std::move(kept.channel), "the new config changed or removed it");
  }
  for (auto& [id, ch] : channels_) {
    if (adopted_.count(id)) {
      spdlog::info("channel {} carried over from the last generation (its connection kept)", id);
    } else if (!retiring_.count(id)) {
      start_channel(id);
    }
  }
}

void Generation::retire(const std::string& id, std::unique_ptr<pipeline::Channel> channel,
                        const char* why) {
  spdlog::info("channel {}: {}; stopping the connection left running before", id, why);
  auto* ch = channel.get();
  retiring_[id] = std::move(channel);
  ch->stop([this, alive = alive_, id] {
    // Not inside the channel's own callback: it is destroyed on the next turn of the loop.
    executor_.post([this, alive, id] {
      if (!*alive) return;
      // Its route stays until it has stopped (what it receives meanwhile is journaled), unless
      // a successor's replaced it.
      if (!channels_.count(id)) pipeline_.remove_channel(id);
      retiring_.erase(id);
      if (!stopping_ && channels_.count(id) && !adopted_.count(id)) start_channel(id);
      if (retiring_.empty()) {
        for (auto& fn : std::exchange(on_retired_, {})) fn();
      }
    });
  });
}

void Generation::stop_carried(std::function<void()> done) {
  std::vector<std::string> running(carrying_.begin(), carrying_.end());
  running.insert(running.end(), adopted_.begin(), adopted_.end());
  carrying_.clear();
  adopted_.clear();
  stopping_ = true;
  for (auto& [id, kept] : std::exchange(carried_, {})) {
    retire(id, std::move(kept.channel), "no generation takes it over");
  }
  for (const auto& id : running) {
    if (auto it = channels_.find(id); it != channels_.end()) {
      retire(id, std::move(it->second), "no generation takes it over");
    }
    channels_.erase(id);
  }
  if (retiring_.empty()) {
    if (done) done();
    return;
  }
  if (done) on_retired_.push_back(std::move(done));
}

void Generation::stop_channels(bool keep_connections, std::function<void()> done) {
  stopping_ = true;
  carrying_.clear();
  std::vector<pipeline::Channel*> stopping;
  for (auto& [id, ch] : channels_) {
    if (keep_connections && ch->carries_over()) {
      carrying_.insert(id);
      spdlog::info("channel {} keeps its connection for the next generation", id);
    } else {
      stopping.push_back(ch.get());
    }
  }
  // One more for the channels an earlier restart left stopping (their successors never
  // started): the next generation must not connect beside them.
  auto remaining = std::make_shared<std::size_t>(stopping.size() + 1);
  auto one_done = [remaining, done = std::move(done)] {
    if (--*remaining == 0) done();
  };
  for (auto* ch : stopping) ch->stop(one_done);
  if (retiring_.empty()) {
    one_done();
  } else {
    on_retired_.push_back(one_done);
  }
}

void Generation::clear() {
  ++epoch_;
  for (const auto& id : carrying_) {
    auto it = channels_.find(id);
    if (it == channels_.end()) continue;
    carried_[id] = Carried{std::move(it->second), settings_[id]};
  }
  carrying_.clear();
  adopted_.clear();
  settings_.clear();
  channels_.clear();
  agents_.clear();
  retired_.clear();
}

void Generation::inherit(std::vector<CarriedConnection> conns) {
  for (auto& c : conns) {
    if (inherited_.count(c.channel)) {
      ::close(c.fd);
      continue;
    }
    spdlog::info("channel {}: a connection handed over by the predecessor (fd {})", c.channel,
                 c.fd);
    inherited_[c.channel] = std::move(c);
  }
}

void Generation::release_for_successor(bool hand_over,
                                       std::function<void(std::vector<CarriedConnection>)> done) {
  auto out = std::make_shared<std::vector<CarriedConnection>>();
  auto remaining = std::make_shared<std::size_t>(carrying_.size() + 1);
  auto one_done = [remaining, out, done = std::move(done)] {
    if (--*remaining == 0) done(std::move(*out));
  };
  // Nothing is kept for a next generation of this process: if the hand-off fails, fresh
  // channels connect.
  for (const auto& id : std::exchange(carrying_, {})) {
    auto it = channels_.find(id);
    auto* irc =
        it == channels_.end() ? nullptr : dynamic_cast<channels::IrcChannel*>(it->second.get());
    if (!irc || !hand_over) {
      if (it != channels_.end()) {
        it->second->stop(one_done);
      } else {
        one_done();
      }
      continue;
    }
    irc->release([this, alive = alive_, id, out, one_done](std::optional<channels::IrcHandover> h) {
      if (!*alive) return;
      if (h) {
        out->push_back({id, settings_[id], h->fd, std::move(h->state)});
        return one_done();
      }
      // Not to be handed over (TLS, not registered): stopped as a stop stops it, before the
      // successor connects.
      auto ch = channels_.find(id);
      if (ch == channels_.end()) return one_done();
      ch->second->stop(one_done);
    });
  }
  one_done();
}

}  // namespace drawbridge::runtime
