// `drawbridge channels status` (from the running gateway) and `drawbridge channels probe ID`
// (without one): the real binary against the fake Bot API and a tiny IRC server on loopback.

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "e2e/harness.h"
#include "fakes/telegram_fake.h"

namespace drawbridge::e2e {
namespace {

using testing::TelegramFake;
constexpr const char* kBot = "123456:fake-bot-token";
constexpr const char* kBotName = "drawbridge_e2e_bot";
constexpr int kUsage = 64;
constexpr int kUnreachable = 2;

std::string describe(const CliResult& r) {
  return r.status.describe() + "\nstdout:\n" + r.out + "\nstderr:\n" + r.err;
}

bool exited_with(const CliResult& r, int code) {
  return r.status.exited && r.status.code == code;
}

bool has(const std::string& text, const std::string& needle) {
  return text.find(needle) != std::string::npos;
}

// The line of `channel` in `channels status` output.
std::string line_of(const std::string& out, const std::string& channel) {
  std::size_t at = 0;
  while (at < out.size()) {
    const auto end = out.find('\n', at);
    const std::string line = out.substr(at, end == std::string::npos ? end : end - at);
    if (line.rfind(channel + " ", 0) == 0) return line;
    if (end == std::string::npos) break;
    at = end + 1;
  }
  return {};
}

json telegram_channel(const std::string& api_root) {
  return {{"botTokenEnv", "E2E_BOT_TOKEN"}, {"apiRoot", api_root}, {"pollTimeoutSeconds", 5}};
}

CliResult channels_status(const TempDir& dir, const Gateway& gw, bool as_json = false) {
  std::vector<std::string> args = {"channels", "status", "--url", gw.url(), "--token", gw.token()};
  if (as_json) args.push_back("--json");
  return run_cli(dir, args);
}

// `drawbridge --config <dir>/drawbridge.json channels probe ID ARGS...` with the bot token in
// the environment, as the gateway would have it.
CliResult probe(const TempDir& dir, const std::string& id, std::vector<std::string> args = {},
                Millis timeout = 15s) {
  std::vector<std::string> argv = {"--config", (dir.path() / "drawbridge.json").string(),
                                   "channels", "probe", id};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_cli(dir, argv, timeout, {{"E2E_BOT_TOKEN", kBot}});
}

void write_config(const TempDir& dir, const json& channels) {
  json cfg = echo_config();
  for (const auto& [id, ch] : channels.items()) cfg["channels"][id] = ch;
  dir.write("drawbridge.json", cfg.dump(2));
}

// An IRC server that takes one client on 127.0.0.1: once it has NICK and USER it answers
// `replies[0]` ("{nick}" replaced by the nick asked for), each further NICK the next reply, and
// records what the client sends until it closes. Every wait is bounded (10 s).
class FakeIrcServer {
 public:
  explicit FakeIrcServer(std::vector<std::string> replies) : replies_(std::move(replies)) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (listen_fd_ < 0 || ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
        ::listen(listen_fd_, 4) != 0 ||
        ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      throw std::runtime_error("fake IRC server: cannot listen on 127.0.0.1");
    }
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeIrcServer() {
    stop_ = true;
    thread_.join();
    ::close(listen_fd_);
  }

  int port() const { return port_; }
  // Waits (bounded) until the client has gone; the lines it sent.
  std::vector<std::string> lines_after_close(Millis timeout = 10s) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, timeout, [&] { return done_; });
    return lines_;
  }

 private:
  // Waits until `fd` is readable, in steps that notice stop_; false at the deadline or stop.
  bool readable(int fd, std::chrono::steady_clock::time_point deadline) {
    while (!stop_ && std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 50) > 0) return true;
    }
    return false;
  }

  void serve() {
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    int fd = readable(listen_fd_, deadline) ? ::accept(listen_fd_, nullptr, nullptr) : -1;
    std::string buf, nick;
    bool user = false;
    std::size_t answered = 0;
    bool nick_since_answer = false;
    char chunk[4096];
    while (fd >= 0 && readable(fd, deadline)) {
      const ssize_t n = ::read(fd, chunk, sizeof chunk);
      if (n <= 0) break;
      buf.append(chunk, static_cast<std::size_t>(n));
      for (auto lf = buf.find('\n'); lf != std::string::npos; lf = buf.find('\n')) {
        std::string line = buf.substr(0, lf);
        buf.erase(0, lf + 1);
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.rfind("NICK ", 0) == 0) {
          nick = line.substr(5);
          nick_since_answer = true;
        }
        if (line.rfind("USER ", 0) == 0) user = true;
        {
          std::lock_guard lock(mu_);
          lines_.push_back(line);
        }
        if (answered < replies_.size() && user && nick_since_answer) {
          nick_since_answer = false;
          std::string out = replies_[answered++];
          for (auto at = out.find("{nick}"); at != std::string::npos; at = out.find("{nick}")) {
            out.replace(at, 6, nick);
          }
          (void)!::write(fd, out.data(), out.size());
        }
      }
    }
    if (fd >= 0) ::close(fd);
    std::lock_guard lock(mu_);
    done_ = true;
    cv_.notify_all();
  }

  std::vector<std::string> replies_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> lines_;
  bool done_ = false;
};

