#include "core/inbound_debouncer.h"

#include <algorithm>

namespace drawbridge::core {

std::string debounce_key(std::string_view channel, std::string_view chat) {
  std::string key;
  key.reserve(channel.size() + 1 + chat.size());
  key.append(channel);
  key.push_back('\0');
  key.append(chat);
  return key;
}

InboundDebouncer::InboundDebouncer(Duration window) {
  set_window(window);
}

void InboundDebouncer::set_window(Duration window) {
  window_ = std::max(window, Duration::zero());
}

std::optional<InboundDebouncer::Batch> InboundDebouncer::add(const std::string& key, Item item,
                                                             TimePoint now) {
  auto it = buffers_.find(key);
  if (window_ == Duration::zero()) {
    // Whatever a larger window left buffered goes first, so the chat keeps its order.
    if (it == buffers_.end()) return Batch{key, {item}, now};
    Batch batch = release(it);
    batch.items.push_back(item);
    batch.deadline = now;
    return batch;
  }
  if (it == buffers_.end()) {
    it = buffers_.emplace(key, Buffer{}).first;
  } else {
    by_deadline_.erase(it->second.slot);
  }
  it->second.items.push_back(item);
  ++buffered_items_;
  it->second.slot = Slot{now + window_, next_seq_++};
  by_deadline_.emplace(it->second.slot, key);
  return std::nullopt;
}

std::vector<InboundDebouncer::Batch> InboundDebouncer::due(TimePoint now) {
  std::vector<Batch> out;
  while (!by_deadline_.empty() && by_deadline_.begin()->first.first <= now) {
    out.push_back(release(buffers_.find(by_deadline_.begin()->second)));
  }
  return out;
}

std::optional<TimePoint> InboundDebouncer::next_deadline() const {
  if (by_deadline_.empty()) return std::nullopt;
  return by_deadline_.begin()->first.first;
}

std::optional<InboundDebouncer::Batch> InboundDebouncer::flush(const std::string& key) {
  auto it = buffers_.find(key);
  if (it == buffers_.end()) return std::nullopt;
  return release(it);
}

std::vector<InboundDebouncer::Batch> InboundDebouncer::flush_all() {
  std::vector<Batch> out;
  out.reserve(by_deadline_.size());
  while (!by_deadline_.empty()) {
    out.push_back(release(buffers_.find(by_deadline_.begin()->second)));
  }
  return out;
}

InboundDebouncer::Batch InboundDebouncer::release(
    std::unordered_map<std::string, Buffer>::iterator it) {
  Batch batch{it->first, std::move(it->second.items), it->second.slot.first};
  buffered_items_ -= batch.items.size();
  by_deadline_.erase(it->second.slot);
  buffers_.erase(it);
  return batch;
}

std::size_t DebouncerRegistry::Flushed::items() const {
  std::size_t n = 0;
  for (const auto& b : batches) n += b.batch.items.size();
  return n;
}

InboundDebouncer& DebouncerRegistry::add(const std::string& name, Duration window) {
  auto it = debouncers_.find(name);
  if (it == debouncers_.end())
    return debouncers_.emplace(name, InboundDebouncer(window)).first->second;
  it->second.set_window(window);
  return it->second;
}

InboundDebouncer* DebouncerRegistry::find(const std::string& name) {
  auto it = debouncers_.find(name);
  return it == debouncers_.end() ? nullptr : &it->second;
}

std::vector<InboundDebouncer::Batch> DebouncerRegistry::remove(const std::string& name) {
  auto it = debouncers_.find(name);
  if (it == debouncers_.end()) return {};
  auto batches = it->second.flush_all();
  debouncers_.erase(it);
  return batches;
}

namespace {

// Earliest deadline first across debouncers; stable, so ties keep name order and, within one
// debouncer, its own arm order.
void sort_by_deadline(std::vector<DebouncerRegistry::NamedBatch>& batches) {
  std::stable_sort(batches.begin(), batches.end(), [](const auto& a, const auto& b) {
    return a.batch.deadline < b.batch.deadline;
  });
}

}  // namespace

std::vector<DebouncerRegistry::NamedBatch> DebouncerRegistry::due(TimePoint now) {
  std::vector<NamedBatch> out;
  for (auto& [name, debouncer] : debouncers_) {
    for (auto& batch : debouncer.due(now)) out.push_back({name, std::move(batch)});
  }
  sort_by_deadline(out);
  return out;
}

std::optional<TimePoint> DebouncerRegistry::next_deadline() const {
  std::optional<TimePoint> next;
  for (const auto& [name, debouncer] : debouncers_) {
    auto d = debouncer.next_deadline();
    if (d && (!next || *d < *next)) next = d;
  }
  return next;
}

DebouncerRegistry::Flushed DebouncerRegistry::flush_all() {
  Flushed flushed;
  for (auto& [name, debouncer] : debouncers_) {
    for (auto& batch : debouncer.flush_all()) flushed.batches.push_back({name, std::move(batch)});
  }
  sort_by_deadline(flushed.batches);
  return flushed;
}

std::size_t DebouncerRegistry::buffered_items() const {
  std::size_t n = 0;
  for (const auto& [name, debouncer] : debouncers_) n += debouncer.buffered_items();
  return n;
}

}  // namespace drawbridge::core
