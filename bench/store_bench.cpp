// drawbridge_store_bench: Google Benchmark micro benchmarks of the message path's store and
// pipeline helpers.
//
//   BM_StoreReply          insert_inbound + stage_reply + mark_sent per message (the three
//                          commits every answered message needs), file-backed or :memory:
//   BM_StorePipelinePath   every store call Pipeline makes per echo message today:
//                          insert_inbound, inbound, set_inbound_state(running),
//                          transcript(session, 50), stage_reply, mark_sent
//   BM_StoreTranscript     transcript(session, limit) on a session with a full history
//   BM_SplitReply          Pipeline::split_reply on a short and a long reply
//   BM_SessionLanes        enqueue + finish over many sessions
//
// Arguments: durability 0 = process (synchronous=NORMAL), 1 = power (synchronous=FULL);
// storage 0 = file in a fresh temp folder, 1 = ":memory:".

#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "core/session_lanes.h"
#include "pipeline/pipeline.h"
#include "store/sqlite_store.h"

namespace fs = std::filesystem;
using drawbridge::store::Durability;
using drawbridge::store::SqliteStore;

namespace {

constexpr int kSessions = 100;

// A store in a fresh temp folder (or in memory); the folder goes away with it.
struct BenchStore {
  BenchStore(bool memory, Durability d) {
    if (memory) {
      store = SqliteStore::open(":memory:", d);
      return;
    }
    const char* base = std::getenv("DRAWBRIDGE_BENCH_TMP");
    std::string templ = std::string(base ? base : "/tmp") + "/drawbridge-store-bench-XXXXXX";
    std::vector<char> buf(templ.begin(), templ.end());
    buf.push_back('\0');
    if (!::mkdtemp(buf.data())) throw std::runtime_error("mkdtemp failed");
    dir = buf.data();
    store = SqliteStore::open(dir + "/drawbridge.db", d);
  }
  ~BenchStore() {
    store.reset();
    if (!dir.empty()) {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  }
  std::string dir;
  std::unique_ptr<SqliteStore> store;
};

std::vector<std::string> session_keys() {
  std::vector<std::string> keys;
  for (int i = 0; i < kSessions; ++i) keys.push_back("bench-session-" + std::to_string(i));
  return keys;
}

drawbridge::store::NewInbound inbound_row(const std::string& session, std::int64_t n,
                                          const std::string& text) {
  std::string key = "bench-" + std::to_string(n);
  return {"local", key, session, session, "bench", text, key};
}

const std::string kText = "the quick brown fox jumps over t";  // 32 bytes, like the loadgen

void set_labels(benchmark::State& state) {
  state.SetLabel(std::string(state.range(0) ? "power" : "process") + "/" +
                 (state.range(1) ? "memory" : "file"));
  state.SetItemsProcessed(state.iterations());
}

void BM_StoreReply(benchmark::State& state) {
  BenchStore bs(state.range(1) != 0, state.range(0) ? Durability::power : Durability::process);
  auto& st = *bs.store;
  const auto sessions = session_keys();
  std::int64_t n = 0;
  const std::vector<std::string> parts{kText};
  for (auto _ : state) {
    const auto& session = sessions[static_cast<std::size_t>(n % kSessions)];
    auto res = st.insert_inbound(inbound_row(session, n, kText), 1000 + n);
    auto rows = st.stage_reply(res.record.id, parts, 1000 + n);
    st.mark_sent(rows.front().id, 1000 + n);
    ++n;
  }
  set_labels(state);
}

void BM_StorePipelinePath(benchmark::State& state) {
  BenchStore bs(state.range(1) != 0, state.range(0) ? Durability::power : Durability::process);
  auto& st = *bs.store;
  const auto sessions = session_keys();
  std::int64_t n = 0;
  const std::vector<std::string> parts{kText};
  for (auto _ : state) {
    const auto& session = sessions[static_cast<std::size_t>(n % kSessions)];
    auto res = st.insert_inbound(inbound_row(session, n, kText), 1000 + n);
    auto rec = st.inbound(res.record.id);
    st.set_inbound_state(rec->id, drawbridge::store::InboxState::running);
    auto history = st.transcript(session, 50);
    benchmark::DoNotOptimize(history);
    auto rows = st.stage_reply(res.record.id, parts, 1000 + n);
    st.mark_sent(rows.front().id, 1000 + n);
    ++n;
  }
  set_labels(state);
}

void BM_StoreTranscript(benchmark::State& state) {
  BenchStore bs(false, Durability::process);
  auto& st = *bs.store;
  const std::vector<std::string> parts{kText};
  for (std::int64_t n = 0; n < 200; ++n) {
    auto res = st.insert_inbound(inbound_row("s", n, kText), n);
    st.stage_reply(res.record.id, parts, n);
  }
  for (auto _ : state) {
    auto t = st.transcript("s", static_cast<std::size_t>(state.range(0)));
    benchmark::DoNotOptimize(t);
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_SplitReply(benchmark::State& state) {
  std::string text;
  while (text.size() < static_cast<std::size_t>(state.range(0))) {
    text += "the quick brown fox jumps over the lazy dog\n";
  }
  text.resize(static_cast<std::size_t>(state.range(0)));
  const int max_chars = static_cast<int>(state.range(1));
  for (auto _ : state) {
    auto parts = drawbridge::pipeline::Pipeline::split_reply(text, max_chars);
    benchmark::DoNotOptimize(parts);
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(text.size()));
}

void BM_SessionLanes(benchmark::State& state) {
  drawbridge::core::SessionLanes lanes;
  const auto sessions = session_keys();
  std::int64_t item = 0;
  for (auto _ : state) {
    const auto& s = sessions[static_cast<std::size_t>(item % kSessions)];
    benchmark::DoNotOptimize(lanes.enqueue(s, item));
    benchmark::DoNotOptimize(lanes.finish(s));
    ++item;
  }
  state.SetItemsProcessed(state.iterations());
}

}  // namespace

// {durability, storage}
BENCHMARK(BM_StoreReply)->Args({0, 0})->Args({0, 1})->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_StoreReply)->Args({1, 0})->Unit(benchmark::kMicrosecond)->MinTime(2.0)->UseRealTime();
BENCHMARK(BM_StorePipelinePath)->Args({0, 0})->Args({0, 1})->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_StoreTranscript)->Arg(50)->Arg(200)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_SplitReply)->Args({32, 0})->Args({32, 4000})->Args({10000, 2000});
BENCHMARK(BM_SessionLanes);

BENCHMARK_MAIN();
