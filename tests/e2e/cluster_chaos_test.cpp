// Three replicas on one PostgreSQL (issue 16's test): messages through all of them (HTTP to each,
// and a Telegram bot that any of them may poll), while each restarts in turn, the one that polls
// the bot is killed (-9), the next one is frozen (SIGSTOP) past its lease and woken, and one replica's
// link to the database is cut and healed. Every acknowledged message is answered exactly once,
// in order per session, and the fake Bot API never sees two getUpdates of the bot at once.
// HTTP turns are in flight at every fault. The bot's replies are settled before each fault: a
// Telegram reply sent but not yet recorded when its replica dies, freezes or is cut off is sent
// again by the next poller (README "Answered once": the one window, which no Bot API
// idempotency closes), and this test is about everything else.

#include <gtest/gtest.h>

#include <csignal>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "e2e/cluster_helpers.h"
#include "e2e/cut_proxy.h"

namespace drawbridge::e2e {
namespace {

using namespace cluster;

struct Replica {
  std::string name;
  std::unique_ptr<Gateway> gw;
  bool up = true;  // false: frozen, killed or cut off (no message is posted to it)
};

class Chaos {
 public:
  explicit Chaos(TelegramFake& fake) : fake_(fake) {}

  // One message through every replica that is up (HTTP, one session per replica, so each
  // session's messages come through one replica: their order is the order they were sent),
  // and (`bot`) one to the bot.
  void traffic(std::vector<Replica>& replicas, bool bot = true) {
    for (auto& r : replicas) {
      if (!r.up) continue;
      const std::string text = r.name + "-" + std::to_string(++n_);
      const std::string session = "chaos-" + r.name;
      auto post = r.gw->post_message(
          {{"sessionKey", session}, {"message", text}, {"idempotencyKey", "k-" + text}});
      if (post.status == 202) acked_[session].push_back(text);
    }
    if (!bot) return;
    const std::string t = "t" + std::to_string(++n_);
    fake_.push_message(kBot, kAlice, kAlice, t);
    pushed_.push_back(t);
  }

  // One message of `session` through `via` (a replica that does not hold the session).
  // Returns its text when acknowledged, "" otherwise.
  std::string send(Gateway& via, const std::string& session) {
    const std::string text = "via-" + std::to_string(++n_);
    auto post = via.post_message(
        {{"sessionKey", session}, {"message", text}, {"idempotencyKey", "k-" + text}});
    if (post.status != 202) return {};
    acked_[session].push_back(text);
    return text;
  }

  // Bounded: every acknowledged message answered once (user entry and reply), in order.
  ::testing::AssertionResult all_answered_once(const Gateway& reader) {
    const auto deadline = std::chrono::steady_clock::now() + 40s;
    std::string missing;
    for (;;) {
      missing.clear();
      for (const auto& [session, texts] : acked_) {
        const json history = reader.history(session);
        std::vector<std::string> replies;
        for (const auto& m : history) {
          if (m.value("role", "") != "assistant") continue;
          const auto& c = m.value("content", json());
          replies.push_back(c.is_array() && !c.empty() ? c[0].value("text", "")
                                                       : c.is_string() ? c.get<std::string>()
                                                                       : "");
        }
        if (replies != texts) {
          missing += session + ": replies " + json(replies).dump() + " for " +
                     json(texts).dump() + "\n";
        }
      }
      const bool bot_done = fake_.sent(kBot).size() >= pushed_.size();
      if (missing.empty() && bot_done) break;
      if (std::chrono::steady_clock::now() >= deadline) {
        return ::testing::AssertionFailure()
               << missing << "bot: " << json(texts_sent(fake_)).dump() << " for "
               << json(pushed_).dump();
      }
      // The replicas' state is read over HTTP: polled, bounded by the deadline.
      std::this_thread::sleep_for(100ms);
    }
    if (texts_sent(fake_) != pushed_) {
      return ::testing::AssertionFailure() << "bot: " << json(texts_sent(fake_)).dump()
                                           << " for " << json(pushed_).dump();
    }
    return ::testing::AssertionSuccess();
  }

  // Bounded: every bot message so far answered, and the reply recorded (the replica that
  // polls is idle), so that the next fault does not fall in the send-to-record window.
  ::testing::AssertionResult settle_bot(const Gateway& poller) {
    if (!fake_.wait_for([&] { return fake_.sent(kBot).size() >= pushed_.size(); }, 15s)) {
      return ::testing::AssertionFailure() << "bot: " << json(texts_sent(fake_)).dump();
    }
    if (!wait_until_idle(poller, 10s).is_object()) {
      return ::testing::AssertionFailure() << "the polling replica is not idle";
    }
    return ::testing::AssertionSuccess();
  }

  std::size_t acked() const {
    std::size_t n = 0;
    for (const auto& [s, t] : acked_) n += t.size();
    return n;
  }