json irc_channel(int port) {
  return {{"host", "127.0.0.1"},
          {"port", port},
          {"nick", "drawbot"},
          {"password", "s3cret-irc-pass"},
          {"dmPolicy", "open"}};
}

// --- channels status ------------------------------------------------------------------------

TEST(ChannelsCliStatus, TheLocalChannelIsConnectedAndTheExitCodeIsZero) {
  TempDir dir;
  Gateway gw(dir, echo_config());
  gw.start();
  auto r = channels_status(dir, gw);
  EXPECT_TRUE(exited_with(r, 0)) << describe(r);
  const std::string line = line_of(r.out, "local");
  EXPECT_TRUE(has(line, "connected")) << describe(r);
  EXPECT_TRUE(has(line, "agent main")) << describe(r);

  auto j = channels_status(dir, gw, true);
  EXPECT_TRUE(exited_with(j, 0)) << describe(j);
  const json channels = json::parse(j.out, nullptr, false);
  ASSERT_TRUE(channels.is_array()) << describe(j);
  ASSERT_EQ(channels.size(), 1u) << describe(j);
  EXPECT_EQ(channels[0].value("id", ""), "local");
  EXPECT_EQ(channels[0].value("state", ""), "connected");
}

TEST(ChannelsCliStatus, ARefusedTelegramTokenExitsOneAndShowsTheErrorWithItsAge) {
  TelegramFake fake;
  fake.add_bot(kBot, 123456, kBotName);
  fake.fail_next(kBot, "getMe", 401, "Unauthorized", 0, 1000);
  TempDir dir;
  json cfg = echo_config();
  cfg["channels"]["telegram"] = telegram_channel(fake.base_url());
  Gateway gw(dir, cfg);
  gw.set_env("E2E_BOT_TOKEN", kBot);
  gw.set_wait_for_channels(false);
  gw.start();
  ASSERT_TRUE(gw.wait_for_log("getMe failed", 10s)) << gw.log();

  auto r = channels_status(dir, gw);
  EXPECT_TRUE(exited_with(r, 1)) << describe(r);
  EXPECT_TRUE(has(line_of(r.out, "local"), "connected")) << describe(r);
  const std::string line = line_of(r.out, "telegram");
  EXPECT_TRUE(has(line, "failed")) << describe(r);
  EXPECT_TRUE(has(line, "last error")) << describe(r);
  EXPECT_TRUE(has(line, "ago: getMe: Unauthorized")) << describe(r);
  EXPECT_FALSE(has(r.out + r.err, kBot)) << "the token is in the output";

  auto j = channels_status(dir, gw, true);
  EXPECT_TRUE(exited_with(j, 1)) << describe(j);
  const json channels = json::parse(j.out, nullptr, false);
  ASSERT_TRUE(channels.is_array()) << describe(j);
  bool seen = false;
  for (const auto& c : channels) {
    if (c.value("id", "") != "telegram") continue;
    seen = true;
    EXPECT_EQ(c.value("state", ""), "failed") << c.dump();
    EXPECT_TRUE(c["lastErrorAt"].is_number_integer()) << c.dump();
  }
  EXPECT_TRUE(seen) << describe(j);
}

TEST(ChannelsCliStatus, WithoutAGatewayItExitsTwoWithTheMessageOfStatus) {
  TempDir dir;
  const std::vector<std::string> target = {"--url", "ws://127.0.0.1:" + std::to_string(free_port()),
                                           "--token", "unused"};
  std::vector<std::string> args = {"channels", "status"};
  args.insert(args.end(), target.begin(), target.end());
  auto r = run_cli(dir, args);
  EXPECT_TRUE(exited_with(r, kUnreachable)) << describe(r);
  std::vector<std::string> status_args = {"status"};
  status_args.insert(status_args.end(), target.begin(), target.end());
  auto s = run_cli(dir, status_args);
  EXPECT_FALSE(r.err.empty());
  EXPECT_EQ(r.err, s.err) << describe(r) << describe(s);
}

