#include "agents/exec_agent.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/syscall.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "core/manual_executor.h"
#include "runtime/asio_executor.h"

namespace drawbridge::agents {
namespace {

using namespace std::chrono_literals;
using pipeline::TurnOutcome;
using Kind = pipeline::TurnOutcome::Kind;

struct Recorder {
  std::vector<std::string> deltas;
  std::vector<TurnOutcome> outcomes;
  bool done() const { return !outcomes.empty(); }
};

pipeline::TurnCallbacks record(Recorder& r) {
  return {[&r](std::string_view delta) { r.deltas.emplace_back(delta); },
          [&r](TurnOutcome outcome) { r.outcomes.push_back(std::move(outcome)); }};
}

pipeline::TurnRequest make_request() {
  pipeline::TurnRequest request;
  request.run_id = "run-42";
  request.session_key = "local:chat-7";
  request.channel = "local";
  request.chat_id = "chat-7";
  request.sender = "alice";
  request.text = "how are you?";
  request.history = {{"user", "hi"}, {"assistant", "hello"}, {"user", "how are you?"}};
  return request;
}

// Dead means gone, or a zombie: reaping an orphaned grandchild is init's job, not ours.
bool process_gone(pid_t pid) {
  if (::kill(pid, 0) != 0) return errno == ESRCH;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(stat, line);
  auto paren = line.rfind(')');
  return paren != std::string::npos && paren + 2 < line.size() && line[paren + 2] == 'Z';
}

// The grandchild dies asynchronously to us: wait for its exit on a pidfd (readable once the
// process has exited, child or not), bounded.
bool wait_until_gone(pid_t pid, std::chrono::milliseconds limit = 2000ms) {
  const int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) return errno == ESRCH || process_gone(pid);
  pollfd p{fd, POLLIN, 0};
  const int ready = ::poll(&p, 1, static_cast<int>(limit.count()));
  ::close(fd);
  return ready == 1 || process_gone(pid);
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

class ExecAgentTest : public ::testing::TestWithParam<ExecAgent::ExitWatch> {
 protected:
  void SetUp() override {
    // The runtime ignores SIGPIPE process-wide; a child that never reads stdin relies on it.
    ::signal(SIGPIPE, SIG_IGN);
    char dir_template[] = "/tmp/exec_agent_test.XXXXXX";
    ASSERT_NE(::mkdtemp(dir_template), nullptr);
    dir_ = std::filesystem::canonical(dir_template);
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  ExecSettings settings(std::vector<std::string> command) {
    ExecSettings s;
    s.command = std::move(command);
    s.timeout_ms = 10000;
    s.kill_grace_ms = 2000;
    return s;
  }

  std::unique_ptr<pipeline::Turn> start(const ExecSettings& s, Recorder& r) {
    agent_ = std::make_unique<ExecAgent>(io_, executor_, s, GetParam());
    return agent_->start(make_request(), record(r));
  }

  // Runs the event loop until `done` holds, for at most `limit`.
  bool run_until(const std::function<bool()>& done, std::chrono::milliseconds limit = 5000ms) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    io_.restart();
    while (!done()) {
      auto now = std::chrono::steady_clock::now();
      if (now >= deadline) return false;
      if (io_.run_one_for(deadline - now) == 0 && io_.stopped()) return done();
    }
    return true;
  }

  // Runs everything still queued (handlers of closed descriptors) until the loop is idle.
  void run_to_idle() {
    io_.restart();
    io_.run_for(2s);
    EXPECT_TRUE(io_.stopped()) << "work left on the event loop";
  }