 private:
  TelegramFake& fake_;
  int n_ = 0;
  std::map<std::string, std::vector<std::string>> acked_;
  std::vector<std::string> pushed_;
};

// The replica that polls the bot now (the holder of its account's lease, as the replicas that
// are up see it), waiting (bounded) for one other than `not_this` to.
Replica* wait_poller(std::vector<Replica>& replicas, const Replica* not_this = nullptr) {
  const std::string lease = "channel:telegram:777001";
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (std::chrono::steady_clock::now() < deadline) {
    for (auto& r : replicas) {
      if (!r.up) continue;
      for (const auto& a : cluster_status(*r.gw).value("accounts", json::array())) {
        if (a.value("name", "") != lease || !a["holder"].is_string()) continue;
        for (auto& holder : replicas) {
          if (holder.name == a["holder"] && holder.up && &holder != not_this) return &holder;
        }
      }
    }
    std::this_thread::sleep_for(50ms);  // status of other processes: polled, bounded
  }
  return nullptr;
}

TEST_F(ClusterTest, ThreeReplicasLoseAndDoubleNothingThroughRestartsKillsFreezesAndACut) {
  TelegramFake fake;
  fake.add_bot(kBot, 777001, "cluster_bot");
  // c reaches PostgreSQL through a link this test cuts.
  CutProxy link(pg_socket(conninfo));
  const std::string through_link = through(link, conninfo);
  TempDir dir_a, dir_b, dir_c;
  std::vector<Replica> rs;
  const std::vector<std::tuple<std::string, TempDir*, std::string>> members = {
      {"a", &dir_a, conninfo}, {"b", &dir_b, conninfo}, {"c", &dir_c, through_link}};
  for (const auto& [name, dir, url] : members) {
    auto gw = std::make_unique<Gateway>(*dir, with_bot(pg_config(url, name, 2000), fake));
    bot_env(*gw);
    gw->set_env("DRAWBRIDGE_SUPERVISOR", "none");
    rs.push_back({name, std::move(gw), true});
  }
  for (auto& r : rs) r.gw->start();
  Chaos chaos(fake);
  chaos.traffic(rs);
  ASSERT_NE(wait_poller(rs), nullptr);

  // Each restarts in turn (in-process), with messages before, during and after.
  for (auto& r : rs) {
    r.gw->signal(SIGUSR1);
    chaos.traffic(rs);
    ASSERT_TRUE(lifecycle::wait_generation(*r.gw, 2, 15s)) << r.gw->log();
    chaos.traffic(rs);
  }

  // kill -9 of the replica that polls the bot; a supervisor starts it again.
  Replica* poller = wait_poller(rs);
  ASSERT_NE(poller, nullptr);
  ASSERT_TRUE(chaos.settle_bot(*poller->gw));
  chaos.traffic(rs, false);
  poller->gw->kill9();
  poller->up = false;
  chaos.traffic(rs);
  Replica* next = wait_poller(rs, poller);
  ASSERT_NE(next, nullptr) << rs[1].gw->log() << rs[2].gw->log();
  poller->gw->start();
  poller->up = true;
  chaos.traffic(rs);

  // The poller freezes past its lease; woken, it finds its presence gone and exits (75).
  poller = next;
  ASSERT_TRUE(chaos.settle_bot(*poller->gw));
  chaos.traffic(rs, false);
  poller->gw->signal(SIGSTOP);
  poller->up = false;
  chaos.traffic(rs);
  next = wait_poller(rs, poller);
  ASSERT_NE(next, nullptr);
  chaos.traffic(rs);
  poller->gw->signal(SIGCONT);
  EXPECT_EQ(poller->gw->wait_exit(20s).code, 75) << poller->gw->log();
  poller->gw->start();
  poller->up = true;
  chaos.traffic(rs);

  // c's link to the database is cut past its lease, just after c accepted a message of its
  // session: the others take c's sessions over (a message of that session sent through b is
  // answered, after the one c accepted) and, if c polled the bot, the bot; healed, c finds
  // its presence gone and exits (75) without committing anything.
  Replica& c = rs[2];
  Replica* before_cut = wait_poller(rs);
  const bool c_polled = before_cut == &c;
  ASSERT_NE(before_cut, nullptr);
  ASSERT_TRUE(chaos.settle_bot(*before_cut->gw));
  chaos.traffic(rs, false);
  link.cut();
  c.up = false;
  chaos.traffic(rs);
  const std::string via_b = chaos.send(*rs[1].gw, "chaos-c");
  ASSERT_FALSE(via_b.empty());
  ASSERT_TRUE(answered(*rs[1].gw, "chaos-c", via_b)) << rs[1].gw->log();
  if (c_polled) ASSERT_NE(wait_poller(rs, &c), nullptr);
  chaos.traffic(rs);
  link.heal();
  EXPECT_EQ(c.gw->wait_exit(30s).code, 75) << c.gw->log();
  c.gw->start();
  c.up = true;
  chaos.traffic(rs);

  Replica* reader = wait_poller(rs);
  ASSERT_NE(reader, nullptr);
  EXPECT_TRUE(chaos.all_answered_once(*reader->gw));
  EXPECT_GE(chaos.acked(), 25u);
  EXPECT_LE(fake.max_concurrent_polls(kBot), 1) << "two getUpdates overlapped";
}

}  // namespace
}  // namespace drawbridge::e2e
