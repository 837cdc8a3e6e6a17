#pragma once

#include <string>

#include "pipeline/channel.h"

namespace drawbridge::channels {

// The gateway's own chat. Ingress: messages arrive through the control plane (`chat.send`,
// POST /v1/messages), built by pipeline::local_chat_message. Egress: its chat is the
// pipeline's chat-event listeners (the clients of the session), to whom the pipeline publishes
// every delivered part; so sending cannot fail and needs nothing here. The transcript
// (`chat.history`) is the durable copy.
class LocalChannel final : public pipeline::Channel {
 public:
  explicit LocalChannel(std::string id) : id_(std::move(id)) {}
  const std::string& id() const override { return id_; }
  void start() override { ready_ = true; }
  void stop(std::function<void()> done) override;
  bool ready() const override { return ready_; }
  bool send_cannot_fail() const override { return true; }
  void send(const pipeline::OutboundPart& part,
            std::function<void(pipeline::SendStatus, std::string)> done) override;

 private:
  std::string id_;
  bool ready_ = false;
};

}  // namespace drawbridge::channels
