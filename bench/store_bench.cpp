// drawbridge_store_bench: Google Benchmark micro benchmarks of the message path's store and
// pipeline helpers.
//
//   BM_StoreReply          insert_inbound + stage_reply + mark_sent per message (the three
//                          commits every answered message needs), file-backed or :memory:
//   BM_StorePipelinePath   every store call Pipeline made per echo message before group commit
//                          (commit 7a0b60f), each its own transaction (after a prefill of 30
//                          messages per session, so the transcript read is full):
//                          insert_inbound, inbound, set_inbound_state(running),
//                          transcript(session, 50), stage_reply, mark_sent
//   BM_StoreBatch          the gateway's hot path since group commit: insert_inbound +
//                          stage_reply + mark_sent per message, B messages per
//                          begin_batch()/commit_batch() (B = 1, 10, 100), process or power
//   BM_StoreTranscript     transcript(session, limit) on a session with a full history
//   BM_SplitReply          Pipeline::split_reply on a short and a long reply
//   BM_FollowupQueue       enqueue into an idle session + on_turn_finished, many sessions
//   BM_MessageSql          what-if: the SQL of BM_StorePipelinePath (copied from
//                          src/store/sqlite_store.cpp; keep in sync) run through
//                          store::sqlite::Database, by transaction layout:
//                          0 per call, as 7a0b60f (4 write + 2 read transactions/message),
//                          1 as 0 without the transcript read,
//                          2 one write transaction per message,
//                          3 group commit: 100 messages per transaction (Database::begin_batch);
//                          second argument 1: PRAGMA locking_mode = EXCLUSIVE
//
// Arguments: durability 0 = process (synchronous=NORMAL), 1 = power (synchronous=FULL);
// storage 0 = file in a fresh temp folder, 1 = ":memory:".

#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "core/followup_queue.h"
#include "pipeline/pipeline.h"
#include "store/sqlite.h"
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

// Messages per session written before timing, so transcript(session, 50) reads a full page
// as it does in a gateway that has been running for a while.
constexpr int kPrefillPerSession = 30;

