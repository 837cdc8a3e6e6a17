#pragma once

#include <optional>
#include <string>

#include "pipeline/types.h"

namespace drawbridge::pipeline {

// What a client of the control plane typed into the gateway's own chat (`chat.send`,
// POST /v1/messages).
struct LocalChatInput {
  std::string channel;          // the local channel's id
  std::string session_key;
  std::string sender;           // the client id, or the HTTP body's `sender`
  std::string text;
  std::string idempotency_key;  // the dedupe key
  // chat.send runs under its idempotency key (as OpenClaw); HTTP gets a generated run id.
  bool key_is_run_id = false;
};

// The local channel's ingress: the one place its InboundMessage is built. It lives in the
// pipeline layer (not channels/local/) because the control plane that receives these
// messages may use the pipeline but not the channels (tests/architecture/layers.json).
InboundMessage local_chat_message(const LocalChatInput& in);

}  // namespace drawbridge::pipeline
