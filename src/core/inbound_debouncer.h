#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/clock.h"

namespace drawbridge::core {

// The debounce key of one chat. The separator cannot occur in a channel id, so ("a:b", "c")
// and ("a", "b:c") never share a buffer.
std::string debounce_key(std::string_view channel, std::string_view chat);

// Turns rapid messages of one key into one batch (messages.inbound.debounceMs). It holds inbox
// row ids only and decides when they are released: the store keeps the durable copy, so a
// crash loses the timing, never a message.
class InboundDebouncer {
 public:
  using Item = std::int64_t;
  struct Batch {
    std::string key;
    std::vector<Item> items;  // arrival order
    TimePoint deadline;       // when the batch was (or would have been) due
  };

  // A negative window counts as zero.
  explicit InboundDebouncer(Duration window);

  // Buffers `item` and re-arms its key's deadline to now + window. With a zero window the item
  // passes through: the returned batch runs now, together with anything the key still buffered.
  std::optional<Batch> add(const std::string& key, Item item, TimePoint now);
  // Releases the batches whose deadline is at or before `now`, earliest deadline first.
  std::vector<Batch> due(TimePoint now);
  std::optional<TimePoint> next_deadline() const;
  // Release without waiting for the deadline (the drain); flush_all() is earliest deadline first.
  std::optional<Batch> flush(const std::string& key);
  std::vector<Batch> flush_all();

  // For a config reload: applies to later add() calls; deadlines already armed stay.
  void set_window(Duration window);
  Duration window() const { return window_; }
  // Keys with something buffered.
  std::size_t size() const { return buffers_.size(); }
  std::size_t buffered_items() const { return buffered_items_; }

 private:
  // Deadline, then arm order: keys due at the same instant come out in the order they were armed.
  using Slot = std::pair<TimePoint, std::uint64_t>;
  struct Buffer {
    std::vector<Item> items;
    Slot slot;
  };

  Batch release(std::unordered_map<std::string, Buffer>::iterator it);

  Duration window_;
  std::unordered_map<std::string, Buffer> buffers_;
  std::map<Slot, std::string> by_deadline_;
  std::uint64_t next_seq_ = 0;
  std::size_t buffered_items_ = 0;
};

// The debouncers of every channel, by name, so the drain can flush them all in one call.
class DebouncerRegistry {
 public:
  struct NamedBatch {
    std::string debouncer;
    InboundDebouncer::Batch batch;
  };
  struct Flushed {
    std::vector<NamedBatch> batches;  // earliest deadline first across debouncers
    // Buffers flushed, not debouncers registered: zero tells the drain there was nothing to
    // hand to the followup queues.
    std::size_t count() const { return batches.size(); }
    std::size_t items() const;
  };

  // Registers `name`; when it exists, only its window changes and what it buffers is kept.
  InboundDebouncer& add(const std::string& name, Duration window);
  InboundDebouncer* find(const std::string& name);
  // Unregisters `name` and hands back what it still buffered, so removing never drops a message.
  std::vector<InboundDebouncer::Batch> remove(const std::string& name);

  std::vector<NamedBatch> due(TimePoint now);
  std::optional<TimePoint> next_deadline() const;
  Flushed flush_all();

  // Debouncers registered.
  std::size_t size() const { return debouncers_.size(); }
  std::size_t buffered_items() const;

 private:
  std::map<std::string, InboundDebouncer> debouncers_;
};

}  // namespace drawbridge::core