void BM_StorePipelinePath(benchmark::State& state) {
  BenchStore bs(state.range(1) != 0, state.range(0) ? Durability::power : Durability::process);
  auto& st = *bs.store;
  const auto sessions = session_keys();
  std::int64_t n = 0;
  const std::vector<std::string> parts{kText};
  for (; n < kSessions * kPrefillPerSession; ++n) {
    const auto& session = sessions[static_cast<std::size_t>(n % kSessions)];
    auto res = st.insert_inbound(inbound_row(session, n, kText), 1000 + n);
    st.stage_reply(res.record.id, parts, 1000 + n);
  }
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

// {durability, messages per batch}
void BM_StoreBatch(benchmark::State& state) {
  BenchStore bs(false, state.range(0) ? Durability::power : Durability::process);
  auto& st = *bs.store;
  const auto sessions = session_keys();
  const std::int64_t per_batch = state.range(1);
  std::int64_t n = 0;
  const std::vector<std::string> parts{kText};
  for (auto _ : state) {
    if (n % per_batch == 0) st.begin_batch();
    const auto& session = sessions[static_cast<std::size_t>(n % kSessions)];
    auto res = st.insert_inbound(inbound_row(session, n, kText), 1000 + n);
    auto rows = st.stage_reply(res.record.id, parts, 1000 + n);
    st.mark_sent(rows.front().id, 1000 + n);
    ++n;
    if (n % per_batch == 0) st.commit_batch();
  }
  if (n % per_batch != 0) st.commit_batch();
  state.SetLabel(std::string(state.range(0) ? "power" : "process") + ", " +
                 std::to_string(per_batch) + " msg/commit");
  state.SetItemsProcessed(state.iterations());
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

// The session lane of the message path (FollowupQueue; core::SessionLanes, which this
// benchmark measured before, was deleted as unused in issue 11).
void BM_FollowupQueue(benchmark::State& state) {
  drawbridge::core::FollowupQueue queue;
  const auto sessions = session_keys();
  std::int64_t item = 0;
  for (auto _ : state) {
    const auto& s = sessions[static_cast<std::size_t>(item % kSessions)];
    benchmark::DoNotOptimize(queue.enqueue(s, item, drawbridge::core::FollowupMode::followup));
    benchmark::DoNotOptimize(queue.on_turn_finished(s));
    ++item;
  }
  state.SetItemsProcessed(state.iterations());
}

// The SQL of one echo message, as SqliteStore runs it (src/store/sqlite_store.cpp).
struct MessageSql {
  explicit MessageSql(drawbridge::store::sqlite::Database& db)
      : insert_inbox(db.prepare(
            "INSERT INTO inbox (channel, external_id, session_key, chat_id, sender, text, run_id, "
            "state, received_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?) "
            "ON CONFLICT (channel, external_id) DO NOTHING")),
        inbox_by_id(db.prepare("SELECT id, channel, external_id, session_key, chat_id, sender, "
                               "text, run_id, state, received_at_ms FROM inbox WHERE id = ?")),
        set_inbox_state(db.prepare("UPDATE inbox SET state = ? WHERE id = ?")),
        upsert_session(db.prepare(
            "INSERT INTO sessions (session_key, created_at_ms, updated_at_ms) VALUES (?, ?, ?) "
            "ON CONFLICT (session_key) DO UPDATE SET updated_at_ms = excluded.updated_at_ms")),
        insert_transcript(db.prepare(
            "INSERT INTO transcript (session_key, role, text, run_id, inbound_id, created_at_ms) "
            "VALUES (?, ?, ?, ?, ?, ?)")),
        transcript_tail(db.prepare(
            "SELECT id, session_key, role, text, run_id, inbound_id, created_at_ms FROM "
            "transcript WHERE session_key = ? ORDER BY id DESC LIMIT ?")),
        insert_outbox(db.prepare(
            "INSERT INTO outbox (idem_key, inbound_id, part, final_part, channel, chat_id, "
            "session_key, run_id, text, state, created_at_ms) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?) ON CONFLICT (idem_key) DO NOTHING")),
        set_outbox_state(db.prepare("UPDATE outbox SET state = ?, sent_at_ms = ? WHERE id = ?")) {}
  drawbridge::store::sqlite::Statement insert_inbox, inbox_by_id, set_inbox_state,
      upsert_session, insert_transcript, transcript_tail, insert_outbox, set_outbox_state;
};

void BM_MessageSql(benchmark::State& state) {
  using drawbridge::store::sqlite::Cursor;
  using drawbridge::store::sqlite::Database;
  using drawbridge::store::sqlite::Transaction;
  const int mode = static_cast<int>(state.range(0));
  std::string dir;
  {
    // SqliteStore creates the schema; the benchmark then opens the file on its own.
    BenchStore bs(false, Durability::process);
    dir = bs.dir;
    bs.dir.clear();  // keep the folder
  }
  {
    Database db(dir + "/drawbridge.db");
    db.exec("PRAGMA journal_mode = WAL");
    db.exec("PRAGMA synchronous = NORMAL");
    db.exec("PRAGMA foreign_keys = ON");
    if (state.range(1)) db.exec("PRAGMA locking_mode = EXCLUSIVE");
    MessageSql q(db);
    const auto sessions = session_keys();
    const std::string text = kText;
    std::int64_t n = 0;
    // Prefill (see kPrefillPerSession): one user and one assistant entry per message.
    db.begin_batch();
    for (; n < kSessions * kPrefillPerSession; ++n) {
      const auto& session = sessions[static_cast<std::size_t>(n % kSessions)];
      const std::string key = "bench-" + std::to_string(n);
      q.insert_inbox.execute(std::string_view("local"), key, session, session,
                             std::string_view("bench"), text, key, n);
      const auto id = db.last_insert_rowid();
      q.upsert_session.execute(session, n, n);
      q.insert_transcript.execute(session, std::string_view("user"), text, key,
                                  std::optional<std::int64_t>(id), n);
      q.insert_transcript.execute(session, std::string_view("assistant"), text, key,
                                  std::optional<std::int64_t>(id), n);
      q.set_inbox_state.execute(std::string_view("done"), id);
    }
    db.commit_batch();
    // Inside a batch (modes 2 and 3) every Transaction is a savepoint, as it would be if the
    // store wrapped an event-loop turn in Database::begin_batch / commit_batch.
    auto tx = [&](Transaction::Mode m, auto&& body) {
      Transaction t(db, m);
      body();
      t.commit();
    };
    for (auto _ : state) {
      if (mode == 2 || (mode == 3 && n % 100 == 0)) db.begin_batch();
      const auto& session = sessions[static_cast<std::size_t>(n % kSessions)];
      const std::string key = "bench-" + std::to_string(n);
      std::int64_t inbound_id = 0;
      tx(Transaction::Mode::write, [&] {  // insert_inbound
        q.insert_inbox.execute(std::string_view("local"), key, session, session,
                               std::string_view("bench"), text, key, n);
        inbound_id = db.last_insert_rowid();
        q.upsert_session.execute(session, n, n);
        q.insert_transcript.execute(session, std::string_view("user"), text, key,
                                    std::optional<std::int64_t>(inbound_id), n);
      });
      tx(Transaction::Mode::read, [&] {  // inbound
        Cursor c = q.inbox_by_id.query(inbound_id);
        c.next();
        benchmark::DoNotOptimize(c.text(6));
      });
      tx(Transaction::Mode::write,
         [&] { q.set_inbox_state.execute(std::string_view("running"), inbound_id); });
      if (mode != 1) {
        tx(Transaction::Mode::read, [&] {  // transcript(session, 50)
          Cursor c = q.transcript_tail.query(session, std::int64_t{50});
          while (c.next()) benchmark::DoNotOptimize(c.text(3));
        });
      }
      std::int64_t outbox_id = 0;
      tx(Transaction::Mode::write, [&] {  // stage_reply
        Cursor c = q.inbox_by_id.query(inbound_id);
        c.next();
        q.upsert_session.execute(session, n, n);
        q.insert_transcript.execute(session, std::string_view("assistant"), text, key,
                                    std::optional<std::int64_t>(inbound_id), n);
        q.insert_outbox.execute(std::to_string(inbound_id) + ":0", inbound_id, std::int64_t{0},
                                std::int64_t{1}, std::string_view("local"), session, session, key,
                                text, n);
        outbox_id = db.last_insert_rowid();
        q.set_inbox_state.execute(std::string_view("done"), inbound_id);
      });
      tx(Transaction::Mode::write, [&] {  // mark_sent
        q.set_outbox_state.execute(std::string_view("sent"), n, outbox_id);
      });
      ++n;
      if (mode == 2 || (mode == 3 && n % 100 == 0)) db.commit_batch();
    }
    if (db.in_batch()) db.commit_batch();
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
  static const char* names[] = {"per call (7a0b60f)", "no transcript read", "1 tx/message",
                                "100 messages/tx"};
  state.SetLabel(std::string(names[mode]) + (state.range(1) ? ", exclusive lock" : ""));
  state.SetItemsProcessed(state.iterations());
}

}  // namespace

// {durability, storage}
BENCHMARK(BM_StoreReply)->Args({0, 0})->Args({0, 1})->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_StoreReply)->Args({1, 0})->Unit(benchmark::kMicrosecond)->MinTime(2.0)->UseRealTime();
BENCHMARK(BM_StorePipelinePath)->Args({0, 0})->Args({0, 1})->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_StoreBatch)
    ->Args({0, 1})->Args({0, 10})->Args({0, 100})->Args({1, 10})->Args({1, 100})
    ->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_StoreTranscript)->Arg(50)->Arg(200)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_SplitReply)->Args({32, 0})->Args({32, 4000})->Args({10000, 2000});
BENCHMARK(BM_FollowupQueue);
// {layout, exclusive}
BENCHMARK(BM_MessageSql)
    ->Args({0, 0})->Args({1, 0})->Args({2, 0})->Args({3, 0})->Args({0, 1})->Args({3, 1})
    ->Unit(benchmark::kMicrosecond)->UseRealTime();

BENCHMARK_MAIN();
