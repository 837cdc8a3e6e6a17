#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <memory>
#include <string>

#include "config/config.h"
#include "core/manual_executor.h"
#include "pipeline/batch_runner.h"
#include "pipeline/pipeline.h"
#include "runtime/channel_accounts.h"
#include "runtime/generation.h"
#include "store/sqlite_store.h"

// An IRC connection outlives an in-process restart (docs/DECISIONS.md): the drain leaves a
// channel that carries over running, the next generation takes it over when its settings are
// unchanged, and stops it first (then starts its successor) when they changed. The channel is a
// real IrcChannel whose io_context never runs: it stays "connecting", and a stop completes on
// the manual executor.

namespace drawbridge::runtime {
namespace {

config::Config irc_config(const std::string& realname) {
  auto parsed = config::parse_config(R"({"channels":{"irc":{"host":"127.0.0.1","port":6667,
      "nick":"bot","channels":["#ops"],"realname":")" +
                                     realname + R"("}}})");
  EXPECT_TRUE(parsed.config) << (parsed.errors.empty() ? "" : parsed.errors[0].to_string());
  return *parsed.config;
}

config::Config without_irc() {
  auto parsed = config::parse_config("{}");
  return *parsed.config;
}

// A connected loopback TCP pair: {the bot's end, the server's end}.
std::pair<int, int> tcp_pair() {
  const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  EXPECT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  EXPECT_EQ(::listen(listener, 1), 0);
  EXPECT_EQ(::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const int bot = ::socket(AF_INET, SOCK_STREAM, 0);
  EXPECT_EQ(::connect(bot, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  const int server = ::accept(listener, nullptr, nullptr);
  ::close(listener);
  return {bot, server};
}

// What a predecessor's IrcChannel::release() gives for a bot registered as "bot".
nlohmann::json released_state() {
  return {{"v", 1},
          {"host", "127.0.0.1"},
          {"port", 6667},
          {"nick", "bot"},
          {"ownMask", ""},
          {"capTags", false},
          {"sasl", false},
          {"epochMs", 1},
          {"seq", 0},
          {"rbuf", ""},
          {"skipping", false},
          {"tokens", 5},
          {"regainAttempts", 0},
          {"urgent", nlohmann::json::array()},
          {"queue", nlohmann::json::array()}};
}

std::string digest_of(const config::Config& cfg) {
  std::string error;
  auto accounts = channel_accounts("irc", cfg.channels.at("irc").raw, error);
  return settings_digest(accounts->at(0).raw);
}

// Reads what the server end has received within `ms`.
std::string received(int fd, int ms) {
  std::string out;
  pollfd p{fd, POLLIN, 0};
  char buf[512];
  while (::poll(&p, 1, ms) > 0) {
    const auto n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
    ms = 0;
  }
  return out;
}

struct Fixture {
  boost::asio::io_context io;  // never run: nothing connects
  core::ManualClock clock;
  core::ManualExecutor executor{clock};
  std::unique_ptr<store::SqliteStore> store = store::SqliteStore::open(":memory:");
  pipeline::InlineBatchRunner writer{*store};
  pipeline::Pipeline pipeline{clock, executor, *store, writer};
  Generation gen{io, executor, pipeline};

  pipeline::Channel* irc() const {
    auto it = gen.channels().find("irc");
    return it == gen.channels().end() ? nullptr : it->second.get();
  }
  // The drain's part, then the next generation's start with `next`.
  bool restart(const config::Config& next, bool keep = true) {
    bool stopped = false;
    gen.stop_channels(keep, [&] { stopped = true; });
    executor.run_ready();
    pipeline.reset();
    gen.clear();
    EXPECT_FALSE(gen.build(next));
    gen.start_channels();
    return stopped;
  }
};

TEST(GenerationCarry, AnUnchangedChannelIsTakenOverRunningAndNotStartedAgain) {
  Fixture f;
  ASSERT_FALSE(f.gen.build(irc_config("a")));
  f.gen.start_channels();
  auto* first = f.irc();
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(f.gen.starts("irc"), 1u);

  EXPECT_TRUE(f.restart(irc_config("a")));
  EXPECT_EQ(f.irc(), first) << "a new connection was made";
  EXPECT_EQ(f.gen.starts("irc"), 1u);
  EXPECT_NE(first->health().state, pipeline::LinkState::stopped);

  // Twice in a row: still the same connection.
  EXPECT_TRUE(f.restart(irc_config("a")));
  EXPECT_EQ(f.irc(), first);
  EXPECT_EQ(f.gen.starts("irc"), 1u);
}

TEST(GenerationCarry, WithoutKeepingEveryChannelStops) {
  Fixture f;
  ASSERT_FALSE(f.gen.build(irc_config("a")));
  f.gen.start_channels();
  auto* first = f.irc();
  bool stopped = false;
  f.gen.stop_channels(false, [&] { stopped = true; });
  f.executor.run_ready();
  EXPECT_TRUE(stopped);
  EXPECT_EQ(first->health().state, pipeline::LinkState::stopped);
}

TEST(GenerationCarry, AChangedChannelStopsBeforeItsSuccessorStarts) {
  Fixture f;
  ASSERT_FALSE(f.gen.build(irc_config("a")));
  f.gen.start_channels();
  auto* first = f.irc();

  bool stopped = false;
  f.gen.stop_channels(true, [&] { stopped = true; });
  f.executor.run_ready();
  ASSERT_TRUE(stopped);
  f.pipeline.reset();
  f.gen.clear();
  ASSERT_FALSE(f.gen.build(irc_config("b")));
  f.gen.start_channels();
  EXPECT_NE(f.irc(), first);
  // The old connection is still stopping: its successor has not started.
  EXPECT_EQ(f.gen.starts("irc"), 1u);
  f.executor.run_ready();
  EXPECT_EQ(f.gen.starts("irc"), 2u);
}

TEST(GenerationCarry, AChannelTheNewConfigDropsIsStoppedAndItsRouteRemoved) {
  Fixture f;
  ASSERT_FALSE(f.gen.build(irc_config("a")));
  f.gen.start_channels();
  EXPECT_TRUE(f.restart(without_irc()));
  EXPECT_EQ(f.irc(), nullptr);
  f.executor.run_ready();
  EXPECT_EQ(f.pipeline.agent_of("irc"), "");
  EXPECT_EQ(f.gen.starts("irc"), 1u);
}

TEST(GenerationCarry, ADrainWaitsForAConnectionStillStoppingAndItsSuccessorNeverStarts) {
  Fixture f;
  ASSERT_FALSE(f.gen.build(irc_config("a")));
  f.gen.start_channels();
  bool stopped = false;
  f.gen.stop_channels(true, [&] { stopped = true; });
  f.executor.run_ready();
  f.pipeline.reset();
  f.gen.clear();
  ASSERT_FALSE(f.gen.build(irc_config("b")));
  f.gen.start_channels();  // the old one is told to stop; not run yet
  bool drained = false;
  f.gen.stop_channels(true, [&] { drained = true; });
  EXPECT_FALSE(drained);
  f.executor.run_ready();
  EXPECT_TRUE(drained);
  EXPECT_EQ(f.gen.starts("irc"), 1u) << "the successor started during a drain";
}

TEST(GenerationCarry, StopCarriedEndsWhatTheDrainKeptWhenNoGenerationFollows) {
  Fixture f;
  ASSERT_FALSE(f.gen.build(irc_config("a")));
  f.gen.start_channels();
  auto* first = f.irc();
  bool kept = false;
  f.gen.stop_channels(true, [&] { kept = true; });
  f.executor.run_ready();
  ASSERT_TRUE(kept);
  EXPECT_NE(first->health().state, pipeline::LinkState::stopped);
  // A stop came during the restart: the process ends instead of starting a generation.
  bool done = false;
  f.gen.stop_carried([&] { done = true; });
  EXPECT_FALSE(done);
  f.executor.run_ready();
  EXPECT_TRUE(done);
  EXPECT_EQ(f.irc(), nullptr);
  EXPECT_EQ(f.pipeline.agent_of("irc"), "");
}

TEST(GenerationCarry, AFailedStartStopsTheChannelItHadTakenOver) {
  Fixture f;
  ASSERT_FALSE(f.gen.build(irc_config("a")));
  f.gen.start_channels();
  f.restart(irc_config("a"));
  auto* taken = f.irc();
  ASSERT_NE(taken, nullptr);
  bool done = false;
  f.gen.stop_carried([&] { done = true; });
  f.executor.run_ready();
  EXPECT_TRUE(done);
  EXPECT_EQ(f.irc(), nullptr);
  EXPECT_EQ(f.pipeline.agent_of("irc"), "");
}

// A re-exec's successor: the connection its predecessor handed over goes to the channel built
// from the same settings, which reads from it instead of connecting.
TEST(GenerationCarry, AHandedOverConnectionGoesToTheChannelOfTheSameSettings) {
  Fixture f;
  auto [bot, server] = tcp_pair();
  f.gen.inherit({{"irc", digest_of(irc_config("a")), bot, released_state()}});
  ASSERT_FALSE(f.gen.build(irc_config("a")));
  f.gen.start_channels();
  ASSERT_NE(f.irc(), nullptr);
  EXPECT_TRUE(f.irc()->ready()) << "took the connection over: registered, no connect";
  EXPECT_EQ(f.gen.starts("irc"), 1u);
  f.io.poll();
  EXPECT_EQ(received(server, 0), "") << "no registration, no QUIT";
  ::close(server);
}

// The account changed with the re-exec: the handed-over connection QUITs, then the new one
// connects (one connection per account at every instant).
TEST(GenerationCarry, AHandedOverConnectionOfOtherSettingsQuitsBeforeTheNewOneStarts) {
  Fixture f;
  auto [bot, server] = tcp_pair();
  f.gen.inherit({{"irc", digest_of(irc_config("a")), bot, released_state()}});
  ASSERT_FALSE(f.gen.build(irc_config("b")));
  f.gen.start_channels();
  EXPECT_EQ(f.gen.starts("irc"), 0u) << "started beside the old connection";
  f.io.poll();
  EXPECT_NE(received(server, 2000).find("QUIT :restarting\r\n"), std::string::npos);
  f.executor.advance(std::chrono::milliseconds(2000));  // the server never closes: the bound
  EXPECT_EQ(f.gen.starts("irc"), 1u);
  ::close(server);
}

}  // namespace
}  // namespace drawbridge::runtime
