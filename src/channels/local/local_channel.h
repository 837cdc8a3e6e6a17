#pragma once

#include <string>

#include "pipeline/channel.h"
#include "pipeline/pipeline.h"

namespace drawbridge::channels {

// The gateway's own chat: messages arrive through the control plane (`chat.send`,
// POST /v1/messages) and replies leave as `chat` events to the clients of the session; the
// transcript (`chat.history`) is the durable copy.
class LocalChannel final : public pipeline::Channel {
 public:
  LocalChannel(std::string id, pipeline::Pipeline& pipeline);
  const std::string& id() const override { return id_; }
  void start() override { ready_ = true; }
  void stop(std::function<void()> done) override;
  bool ready() const override { return ready_; }
  void send(const pipeline::OutboundPart& part,
            std::function<void(pipeline::SendStatus, std::string)> done) override;

 private:
  std::string id_;
  pipeline::Pipeline& pipeline_;
  bool ready_ = false;
};

}  // namespace drawbridge::channels
