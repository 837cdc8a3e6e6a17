#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/clock.h"
#include "core/followup_queue.h"

namespace drawbridge::pipeline {

// The values the pipeline takes and returns (its facade is pipeline.h).

// One message as a channel hands it to Pipeline::accept (the local channel builds it with
// local_chat_message, local_chat.h).
struct InboundMessage {
  std::string channel;      // channel id
  std::string external_id;  // idempotency key / upstream message id
  std::string session_key;
  std::string chat_id;  // empty: same as session_key
  std::string sender;
  std::string text;
  std::string run_id;  // empty: generated
};

struct AcceptResult {
  std::int64_t inbound_id = 0;
  std::string run_id;
  bool duplicate = false;
  // "started": a turn began; "queued": waits behind the session's turn or for the restart;
  // "in_flight" / "done" / "aborted" / "failed": a duplicate of a message in that state.
  std::string status;
  std::string reason;  // "gateway-restarting" when queued by a drain
  std::string error;   // set when the message could not be committed: it was not accepted
};

struct SendRequest {
  std::string channel;
  std::string to;  // chat id
  std::string text;
  std::string idempotency_key;
  std::string session_key;  // empty: same as `to`
};

struct SendResult {
  std::string message_id;
  std::string run_id;
  bool duplicate = false;
  std::string error;  // set when it could not be committed
};

struct ActiveRun {
  std::string run_id;
  std::string session_key;
  std::int64_t inbound_id = 0;
  std::int64_t started_at_ms = 0;
};

// Where a notice goes: a chat with a turn running (see Pipeline::active_chats).
struct ActiveChat {
  std::string channel;
  std::string chat_id;
  std::string session_key;
  std::string run_id;
  bool detached = false;  // the turn that asked for the restart
};

struct PipelineOptions {
  std::size_t history_limit = 50;  // transcript entries handed to the agent
  // The in-memory history tails (SessionHistory): sessions kept and their text in total.
  std::size_t history_sessions = 1024;
  std::size_t history_bytes = 32u << 20;
  core::Duration retry_initial{500};
  core::Duration retry_max{30000};
};

// One transcript entry as the control plane shows it (chat.history, GET /v1/history).
struct TranscriptMessage {
  std::int64_t id = 0;  // increases with time; the `before` of the next older page
  std::string role;     // "user" or "assistant"
  std::string text;
  std::string run_id;
  std::int64_t created_at_ms = 0;
  bool interrupted = false;  // a reply cut short (store::TranscriptState::interrupted)
};

// A session as the control plane lists it (store::SessionSummary, for the server).
struct SessionInfo {
  std::string session_key;
  std::int64_t created_at_ms = 0;
  std::int64_t updated_at_ms = 0;
  std::string state;  // idle | resume_pending | suspended
  std::string label;
  std::string last_role;  // of the newest entry since the last reset; "" none
  std::string last_text;
};

// Whether a message sent with an idempotency key was taken up by a turn (inputReceipts).
struct InputReceipt {
  std::string session_key;
  bool consumed = false;           // a turn took it (running, done, aborted or failed)
  std::int64_t transcript_id = 0;  // the user entry it wrote
};

// A page of a session's transcript, oldest first; `more` when older entries remain.
struct HistoryPage {
  std::vector<TranscriptMessage> messages;
  bool more = false;
};

// What a generation takes from the config (messages.*, commands.restart).
struct PipelineSettings {
  core::Duration inbound_debounce{0};
  core::FollowupMode queue_mode = core::FollowupMode::followup;
  core::FollowupOptions queue;
  bool restart_command = true;  // "/restart" in chat requests a restart
  // messages.replyTtlMs: a reply part still undelivered when a start replays the outbox is
  // not sent once it is older than this (it is marked stale); 0 = never stale.
  core::Duration reply_ttl{21'600'000};
};

// A chat command the pipeline answered and hands to the runtime.
struct ChatCommand {
  std::string name;  // "restart"
  std::string run_id;
  std::string session_key;
  std::string channel;
};

}  // namespace drawbridge::pipeline
