#include "pipeline/local_chat.h"

namespace drawbridge::pipeline {

InboundMessage local_chat_message(const LocalChatInput& in) {
  InboundMessage m;
  m.channel = in.channel;
  m.external_id = in.idempotency_key;
  m.session_key = in.session_key;
  m.sender = in.sender;
  m.text = in.text;
  if (in.key_is_run_id) m.run_id = in.idempotency_key;
  return m;
}

}  // namespace drawbridge::pipeline