// --- channels probe telegram ----------------------------------------------------------------

TEST(ChannelsCliProbe, TelegramOkPrintsTheBotAndNeverPollsOrShowsTheToken) {
  TelegramFake fake;
  fake.add_bot(kBot, 123456, kBotName);
  TempDir dir;
  write_config(dir, {{"telegram", telegram_channel(fake.base_url())}});
  auto r = probe(dir, "telegram");
  EXPECT_TRUE(exited_with(r, 0)) << describe(r);
  EXPECT_EQ(r.out, std::string("telegram: ok, bot @") + kBotName + " (id 123456)\n") << describe(r);
  EXPECT_EQ(fake.requests(kBot, "getMe"), 1);
  EXPECT_EQ(fake.requests(kBot, "getUpdates"), 0);
  EXPECT_FALSE(has(r.out + r.err, kBot)) << "the token is in the output";

  auto j = probe(dir, "telegram", {"--json"});
  EXPECT_TRUE(exited_with(j, 0)) << describe(j);
  const json out = json::parse(j.out, nullptr, false);
  EXPECT_EQ(out.value("ok", false), true) << describe(j);
  EXPECT_EQ(out.value("username", ""), kBotName) << describe(j);
}

TEST(ChannelsCliProbe, TelegramNextToARunningBotLeavesItsPollAlone) {
  TelegramFake fake;
  fake.add_bot(kBot, 123456, kBotName);
  TempDir dir;
  json cfg = echo_config();
  cfg["channels"]["telegram"] = telegram_channel(fake.base_url());
  Gateway gw(dir, cfg);
  gw.set_env("E2E_BOT_TOKEN", kBot);
  gw.start();
  ASSERT_TRUE(fake.wait_for([&] { return fake.poll_waiting(kBot); }, 10s)) << gw.log();
  write_config(dir, {{"telegram", telegram_channel(fake.base_url())}});
  // Same folder for machine-wide locks as the gateway's: the probe must not need the bot's.
  auto r = probe(dir, "telegram");
  EXPECT_TRUE(exited_with(r, 0)) << describe(r);
  EXPECT_EQ(fake.max_concurrent_polls(kBot), 1);
  auto s = channels_status(dir, gw);
  EXPECT_TRUE(exited_with(s, 0)) << describe(s);
  const std::string line = line_of(s.out, "telegram");
  EXPECT_TRUE(has(line, "connected")) << describe(s);
  EXPECT_TRUE(has(line, "@" + std::string(kBotName))) << describe(s);
  EXPECT_FALSE(has(line, "last error")) << describe(s);
}

TEST(ChannelsCliProbe, TelegramARefusedTokenExitsOne) {
  TelegramFake fake;
  fake.add_bot(kBot, 123456, kBotName);
  fake.fail_next(kBot, "getMe", 401, "Unauthorized");
  TempDir dir;
  write_config(dir, {{"telegram", telegram_channel(fake.base_url())}});
  auto r = probe(dir, "telegram");
  EXPECT_TRUE(exited_with(r, 1)) << describe(r);
  EXPECT_TRUE(has(r.err, "telegram: the token was refused (401 Unauthorized)")) << describe(r);
  EXPECT_FALSE(has(r.out + r.err, kBot)) << "the token is in the output";
}

TEST(ChannelsCliProbe, TelegramAClosedPortExitsOneWithTheConnectError) {
  TempDir dir;
  write_config(dir,
               {{"telegram", telegram_channel("http://127.0.0.1:" + std::to_string(free_port()))}});
  auto r = probe(dir, "telegram", {"--timeout", "5"});
  EXPECT_TRUE(exited_with(r, 1)) << describe(r);
  EXPECT_TRUE(has(r.err, "telegram: connect: Connection refused")) << describe(r);
  EXPECT_FALSE(has(r.out + r.err, kBot)) << "the token is in the output";
}

TEST(ChannelsCliProbe, TelegramASilentServerIsBoundedByTheTimeout) {
  TempDir dir;
  PortHolder silent;  // listens, never accepts: the request is written and never answered
  write_config(
      dir, {{"telegram", telegram_channel("http://127.0.0.1:" + std::to_string(silent.port()))}});
  const auto started = std::chrono::steady_clock::now();
  auto r = probe(dir, "telegram", {"--timeout", "1"}, 8s);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 6s);
  EXPECT_TRUE(exited_with(r, 1)) << describe(r);
  EXPECT_TRUE(has(r.err, "timed out")) << describe(r);
}

