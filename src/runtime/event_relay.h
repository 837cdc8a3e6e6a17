#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/executor.h"
#include "pipeline/chat_event.h"
#include "store/store.h"

namespace drawbridge::runtime {

// Chat events across replicas (docs/DECISIONS.md "Replicas on PostgreSQL"): a client connected
// to one replica sees the turns another one runs. The events this replica publishes go out as
// notices on kEventsChannel (the deltas of a run coalesced for kCoalesce, anything else at
// once, each event cut into notices of at most Store::kNoticeBytes); the notices of the other
// replicas are put together again and published here, with `accumulated` rebuilt. A notice
// that is lost (a listener reconnecting) loses deltas or a final on the way; a final is still
// in chat.history. What a peer's notices can make this replica hold is bounded (kMax*).
// Runs on the event loop.
class EventRelay final : public pipeline::ChatEventListener {
 public:
  static constexpr const char* kEventsChannel = "drawbridge_events";
  static constexpr std::chrono::milliseconds kCoalesce{50};
  static constexpr std::size_t kMaxAssemblies = 64;       // events being put together
  static constexpr std::size_t kMaxEventBytes = 1 << 20;  // one event, and one run's text
  static constexpr std::size_t kMaxRuns = 1024;           // runs whose deltas are being added up

  // `send`: the notices of one flush, in order (the gateway writes them with the next commit).
  using Send = std::function<void(std::vector<std::string> payloads)>;
  // `publish`: an event of another replica, to this replica's listeners.
  using Publish = std::function<void(pipeline::ChatEvent)>;
  EventRelay(core::Executor& executor, std::string replica_id, Send send, Publish publish);
  ~EventRelay() override;
  EventRelay(const EventRelay&) = delete;
  EventRelay& operator=(const EventRelay&) = delete;

  // An event of this replica (a listener of its pipeline). Events this relay is publishing
  // itself (another replica's) are not sent back.
  void on_chat_event(const pipeline::ChatEvent& event) override;
  // A notice of kEventsChannel, as the listener received it (its own included: skipped).
  void on_notice(const std::string& payload);
  // Whether another replica listens: with none, nothing is sent (a lone replica on PostgreSQL
  // pays nothing for the relay). The runtime sets it from the live replicas; a hello() notice
  // of another replica sets it at once.
  void set_peers(bool peers);
  bool peers() const { return peers_; }
  // The notice a replica sends when it starts listening.
  static std::string hello(const std::string& origin);

  // The notices of one event: "<number> <index> <count> <origin length>:<origin><part of the
  // event's JSON>", each at most `max_bytes`, cut between UTF-8 characters.
  static std::vector<std::string> encode(const std::string& origin, std::uint64_t number,
                                         const pipeline::ChatEvent& event,
                                         std::size_t max_bytes = store::Store::kNoticeBytes);
  static std::optional<pipeline::ChatEvent> decode_event(const std::string& json);

  std::uint64_t sent() const { return sent_; }          // events
  std::uint64_t received() const { return received_; }  // events published here
  std::uint64_t refused() const { return refused_; }    // notices that made no sense

 private:
  void send_events(std::vector<pipeline::ChatEvent> events);
  void flush_deltas();
  void deliver(pipeline::ChatEvent event);

  struct Assembly {
    std::uint64_t count = 0;
    std::uint64_t next = 0;
    std::string json;
  };

  core::Executor& executor_;
  std::string replica_id_;
  Send send_;
  Publish publish_;
  std::uint64_t number_ = 0;
  std::map<std::string, pipeline::ChatEvent> pending_;  // coalesced deltas, by run
  std::optional<core::TimerId> timer_;
  std::map<std::string, Assembly> assemblies_;  // by origin + number
  std::deque<std::string> assembly_order_;
  std::unordered_map<std::string, std::string> accumulated_;  // by run: another replica's
  bool delivering_ = false;
  bool peers_ = true;
  std::uint64_t sent_ = 0;
  std::uint64_t received_ = 0;
  std::uint64_t refused_ = 0;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace drawbridge::runtime
