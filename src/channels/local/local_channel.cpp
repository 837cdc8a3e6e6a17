#include "channels/local/local_channel.h"

namespace drawbridge::channels {

LocalChannel::LocalChannel(std::string id, pipeline::Pipeline& pipeline)
    : id_(std::move(id)), pipeline_(pipeline) {}

void LocalChannel::stop(std::function<void()> done) {
  ready_ = false;
  done();
}

void LocalChannel::send(const pipeline::OutboundPart& part,
                        std::function<void(pipeline::SendStatus, std::string)> done) {
  pipeline::ChatEvent ev;
  ev.state = pipeline::ChatEvent::State::final;
  ev.run_id = part.run_id;
  ev.session_key = part.session_key;
  ev.text = part.text;
  ev.message_id = part.idem_key;
  ev.final_part = part.final_part || part.inbound_id == 0;
  pipeline_.publish(std::move(ev));
  done(pipeline::SendStatus::sent, {});
}

}  // namespace drawbridge::channels
