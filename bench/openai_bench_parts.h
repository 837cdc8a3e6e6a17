#pragma once

// The parts of drawbridge_openai_bench (see bench/openai_bench.cpp for what each measures).
// Each run starts its own fake and (but for `direct`) its own gateway, and returns one JSON
// result with "problems" (turns lost, refused, failed or missing deltas) counted.

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace openai_bench {

struct Options {
  std::string bin;
  std::string tmp;
  std::string parts = "direct,first,streams,memory";
  int turns = 2000;
  std::vector<int> first_concurrency{1, 20};
  int first_deltas = 3;
  int first_gap_ms = 0;    // the fake's pause before each delta (the first included)
  int first_think_ms = 0;  // a session's pause after a final: uniform in [0, 2 x this]
  int warmup_turns = 20;
  int streams = 200;
  int deltas = 100;
  int gap_ms = 20;
  int stagger_ms = 200;
  std::string pace = "steady";  // streams: steady, grid or after-write (OpenAiFake::Pace)
  std::vector<int> mem_streams{200, 1000};
  int settle_ms = 1000;
  int repeats = 1;
  int quiet_s = 0;
  int quiet_pct = 80;
  std::string keep;
  std::string json_out;
  std::string samples;  // streams: every delta's delay, as CSV lines
  std::string log_level = "info";
};

// The fake read directly, no gateway: the floor of both latency measurements (returns two
// results: "first-direct" and "streams-direct").
std::vector<nlohmann::json> run_direct(const Options& o, int run);
nlohmann::json run_first(const Options& o, const std::filesystem::path& dir, int concurrency,
                         int run);
nlohmann::json run_streams(const Options& o, const std::filesystem::path& dir, int run);
nlohmann::json run_memory(const Options& o, const std::filesystem::path& dir, int streams);

}  // namespace openai_bench
