#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace drawbridge::pipeline {

struct OutboundPart {
  std::int64_t outbox_id = 0;
  std::string idem_key;  // "<inbound id>:<part>" or "send:<key>"
  std::int64_t inbound_id = 0;
  int part = 0;
  bool final_part = false;
  std::string channel;
  std::string chat_id;
  std::string session_key;
  std::string run_id;
  std::string text;
};

enum class SendStatus { sent, retry, failed };

// What a channel says of its link to the chat network, for status, health, /metrics and
// /readyz. A channel is `connected` only while it receives: a bot answered with 409 Conflict is
// in `conflict` (deaf) however often its poll restarts.
// standby: another replica holds the account's lease and serves it (AccountLeases).
enum class LinkState { connecting, connected, conflict, failed, stopped, standby };
inline const char* link_state_name(LinkState s) {
  switch (s) {
    case LinkState::connecting: return "connecting";
    case LinkState::connected: return "connected";
    case LinkState::conflict: return "conflict";
    case LinkState::failed: return "failed";
    case LinkState::stopped: return "stopped";
    case LinkState::standby: return "standby";
  }
  return "unknown";
}

struct ChannelHealth {
  LinkState state = LinkState::connecting;
  std::string last_error;             // empty: none since start
  std::int64_t last_error_at_ms = 0;  // wall clock (ms since the epoch) of last_error
  std::uint64_t errors = 0;           // errors since the channel was created
  std::uint64_t conflicts = 0;        // 409s (Telegram) since the channel was created
  std::string detail;                 // e.g. the bot's username, the IRC nick in use
};

// One chat network account. A channel feeds Pipeline::accept and acknowledges upstream only
// after accept returned; it sends what the reply delivery hands it.
class Channel {
 public:
  virtual ~Channel() = default;
  virtual const std::string& id() const = 0;
  virtual void start() = 0;
  // Stops receiving; `done` runs once the poller (if any) has returned and its cursor is saved.
  virtual void stop(std::function<void()> done) = 0;
  virtual bool ready() const = 0;
  // The link's state; the default says connected when ready.
  virtual ChannelHealth health() const {
    ChannelHealth h;
    h.state = ready() ? LinkState::connected : LinkState::connecting;
    return h;
  }
  // True when send() always reports `sent` at once (the local channel: its chat is the
  // pipeline's chat-event listeners, whom the pipeline publishes every delivered part to).
  // Its reply parts are then staged as sent in the commit that stages them: the transcript
  // entry written with them is their durable copy (docs/DECISIONS.md "One message path").
  virtual bool send_cannot_fail() const { return false; }
  // A channel that receives by webhook (Telegram's setWebhook): the path on the gateway's
  // HTTP port it receives on; empty: none.
  virtual std::string webhook_path() const { return {}; }
  // True when the channel may keep running from one generation of this process to the next
  // (an in-process restart): its connection stays up, what it receives meanwhile is journaled
  // by the draining pipeline, and the next generation takes it over when its settings are
  // unchanged instead of stopping it and starting a new one (an IRC connection: no QUIT, no
  // reconnect, no nick left held). docs/DECISIONS.md "An IRC connection outlives an in-process
  // restart".
  virtual bool carries_over() const { return false; }
  // True while another replica holds this account's connection (a cluster: AccountLeases),
  // so replies to it cannot go out from here: the sessions with messages of this channel run
  // on that replica (the pipeline neither claims nor runs them here). Telegram sends from
  // any replica: false.
  virtual bool served_elsewhere() const { return false; }
  // A POST to that path. `respond(status, body)` runs exactly once, on the event loop thread:
  // 200 only once what it carried is durable, so the sender delivers again whatever was not.
  virtual void on_webhook(const std::string& secret_header, const std::string& body,
                          std::function<void(int status, std::string body)> respond) {
    (void)secret_header;
    (void)body;
    respond(404, "{\"ok\":false}");
  }
  // Delivers one reply part. `done` runs exactly once, on the event loop thread. The pipeline
  // publishes the part as a `final` chat event once it is sent.
  virtual void send(const OutboundPart& part,
                    std::function<void(SendStatus status, std::string error)> done) = 0;
};

}  // namespace drawbridge::pipeline
