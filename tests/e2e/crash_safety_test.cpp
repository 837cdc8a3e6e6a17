// The promise under SIGKILL: every acknowledged message is answered, exactly once, in order,
// however often the gateway dies (shared/DESIGN.md, "The promise" 1 and 2).

#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <condition_variable>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "e2e/harness.h"

namespace drawbridge::e2e {
namespace {

using Clock = std::chrono::steady_clock;

struct Acked {
  std::string key;
  std::string session;
  std::string text;
  std::string run_id;
};

// How many runs of the gateway (their log files in `dir`) logged `needle`.
int runs_that_logged(const TempDir& dir, const std::string& needle) {
  int n = 0;
  for (const auto& f : fs::directory_iterator(dir.path())) {
    const auto name = f.path().filename().string();
    if (name.rfind("gateway-", 0) != 0) continue;
    if (read_text(f.path()).find(needle) != std::string::npos) ++n;
  }
  return n;
}

struct KillLoop {
  int rounds = 8;
  int sessions = 10;
  int echo_delay_ms = 20;
  int max_acks_before_kill = 40;  // the kill comes after 0..this many acknowledgements
  int max_extra_ms = 40;          // ... plus 0..this many milliseconds
  int resends_per_round = 3;      // acknowledged keys sent again after each restart
};

// Kills the gateway with SIGKILL `rounds` times at random points while one client posts as fast
// as it can, starts it again on the same data folder each time, then checks the transcripts:
// every acknowledged message in its session once, answered once with its own text, in order.
//
// A session whose turn three restarts in a row interrupt is suspended by design (restart-loop
// protection), which would close acknowledged messages unanswered. So every other round first
// lets the previous kill's backlog finish (every interrupted session completes a turn, which
// ends its run of interrupts) before messages flow again; the rounds between still kill at
// any point, also while the replay of the last crash runs.
void run_kill_loop(const KillLoop& opt, const std::string& name) {
  const std::uint64_t seed = test_seed();
  std::cout << "[e2e] " << name << " seed " << seed << " (rerun with DRAWBRIDGE_E2E_SEED=" << seed
            << ")" << std::endl;
  ::testing::Test::RecordProperty("seed", std::to_string(seed));
  SCOPED_TRACE("DRAWBRIDGE_E2E_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  auto uniform = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  const auto t0 = Clock::now();

  TempDir dir;
  // Every message must be answered: no queue cap may drop one (the default cap is 20).
  json cfg = echo_config(opt.echo_delay_ms);
  cfg["messages"] = {{"queue", {{"cap", 1000}}}};
  Gateway gw(dir, cfg);
  std::vector<Acked> acked;
  int next_message = 0;
  int unacked = 0;
  int killed_mid_replay = 0;

  for (int round = 0; round < opt.rounds; ++round) {
    gw.start();
    if (round > 0) {
      json s = gw.client({"operator.read"})->request("status", json::object());
      EXPECT_EQ(s.value("cleanStart", true), false) << "round " << round << " after SIGKILL";
      if (round % 2 == 0) {
        s = wait_until_idle(gw, 20s);
        ASSERT_EQ(s["store"].value("inboxUnfinished", -1), 0) << "round " << round << s.dump(2);
      } else if (s["store"].value("inboxUnfinished", 0) > 0) {
        ++killed_mid_replay;  // this round's kill may land while the replay still runs
      }
    }

    // Resending an acknowledged key after a crash is a duplicate of the first run.
    for (int i = 0; i < opt.resends_per_round && !acked.empty(); ++i) {
      const Acked& a = acked[uniform(0, static_cast<int>(acked.size()) - 1)];
      auto res = gw.post_message(
          {{"sessionKey", a.session}, {"message", a.text}, {"idempotencyKey", a.key}});
      EXPECT_EQ(res.status, 200) << "resend of " << a.key << " in round " << round << ": "
                                 << res.body;
      EXPECT_EQ(res.json_body().value("duplicate", false), true) << res.body;
      EXPECT_EQ(res.json_body().value("runId", ""), a.run_id) << res.body;
    }

    // One client posts as fast as it can; the test kills the gateway under it after a random
    // number of acknowledgements plus a random number of milliseconds.
    const int kill_after = uniform(0, opt.max_acks_before_kill);
    const int extra_ms = uniform(0, opt.max_extra_ms);
    std::mutex mu;
    std::condition_variable cv;
    std::vector<Acked> round_acked;
    std::vector<std::string> round_errors;
    int round_unacked = 0;
    bool poster_done = false;
    std::atomic<bool> stop{false};
    const int first = next_message;
    std::thread poster([&, port = gw.port(), token = gw.token()] {
      HttpClient http(port, 3s);
      for (int n = first; !stop.load(); ++n) {
        Acked m{"crash-" + std::to_string(n), "crash-s" + std::to_string(n % opt.sessions),
                "message " + std::to_string(n) + " of round " + std::to_string(round), ""};
        auto res = http.request(
            "POST", "/v1/messages",
            json{{"sessionKey", m.session}, {"message", m.text}, {"idempotencyKey", m.key}}.dump(),
            {{"Authorization", "Bearer " + token}, {"Content-Type", "application/json"}});
        std::lock_guard lock(mu);
        if (!res) {
          ++round_unacked;  // the gateway died with this one in flight: no promise either way
          break;
        }
        if (res->status != 202 || res->json_body().value("duplicate", true)) {
          round_errors.push_back(m.key + ": " + std::to_string(res->status) + " " + res->body);
          break;
        }
        m.run_id = res->json_body().value("runId", "");
        round_acked.push_back(std::move(m));
        cv.notify_all();
      }
      std::lock_guard lock(mu);
      poster_done = true;
      cv.notify_all();
    });
    {
      std::unique_lock lock(mu);
      cv.wait_for(lock, 10s, [&] {
        return poster_done || static_cast<int>(round_acked.size()) >= kill_after;
      });
    }
    std::this_thread::sleep_for(Millis(extra_ms));  // the random kill point, not a wait
    const auto st = gw.kill9();
    stop = true;
    poster.join();
    EXPECT_EQ(st.signal, SIGKILL) << "round " << round << ": " << st.describe();
    EXPECT_TRUE(round_errors.empty()) << "round " << round << ": " << json(round_errors).dump(2);
    if (opt.rounds <= 10 || round % 10 == 9) {
      std::cout << "[e2e] round " << round << ": " << round_acked.size() << " acked, "
                << round_unacked << " in flight at SIGKILL (kill after " << kill_after << " + "
                << extra_ms << " ms)" << std::endl;
    }
    next_message = first + static_cast<int>(round_acked.size()) + round_unacked;
    unacked += round_unacked;
    for (auto& m : round_acked) acked.push_back(std::move(m));
    if (::testing::Test::HasFailure()) return;
  }

  // The last start replays whatever the kills left behind.
  gw.start();
  json status = wait_until_idle(gw, 20s);
  ASSERT_EQ(status["store"].value("inboxUnfinished", -1), 0) << status.dump(2);
  ASSERT_EQ(status["store"].value("outboxPending", -1), 0) << status.dump(2);
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  std::cout << "[e2e] " << opt.rounds << " SIGKILLs in " << secs << " s: " << acked.size()
            << " acknowledged, " << unacked << " unacknowledged, " << killed_mid_replay
            << " kill(s) in rounds that began with a replay; store: " << status["store"].dump()
            << std::endl;
  ASSERT_FALSE(acked.empty());
  EXPECT_EQ(runs_that_logged(dir, "is suspended"), 0)
      << "a session was suspended: the rounds must let interrupted sessions finish a turn";

  std::map<std::string, json> histories;
  for (int s = 0; s < opt.sessions; ++s) {
    const std::string session = "crash-s" + std::to_string(s);
    histories[session] = gw.history(session);
  }

  // Every acknowledged message: in its session once, answered once, with its own text.
  for (const auto& a : acked) {
    const json& h = histories[a.session];
    auto user = entries_of_run(h, "user", a.run_id);
    auto replies = entries_of_run(h, "assistant", a.run_id);
    EXPECT_EQ(user.size(), 1u) << a.key << " (run " << a.run_id << ") in " << a.session;
    EXPECT_EQ(replies.size(), 1u) << a.key << " (run " << a.run_id << ") answered "
                                  << replies.size() << " times in " << a.session;
    if (replies.size() == 1) {
      EXPECT_EQ(entry_text(replies[0]), a.text) << a.key;
    }
  }

  for (const auto& [session, h] : histories) {
    // Every message the store holds (acknowledged or not) is answered exactly once, and the
    // answers come in the order of the messages.
    std::vector<std::string> asked, answered;
    std::map<std::string, int> replies_per_run;
    for (const auto& m : h) {
      const std::string run = m.contains("__openclaw") ? m["__openclaw"].value("runId", "") : "";
      if (m.value("role", "") == "user") asked.push_back(run);
      if (m.value("role", "") == "assistant") {
        answered.push_back(run);
        ++replies_per_run[run];
      }
    }
    for (const auto& [run, n] : replies_per_run) {
      EXPECT_EQ(n, 1) << "run " << run << " of " << session << " answered " << n << " times";
    }
    EXPECT_EQ(answered, asked) << session << ": replies not one per message, in order\n"
                               << h.dump(1);
    // Acknowledged messages of a session are in the order they were acknowledged.
    std::vector<std::string> acked_order, stored_order;
    std::set<std::string> acked_runs;
    for (const auto& a : acked) {
      if (a.session == session) {
        acked_order.push_back(a.run_id);
        acked_runs.insert(a.run_id);
      }
    }
    for (const auto& run : asked) {
      if (acked_runs.count(run)) stored_order.push_back(run);
    }
    EXPECT_EQ(stored_order, acked_order) << session;
  }

  gw.signal(SIGTERM);
  auto st = gw.wait_exit(10s);
  EXPECT_TRUE(st.exited && st.code == 0) << st.describe();
}

TEST(CrashSafety, SigkillAtRandomPointsLosesNothingAndAnswersOnce) {
  run_kill_loop(KillLoop{}, "CrashSafety.SigkillAtRandomPoints");
}

// Issue 5: fifty kill -9 cycles in a row, short rounds (well under ctest's 120 s).
TEST(CrashSafety, FiftySigkillCyclesLoseNothingAndAnswerEachAcknowledgedMessageOnce) {
  KillLoop opt;
  opt.rounds = 50;
  opt.echo_delay_ms = 5;
  opt.max_acks_before_kill = 30;
  opt.max_extra_ms = 30;
  opt.resends_per_round = 2;
  run_kill_loop(opt, "CrashSafety.FiftySigkillCycles");
}

}  // namespace
}  // namespace drawbridge::e2e
