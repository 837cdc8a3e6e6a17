#include "core/followup_queue.h"

#include <algorithm>
#include <utility>

namespace drawbridge::core {

const char* to_string(FollowupMode mode) {
  switch (mode) {
    case FollowupMode::steer:
      return "steer";
    case FollowupMode::followup:
      return "followup";
    case FollowupMode::collect:
      return "collect";
    case FollowupMode::interrupt:
      return "interrupt";
  }
  return "?";
}

const char* to_string(DropPolicy policy) {
  switch (policy) {
    case DropPolicy::oldest:
      return "old";
    case DropPolicy::newest:
      return "new";
    case DropPolicy::summarize:
      return "summarize";
  }
  return "?";
}

const char* to_string(EnqueueAction action) {
  switch (action) {
    case EnqueueAction::start_now:
      return "start_now";
    case EnqueueAction::queued:
      return "queued";
    case EnqueueAction::steered:
      return "steered";
    case EnqueueAction::interrupt_active:
      return "interrupt_active";
    case EnqueueAction::dropped_new:
      return "dropped_new";
  }
  return "?";
}

std::optional<FollowupMode> parse_followup_mode(std::string_view s) {
  for (auto m : {FollowupMode::steer, FollowupMode::followup, FollowupMode::collect,
                 FollowupMode::interrupt}) {
    if (s == to_string(m)) return m;
  }
  return std::nullopt;
}

std::optional<DropPolicy> parse_drop_policy(std::string_view s) {
  for (auto p : {DropPolicy::oldest, DropPolicy::newest, DropPolicy::summarize}) {
    if (s == to_string(p)) return p;
  }
  return std::nullopt;
}

FollowupQueue::FollowupQueue(FollowupOptions options) {
  set_options(options);
}

void FollowupQueue::set_options(FollowupOptions options) {
  options.cap = std::max<std::size_t>(options.cap, 1);
  options_ = options;
}

FollowupQueue::Enqueued FollowupQueue::enqueue(const std::string& session, Item item,
                                               FollowupMode mode) {
  Session& s = sessions_[session];
  if (!s.active) {
    s.active = true;
    ++active_count_;
    return {EnqueueAction::start_now, {}};
  }
  switch (mode) {
    case FollowupMode::steer:
      return {EnqueueAction::steered, {}};
    case FollowupMode::interrupt: {
      // The newest message supersedes everything that waited; the summarize count stays so the
      // next turn still hears about messages the cap dropped earlier.
      Enqueued out{EnqueueAction::interrupt_active, {}};
      for (const auto& e : s.waiting) out.dropped.push_back(e.item);
      pending_count_ -= s.waiting.size();
      s.waiting.clear();
      s.waiting.push_back({item, mode});
      ++pending_count_;
      return out;
    }
    case FollowupMode::followup:
    case FollowupMode::collect:
      break;
  }
  Enqueued out{EnqueueAction::queued, {}};
  if (s.waiting.size() >= options_.cap) {
    if (options_.drop == DropPolicy::newest) return {EnqueueAction::dropped_new, {item}};
    out.dropped.push_back(s.waiting.front().item);
    s.waiting.pop_front();
    --pending_count_;
    if (options_.drop == DropPolicy::summarize) ++s.dropped;
  }
  s.waiting.push_back({item, mode});
  ++pending_count_;
  return out;
}

std::optional<FollowupQueue::Batch> FollowupQueue::on_turn_finished(const std::string& session) {
  auto it = sessions_.find(session);
  if (it == sessions_.end() || !it->second.active) return std::nullopt;
  Session& s = it->second;
  if (s.waiting.empty()) {
    // Idle sessions are forgotten so a long-running gateway keeps no entry per chat ever seen.
    sessions_.erase(it);
    --active_count_;
    return std::nullopt;
  }
  Batch batch;
  if (s.waiting.front().mode == FollowupMode::collect) {
    while (!s.waiting.empty() && s.waiting.front().mode == FollowupMode::collect) {
      batch.items.push_back(s.waiting.front().item);
      s.waiting.pop_front();
    }
  } else {
    batch.items.push_back(s.waiting.front().item);
    s.waiting.pop_front();
  }
  pending_count_ -= batch.items.size();
  batch.dropped_count = std::exchange(s.dropped, 0);
  return batch;
}

bool FollowupQueue::active(const std::string& session) const {
  auto it = sessions_.find(session);
  return it != sessions_.end() && it->second.active;
}

std::vector<FollowupQueue::Item> FollowupQueue::queued(const std::string& session) const {
  auto it = sessions_.find(session);
  if (it == sessions_.end()) return {};
  std::vector<Item> out;
  out.reserve(it->second.waiting.size());
  for (const auto& e : it->second.waiting) out.push_back(e.item);
  return out;
}

std::size_t FollowupQueue::dropped_count(const std::string& session) const {
  auto it = sessions_.find(session);
  return it == sessions_.end() ? 0 : it->second.dropped;
}

bool FollowupQueue::remove_waiting(const std::string& session, Item item) {
  auto it = sessions_.find(session);
  if (it == sessions_.end()) return false;
  auto& waiting = it->second.waiting;
  auto e = std::find_if(waiting.begin(), waiting.end(),
                        [item](const Entry& x) { return x.item == item; });
  if (e == waiting.end()) return false;
  waiting.erase(e);
  --pending_count_;
  return true;
}

void FollowupQueue::clear() {
  sessions_.clear();
  pending_count_ = 0;
  active_count_ = 0;
}

}  // namespace drawbridge::core
