#include "runtime/carried_connections.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

// The DRAWBRIDGE_CARRIED variable is untrusted input: what a predecessor wrote round-trips, and
// anything else is skipped with a warning, never trusted.

namespace drawbridge::runtime {
namespace {

using nlohmann::json;

const std::string kDigest(64, 'a');

TEST(CarriedConnections, WhatAPredecessorWritesIsReadBack) {
  std::vector<CarriedConnection> conns = {{"irc", kDigest, 17, {{"nick", "bot"}}},
                                          {"irc:second", kDigest, 12, {{"nick", "bot2"}}}};
  const std::string text = encode_carried(conns, 5);
  std::vector<std::string> warnings;
  auto back = decode_carried(text, 5, 64, warnings);
  EXPECT_TRUE(warnings.empty());
  ASSERT_EQ(back.size(), 2u);
  EXPECT_EQ(back[0].channel, "irc");
  EXPECT_EQ(back[0].fd, 5);  // the successor's numbers, not ours
  EXPECT_EQ(back[1].fd, 6);
  EXPECT_EQ(back[1].state["nick"], "bot2");
}

TEST(CarriedConnections, HostileEntriesAreSkipped) {
  auto entry = [](json channel, json digest, json fd) {
    return json{{"channel", channel}, {"digest", digest}, {"fd", fd}, {"state", json::object()}};
  };
  const json doc = json::array({
      entry("irc", kDigest, 5),       // fine
      entry("telegram", kDigest, 6),  // not a channel that carries over
      entry("irc:../x", kDigest, 6),  // not an account id
      entry("irc", "short", 6),       // not a digest
      entry("irc:b", kDigest, 2),     // below the carried range (stderr)
      entry("irc:b", kDigest, 69),    // above it
      entry("irc:b", kDigest, 5),     // the same fd twice
      entry("irc:b", kDigest, "6"),   // not a number
      json{{"channel", "irc:c"}, {"digest", kDigest}, {"fd", 6}},  // no state
      json("irc"),
  });
  std::vector<std::string> warnings;
  auto got = decode_carried(doc.dump(), 5, 64, warnings);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].fd, 5);
  EXPECT_EQ(warnings.size(), 9u);

  for (const std::string& text :
       {std::string("not json"), std::string("{}"), std::string(2 << 20, '['),
        json(std::vector<json>(65, entry("irc", kDigest, 5))).dump()}) {
    warnings.clear();
    EXPECT_TRUE(decode_carried(text, 5, 64, warnings).empty());
    EXPECT_EQ(warnings.size(), 1u);
  }
}

TEST(CarriedConnections, TheDigestFollowsTheSettings) {
  const json a = {{"host", "irc.example"}, {"nick", "bot"}};
  json b = a;
  EXPECT_EQ(settings_digest(a), settings_digest(b));
  EXPECT_EQ(settings_digest(a).size(), 64u);
  b["nick"] = "bot2";
  EXPECT_NE(settings_digest(a), settings_digest(b));
}

// An update asks the new binary first: only one that answers `capabilities` as this one does
// gets connections; anything else (an older drawbridge, a failure, a hang) does not.
TEST(CarriedConnections, OnlyABinaryThatSaysSoTakesConnections) {
  char dir_template[] = "/tmp/drawbridge-caps-XXXXXX";
  const std::string dir = ::mkdtemp(dir_template);
  auto script = [&](const std::string& name, const std::string& body) {
    const std::string path = dir + "/" + name;
    std::ofstream(path) << "#!/bin/sh\n" << body << "\n";
    ::chmod(path.c_str(), 0700);
    return path;
  };
  EXPECT_TRUE(takes_carried_connections(script(
      "yes", "[ \"$1\" = capabilities ] && echo 'carried-connections 1' && exit 0; exit 9")));
  EXPECT_FALSE(takes_carried_connections(script("older", "exit 109")));
  EXPECT_FALSE(
      takes_carried_connections(script("says-but-fails", "echo 'carried-connections 1'; exit 3")));
  EXPECT_FALSE(takes_carried_connections(script("other", "echo 'carried-connections 2'")));
  EXPECT_FALSE(takes_carried_connections(dir + "/missing"));
  // One that never answers (it waits to open a FIFO nobody writes): given up at the bound.
  const std::string fifo = dir + "/fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_FALSE(takes_carried_connections(script("hangs", "exec cat " + fifo),
                                         std::chrono::milliseconds(100)));
  std::system(("rm -rf " + dir).c_str());
}

}  // namespace
}  // namespace drawbridge::runtime
