#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "agents/openai/openai_settings.h"
#include "core/executor.h"

namespace drawbridge::agents::openai {

struct ProbeResult {
  bool ok = false;
  std::string message;           // one line: what works, or exactly what is wrong
  std::string endpoint;          // "https://api.openai.com:443"
  bool model_listed = false;     // the model is in GET /models
  std::int64_t models = -1;      // how many GET /models listed (-1: not read)
  std::int64_t latency_ms = -1;  // the test completion, request to first token
  std::string reply;             // what the model answered (the first 80 bytes)
};

// `drawbridge agents probe`: GET <baseUrl>/models (reaches the endpoint, checks the key, looks
// for the model), then one tiny chat completion as a turn would send it (so the key, the model
// and the parameters are all tried). Runs on `io` until done; `done` is called once.
// `executor` runs on `io`'s thread (the CLI's AsioExecutor).
void probe(boost::asio::io_context& io, core::Executor& executor, OpenAiSettings settings,
           std::chrono::milliseconds timeout, std::function<void(ProbeResult)> done);

}  // namespace drawbridge::agents::openai