// --- channels probe irc -----------------------------------------------------------------------

TEST(ChannelsCliProbe, IrcNothingListeningExitsOneWithTheConnectError) {
  TempDir dir;
  const int port = free_port();
  write_config(dir, {{"irc", irc_channel(port)}});
  auto r = probe(dir, "irc", {"--timeout", "5"});
  EXPECT_TRUE(exited_with(r, 1)) << describe(r);
  EXPECT_TRUE(has(r.err, "irc: cannot connect to 127.0.0.1:" + std::to_string(port)))
      << describe(r);
}

TEST(ChannelsCliProbe, IrcRegistersUnderAProbeNickWaitsForTheWelcomeAndQuits) {
  FakeIrcServer server({":srv 001 {nick} :Welcome to the fake network\r\n"});
  TempDir dir;
  write_config(dir, {{"irc", irc_channel(server.port())}});
  auto r = probe(dir, "irc");
  EXPECT_TRUE(exited_with(r, 0)) << describe(r);
  EXPECT_EQ(r.out, "irc: ok, welcome from srv as drawbot-probe\n") << describe(r);
  EXPECT_FALSE(has(r.out + r.err, "s3cret-irc-pass")) << "the password is in the output";
  const auto lines = server.lines_after_close();
  ASSERT_GE(lines.size(), 4u);
  EXPECT_EQ(lines[0], "PASS s3cret-irc-pass");
  EXPECT_EQ(lines[1], "NICK drawbot-probe");
  EXPECT_TRUE(lines[2].rfind("USER ", 0) == 0) << lines[2];
  EXPECT_TRUE(lines.back().rfind("QUIT", 0) == 0) << lines.back();
}

TEST(ChannelsCliProbe, IrcARefusedProbeNickIsRetriedOnceWithAShortOne) {
  FakeIrcServer server({":srv 432 * {nick} :Erroneous nickname\r\n",
                        ":srv 001 {nick} :Welcome to the fake network\r\n"});
  TempDir dir;
  write_config(dir, {{"irc", irc_channel(server.port())}});
  auto r = probe(dir, "irc");
  EXPECT_TRUE(exited_with(r, 0)) << describe(r);
  EXPECT_TRUE(has(r.out, "irc: ok, welcome from srv as probe")) << describe(r);
  std::vector<std::string> nicks;
  for (const auto& l : server.lines_after_close()) {
    if (l.rfind("NICK ", 0) == 0) nicks.push_back(l.substr(5));
  }
  ASSERT_EQ(nicks.size(), 2u);
  EXPECT_EQ(nicks[0], "drawbot-probe");
  EXPECT_EQ(nicks[1].size(), 9u) << nicks[1];
}

TEST(ChannelsCliProbe, IrcARefusedRegistrationExitsOneWithTheServersWords) {
  FakeIrcServer server({":srv 464 {nick} :Password incorrect\r\nERROR :Closing link\r\n"});
  TempDir dir;
  write_config(dir, {{"irc", irc_channel(server.port())}});
  auto r = probe(dir, "irc");
  EXPECT_TRUE(exited_with(r, 1)) << describe(r);
  EXPECT_TRUE(has(r.err, "464 Password incorrect")) << describe(r);
  EXPECT_FALSE(has(r.out + r.err, "s3cret-irc-pass")) << "the password is in the output";
}

// --- channels probe: the rest -------------------------------------------------------------------

TEST(ChannelsCliProbe, LocalIsServedByTheGatewayItself) {
  TempDir dir;
  write_config(dir, json::object());
  auto r = probe(dir, "local");
  EXPECT_TRUE(exited_with(r, 0)) << describe(r);
  EXPECT_EQ(r.out, "local: ok, served by the gateway itself\n") << describe(r);
}

TEST(ChannelsCliProbe, AnUnknownOrDisabledChannelIsAUsageError) {
  TempDir dir;
  write_config(dir, {{"irc", {{"enabled", false}, {"host", "127.0.0.1"}, {"nick", "bot"}}}});
  auto unknown = probe(dir, "telegram");
  EXPECT_TRUE(exited_with(unknown, kUsage)) << describe(unknown);
  EXPECT_TRUE(has(unknown.err, "no channel \"telegram\"")) << describe(unknown);
  auto disabled = probe(dir, "irc");
  EXPECT_TRUE(exited_with(disabled, kUsage)) << describe(disabled);
  EXPECT_TRUE(has(disabled.err, "channels.irc is disabled")) << describe(disabled);
}

}  // namespace
}  // namespace drawbridge::e2e
