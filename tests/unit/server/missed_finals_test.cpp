#include "server/missed_finals.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace drawbridge::server {
namespace {

using V = std::vector<std::string>;

TEST(MissedFinals, KeepsOnlyForASessionAWatcherLeftAndHandsOverOnce) {
  MissedFinals m;
  m.record("s", "before anyone left", 0);
  EXPECT_FALSE(m.keeps("s"));
  m.watcher_left("s");
  EXPECT_TRUE(m.keeps("s"));
  m.record("s", "one", 10);
  m.record("s", "two", 20);
  m.record("other", "nobody watched it", 20);
  EXPECT_EQ(m.take("s", 30), (V{"one", "two"}));
  EXPECT_FALSE(m.keeps("s")) << "the watcher is back: nothing more is kept";
  EXPECT_TRUE(m.take("s", 40).empty()) << "once";
  EXPECT_TRUE(m.take("other", 40).empty());
  EXPECT_EQ(m.bytes(), 0u);
}

TEST(MissedFinals, BoundedBySessionsEventsBytesAndAge) {
  MissedFinals m(
      {.max_sessions = 2, .max_events_per_session = 2, .max_bytes = 10, .max_age_ms = 1000});
  m.watcher_left("a");
  m.watcher_left("b");
  m.watcher_left("c");  // the session left longest ago goes
  EXPECT_FALSE(m.keeps("a"));
  EXPECT_EQ(m.sessions(), 2u);

  m.record("b", "1", 0);
  m.record("b", "2", 0);
  m.record("b", "3", 0);  // two per session: the oldest goes
  EXPECT_EQ(m.take("b", 0), (V{"2", "3"}));

  m.record("c", "12345678", 0);
  m.watcher_left("d");
  m.record("d", "abcd", 0);  // 12 bytes > 10: the oldest watcher's events go first
  EXPECT_LE(m.bytes(), 10u);
  EXPECT_TRUE(m.take("c", 0).empty());
  EXPECT_EQ(m.take("d", 0), (V{"abcd"}));

  m.watcher_left("e");
  m.record("e", "old", 0);
  m.record("e", "new", 900);
  EXPECT_EQ(m.take("e", 1500), (V{"new"})) << "older than max_age_ms: not handed over";
  m.watcher_left("f");
  m.record("f", std::string(11, 'x'), 0);  // larger than the whole budget: not kept
  EXPECT_TRUE(m.take("f", 0).empty());
}

}  // namespace
}  // namespace drawbridge::server
