#pragma once

#include <map>
#include <string>

#include "pipeline/agent.h"
#include "pipeline/channel.h"

namespace drawbridge::pipeline {

// Where a channel's messages go: the one table of channel -> agent (the runtime reads it back
// through Pipeline::agent_of instead of keeping a copy).
struct Route {
  Channel* channel = nullptr;
  Agent* agent = nullptr;
  std::string agent_id;  // the config's name of the agent, for status
  int max_message_chars = 0;
  int history_limit = 0;  // earlier messages a turn sees; 0: PipelineOptions::history_limit
};
using Routes = std::map<std::string, Route>;  // by channel id

}  // namespace drawbridge::pipeline
