#include "runtime/supervisor.h"

#include <chrono>
#include <map>
#include <string>

#include <gtest/gtest.h>

namespace drawbridge::runtime {
namespace {

using namespace std::chrono_literals;

// An environment of its own per test: detection never sees the variables of the machine
// running the tests (CI under systemd has INVOCATION_ID).
class FakeEnv {
 public:
  FakeEnv(std::initializer_list<std::pair<const std::string, std::string>> vars) : vars_(vars) {}
  GetenvFn fn() const {
    return [this](const char* name) -> const char* {
      const auto it = vars_.find(name);
      return it == vars_.end() ? nullptr : it->second.c_str();
    };
  }

 private:
  std::map<std::string, std::string> vars_;
};

SupervisorInfo detect(const FakeEnv& env) {
  return detect_supervisor(env.fn());
}

TEST(SupervisorDetect, NothingSetIsNone) {
  const auto info = detect({});
  EXPECT_EQ(info.kind, Supervisor::none);
  EXPECT_NE(info.why.find("NOTIFY_SOCKET"), std::string::npos) << info.why;
}

TEST(SupervisorDetect, NotifySocketIsSystemd) {
  const auto info = detect({{"NOTIFY_SOCKET", "/run/systemd/notify"}});
  EXPECT_EQ(info.kind, Supervisor::systemd);
  EXPECT_EQ(info.why, "NOTIFY_SOCKET is set");
}

TEST(SupervisorDetect, InvocationIdIsSystemd) {
  const auto info = detect({{"INVOCATION_ID", "0123456789abcdef0123456789abcdef"}});
  EXPECT_EQ(info.kind, Supervisor::systemd);
  EXPECT_EQ(info.why, "INVOCATION_ID is set");
}

TEST(SupervisorDetect, NotifySocketIsNamedFirstWhenBothAreSet) {
  const auto info = detect({{"NOTIFY_SOCKET", "@abstract"}, {"INVOCATION_ID", "abc"}});
  EXPECT_EQ(info.kind, Supervisor::systemd);
  EXPECT_EQ(info.why, "NOTIFY_SOCKET is set");
}

TEST(SupervisorDetect, XpcServiceNameIsLaunchd) {
  const auto info = detect({{"XPC_SERVICE_NAME", "ai.drawbridge.gateway"}});
  EXPECT_EQ(info.kind, Supervisor::launchd);
  EXPECT_EQ(info.why, "XPC_SERVICE_NAME=ai.drawbridge.gateway");
}

TEST(SupervisorDetect, XpcServiceNameZeroIsATerminalNotLaunchd) {
  EXPECT_EQ(detect({{"XPC_SERVICE_NAME", "0"}}).kind, Supervisor::none);
}

TEST(SupervisorDetect, LaunchJobLabelIsLaunchd) {
  const auto info =
      detect({{"XPC_SERVICE_NAME", "0"}, {"LAUNCH_JOB_LABEL", "ai.drawbridge.gateway"}});
  EXPECT_EQ(info.kind, Supervisor::launchd);
  EXPECT_EQ(info.why, "LAUNCH_JOB_LABEL=ai.drawbridge.gateway");
}

TEST(SupervisorDetect, EmptyVariablesCountAsUnset) {
  EXPECT_EQ(detect({{"NOTIFY_SOCKET", ""},
                    {"INVOCATION_ID", ""},
                    {"XPC_SERVICE_NAME", ""},
                    {"LAUNCH_JOB_LABEL", ""},
                    {"DRAWBRIDGE_SUPERVISOR", ""}})
                .kind,
            Supervisor::none);
}

TEST(SupervisorDetect, SystemdWinsOverLaunchd) {
  EXPECT_EQ(detect({{"INVOCATION_ID", "abc"}, {"LAUNCH_JOB_LABEL", "x"}}).kind,
            Supervisor::systemd);
}

TEST(SupervisorDetect, OverrideNoneBeatsNotifySocket) {
  const auto info = detect({{"DRAWBRIDGE_SUPERVISOR", "none"}, {"NOTIFY_SOCKET", "/run/n"}});
  EXPECT_EQ(info.kind, Supervisor::none);
  EXPECT_EQ(info.why, "DRAWBRIDGE_SUPERVISOR=none");
}

TEST(SupervisorDetect, OverrideSystemdWithNothingElseSet) {
  const auto info = detect({{"DRAWBRIDGE_SUPERVISOR", "systemd"}});
  EXPECT_EQ(info.kind, Supervisor::systemd);
  EXPECT_EQ(info.why, "DRAWBRIDGE_SUPERVISOR=systemd");
}

TEST(SupervisorDetect, OverrideLaunchdBeatsSystemdVariables) {
  const auto info = detect({{"DRAWBRIDGE_SUPERVISOR", "launchd"}, {"INVOCATION_ID", "abc"}});
  EXPECT_EQ(info.kind, Supervisor::launchd);
  EXPECT_EQ(info.why, "DRAWBRIDGE_SUPERVISOR=launchd");
}

TEST(SupervisorDetect, UnknownOverrideIsIgnored) {
  const auto info = detect({{"DRAWBRIDGE_SUPERVISOR", "runit"}, {"NOTIFY_SOCKET", "/run/n"}});
  EXPECT_EQ(info.kind, Supervisor::systemd);
  EXPECT_EQ(info.why, "NOTIFY_SOCKET is set");
  EXPECT_EQ(detect({{"DRAWBRIDGE_SUPERVISOR", "Systemd"}}).kind, Supervisor::none);
}

TEST(SupervisorNames, RoundTrip) {
  EXPECT_STREQ(to_string(Supervisor::none), "none");
  EXPECT_STREQ(to_string(Supervisor::systemd), "systemd");
  EXPECT_STREQ(to_string(Supervisor::launchd), "launchd");
  for (const auto m : {RestartMode::in_process, RestartMode::reexec, RestartMode::supervised}) {
    EXPECT_EQ(parse_restart_mode(to_string(m)), m);
  }
  EXPECT_STREQ(to_string(RestartMode::in_process), "in-process");
  EXPECT_STREQ(to_string(RestartMode::reexec), "re-exec");
  EXPECT_STREQ(to_string(RestartMode::supervised), "supervised");
  EXPECT_EQ(parse_restart_mode("auto"), std::nullopt);
  EXPECT_EQ(parse_restart_mode("reexec"), std::nullopt);
  EXPECT_EQ(parse_restart_mode(""), std::nullopt);
}

struct ModeCase {
  const char* configured;
  bool fresh;
  Supervisor sup;
  RestartMode expected;
};

std::string describe(const ModeCase& c) {
  return std::string(c.configured) + (c.fresh ? " fresh" : " same") + " under " + to_string(c.sup);
}

constexpr auto N = Supervisor::none;
constexpr auto S = Supervisor::systemd;
constexpr auto L = Supervisor::launchd;
constexpr auto IP = RestartMode::in_process;
constexpr auto RE = RestartMode::reexec;
constexpr auto SU = RestartMode::supervised;

// Every configured mode × fresh process or not × every supervisor: only auto looks at the
// request and the supervisor; a configured mode is forced.
constexpr ModeCase kModeTable[] = {
    {"auto", false, N, IP},       {"auto", false, S, IP},       {"auto", false, L, IP},
    {"auto", true, N, RE},        {"auto", true, S, SU},        {"auto", true, L, SU},
    {"in-process", false, N, IP}, {"in-process", false, S, IP}, {"in-process", false, L, IP},
    {"in-process", true, N, IP},  {"in-process", true, S, IP},  {"in-process", true, L, IP},
    {"re-exec", false, N, RE},    {"re-exec", false, S, RE},    {"re-exec", false, L, RE},
    {"re-exec", true, N, RE},     {"re-exec", true, S, RE},     {"re-exec", true, L, RE},
    {"supervised", false, N, SU}, {"supervised", false, S, SU}, {"supervised", false, L, SU},
    {"supervised", true, N, SU},  {"supervised", true, S, SU},  {"supervised", true, L, SU},
};

TEST(SupervisorRestartMode, ChoiceTable) {
  const FakeEnv env{};
  for (const auto& c : kModeTable) {
    EXPECT_EQ(choose_restart_mode(c.configured, c.fresh, {c.sup, "test"}, env.fn()), c.expected)
        << describe(c) << ": got "
        << to_string(choose_restart_mode(c.configured, c.fresh, {c.sup, "test"}, env.fn()));
  }
}

TEST(SupervisorRestartMode, EnvOverrideBeatsEverything) {
  for (const auto forced : {IP, RE, SU}) {
    const FakeEnv env{{"DRAWBRIDGE_RESTART_MODE", to_string(forced)}};
    for (const auto& c : kModeTable) {
      EXPECT_EQ(choose_restart_mode(c.configured, c.fresh, {c.sup, "test"}, env.fn()), forced)
          << describe(c) << " with DRAWBRIDGE_RESTART_MODE=" << to_string(forced);
    }
  }
}

TEST(SupervisorRestartMode, UnknownEnvOverrideIsIgnored) {
  const FakeEnv env{{"DRAWBRIDGE_RESTART_MODE", "auto"}};
  for (const auto& c : kModeTable) {
    EXPECT_EQ(choose_restart_mode(c.configured, c.fresh, {c.sup, "test"}, env.fn()), c.expected)
        << describe(c);
  }
  const FakeEnv empty{{"DRAWBRIDGE_RESTART_MODE", ""}};
  EXPECT_EQ(choose_restart_mode("auto", true, {S, "test"}, empty.fn()), SU);
}

TEST(SupervisorRestartMode, UnknownConfiguredModeCountsAsAuto) {
  const FakeEnv env{};
  EXPECT_EQ(choose_restart_mode("fork", false, {N, "test"}, env.fn()), IP);
  EXPECT_EQ(choose_restart_mode("fork", true, {N, "test"}, env.fn()), RE);
  EXPECT_EQ(choose_restart_mode("fork", true, {L, "test"}, env.fn()), SU);
}

TEST(SupervisorRestartMode, DetectedSupervisorDrivesAuto) {
  const FakeEnv env{{"NOTIFY_SOCKET", "/run/systemd/notify"}};
  EXPECT_EQ(choose_restart_mode("auto", true, detect_supervisor(env.fn()), env.fn()), SU);
  const FakeEnv forced_none{{"NOTIFY_SOCKET", "/run/systemd/notify"},
                            {"DRAWBRIDGE_SUPERVISOR", "none"}};
  EXPECT_EQ(
      choose_restart_mode("auto", true, detect_supervisor(forced_none.fn()), forced_none.fn()), RE);
}

TEST(SupervisorExitPause, OnlyLaunchdPauses) {
  EXPECT_EQ(supervised_exit_pause(Supervisor::launchd), 1500ms);
  EXPECT_EQ(supervised_exit_pause(Supervisor::systemd), 0ms);
  EXPECT_EQ(supervised_exit_pause(Supervisor::none), 0ms);
}

}  // namespace
}  // namespace drawbridge::runtime
