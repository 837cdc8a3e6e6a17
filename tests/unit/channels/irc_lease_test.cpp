#include <gtest/gtest.h>

#include "unit/channels/irc_channel_fixture.h"
#include "unit/channels/scripted_leases.h"

// IrcChannel in a cluster (irc_lease.cpp): the connection is kept only under the account's
// lease, claimed before connecting; a lease that may have passed drops the connection without
// another byte written; a stop releases it.

namespace drawbridge::channels {
namespace {

using namespace std::chrono_literals;
using irc_test::IrcChannelTest;
using pipeline::SendStatus;
using testing::ScriptedLeases;

class IrcLeaseTest : public IrcChannelTest {
 protected:
  void TearDown() override {
    IrcChannelTest::TearDown();
    pipeline_->set_account_leases(nullptr);
  }
  std::string lease_name() const {
    return "channel:irc:drawbot@127.0.0.1:" + std::to_string(options_.port);
  }
  // A reply part to `to`; its status once the channel answered.
  std::optional<SendStatus> send(const std::string& to, const std::string& text,
                                 std::string* why = nullptr) {
    pipeline::OutboundPart part;
    part.chat_id = to;
    part.text = text;
    part.final_part = true;
    std::optional<SendStatus> status;
    channel_->send(part, [&](SendStatus s, std::string w) {
      status = s;
      if (why) *why = w;
    });
    if (!spin([&] { return status.has_value(); })) return std::nullopt;
    return status;
  }
  ScriptedLeases leases;
};

TEST_F(IrcLeaseTest, WithoutTheLeaseItStandsByAndConnectsOnceGranted) {
  pipeline_->set_account_leases(&leases);
  bool accepted = false;
  acceptor_.async_accept(server_, [&](boost::system::error_code ec) { accepted = !ec; });
  make_channel();
  channel_->start();
  // The claim was answered (at once, here) before any connect: the channel stands by.
  ASSERT_EQ(leases.claims, 1);
  EXPECT_EQ(channel_->health().state, pipeline::LinkState::standby);
  EXPECT_NE(channel_->health().detail.find("replica-b"), std::string::npos);
  EXPECT_TRUE(channel_->ready());  // the account is served, by the holder
  EXPECT_TRUE(channel_->served_elsewhere());
  std::string why;
  EXPECT_EQ(send("#ops", "not from here", &why), SendStatus::retry);
  EXPECT_NE(why.find("replica-b"), std::string::npos) << why;
  EXPECT_FALSE(accepted);
  // It asks again every half lease; granted, it connects and registers.
  leases.grant = true;
  executor_.advance(1500ms);
  ASSERT_EQ(leases.claims, 2);
  ASSERT_TRUE(spin([&] { return accepted; }));
  read_more();
  ASSERT_TRUE(got("NICK drawbot"));
  say(":irc.test 001 drawbot :Welcome\r\n");
  ASSERT_TRUE(got("JOIN #ops"));
  EXPECT_FALSE(channel_->served_elsewhere());
  EXPECT_EQ(channel_->health().state, pipeline::LinkState::connected);
  EXPECT_EQ(send("#ops", "from here"), SendStatus::sent);
  EXPECT_TRUE(got("PRIVMSG #ops :from here"));
}

TEST_F(IrcLeaseTest, ALeaseThatMayHavePassedDropsTheConnectionWithoutAnotherByte) {
  leases.grant = true;
  pipeline_->set_account_leases(&leases);
  register_bot();
  ASSERT_EQ(leases.claims, 1);
  // The renewals stopped (a pause, a cut to the database): what is left of the lease runs out.
  leases.left = 0ms;
  leases.grant = false;  // and another replica holds it now
  EXPECT_EQ(send("#ops", "too late"), SendStatus::retry);
  ASSERT_TRUE(spin([&] { return server_eof_; })) << "the connection was not dropped";
  for (const auto& l : received_) {
    EXPECT_EQ(l.find("too late"), std::string::npos) << l;
    EXPECT_NE(l.rfind("QUIT", 0), 0u) << "a QUIT was written under a lost lease";
  }
  // What arrives for a dropped connection is not taken in; reconnecting asks for the lease
  // first and finds it another replica's.
  executor_.advance(1000ms);  // the reconnect's back-off
  EXPECT_EQ(leases.claims, 2);
  EXPECT_TRUE(channel_->served_elsewhere());
  EXPECT_EQ(channel_->health().state, pipeline::LinkState::standby);
}

TEST_F(IrcLeaseTest, LinesReadAfterTheLeasePassedAreNotTakenIn) {
  leases.grant = true;
  pipeline_->set_account_leases(&leases);
  register_bot();
  leases.left = 0ms;  // woken from a pause: the lease may be another replica's by now
  say(":alice!a@h PRIVMSG drawbot :are you there?\r\n");
  ASSERT_TRUE(spin([&] { return server_eof_; }));
  EXPECT_TRUE(store_->unfinished_inbound().empty()) << "a message was journaled";
}

TEST_F(IrcLeaseTest, AStopQuitsThenReleasesTheLease) {
  leases.grant = true;
  pipeline_->set_account_leases(&leases);
  register_bot();
  bool stopped = false;
  channel_->stop([&] { stopped = true; });
  ASSERT_TRUE(got("QUIT :restarting"));
  server_.close();
  ASSERT_TRUE(spin([&] { return stopped; }));
  ASSERT_EQ(leases.released.size(), 1u);
  EXPECT_EQ(leases.released[0], lease_name());
}

TEST_F(IrcLeaseTest, TheLeaseWatchDropsAnIdleConnectionOnceTheLeaseRunsOut) {
  leases.grant = true;
  pipeline_->set_account_leases(&leases);
  register_bot();
  leases.left = 0ms;
  leases.grant = false;
  // Nothing is read or written: the watch (every leaseMs / 5) finds it.
  executor_.advance(600ms);
  ASSERT_TRUE(spin([&] { return server_eof_; }));
  EXPECT_NE(channel_->health().state, pipeline::LinkState::connected);
  EXPECT_FALSE(channel_->ready());
}

}  // namespace
}  // namespace drawbridge::channels
