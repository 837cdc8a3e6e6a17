#include "pipeline/pipeline.h"

#include <gtest/gtest.h>

#include "unit/pipeline/pipeline_fixture.h"

namespace drawbridge::pipeline {
namespace {

TEST_F(PipelineTest, AcceptedMessageIsInTheInboxBeforeItsTurnRuns) {
  auto p = make_pipeline();
  auto res = accept(*p, msg("k1", "s", "hello"));
  EXPECT_EQ(res.status, "started");
  EXPECT_FALSE(res.duplicate);
  auto row = store_->inbound(res.inbound_id);
  ASSERT_TRUE(row);
  EXPECT_EQ(row->state, store::InboxState::pending);  // until the reply closes it
  ASSERT_EQ(agent_.calls.size(), 1u);
  EXPECT_EQ(agent_.calls[0]->request.text, "hello");
  EXPECT_EQ(agent_.calls[0]->request.history.back().text, "hello");
}

TEST_F(PipelineTest, CompletedTurnIsRepliedOnceAndClosesTheInboxRow) {
  auto p = make_pipeline();
  auto res = accept(*p, msg("k1", "s", "hello"));
  complete(0, "hi!");
  ASSERT_EQ(channel_.sent.size(), 1u);
  EXPECT_EQ(channel_.sent[0].text, "hi!");
  EXPECT_EQ(channel_.sent[0].idem_key, std::to_string(res.inbound_id) + ":0");
  EXPECT_EQ(store_->inbound(res.inbound_id)->state, store::InboxState::done);
  EXPECT_TRUE(store_->pending_outbox().empty());
  EXPECT_EQ(p->work().total(), 0u);
  EXPECT_EQ(p->metrics().replies_sent, 1u);
}

TEST_F(PipelineTest, DuplicateMessageIsNotRunTwice) {
  auto p = make_pipeline();
  auto first = accept(*p, msg("k1", "s", "hello"));
  auto again = accept(*p, msg("k1", "s", "hello"));
  EXPECT_TRUE(again.duplicate);
  EXPECT_EQ(again.run_id, first.run_id);
  EXPECT_EQ(again.status, "in_flight");
  complete(0, "hi");
  auto after = accept(*p, msg("k1", "s", "hello"));
  EXPECT_EQ(after.status, "done");
  EXPECT_EQ(agent_.calls.size(), 1u);
  EXPECT_EQ(channel_.sent.size(), 1u);
  EXPECT_EQ(p->metrics().inbound_duplicates, 2u);
}

TEST_F(PipelineTest, OneTurnPerSessionInArrivalOrder) {
  auto p = make_pipeline();
  EXPECT_EQ(accept(*p, msg("k1", "s", "one")).status, "started");
  EXPECT_EQ(accept(*p, msg("k2", "s", "two")).status, "queued");
  EXPECT_EQ(accept(*p, msg("k3", "other", "x")).status, "started");
  ASSERT_EQ(agent_.calls.size(), 2u);
  complete(0, "r1");
  ASSERT_EQ(agent_.calls.size(), 3u);
  EXPECT_EQ(agent_.calls[2]->request.text, "two");
  // The second turn sees the first exchange, and not messages accepted after it.
  const auto& h = agent_.calls[2]->request.history;
  ASSERT_EQ(h.size(), 3u);
  EXPECT_EQ(h[0].text, "one");
  EXPECT_EQ(h[1].text, "r1");
  EXPECT_EQ(h[2].text, "two");
}

TEST_F(PipelineTest, HistoryOfAQueuedTurnLeavesOutLaterMessages) {
  auto p = make_pipeline();
  accept(*p, msg("k1", "s", "one"));
  accept(*p, msg("k2", "s", "two"));
  accept(*p, msg("k3", "s", "three"));
  complete(0, "r1");
  const auto& h = agent_.calls[1]->request.history;
  for (const auto& e : h) EXPECT_NE(e.text, "three");
}

TEST_F(PipelineTest, FailedTurnTellsTheUserWhy) {
  auto p = make_pipeline();
  accept(*p, msg("k1", "s", "hello"));
  finish(0, TurnOutcome::Kind::failed, "", "command exited with status 2");
  ASSERT_EQ(channel_.sent.size(), 1u);
  EXPECT_EQ(channel_.sent[0].text,
            "Sorry, I could not answer that: command exited with status 2");
  EXPECT_EQ(p->metrics().turns_failed, 1u);
}

TEST_F(PipelineTest, DeltasAreStreamedWithIncreasingSeqThenTheFinal) {
  auto p = make_pipeline();
  // The fake channel does not publish; listen to the pipeline's own events.
  auto res = accept(*p, msg("k1", "s", "hello"));
  agent_.stream(0, "he");
  agent_.stream(0, "llo");
  ASSERT_EQ(listener_.events.size(), 2u);
  EXPECT_EQ(listener_.events[0].seq, 0);
  EXPECT_EQ(listener_.events[1].seq, 1);
  EXPECT_EQ(listener_.events[1].accumulated, "hello");
  EXPECT_EQ(listener_.events[1].run_id, res.run_id);
  ChatEvent fin;
  fin.state = ChatEvent::State::final;
  fin.run_id = res.run_id;
  fin.session_key = "s";
  p->publish(fin);
  EXPECT_EQ(listener_.events.back().seq, 2);
}

TEST_F(PipelineTest, AbortingTheActiveRunPublishesAbortedAndStartsTheNext) {
  auto p = make_pipeline();
  auto first = accept(*p, msg("k1", "s", "slow"));
  accept(*p, msg("k2", "s", "next"));
  auto aborted = p->abort("s", "");
  executor_.run_ready();
  ASSERT_EQ(aborted, std::vector<std::string>{first.run_id});
  EXPECT_EQ(store_->inbound(first.inbound_id)->state, store::InboxState::aborted);
  ASSERT_FALSE(listener_.events.empty());
  EXPECT_EQ(listener_.events.back().state, ChatEvent::State::aborted);
  ASSERT_EQ(agent_.calls.size(), 2u);
  EXPECT_EQ(agent_.calls[1]->request.text, "next");
  EXPECT_TRUE(channel_.sent.empty());
}

TEST_F(PipelineTest, AbortingAWaitingRunDropsItWithoutRunningIt) {
  auto p = make_pipeline();
  accept(*p, msg("k1", "s", "one"));
  auto second = accept(*p, msg("k2", "s", "two"));
  EXPECT_EQ(p->abort("s", second.run_id), std::vector<std::string>{second.run_id});
  executor_.run_ready();
  complete(0, "r1");
  EXPECT_EQ(agent_.calls.size(), 1u);
  EXPECT_EQ(store_->inbound(second.inbound_id)->state, store::InboxState::aborted);
}

TEST_F(PipelineTest, ChannelAskingForRetryIsRetriedWithBackoffInSimulatedTime) {
  auto p = make_pipeline();
  channel_.script = {SendStatus::retry, SendStatus::retry, SendStatus::sent};
  accept(*p, msg("k1", "s", "hello"));
  complete(0, "hi");
  EXPECT_EQ(channel_.attempts.size(), 1u);
  EXPECT_EQ(p->pending_deliveries(), 1u);
  executor_.advance(core::Duration(499));
  EXPECT_EQ(channel_.attempts.size(), 1u);
  executor_.advance(core::Duration(1));
  EXPECT_EQ(channel_.attempts.size(), 2u);
  executor_.advance(core::Duration(999));
  EXPECT_EQ(channel_.attempts.size(), 2u);
  executor_.advance(core::Duration(1));
  EXPECT_EQ(channel_.attempts.size(), 3u);
  EXPECT_EQ(channel_.sent.size(), 1u);
  EXPECT_EQ(p->pending_deliveries(), 0u);
  EXPECT_TRUE(store_->pending_outbox().empty());
}

TEST_F(PipelineTest, LongReplyIsSentAsOrderedPartsWithTheirOwnKeys) {
  auto p = make_pipeline(10);
  auto res = accept(*p, msg("k1", "s", "hello"));
  complete(0, "aaaa bbbb cccc dddd eeee");
  ASSERT_GE(channel_.sent.size(), 3u);
  std::string joined;
  for (std::size_t i = 0; i < channel_.sent.size(); ++i) {
    EXPECT_EQ(channel_.sent[i].part, static_cast<int>(i));
    EXPECT_EQ(channel_.sent[i].idem_key, std::to_string(res.inbound_id) + ":" + std::to_string(i));
    EXPECT_EQ(channel_.sent[i].final_part, i + 1 == channel_.sent.size());
    EXPECT_LE(channel_.sent[i].text.size(), 10u);
    joined += channel_.sent[i].text;
  }
  EXPECT_EQ(joined, "aaaa bbbb cccc dddd eeee");
}

TEST_F(PipelineTest, NewGenerationReplaysUnfinishedTurnsAndUndeliveredParts) {
  std::int64_t unanswered = 0;
  {
    auto p = make_pipeline();
    accept(*p, msg("k1", "a", "delivered later"));
    unanswered = accept(*p, msg("k2", "b", "never answered")).inbound_id;
    channel_.script = {SendStatus::retry};
    complete(0, "reply a");
    EXPECT_EQ(channel_.sent.size(), 0u);  // waiting for a retry when the "crash" comes
  }
  agent_.calls.clear();
  channel_.attempts.clear();
  auto p = make_pipeline();
  p->start();
  // The undelivered part of "a" goes out again, "b" runs again; nothing runs twice.
  ASSERT_EQ(channel_.sent.size(), 1u);
  EXPECT_EQ(channel_.sent[0].text, "reply a");
  ASSERT_EQ(agent_.calls.size(), 1u);
  EXPECT_EQ(agent_.calls[0]->request.text, "never answered");
  complete(0, "reply b");
  EXPECT_EQ(channel_.sent.size(), 2u);
  EXPECT_EQ(store_->inbound(unanswered)->state, store::InboxState::done);
  EXPECT_EQ(assistant_entries("a"), 1u);
  EXPECT_EQ(assistant_entries("b"), 1u);
}

TEST_F(PipelineTest, WhileDrainingMessagesAreJournaledAndRunInTheNextGeneration) {
  auto p = make_pipeline();
  p->set_draining(true);
  auto res = accept(*p, msg("k1", "s", "during drain"));
  EXPECT_EQ(res.status, "queued");
  EXPECT_EQ(res.reason, "gateway-restarting");
  EXPECT_TRUE(agent_.calls.empty());
  EXPECT_EQ(store_->inbound(res.inbound_id)->state, store::InboxState::pending);
  p->start();
  ASSERT_EQ(agent_.calls.size(), 1u);
  EXPECT_EQ(agent_.calls[0]->request.text, "during drain");
}

TEST_F(PipelineTest, InterruptedTurnGoesBackToPendingWithoutAReply) {
  auto p = make_pipeline();
  auto res = accept(*p, msg("k1", "s", "long"));
  EXPECT_EQ(p->interrupt_all("test"), 1u);
  EXPECT_EQ(store_->inbound(res.inbound_id)->state, store::InboxState::pending);
  EXPECT_TRUE(channel_.sent.empty());
  EXPECT_EQ(p->work().total(), 0u);
}

TEST_F(PipelineTest, IdleWaiterWakesWhenTheLastReplyIsDelivered) {
  auto p = make_pipeline();
  channel_.script = {SendStatus::retry};
  accept(*p, msg("k1", "s", "x"));
  bool idle = false;
  p->when_deliveries_idle([&] { idle = true; });
  complete(0, "y");
  EXPECT_FALSE(idle);  // turn done, delivery still waiting for its retry
  executor_.advance(core::Duration(500));
  EXPECT_TRUE(idle);
}

TEST_F(PipelineTest, SendIsDeliveredOnceForOneIdempotencyKey) {
  auto p = make_pipeline();
  auto first = send(*p, {"local", "chat-1", "notice", "key-1", ""});
  auto again = send(*p, {"local", "chat-1", "notice", "key-1", ""});
  EXPECT_FALSE(first.duplicate);
  EXPECT_TRUE(again.duplicate);
  EXPECT_EQ(first.message_id, again.message_id);
  ASSERT_EQ(channel_.sent.size(), 1u);
  EXPECT_EQ(channel_.sent[0].chat_id, "chat-1");
}

TEST_F(PipelineTest, UnknownChannelIsRefusedAndNothingIsWritten) {
  auto p = make_pipeline();
  InboundMessage m = msg("k1", "s", "x");
  m.channel = "telegram";
  EXPECT_THROW(p->accept(m, [](AcceptResult) {}), std::invalid_argument);
  EXPECT_EQ(store_->counts().inbox_total, 0);
}

// --- debounce, followup queues and the drain's hooks (issue 3) ---

TEST_F(PipelineTest, DebouncedMessagesOfOneChatBecomeOneTurn) {
  auto p = make_pipeline(0, debounced(core::Duration(1000)));
  p->start();
  auto a = accept(*p, msg("k1", "s", "first"));
  executor_.advance(core::Duration(600));
  auto b = accept(*p, msg("k2", "s", "second"));
  EXPECT_EQ(a.status, "queued");
  EXPECT_EQ(a.reason, "debounce");
  executor_.advance(core::Duration(600));  // 1200 ms after the first, 600 after the second
  EXPECT_TRUE(agent_.calls.empty()) << "the second message re-armed the window";
  executor_.advance(core::Duration(400));
  ASSERT_EQ(agent_.calls.size(), 1u);
  EXPECT_EQ(agent_.calls[0]->request.text, "first\nsecond");
  EXPECT_EQ(agent_.calls[0]->request.run_id, "k2");
  complete(0, "both");
  EXPECT_EQ(store_->inbound(a.inbound_id)->state, store::InboxState::done);
  EXPECT_EQ(store_->inbound(b.inbound_id)->state, store::InboxState::done);
  ASSERT_EQ(channel_.sent.size(), 1u);
  // The merged run is closed for clients waiting on it, without a second reply.
  bool merged_final = false;
  for (const auto& e : listener_.events) {
    merged_final |= e.run_id == "k1" && e.state == ChatEvent::State::final;
  }
  EXPECT_TRUE(merged_final);
}

TEST_F(PipelineTest, FlushingTheDebouncersHandsBufferedMessagesToTheirSessionsAtOnce) {
  auto p = make_pipeline(0, debounced(core::Duration(10'000)));
  p->start();
  accept(*p, msg("k1", "s1", "buffered one"));
  accept(*p, msg("k2", "s2", "buffered two"));
  EXPECT_EQ(p->debounced_count(), 2u);
  EXPECT_EQ(p->flush_debouncers(), 2u);
  executor_.run_ready();
  EXPECT_EQ(p->debounced_count(), 0u);
  ASSERT_EQ(agent_.calls.size(), 2u);  // no wait for the 10 s window
  // Later messages skip the debouncer for the rest of the drain.
  auto c = accept(*p, msg("k3", "s3", "after the flush"));
  EXPECT_EQ(c.status, "started");
}

TEST_F(PipelineTest, CollectModeRunsEverythingThatWaitedAsOneTurn) {
  PipelineSettings s;
  s.queue_mode = core::FollowupMode::collect;
  auto p = make_pipeline(0, s);
  p->start();
  accept(*p, msg("k1", "s", "one"));
  auto b = accept(*p, msg("k2", "s", "two"));
  auto c = accept(*p, msg("k3", "s", "three"));
  complete(0, "r1");
  ASSERT_EQ(agent_.calls.size(), 2u);
  EXPECT_EQ(agent_.calls[1]->request.text, "two\nthree");
  complete(1, "r23");
  EXPECT_EQ(store_->inbound(b.inbound_id)->state, store::InboxState::done);
  EXPECT_EQ(store_->inbound(c.inbound_id)->state, store::InboxState::done);
}

TEST_F(PipelineTest, InterruptModeCancelsTheRunningTurnForTheNewestMessage) {
  PipelineSettings s;
  s.queue_mode = core::FollowupMode::interrupt;
  auto p = make_pipeline(0, s);
  p->start();
  auto a = accept(*p, msg("k1", "s", "slow question"));
  auto b = accept(*p, msg("k2", "s", "never mind, this"));
  EXPECT_EQ(b.reason, "interrupting");
  executor_.run_ready();
  EXPECT_TRUE(agent_.calls[0]->cancelled);
  EXPECT_EQ(store_->inbound(a.inbound_id)->state, store::InboxState::aborted);
  ASSERT_EQ(agent_.calls.size(), 2u);
  EXPECT_EQ(agent_.calls[1]->request.text, "never mind, this");
}

TEST_F(PipelineTest, FullQueueWithSummarizeDropsTheOldestAndTellsTheNextTurn) {
  PipelineSettings s;
  s.queue.cap = 1;
  s.queue.drop = core::DropPolicy::summarize;
  auto p = make_pipeline(0, s);
  p->start();
  accept(*p, msg("k1", "s", "running"));
  auto b = accept(*p, msg("k2", "s", "dropped"));
  accept(*p, msg("k3", "s", "kept"));
  EXPECT_EQ(store_->inbound(b.inbound_id)->state, store::InboxState::aborted);
  bool aborted_event = false;
  for (const auto& e : listener_.events) {
    aborted_event |= e.run_id == "k2" && e.state == ChatEvent::State::aborted;
  }
  EXPECT_TRUE(aborted_event) << "the client of the dropped run is told";
  complete(0, "r1");
  ASSERT_EQ(agent_.calls.size(), 2u);
  EXPECT_EQ(agent_.calls[1]->request.text, "kept");
  EXPECT_TRUE(has_history(agent_.calls[1]->request, "system", "dropped 1 message"));
}

TEST_F(PipelineTest, FullQueueWithDropNewRefusesTheArrival) {
  PipelineSettings s;
  s.queue.cap = 1;
  s.queue.drop = core::DropPolicy::newest;
  auto p = make_pipeline(0, s);
  p->start();
  accept(*p, msg("k1", "s", "running"));
  accept(*p, msg("k2", "s", "waits"));
  auto c = accept(*p, msg("k3", "s", "refused"));
  EXPECT_EQ(c.status, "dropped");
  EXPECT_EQ(store_->inbound(c.inbound_id)->state, store::InboxState::aborted);
}

TEST_F(PipelineTest, ReservationKeepsDeliveriesBusyFromTurnStartToTheLastPartSent) {
  auto p = make_pipeline();
  p->start();
  accept(*p, msg("k1", "s", "x"));
  bool idle = false;
  p->when_deliveries_idle([&] { idle = true; });
  EXPECT_EQ(p->reserved_replies(), 1u);
  EXPECT_FALSE(idle) << "the running turn holds a reservation for its reply";
  channel_.script = {SendStatus::retry};
  complete(0, "y");
  EXPECT_FALSE(idle);
  executor_.advance(core::Duration(500));
  EXPECT_TRUE(idle);
}

TEST_F(PipelineTest, AbortedByTheDrainClosesTheRowAndTheNextTurnHearsOfIt) {
  auto p = make_pipeline();
  p->start();
  auto a = accept(*p, msg("k1", "s", "long task"));
  p->set_draining(true);
  auto chats = p->abort_for_drain("budget");
  executor_.run_ready();
  ASSERT_EQ(chats.size(), 1u);
  EXPECT_EQ(chats[0].session_key, "s");
  EXPECT_EQ(store_->inbound(a.inbound_id)->state, store::InboxState::aborted);
  EXPECT_EQ(store_->sessions_in_state("resume_pending"), std::vector<std::string>{"s"});
  // The next generation: the session's next turn is told, then the flag clears.
  p->reset();
  p->add_channel(&channel_, &agent_, 0);
  p->start();
  EXPECT_EQ(agent_.calls.size(), 1u) << "an aborted row is not run again";
  accept(*p, msg("k2", "s", "continue"));
  ASSERT_EQ(agent_.calls.size(), 2u);
  EXPECT_TRUE(has_history(agent_.calls[1]->request, "system", "interrupted"));
  complete(1, "done");
  EXPECT_TRUE(store_->sessions_in_state("resume_pending").empty());
}

TEST_F(PipelineTest, TurnThatAskedForTheRestartIsNotWaitedForAndIsAnsweredOnce) {
  auto p = make_pipeline();
  p->start();
  auto a = accept(*p, msg("k1", "s", "please restart"));
  agent_.stream(0, "restarting now");
  bool turns_idle = false;
  p->work().when_idle([&] { turns_idle = true; });
  EXPECT_FALSE(turns_idle);
  EXPECT_TRUE(p->detach_run("k1"));
  EXPECT_TRUE(turns_idle) << "no self-deadlock: the requester does not count";
  EXPECT_FALSE(p->detach_run("nope"));
  EXPECT_EQ(p->finish_detached(), 1u);
  executor_.run_ready();
  ASSERT_EQ(channel_.sent.size(), 1u);
  EXPECT_EQ(channel_.sent[0].text, "restarting now");
  EXPECT_EQ(store_->inbound(a.inbound_id)->state, store::InboxState::done);
  p->reset();
  p->add_channel(&channel_, &agent_, 0);
  p->start();
  EXPECT_EQ(agent_.calls.size(), 1u) << "not run again by the restart it asked for";
}

TEST_F(PipelineTest, RestartCommandIsAnsweredAndHandedToTheRuntime) {
  auto p = make_pipeline();
  std::vector<ChatCommand> commands;
  p->on_command([&](const ChatCommand& c) { commands.push_back(c); });
  p->start();
  clock_.advance(core::Duration(10));
  auto a = accept(*p, msg("k1", "s", " /restart "));
  executor_.run_ready();
  EXPECT_TRUE(agent_.calls.empty());
  ASSERT_EQ(commands.size(), 1u);
  EXPECT_EQ(commands[0].name, "restart");
  EXPECT_EQ(commands[0].session_key, "s");
  ASSERT_EQ(channel_.sent.size(), 1u);
  EXPECT_EQ(channel_.sent[0].text, "Restarting the gateway.");
  EXPECT_EQ(store_->inbound(a.inbound_id)->state, store::InboxState::done);
  EXPECT_EQ(p->work().total(), 0u);
}

TEST_F(PipelineTest, StopCommandEndsTheRunningTurnAtOnceAndStatusAnswersWithoutAnAgent) {
  auto p = make_pipeline();
  p->start();
  auto running = accept(*p, msg("k1", "s", "a long one"));
  executor_.run_ready();
  ASSERT_EQ(agent_.calls.size(), 1u);
  // "/stop" waits behind the very turn it stops: the abort happens as it is accepted.
  auto stop = accept(*p, msg("k2", "s", " /stop "));
  EXPECT_TRUE(agent_.calls[0]->cancelled);
  executor_.run_ready();
  EXPECT_EQ(store_->inbound(running.inbound_id)->state, store::InboxState::aborted);
  EXPECT_EQ(store_->inbound(stop.inbound_id)->state, store::InboxState::done);
  ASSERT_EQ(channel_.sent.size(), 1u);
  EXPECT_EQ(channel_.sent[0].text, "Stopped.");
  // Nothing runs now: said so.
  accept(*p, msg("k3", "s", "/stop"));
  executor_.run_ready();
  ASSERT_EQ(channel_.sent.size(), 2u);
  EXPECT_EQ(channel_.sent[1].text, "Nothing was running.");
  // A replayed "/stop" (a duplicate) aborts nothing.
  accept(*p, msg("k4", "other", "busy"));
  executor_.run_ready();
  accept(*p, msg("k3", "s", "/stop"));
  executor_.run_ready();
  EXPECT_FALSE(agent_.calls.back()->cancelled);
  accept(*p, msg("k5", "s", "/status"));
  executor_.run_ready();
  ASSERT_EQ(channel_.sent.size(), 3u);
  EXPECT_NE(channel_.sent[2].text.find("1 turn(s) running"), std::string::npos)
      << channel_.sent[2].text;
  EXPECT_EQ(agent_.calls.size(), 2u) << "a command reached the agent";
}

TEST_F(PipelineTest, AChannelsHistoryLimitKeepsTheNewestEarlierMessagesOnly) {
  auto p = std::make_unique<Pipeline>(clock_, executor_, *store_, *writer_);
  p->add_channel(&channel_, &agent_, 0, "main", /*history_limit=*/2);
  p->start();
  for (int i = 0; i < 3; ++i) {
    accept(*p, msg("k" + std::to_string(i), "s", "m" + std::to_string(i)));
    complete(static_cast<std::size_t>(i), "r" + std::to_string(i));
  }
  accept(*p, msg("k3", "s", "m3"));
  ASSERT_EQ(agent_.calls.size(), 4u);
  const auto& h = agent_.calls[3]->request.history;
  // Two earlier entries (the newest: m2 and its reply), then the message itself.
  ASSERT_EQ(h.size(), 3u);
  EXPECT_EQ(h[0].text, "m2");
  EXPECT_EQ(h[1].text, "r2");
  EXPECT_EQ(h[2].text, "m3");
}

TEST_F(PipelineTest, RestartCommandIsRefusedWhenTurnedOff) {
  PipelineSettings s;
  s.restart_command = false;
  auto p = make_pipeline(0, s);
  int commands = 0;
  p->on_command([&](const ChatCommand&) { ++commands; });
  p->start();
  accept(*p, msg("k1", "s", "/restart"));
  executor_.run_ready();
  EXPECT_EQ(commands, 0);
  ASSERT_EQ(channel_.sent.size(), 1u);
  EXPECT_NE(channel_.sent[0].text.find("turned off"), std::string::npos);
}

TEST_F(PipelineTest, ResetEndsTheGenerationAndStartReplaysWhatWasLeft) {
  auto p = make_pipeline();
  p->start();
  auto a = accept(*p, msg("k1", "s", "running"));
  auto b = accept(*p, msg("k2", "s", "waiting"));
  p->set_draining(true);
  p->interrupt_all("stop");
  executor_.run_ready();
  const auto gen = p->generation();
  p->reset();
  EXPECT_FALSE(p->has_channel("local"));
  p->add_channel(&channel_, &agent_, 0);
  p->start();
  EXPECT_EQ(p->generation(), gen + 1);
  ASSERT_EQ(agent_.calls.size(), 2u);
  EXPECT_EQ(agent_.calls[1]->request.text, "running");
  complete(1, "r1");
  ASSERT_EQ(agent_.calls.size(), 3u);
  EXPECT_EQ(agent_.calls[2]->request.text, "waiting");
  complete(2, "r2");
  EXPECT_EQ(store_->inbound(a.inbound_id)->state, store::InboxState::done);
  EXPECT_EQ(store_->inbound(b.inbound_id)->state, store::InboxState::done);
}

TEST_F(PipelineTest, NoticeGoesToTheChatWithoutTouchingTheOutbox) {
  auto p = make_pipeline();
  p->start();
  accept(*p, msg("k1", "s", "x"));
  auto chats = p->active_chats();
  ASSERT_EQ(chats.size(), 1u);
  std::string error = "unset";
  p->send_notice(chats[0], "restarting soon", [&](std::string e) { error = e; });
  EXPECT_EQ(error, "");
  ASSERT_EQ(channel_.sent.size(), 1u);
  EXPECT_EQ(channel_.sent[0].text, "restarting soon");
  EXPECT_TRUE(store_->pending_outbox().empty());
  channel_.script = {SendStatus::failed};
  p->send_notice(chats[0], "again", [&](std::string e) { error = e; });
  EXPECT_FALSE(error.empty()) << "a failed notice is reported, not retried";
}

// --- crash safety (issue 5): stale replies, restart loops, replayed /restart ---

constexpr core::Duration kSixHours{21'600'000};

std::size_t sent_to(const FakeChannel& c, const std::string& session) {
  std::size_t n = 0;
  for (const auto& p : c.sent) n += p.session_key == session;
  return n;
}

TEST_F(PipelineTest, ReplyOlderThanTheTtlIsMarkedStaleAtTheNextStartInsteadOfSent) {
  std::int64_t old_row = 0;
  {
    auto p = make_pipeline();
    p->start();
    old_row = accept(*p, msg("k1", "old", "asked before the outage")).inbound_id;
    channel_.script = {SendStatus::retry};
    complete(0, "late answer");
    EXPECT_TRUE(channel_.sent.empty());  // waiting for its retry when the gateway dies
  }
  // Three hours later another generation committed a reply and died before sending it.
  clock_.advance(core::Duration(3 * 3'600'000));
  const auto fresh = store_->insert_inbound({"local", "k2", "fresh", "fresh", "u", "q", "k2"},
                                            clock_.wall_ms());
  store_->stage_reply(fresh.record.id, {"recent answer"}, clock_.wall_ms());
  // The gateway comes back 6 h (and 1 ms) after the first reply was written.
  clock_.advance(kSixHours - core::Duration(3 * 3'600'000) + core::Duration(1));

  auto p = make_pipeline();
  p->start();
  executor_.run_ready();
  ASSERT_EQ(channel_.sent.size(), 1u) << "only the reply within the TTL is sent";
  EXPECT_EQ(channel_.sent[0].text, "recent answer");
  EXPECT_EQ(p->metrics().replies_stale, 1u);
  EXPECT_TRUE(store_->pending_outbox().empty());
  EXPECT_EQ(store_->counts().outbox_stale, 1);
  EXPECT_EQ(store_->inbound(old_row)->state, store::InboxState::done) << "never run again";
  EXPECT_EQ(assistant_entries("old"), 1u) << "the transcript keeps what was answered";

  // A later generation neither sends it nor counts it again.
  p.reset();
  auto q = make_pipeline();
  q->start();
  executor_.run_ready();
  EXPECT_EQ(channel_.sent.size(), 1u);
  EXPECT_EQ(q->metrics().replies_stale, 0u);
  EXPECT_TRUE(agent_.calls.size() == 1u);
}

TEST_F(PipelineTest, ReplyTtlOfZeroSendsAReplyHoweverLate) {
  {
    auto p = make_pipeline();
    p->start();
    accept(*p, msg("k1", "s", "q"));
    channel_.script = {SendStatus::retry};
    complete(0, "a week late");
  }
  clock_.advance(core::Duration(7LL * 24 * 3'600'000));
  PipelineSettings never;
  never.reply_ttl = core::Duration(0);
  auto p = make_pipeline(0, never);
  p->start();
  executor_.run_ready();
  ASSERT_EQ(channel_.sent.size(), 1u);
  EXPECT_EQ(channel_.sent[0].text, "a week late");
  EXPECT_EQ(p->metrics().replies_stale, 0u);
}

TEST_F(PipelineTest, ReplyWithinACustomTtlIsSentAndOnePastItIsNot) {
  PipelineSettings s;
  s.reply_ttl = core::Duration(60'000);
  {
    auto p = make_pipeline(0, s);
    p->start();
    accept(*p, msg("k1", "a", "q"));
    channel_.script = {SendStatus::retry, SendStatus::retry};
    complete(0, "first");
    clock_.advance(core::Duration(30'000));
    accept(*p, msg("k2", "b", "q"));
    complete(1, "second");
    EXPECT_TRUE(channel_.sent.empty());
  }
  clock_.advance(core::Duration(30'001));  // "first" is 60.001 s old, "second" 30.001 s
  auto p = make_pipeline(0, s);
  p->start();
  executor_.run_ready();
  ASSERT_EQ(channel_.sent.size(), 1u);
  EXPECT_EQ(channel_.sent[0].text, "second");
  EXPECT_EQ(p->metrics().replies_stale, 1u);
}

// One "crash" of the gateway: the pipeline goes away without a drain, and the next start
// repairs the store as the runtime does without the clean-shutdown marker.
class RestartLoopTest : public PipelineTest {
 protected:
  std::unique_ptr<Pipeline> crash_and_restart(std::unique_ptr<Pipeline> p) {
    p.reset();
    store_->repair_interrupted();
    auto next = make_pipeline();
    next->on_command([this](const ChatCommand& c) { commands_.push_back(c); });
    next->start();
    executor_.run_ready();
    return next;
  }
  std::size_t calls_for(const std::string& text) const {
    std::size_t n = 0;
    for (const auto& c : agent_.calls) n += c->request.text == text;
    return n;
  }
  std::vector<ChatCommand> commands_;
};

TEST_F(RestartLoopTest, SessionWhoseTurnCrashedTheGatewayThreeTimesIsSuspendedNotRunAgain) {
  auto p = make_pipeline();
  p->start();
  const auto poison = accept(*p, msg("k1", "s", "poison")).inbound_id;
  const auto queued = accept(*p, msg("k2", "s", "queued behind it")).inbound_id;
  ASSERT_EQ(calls_for("poison"), 1u);
  // Every replay runs the poison message again, and it kills the gateway again.
  p = crash_and_restart(std::move(p));
  EXPECT_EQ(calls_for("poison"), 2u);
  p = crash_and_restart(std::move(p));
  EXPECT_EQ(calls_for("poison"), 3u);
  EXPECT_TRUE(channel_.sent.empty());
  listener_.events.clear();

  p = crash_and_restart(std::move(p));
  EXPECT_EQ(calls_for("poison"), 3u) << "the fourth start does not run it again";
  EXPECT_EQ(calls_for("queued behind it"), 0u);
  EXPECT_EQ(store_->inbound(poison)->state, store::InboxState::aborted);
  EXPECT_EQ(store_->inbound(queued)->state, store::InboxState::aborted);
  ASSERT_EQ(channel_.sent.size(), 1u) << "the chat gets one reply saying so";
  EXPECT_EQ(channel_.sent[0].text, Pipeline::kSuspendedNotice);
  EXPECT_EQ(channel_.sent[0].session_key, "s");
  std::size_t aborted = 0;
  for (const auto& e : listener_.events) {
    if (e.state == ChatEvent::State::aborted) {
      ++aborted;
      EXPECT_EQ(e.error, Pipeline::kSuspendedReason);
    }
  }
  EXPECT_EQ(aborted, 2u) << "clients waiting on either run are told";
  EXPECT_EQ(store_->sessions_in_state("suspended"), std::vector<std::string>{"s"});
  EXPECT_EQ(p->metrics().sessions_suspended, 1u);
  EXPECT_TRUE(store_->pending_outbox().empty());
  EXPECT_EQ(p->work().total(), 0u);

  // A later crash does not suspend it again or repeat the notice.
  p = crash_and_restart(std::move(p));
  EXPECT_EQ(channel_.sent.size(), 1u);
  EXPECT_EQ(p->metrics().sessions_suspended, 0u);

  // The next message resumes the session and runs normally.
  auto res = accept(*p, msg("k3", "s", "hello again"));
  EXPECT_EQ(res.status, "started");
  ASSERT_EQ(calls_for("hello again"), 1u);
  EXPECT_TRUE(store_->sessions_in_state("suspended").empty());
  complete(agent_.calls.size() - 1, "welcome back");
  ASSERT_EQ(channel_.sent.size(), 2u);
  EXPECT_EQ(channel_.sent[1].text, "welcome back");
  EXPECT_TRUE(store_->sessions_interrupted(1).empty());
}

TEST_F(RestartLoopTest, OtherSessionsKeepRunningWhileOneIsSuspended) {
  auto p = make_pipeline();
  p->start();
  accept(*p, msg("k1", "poisoned", "poison"));
  for (int i = 0; i < 3; ++i) {
    // A healthy session answers in every generation before the crash.
    const std::string text = "fine " + std::to_string(i);
    accept(*p, msg("h" + std::to_string(i), "healthy", text));
    for (std::size_t c = 0; c < agent_.calls.size(); ++c) {
      if (agent_.calls[c]->request.text == text) complete(c, "ok " + std::to_string(i));
    }
    p = crash_and_restart(std::move(p));
  }
  EXPECT_EQ(store_->sessions_in_state("suspended"), std::vector<std::string>{"poisoned"});
  EXPECT_EQ(sent_to(channel_, "healthy"), 3u);
  EXPECT_EQ(sent_to(channel_, "poisoned"), 1u);
}

TEST_F(RestartLoopTest, ATurnThatCompletesBetweenCrashesStartsTheCountAgain) {
  auto p = make_pipeline();
  p->start();
  accept(*p, msg("k1", "s", "slow"));
  p = crash_and_restart(std::move(p));
  p = crash_and_restart(std::move(p));
  ASSERT_EQ(calls_for("slow"), 3u);
  complete(agent_.calls.size() - 1, "made it");  // the third run finishes
  accept(*p, msg("k2", "s", "next"));
  p = crash_and_restart(std::move(p));  // one interrupt in a row, not three
  EXPECT_TRUE(store_->sessions_in_state("suspended").empty());
  EXPECT_EQ(calls_for("next"), 2u) << "replayed as usual";
  EXPECT_EQ(p->metrics().sessions_suspended, 0u);
}

TEST_F(RestartLoopTest, TurnsAbortedByThreeDrainsInARowSuspendTheSession) {
  auto p = make_pipeline();
  p->start();
  std::int64_t left = 0;
  for (int i = 0; i < 3; ++i) {
    accept(*p, msg("k" + std::to_string(i), "s", "long task " + std::to_string(i)));
    // The last generation leaves a followup waiting for the next one.
    if (i == 2) left = accept(*p, msg("later", "s", "waiting")).inbound_id;
    p->set_draining(true);
    EXPECT_EQ(p->abort_for_drain("restart budget spent").size(), 1u);
    executor_.run_ready();
    p->reset();
    // An interrupted drain leaves no clean-shutdown marker: the runtime repairs at the start,
    // and that must not count the same restart a second time.
    store_->repair_interrupted();
    p->add_channel(&channel_, &agent_, 0);
    p->start();
    executor_.run_ready();
    if (i < 2) {
      EXPECT_TRUE(store_->sessions_in_state("suspended").empty()) << "after " << i + 1;
    }
  }
  EXPECT_EQ(store_->sessions_in_state("suspended"), std::vector<std::string>{"s"});
  EXPECT_EQ(calls_for("waiting"), 0u);
  EXPECT_EQ(store_->inbound(left)->state, store::InboxState::aborted);
  ASSERT_EQ(channel_.sent.size(), 1u);
  EXPECT_EQ(channel_.sent[0].text, Pipeline::kSuspendedNotice);
}

TEST_F(RestartLoopTest, RestartCommandReplayedAfterACrashDoesNotRestartAgain) {
  // The /restart is acknowledged and journaled, but the gateway dies before running it (it
  // waited in the debouncer); the wall clock reads the same at the next start.
  auto p = make_pipeline(0, debounced(core::Duration(1000)));
  p->on_command([this](const ChatCommand& c) { commands_.push_back(c); });
  p->start();
  const auto cmd = accept(*p, msg("restart-1", "s", "/restart"));
  EXPECT_EQ(cmd.reason, "debounce");
  p = crash_and_restart(std::move(p));
  EXPECT_TRUE(commands_.empty()) << "a replayed /restart was answered by the restart after it";
  ASSERT_EQ(channel_.sent.size(), 1u);
  EXPECT_EQ(channel_.sent[0].text, "The gateway has restarted since you asked.");
  EXPECT_EQ(store_->inbound(cmd.inbound_id)->state, store::InboxState::done);
  // The same message again (same idempotency key) is a duplicate: no turn, no command.
  auto again = accept(*p, msg("restart-1", "s", "/restart"));
  EXPECT_TRUE(again.duplicate);
  executor_.run_ready();
  EXPECT_TRUE(commands_.empty());
  // A new /restart in this generation is one.
  accept(*p, msg("restart-2", "s", "/restart"));
  executor_.run_ready();
  EXPECT_EQ(commands_.size(), 1u);
}

TEST(SplitReply, ShortTextIsOnePartAndEmptyTextNone) {
  EXPECT_EQ(Pipeline::split_reply("hello", 0), std::vector<std::string>{"hello"});
  EXPECT_EQ(Pipeline::split_reply("hello", 5), std::vector<std::string>{"hello"});
  EXPECT_TRUE(Pipeline::split_reply("", 5).empty());
}

TEST(SplitReply, NeverCutsAUtf8Character) {
  const std::string text = "\xC3\xA9\xC3\xA9\xC3\xA9";  // three two-byte characters
  auto parts = Pipeline::split_reply(text, 3);
  std::string joined;
  for (const auto& p : parts) {
    EXPECT_LE(p.size(), 3u);
    EXPECT_EQ(p.size() % 2, 0u);
    joined += p;
  }
  EXPECT_EQ(joined, text);
}

TEST(SplitReply, PrefersNewlinesThenSpaces) {
  auto parts = Pipeline::split_reply("first line\nsecond", 14);
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[0], "first line\n");
  EXPECT_EQ(parts[1], "second");
}

}  // namespace
}  // namespace drawbridge::pipeline
