#include "channels/local/local_channel.h"

namespace drawbridge::channels {

void LocalChannel::stop(std::function<void()> done) {
  ready_ = false;
  done();
}

void LocalChannel::send(const pipeline::OutboundPart&,
                        std::function<void(pipeline::SendStatus, std::string)> done) {
  // The pipeline publishes the part to the session's clients once this reports it sent.
  done(pipeline::SendStatus::sent, {});
}

}  // namespace drawbridge::channels