  boost::asio::io_context io_;
  runtime::AsioExecutor executor_{io_};  // the runtime's: timers in real time, on io_
  std::unique_ptr<ExecAgent> agent_;
  std::filesystem::path dir_;
};

TEST_P(ExecAgentTest, TypeIsExec) {
  ExecAgent agent(io_, executor_, settings({"true"}), GetParam());
  EXPECT_EQ(agent.type(), "exec");
}

TEST_P(ExecAgentTest, StreamsEachLineAsADeltaInOrder) {
  Recorder r;
  auto turn = start(settings({"sh", "-c", "echo one; echo two"}), r);
  EXPECT_TRUE(r.deltas.empty() && !r.done()) << "called back from inside start()";

  ASSERT_TRUE(run_until([&] { return r.done(); }));
  EXPECT_EQ(r.deltas, (std::vector<std::string>{"one\n", "two\n"}));
  ASSERT_EQ(r.outcomes.size(), 1u);
  EXPECT_EQ(r.outcomes[0].kind, Kind::completed);
  EXPECT_EQ(r.outcomes[0].text, "one\ntwo");
  EXPECT_EQ(r.outcomes[0].error, "");
}

TEST_P(ExecAgentTest, ManyLinesArriveWholeAndInOrder) {
  Recorder r;
  auto turn = start(settings({"seq", "1", "5000"}), r);
  ASSERT_TRUE(run_until([&] { return r.done(); }));
  ASSERT_EQ(r.deltas.size(), 5000u);
  for (std::size_t i = 0; i < r.deltas.size(); ++i) {
    ASSERT_EQ(r.deltas[i], std::to_string(i + 1) + "\n");
  }
  std::string joined;
  for (const auto& d : r.deltas) joined += d;
  EXPECT_EQ(r.outcomes[0].kind, Kind::completed);
  EXPECT_EQ(r.outcomes[0].text + "\n", joined);
}

TEST_P(ExecAgentTest, TrailingPartialLineIsEmittedAtEof) {
  Recorder r;
  auto turn = start(settings({"printf", "a\\nb"}), r);
  ASSERT_TRUE(run_until([&] { return r.done(); }));
  EXPECT_EQ(r.deltas, (std::vector<std::string>{"a\n", "b"}));
  EXPECT_EQ(r.outcomes[0].text, "a\nb");
}

TEST_P(ExecAgentTest, RequestArrivesAsOneJsonLineOnStdin) {
  Recorder r;
  auto turn = start(settings({"sh", "-c", "cat"}), r);
  ASSERT_TRUE(run_until([&] { return r.done(); }));
  ASSERT_EQ(r.outcomes[0].kind, Kind::completed) << r.outcomes[0].error;
  ASSERT_EQ(r.deltas.size(), 1u);  // one line, newline-terminated
  auto doc = nlohmann::json::parse(r.outcomes[0].text);
  EXPECT_EQ(doc["runId"], "run-42");
  EXPECT_EQ(doc["sessionKey"], "local:chat-7");
  EXPECT_EQ(doc["channel"], "local");
  EXPECT_EQ(doc["chatId"], "chat-7");
  EXPECT_EQ(doc["sender"], "alice");
  EXPECT_EQ(doc["text"], "how are you?");
  ASSERT_EQ(doc["history"].size(), 3u);
  EXPECT_EQ(doc["history"][1], (nlohmann::json{{"role", "assistant"}, {"text", "hello"}}));
}

TEST_P(ExecAgentTest, ChildThatNeverReadsALargeRequestDoesNotBlock) {
  Recorder r;
  auto s = settings({"sh", "-c", "echo ignored"});
  agent_ = std::make_unique<ExecAgent>(io_, executor_, s, GetParam());
  auto request = make_request();
  request.history.push_back({"user", std::string(4 << 20, 'x')});  // far above a pipe buffer
  auto turn = agent_->start(request, record(r));
  ASSERT_TRUE(run_until([&] { return r.done(); }));
  EXPECT_EQ(r.outcomes[0].kind, Kind::completed) << r.outcomes[0].error;
  EXPECT_EQ(r.outcomes[0].text, "ignored");
}

TEST_P(ExecAgentTest, NonZeroExitFailsWithTheLastStderrLine) {
  Recorder r;
  auto turn = start(
      settings({"sh", "-c", "echo partial; echo first >&2; echo 'bad thing' >&2; exit 3"}), r);
  ASSERT_TRUE(run_until([&] { return r.done(); }));
  ASSERT_EQ(r.outcomes.size(), 1u);
  EXPECT_EQ(r.outcomes[0].kind, Kind::failed);
  EXPECT_EQ(r.outcomes[0].error, "command exited with status 3: bad thing");
  EXPECT_EQ(r.outcomes[0].text, "partial");
}

TEST_P(ExecAgentTest, LargeStderrIsDrainedAndOnlyItsTailKept) {
  Recorder r;
  // 256 KiB on stderr would fill the pipe and hang the child if we did not read it.
  auto turn = start(settings({"sh", "-c",
                              "head -c 262144 /dev/zero | tr '\\0' e >&2; echo >&2; "
                              "echo 'the real reason' >&2; exit 1"}),
                    r);
  ASSERT_TRUE(run_until([&] { return r.done(); }));
  EXPECT_EQ(r.outcomes[0].kind, Kind::failed);
  EXPECT_EQ(r.outcomes[0].error, "command exited with status 1: the real reason");
}

TEST_P(ExecAgentTest, KilledBySignalFails) {
  Recorder r;
  auto turn = start(settings({"sh", "-c", "kill -KILL $$"}), r);
  ASSERT_TRUE(run_until([&] { return r.done(); }));
  EXPECT_EQ(r.outcomes[0].kind, Kind::failed);
  EXPECT_EQ(r.outcomes[0].error, "command killed by signal 9");
}

TEST_P(ExecAgentTest, TimeoutKillsTheWholeProcessGroup) {
  Recorder r;
  auto pid_file = dir_ / "grandchild.pid";
  auto s =
      settings({"sh", "-c", "sleep 30 & echo $! > '" + pid_file.string() + "'; echo ready; wait"});
  s.timeout_ms = 500;
  auto started = std::chrono::steady_clock::now();
  auto turn = start(s, r);
  ASSERT_TRUE(run_until([&] { return r.done(); }));
  auto elapsed = std::chrono::steady_clock::now() - started;

  ASSERT_EQ(r.deltas, std::vector<std::string>{"ready\n"}) << "the child never got going";
  EXPECT_EQ(r.outcomes[0].kind, Kind::failed);
  EXPECT_EQ(r.outcomes[0].error, "timed out after 500 ms");
  EXPECT_EQ(r.outcomes[0].text, "ready");
  EXPECT_GE(elapsed, 500ms);
  EXPECT_LT(elapsed, 2000ms) << "SIGTERM alone should have ended it, well before the grace";

  pid_t grandchild = std::stoi(read_file(pid_file));
  EXPECT_TRUE(wait_until_gone(grandchild)) << "grandchild " << grandchild << " survived";
}

// The timeout is a timer of the injected executor: in simulated time a ten-minute timeout ends
// the turn exactly at its deadline, not a millisecond before, while the child and its pipes
// stay real. (With the timer on a real clock the turn would not end within the test.)
TEST_P(ExecAgentTest, TimeoutFiresAtItsDeadlineInSimulatedTime) {
  core::ManualClock clock;
  core::ManualExecutor sim(clock);
  auto s = settings({"sh", "-c", "echo $$; exec sleep 600"});
  s.timeout_ms = 600'000;
  ExecAgent agent(io_, sim, s, GetParam());
  Recorder r;
  auto turn = agent.start(make_request(), record(r));
  ASSERT_TRUE(run_until([&] { return !r.deltas.empty(); })) << "the child never got going";
  const pid_t child = std::stoi(r.deltas[0]);

  sim.advance(599'999ms);
  io_.restart();
  io_.poll();
  EXPECT_FALSE(r.done()) << "ended before its timeout";
  EXPECT_FALSE(process_gone(child));

  sim.advance(1ms);  // SIGTERM now; the exit is seen on the pidfd or by polling (simulated)
  const auto limit = std::chrono::steady_clock::now() + 5s;
  while (!r.done() && std::chrono::steady_clock::now() < limit) {
    io_.restart();
    io_.run_one_for(1ms);
    sim.advance(1ms);
  }
  ASSERT_TRUE(r.done()) << "the timeout did not end the turn";
  EXPECT_EQ(r.outcomes[0].kind, Kind::failed);
  EXPECT_EQ(r.outcomes[0].error, "timed out after 600000 ms");
  EXPECT_TRUE(process_gone(child));
  EXPECT_EQ(sim.pending_timers(), 0u) << "a timer outlived the turn";
  run_to_idle();
}

TEST_P(ExecAgentTest, ChildIgnoringSigtermIsKilledAfterTheGracePeriod) {
  Recorder r;
  auto s = settings({"sh", "-c", "trap '' TERM; echo $$; sleep 30"});
  s.timeout_ms = 200;
  s.kill_grace_ms = 200;
  auto started = std::chrono::steady_clock::now();
  auto turn = start(s, r);
  ASSERT_TRUE(run_until([&] { return r.done(); }));
  auto elapsed = std::chrono::steady_clock::now() - started;

  ASSERT_EQ(r.outcomes.size(), 1u);
  EXPECT_EQ(r.outcomes[0].kind, Kind::failed);
  EXPECT_EQ(r.outcomes[0].error, "timed out after 200 ms");
  EXPECT_GE(elapsed, 400ms) << "finished before SIGKILL: SIGTERM was not ignored";
  ASSERT_EQ(r.deltas.size(), 1u);
  EXPECT_TRUE(process_gone(std::stoi(r.deltas[0])));  // the leader is reaped by now
}

TEST_P(ExecAgentTest, CancelAbortsExactlyOnce) {
  Recorder r;
  auto s = settings({"sh", "-c", "echo ready; exec sleep 30"});
  s.kill_grace_ms = 10000;  // SIGTERM must suffice: on_done well before the grace ends
  auto turn = start(s, r);
  ASSERT_TRUE(run_until([&] { return !r.deltas.empty(); }));
  turn->cancel();
  turn->cancel();
  ASSERT_TRUE(run_until([&] { return r.done(); }));
  turn->cancel();  // after done: a no-op
  run_to_idle();

  ASSERT_EQ(r.outcomes.size(), 1u);
  EXPECT_EQ(r.outcomes[0].kind, Kind::aborted);
  EXPECT_EQ(r.outcomes[0].error, "aborted");
  EXPECT_EQ(r.outcomes[0].text, "ready");
}

TEST_P(ExecAgentTest, CancelRightAfterStartAborts) {
  Recorder r;
  auto turn = start(settings({"sleep", "30"}), r);
  turn->cancel();
  EXPECT_FALSE(r.done()) << "on_done ran inside cancel()";
  ASSERT_TRUE(run_until([&] { return r.done(); }));
  run_to_idle();
  ASSERT_EQ(r.outcomes.size(), 1u);
  EXPECT_EQ(r.outcomes[0].kind, Kind::aborted);
}

TEST_P(ExecAgentTest, CancelFromInsideOnDeltaWithZeroGrace) {
  Recorder r;
  auto s = settings({"sh", "-c", "trap '' TERM; echo ready; sleep 30"});
  s.kill_grace_ms = 0;
  agent_ = std::make_unique<ExecAgent>(io_, executor_, s, GetParam());
  std::unique_ptr<pipeline::Turn> turn;
  bool done_inside_delta = false;
  turn =
      agent_->start(make_request(), {[&](std::string_view d) {
                                       r.deltas.emplace_back(d);
                                       turn->cancel();
                                       done_inside_delta = r.done();
                                     },
                                     [&](TurnOutcome o) { r.outcomes.push_back(std::move(o)); }});
  ASSERT_TRUE(run_until([&] { return r.done(); }));
  run_to_idle();
  EXPECT_FALSE(done_inside_delta);
  ASSERT_EQ(r.outcomes.size(), 1u);
  EXPECT_EQ(r.outcomes[0].kind, Kind::aborted);
}

TEST_P(ExecAgentTest, CommandNotFoundFailsToStart) {
  Recorder r;
  auto turn = start(settings({"drawbridge-no-such-command"}), r);
  EXPECT_FALSE(r.done()) << "on_done ran inside start()";
  ASSERT_TRUE(run_until([&] { return r.done(); }));
  run_to_idle();
  ASSERT_EQ(r.outcomes.size(), 1u);
  EXPECT_EQ(r.outcomes[0].kind, Kind::failed);
  EXPECT_EQ(r.outcomes[0].error,
            "cannot start drawbridge-no-such-command: No such file or directory");
}

TEST_P(ExecAgentTest, MissingCwdFailsToStart) {
  Recorder r;
  auto s = settings({"sh", "-c", "pwd"});
  s.cwd = (dir_ / "missing").string();
  auto turn = start(s, r);
  ASSERT_TRUE(run_until([&] { return r.done(); }));
  EXPECT_EQ(r.outcomes[0].kind, Kind::failed);
  EXPECT_EQ(r.outcomes[0].error, "cannot start sh: No such file or directory (cwd " + s.cwd + ")");
}

TEST_P(ExecAgentTest, DestroyingTheTurnKillsTheChildWithoutCallingBack) {
  Recorder r;
  auto turn = start(settings({"sh", "-c", "echo $$; exec sleep 30"}), r);
  ASSERT_TRUE(run_until([&] { return !r.deltas.empty(); }));
  pid_t child = std::stoi(r.deltas[0]);
  turn.reset();
  EXPECT_TRUE(process_gone(child)) << "killed and reaped before the destructor returned";
  run_to_idle();
  EXPECT_EQ(r.deltas.size(), 1u);
  EXPECT_FALSE(r.done());
}

TEST_P(ExecAgentTest, DestroyingTheTurnInsideOnDeltaIsSafe) {
  Recorder r;
  agent_ = std::make_unique<ExecAgent>(
      io_, executor_, settings({"sh", "-c", "echo $$; echo more; sleep 30"}), GetParam());
  std::unique_ptr<pipeline::Turn> turn;
  turn = agent_->start(make_request(), {[&](std::string_view d) {
                                          r.deltas.emplace_back(d);
                                          turn.reset();
                                        },
                                        [&](TurnOutcome o) { r.outcomes.push_back(o); }});
  ASSERT_TRUE(run_until([&] { return !r.deltas.empty(); }));
  run_to_idle();
  EXPECT_EQ(r.deltas.size(), 1u);
  EXPECT_FALSE(r.done());
  EXPECT_TRUE(process_gone(std::stoi(r.deltas[0])));
}

TEST_P(ExecAgentTest, DestroyingTheTurnBeforeAStartFailureIsReported) {
  Recorder r;
  auto turn = start(settings({"drawbridge-no-such-command"}), r);
  turn.reset();
  run_to_idle();
  EXPECT_FALSE(r.done());
}

TEST_P(ExecAgentTest, TheAgentMayGoAwayBeforeItsTurn) {
  Recorder r;
  auto turn = start(settings({"sh", "-c", "echo done"}), r);
  agent_.reset();  // a config reload replaced it
  ASSERT_TRUE(run_until([&] { return r.done(); }));
  EXPECT_EQ(r.outcomes[0].text, "done");
}

TEST_P(ExecAgentTest, EnvAndCwdAreApplied) {
  Recorder r;
  auto s = settings({"sh", "-c", "echo \"$DRAWBRIDGE_TEST_VAR\"; pwd; echo \"$PATH\""});
  s.env = {{"DRAWBRIDGE_TEST_VAR", "hello there"}};
  s.cwd = dir_.string();
  auto turn = start(s, r);
  ASSERT_TRUE(run_until([&] { return r.done(); }));
  ASSERT_EQ(r.outcomes[0].kind, Kind::completed) << r.outcomes[0].error;
  const char* path = ::getenv("PATH");
  EXPECT_EQ(r.outcomes[0].text,
            "hello there\n" + dir_.string() + "\n" + std::string(path ? path : ""));
}

TEST_P(ExecAgentTest, EnvOverridesAnInheritedVariable) {
  Recorder r;
  ASSERT_EQ(::setenv("DRAWBRIDGE_TEST_INHERITED", "from-gateway", 1), 0);
  auto s = settings({"sh", "-c", "echo \"$DRAWBRIDGE_TEST_INHERITED\""});
  s.env = {{"DRAWBRIDGE_TEST_INHERITED", "from-config"}};
  auto turn = start(s, r);
  ASSERT_TRUE(run_until([&] { return r.done(); }));
  ::unsetenv("DRAWBRIDGE_TEST_INHERITED");
  EXPECT_EQ(r.outcomes[0].text, "from-config");
}

TEST_P(ExecAgentTest, ChildInheritsNoOtherFds) {
  Recorder r;
  int leaky = ::open("/dev/null", O_RDONLY);  // deliberately without O_CLOEXEC
  ASSERT_GE(leaky, 0);
  auto turn = start(settings({"sh", "-c", "ls /proc/$$/fd"}), r);
  ASSERT_TRUE(run_until([&] { return r.done(); }));
  ::close(leaky);
  EXPECT_EQ(r.outcomes[0].text, "0\n1\n2");
}

TEST_P(ExecAgentTest, ChildStartsWithDefaultSignalDispositions) {
  Recorder r;  // the gateway ignores SIGPIPE; the command must not inherit that
  auto turn = start(settings({"grep", "^SigIgn", "/proc/self/status"}), r);
  ASSERT_TRUE(run_until([&] { return r.done(); }));
  auto text = r.outcomes[0].text;
  ASSERT_EQ(text.rfind("SigIgn:\t", 0), 0u) << text;
  // Bits 0..30 are signals 1..31. glibc's posix_spawn leaves its own internal real-time
  // signals (32, 33) ignored, which no command relies on.
  auto ignored = std::stoull(text.substr(8), nullptr, 16);
  EXPECT_EQ(ignored & 0x7fffffffull, 0u) << text;
}

TEST_P(ExecAgentTest, ChildLeadsItsOwnProcessGroup) {
  Recorder r;
  auto turn = start(settings({"sh", "-c", "echo $$ $(ps -o pgid= -p $$)"}), r);
  ASSERT_TRUE(run_until([&] { return r.done(); }));
  auto text = r.outcomes[0].text;
  auto space = text.find(' ');
  ASSERT_NE(space, std::string::npos) << text;
  EXPECT_EQ(std::stoi(text.substr(0, space)), std::stoi(text.substr(space + 1)));
  EXPECT_NE(std::stoi(text.substr(space + 1)), ::getpgrp());
}

INSTANTIATE_TEST_SUITE_P(ExitWatch, ExecAgentTest,
                         ::testing::Values(ExecAgent::ExitWatch::pidfd,
                                           ExecAgent::ExitWatch::polling),
                         [](const ::testing::TestParamInfo<ExecAgent::ExitWatch>& info) {
                           return info.param == ExecAgent::ExitWatch::pidfd ? "Pidfd" : "Polling";
                         });

}  // namespace
}  // namespace drawbridge::agents
