// The IRC channel against a real IRC server: ngircd (Debian package `ngircd`), started by the
// test on a free loopback port with a generated config in the test's temp folder, and a small
// IRC client of the test that talks to the gateway's bot. Every wait has a deadline.

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "e2e/harness.h"
#include "e2e/lifecycle_helpers.h"

namespace drawbridge::e2e {
namespace {

using SteadyClock = std::chrono::steady_clock;
constexpr const char* kServerPassword = "e2e-irc-secret";
constexpr const char* kBot = "drawbot";

std::string ngircd_binary() {
  for (const char* p : {"/usr/sbin/ngircd", "/usr/bin/ngircd", "/usr/local/sbin/ngircd"}) {
    if (::access(p, X_OK) == 0) return p;
  }
  return {};
}

int connect_loopback(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// ngircd in the foreground (-n) with everything in `dir`: it listens on 127.0.0.1 only, asks
// for a server password, does no DNS, ident or PAM, and reads no include folder of the system.
// As root it drops to nobody by itself; it writes nothing.
class Ngircd {
 public:
  // With `tls`, a second port speaks TLS with a fresh self-signed certificate for "localhost".
  explicit Ngircd(const TempDir& dir, bool tls = false) : port_(free_port()) {
    std::string conf =
        "[Global]\nName = irc.e2e.test\nInfo = drawbridge e2e\n"
        "AdminInfo1 = e2e\nAdminInfo2 = e2e\nAdminEMail = e2e@localhost\n"
        "Listen = 127.0.0.1\nPorts = " +
        std::to_string(port_) + "\nPassword = " + kServerPassword +
        "\nMotdPhrase = e2e\n"
        "[Limits]\nMaxNickLength = 30\nMaxConnectionsIP = 0\nPingTimeout = 120\n"
        "PongTimeout = 20\n"
        "[Options]\nPAM = no\nIdent = no\nDNS = no\nIncludeDir = " +
        (dir.path() / "ngircd.conf.d").string() + "\n";
    if (tls) {
      tls_port_ = free_port();
      const auto cert = dir.path() / "irc-cert.pem", key = dir.path() / "irc-key.pem";
      Process openssl({"/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                       "-keyout", key.string(), "-out", cert.string(), "-days", "1", "-subj",
                       "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"},
                      dir.path(), dir.path() / "openssl.out", dir.path() / "openssl.err");
      const auto st = openssl.wait(30s);
      if (!st || !st->exited || st->code != 0) {
        throw std::runtime_error("openssl req failed: " + read_text(dir.path() / "openssl.err"));
      }
      conf += "[SSL]\nCertFile = " + cert.string() + "\nKeyFile = " + key.string() +
              "\nPorts = " + std::to_string(tls_port_) + "\n";
    }
    const auto conf_file = dir.write("ngircd.conf", conf);
    fs::create_directories(dir.path() / "ngircd.conf.d");
    out_ = dir.path() / "ngircd.out";
    proc_ = std::make_unique<Process>(
        std::vector<std::string>{ngircd_binary(), "-n", "-f", conf_file.string()}, dir.path(), out_,
        dir.path() / "ngircd.err");
    const auto deadline = SteadyClock::now() + 10s;
    while (SteadyClock::now() < deadline) {
      if (listening(port_) && (tls_port_ == 0 || listening(tls_port_))) return;
      if (proc_->wait(20ms)) break;  // it exited: its output says why
    }
    throw std::runtime_error("ngircd did not listen on port " + std::to_string(port_) + ": " +
                             read_text(out_) + read_text(dir.path() / "ngircd.err"));
  }
  ~Ngircd() {
    proc_->signal(SIGTERM);
    proc_->wait(5s);  // the Process destructor kills it by its pid if it still runs
  }
  int port() const { return port_; }
  int tls_port() const { return tls_port_; }

 private:
  static bool listening(int port) {
    const int fd = connect_loopback(port);
    if (fd < 0) return false;
    ::close(fd);
    return true;
  }

  int port_;
  int tls_port_ = 0;
  fs::path out_;
  std::unique_ptr<Process> proc_;
};

// A test user on the server: blocking writes, reads with a deadline, answers PING itself and
// keeps every line it received.
class IrcClient {
 public:
  IrcClient(int port, const std::string& nick) : nick_(nick) {
    fd_ = connect_loopback(port);
    if (fd_ < 0) throw std::runtime_error("cannot connect to the IRC server");
    send(std::string("PASS ") + kServerPassword);
    send("NICK " + nick);
    send("USER " + nick + " 0 * :e2e user");
    if (!wait_for([](const std::string& l) { return l.find(" 001 ") != std::string::npos; }, 10s)) {
      throw std::runtime_error("the IRC server did not welcome " + nick + ": " + transcript());
    }
  }
  ~IrcClient() {
    if (fd_ >= 0) ::close(fd_);
  }

  void send(const std::string& line) {
    const std::string data = line + "\r\n";
    std::size_t off = 0;
    while (off < data.size()) {
      const auto n = ::write(fd_, data.data() + off, data.size() - off);
      if (n <= 0) throw std::runtime_error("write to the IRC server failed");
      off += static_cast<std::size_t>(n);
    }
  }
  void say(const std::string& target, const std::string& text) {
    send("PRIVMSG " + target + " :" + text);
  }

  // Reads until a line received since the last match satisfies `pred`; false at the deadline.
  bool wait_for(const std::function<bool(const std::string&)>& pred, Millis timeout) {
    const auto deadline = SteadyClock::now() + timeout;
    while (true) {
      while (cursor_ < lines_.size()) {
        if (pred(lines_[cursor_++])) return true;
      }
      const auto left = std::chrono::duration_cast<Millis>(deadline - SteadyClock::now());
      if (left.count() <= 0) return false;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char buf[4096];
      const auto n = ::read(fd_, buf, sizeof buf);
      if (n <= 0) return false;
      rbuf_.append(buf, static_cast<std::size_t>(n));
      for (auto lf = rbuf_.find('\n'); lf != std::string::npos; lf = rbuf_.find('\n')) {
        std::string line = rbuf_.substr(0, lf + 1);  // with its CRLF: lengths are checked
        rbuf_.erase(0, lf + 1);
        if (line.rfind("PING ", 0) == 0) {
          send("PONG " + line.substr(5, line.find_first_of("\r\n") - 5));
          continue;
        }
        lines_.push_back(std::move(line));
      }
    }
  }

  // Waits for a PRIVMSG from `from` (a nick) to `to` with exactly `text`.
  bool wait_privmsg(const std::string& from, const std::string& to, const std::string& text,
                    Millis timeout = 15s) {
    return wait_for([&](const std::string& l) { return is_privmsg(l, from, to, text); }, timeout);
  }
  static bool is_privmsg(const std::string& line, const std::string& from, const std::string& to,
                         const std::string& text) {
    return line.rfind(":" + from + "!", 0) == 0 &&
           line.find(" PRIVMSG " + to + " :" + text + "\r\n") != std::string::npos;
  }
  // The texts of every PRIVMSG from `from` to `to`, in order.
  std::vector<std::string> privmsgs(const std::string& from, const std::string& to) const {
    std::vector<std::string> out;
    const std::string mark = " PRIVMSG " + to + " :";
    for (const auto& l : lines_) {
      if (l.rfind(":" + from + "!", 0) != 0) continue;
      const auto at = l.find(mark);
      if (at == std::string::npos) continue;
      out.push_back(l.substr(at + mark.size(), l.find_first_of("\r\n") - at - mark.size()));
    }
    return out;
  }
  const std::vector<std::string>& lines() const { return lines_; }
  std::string transcript() const {
    std::string all;
    for (const auto& l : lines_) all += l;
    return all;
  }

 private:
  std::string nick_;
  int fd_ = -1;
  std::string rbuf_;
  std::vector<std::string> lines_;
  std::size_t cursor_ = 0;
};

json irc_config(int port, int delay_ms = 0) {
  json cfg = lifecycle::restartable(echo_config(delay_ms));
  cfg["channels"]["irc"] = {{"host", "127.0.0.1"},
                            {"port", port},
                            {"nick", kBot},
                            {"passwordEnv", "E2E_IRC_PASSWORD"},
                            {"channels", json::array({"#ops"})},
                            {"groupPolicy", "open"},
                            {"allowFrom", json::array({"alice"})},
                            // An OpenClaw key drawbridge does not honour: accepted, warned.
                            {"groupAllowFrom", json::array({"alice"})}};
  return cfg;
}

bool is_join(const std::string& line, const std::string& nick, const std::string& chan) {
  return line.rfind(":" + nick + "!", 0) == 0 && line.find(" JOIN ") != std::string::npos &&
         line.find(chan) != std::string::npos;
}

struct IrcTest : ::testing::Test {
  TempDir dir;
  std::unique_ptr<Ngircd> server;
  std::unique_ptr<Gateway> gw;
  void SetUp() override {
    if (ngircd_binary().empty())
      GTEST_SKIP() << "ngircd is not installed (scripts/install-deps.sh --with-tests)";
    server = std::make_unique<Ngircd>(dir);
  }
  void make_gateway(json cfg) {
    gw = std::make_unique<Gateway>(dir, std::move(cfg));
    gw->set_env("E2E_IRC_PASSWORD", kServerPassword);
  }
  // Polls the gateway's status (another process: bounded by the deadline) until a turn runs.
  bool turn_running(Millis timeout) {
    auto c = gw->client({"operator.read"});
    const auto deadline = SteadyClock::now() + timeout;
    while (SteadyClock::now() < deadline) {
      const json s = c->request("status", json::object());
      if (!s.value("activeRuns", json::array()).empty()) return true;
      std::this_thread::sleep_for(20ms);
    }
    return false;
  }
  // A user in #ops (the bot joins it later).
  std::unique_ptr<IrcClient> alice_in_ops() {
    auto alice = std::make_unique<IrcClient>(server->port(), "alice");
    alice->send("JOIN #ops");
    EXPECT_TRUE(
        alice->wait_for([](const std::string& l) { return is_join(l, "alice", "#ops"); }, 10s));
    return alice;
  }
};

TEST_F(IrcTest, AnswersPrivateAndAddressedChannelMessagesOnceAndSplitsLongReplies) {
  auto alice = alice_in_ops();
  make_gateway(irc_config(server->port()));
  gw->start();
  ASSERT_TRUE(alice->wait_for([](const std::string& l) { return is_join(l, kBot, "#ops"); }, 15s))
      << alice->transcript() << gw->log();

  alice->say(kBot, "hello in private");
  ASSERT_TRUE(alice->wait_privmsg(kBot, "alice", "hello in private"))
      << alice->transcript() << gw->log();

  alice->say("#ops", "just chatting, not for the bot");
  alice->say(kBot, "\x01VERSION\x01");  // CTCP: never answered
  alice->say("#ops", std::string(kBot) + ": hi there");
  ASSERT_TRUE(alice->wait_privmsg(kBot, "#ops", "hi there")) << alice->transcript() << gw->log();
  // A marker behind them: once it is answered, nothing sent before it is still on its way.
  alice->say(kBot, "marker");
  ASSERT_TRUE(alice->wait_privmsg(kBot, "alice", "marker")) << alice->transcript();
  EXPECT_EQ(alice->privmsgs(kBot, "#ops"), (std::vector<std::string>{"hi there"}))
      << alice->transcript();
  EXPECT_EQ(alice->privmsgs(kBot, "alice"),
            (std::vector<std::string>{"hello in private", "marker"}))
      << alice->transcript();

  std::string long_text;
  for (int i = 0; i < 160; ++i) {
    long_text += (i ? " " : "") + std::string("w\xc3\xa9rd") + std::to_string(i);
  }
  ASSERT_GT(long_text.size(), 1000u);
  // A reply longer than one IRC line (the echo agent's prefix makes it long): lines of at most
  // 512 bytes as alice receives them (the server's ":drawbot!user@host " included), split at
  // spaces, never inside a UTF-8 character, nothing lost.
  gw->signal(SIGTERM);
  gw->wait_exit();
  json cfg = irc_config(server->port());
  cfg["agents"]["main"]["prefix"] = long_text + " ";
  make_gateway(cfg);
  gw->start();
  ASSERT_TRUE(alice->wait_for([](const std::string& l) { return is_join(l, kBot, "#ops"); }, 15s))
      << alice->transcript() << gw->log();
  alice->say(kBot, "tail");
  ASSERT_TRUE(alice->wait_for(
      [](const std::string& l) {
        return l.rfind(std::string(":") + kBot + "!", 0) == 0 &&
               l.find(" w\xc3\xa9rd159 tail\r\n") != std::string::npos;
      },
      20s))
      << alice->transcript() << gw->log();
  std::string joined;
  std::size_t parts = 0;
  for (const auto& l : alice->lines()) {
    if (l.rfind(std::string(":") + kBot + "!", 0) != 0) continue;
    const std::string mark = " PRIVMSG alice :";
    const auto at = l.find(mark);
    if (at == std::string::npos) continue;
    const std::string text = l.substr(at + mark.size(), l.size() - 2 - at - mark.size());
    if (text == "hello in private" || text == "marker") continue;
    EXPECT_LE(l.size(), 512u) << l;
    joined += (joined.empty() ? "" : " ") + text;
    ++parts;
  }
  EXPECT_GE(parts, 3u);
  EXPECT_EQ(joined, long_text + " tail");

  gw->signal(SIGTERM);
  gw->wait_exit();
  EXPECT_EQ(gw->log().find(kServerPassword), std::string::npos) << "the password is in the log";
  EXPECT_NE(gw->log().find("channels.irc.groupAllowFrom"), std::string::npos) << gw->log();
}

bool is_bot_quit(const std::string& l) {
  return l.rfind(std::string(":") + kBot + "!", 0) == 0 && l.find(" QUIT :") != std::string::npos;
}

std::size_t count_lines(const IrcClient& c, const std::function<bool(const std::string&)>& pred) {
  std::size_t n = 0;
  for (const auto& l : c.lines()) n += pred(l);
  return n;
}

// An in-process restart keeps the bot's connection (docs/DECISIONS.md "An IRC connection
// outlives an in-process restart"): no QUIT, no rejoin, and what came during the drain is
// answered once by the next generation over the same connection.
TEST_F(IrcTest, ARestartKeepsTheConnectionAndAnswersWhatCameDuringTheDrainOnce) {
  auto alice = alice_in_ops();
  make_gateway(irc_config(server->port(), /*delay_ms=*/2500));
  gw->start();
  ASSERT_TRUE(alice->wait_for([](const std::string& l) { return is_join(l, kBot, "#ops"); }, 15s))
      << alice->transcript() << gw->log();
  const std::string to_bot = std::string(kBot) + ": ";

  alice->say("#ops", to_bot + "m0");  // a turn of 2.5 s: the drain waits for it
  ASSERT_TRUE(turn_running(5s)) << gw->log();
  gw->signal(SIGUSR1);
  ASSERT_TRUE(gw->wait_for_log("SIGUSR1", 5s)) << gw->log();
  alice->say("#ops", to_bot + "m1");  // during the drain: journaled, answered after it
  alice->say(kBot, "m2");
  ASSERT_TRUE(gw->wait_for_log("generation 2 ready", 15s)) << gw->log();
  EXPECT_TRUE(gw->wait_for_log("channel irc carried over", 1s)) << gw->log();
  ASSERT_TRUE(alice->wait_privmsg(kBot, "alice", "m2", 20s)) << alice->transcript() << gw->log();
  alice->say("#ops", to_bot + "last");
  ASSERT_TRUE(alice->wait_privmsg(kBot, "#ops", "last", 20s)) << alice->transcript() << gw->log();

  std::map<std::string, int> times;
  for (const auto& t : alice->privmsgs(kBot, "#ops")) {
    if (t.find("restart") != std::string::npos) continue;  // the restart notice
    ++times[t];
  }
  for (const auto& t : alice->privmsgs(kBot, "alice")) ++times[t];
  EXPECT_EQ(times, (std::map<std::string, int>{{"m0", 1}, {"m1", 1}, {"m2", 1}, {"last", 1}}))
      << alice->transcript();
  EXPECT_EQ(count_lines(*alice, is_bot_quit), 0u) << alice->transcript();
  EXPECT_EQ(count_lines(*alice, [](const std::string& l) { return is_join(l, kBot, "#ops"); }),
            1u)
      << alice->transcript();
  EXPECT_EQ(gw->log().find("channel irc started (start 2"), std::string::npos) << gw->log();
}

// A restart whose config changed the channel: the kept connection QUITs first, then the new
// one registers with the new settings (one connection per account at every instant). (A
// re-exec or a stop stops the channel as before: the drain keeps nothing for another process.)
TEST_F(IrcTest, ARestartThatChangesTheChannelQuitsBeforeReconnectingWithTheNewSettings) {
  auto alice = alice_in_ops();
  make_gateway(irc_config(server->port()));
  gw->start();
  ASSERT_TRUE(alice->wait_for([](const std::string& l) { return is_join(l, kBot, "#ops"); }, 15s))
      << alice->transcript() << gw->log();
  auto admin = gw->client({"operator.admin"});
  const json got = admin->request("config.get", json::object());
  // maxHistoryBytes makes the plan a restart; the realname changes the IRC account.
  const json res = admin->request(
      "config.patch",
      {{"raw", R"({"gateway":{"limits":{"maxHistoryBytes":4194305}},)"
               R"("channels":{"irc":{"realname":"changed"}}})"},
       {"baseHash", got["hash"]}});
  ASSERT_EQ(res["plan"]["kind"], "restart") << res.dump();
  ASSERT_TRUE(alice->wait_for(is_bot_quit, 15s)) << alice->transcript() << gw->log();
  ASSERT_TRUE(alice->wait_for([](const std::string& l) { return is_join(l, kBot, "#ops"); }, 15s))
      << "no rejoin after the QUIT\n"
      << alice->transcript() << gw->log();
  EXPECT_TRUE(gw->wait_for_log("the new config changed or removed it", 1s)) << gw->log();
  alice->say("#ops", std::string(kBot) + ": after");
  ASSERT_TRUE(alice->wait_privmsg(kBot, "#ops", "after", 20s)) << alice->transcript() << gw->log();
  alice->send(std::string("WHOIS ") + kBot);
  EXPECT_TRUE(alice->wait_for(
      [](const std::string& l) {
        return l.find(" 311 ") != std::string::npos && l.find(":changed") != std::string::npos;
      },
      10s))
      << alice->transcript();
  EXPECT_EQ(alice->privmsgs(kBot, "#ops"), (std::vector<std::string>{"after"}))
      << alice->transcript();
}

TEST_F(IrcTest, AHotReloadOfTheChannelQuitsAndRejoinsWithTheNewSettings) {
  auto alice = alice_in_ops();
  make_gateway(irc_config(server->port()));
  gw->start();
  ASSERT_TRUE(alice->wait_for([](const std::string& l) { return is_join(l, kBot, "#ops"); }, 15s))
      << alice->transcript() << gw->log();
  alice->say("#ops", "!before");  // no commandPrefix yet: not for the bot
  auto admin = gw->client({"operator.admin"});
  const json got = admin->request("config.get", json::object());
  const json res = admin->request(
      "config.patch",
      {{"raw", R"({"channels":{"irc":{"commandPrefix":"!"}}})"}, {"baseHash", got["hash"]}});
  ASSERT_EQ(res["plan"]["kind"], "hot") << res.dump();
  ASSERT_TRUE(alice->wait_for(
      [](const std::string& l) {
        return l.rfind(std::string(":") + kBot + "!", 0) == 0 &&
               l.find(" QUIT :") != std::string::npos && l.find("restarting") != std::string::npos;
      },
      15s))
      << alice->transcript() << gw->log();
  ASSERT_TRUE(alice->wait_for([](const std::string& l) { return is_join(l, kBot, "#ops"); }, 15s))
      << "no rejoin\n"
      << alice->transcript() << gw->log();
  alice->say("#ops", "!after");
  ASSERT_TRUE(alice->wait_privmsg(kBot, "#ops", "after")) << alice->transcript() << gw->log();
  EXPECT_EQ(alice->privmsgs(kBot, "#ops"), (std::vector<std::string>{"after"}))
      << alice->transcript();
  ASSERT_TRUE(gw->wait_for_log("channel irc started (start 2", 5s)) << gw->log();
  EXPECT_EQ(gw->log().find("channel irc started (start 3"), std::string::npos) << gw->log();
}

// Two accounts of channels.irc: two connections with their own nicks and sessions; a change
// to one account's object restarts that account alone, the other stays connected.
TEST_F(IrcTest, SeveralAccountsEachConnectAnswerAndReloadAlone) {
  auto alice = alice_in_ops();
  const std::string second = std::string(kBot) + "2";
  json cfg = irc_config(server->port());
  cfg["channels"]["irc"]["defaultAccount"] = "main";
  cfg["channels"]["irc"]["accounts"] = {{"main", json::object()}, {"second", {{"nick", second}}}};
  make_gateway(cfg);
  gw->start();
  ASSERT_TRUE(alice->wait_for([](const std::string& l) { return is_join(l, kBot, "#ops"); }, 15s))
      << alice->transcript() << gw->log();
  ASSERT_TRUE(
      alice->wait_for([&](const std::string& l) { return is_join(l, second, "#ops"); }, 15s))
      << alice->transcript() << gw->log();
  alice->say(kBot, "to main");
  alice->say(second, "to second");
  // The two answers come in either order.
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(alice->wait_for(
        [&](const std::string& l) {
          return IrcClient::is_privmsg(l, kBot, "alice", "to main") ||
                 IrcClient::is_privmsg(l, second, "alice", "to second");
        },
        15s))
        << alice->transcript() << gw->log();
  }
  EXPECT_EQ(alice->privmsgs(kBot, "alice"), std::vector<std::string>{"to main"});
  EXPECT_EQ(alice->privmsgs(second, "alice"), std::vector<std::string>{"to second"});
  auto admin = gw->client({"operator.admin"});
  const json health = admin->request("health", json::object());
  EXPECT_EQ(health["channels"]["irc"].value("state", ""), "connected") << health.dump();
  EXPECT_EQ(health["channels"]["irc:second"].value("state", ""), "connected") << health.dump();
  const json hist = admin->request("chat.history", {{"sessionKey", "irc:second:dm:alice"}});
  ASSERT_EQ(hist["messages"].size(), 2u) << "the second account's chat is its own session\n"
                                         << hist.dump();

  const json got = admin->request("config.get", json::object());
  const json res = admin->request(
      "config.patch",
      {{"raw", R"({"channels":{"irc":{"accounts":{"second":{"commandPrefix":"!"}}}}})"},
       {"baseHash", got["hash"]}});
  ASSERT_EQ(res["plan"]["kind"], "hot") << res.dump();
  ASSERT_TRUE(
      alice->wait_for([&](const std::string& l) { return is_join(l, second, "#ops"); }, 15s))
      << "the second account did not rejoin\n"
      << alice->transcript() << gw->log();
  alice->say("#ops", "!after");
  ASSERT_TRUE(alice->wait_privmsg(second, "#ops", "after")) << alice->transcript() << gw->log();
  alice->say(kBot, "main still here");
  ASSERT_TRUE(alice->wait_privmsg(kBot, "alice", "main still here"))
      << alice->transcript() << gw->log();
  EXPECT_TRUE(alice->privmsgs(kBot, "#ops").empty()) << "only the second account has the prefix";
  for (const auto& l : alice->lines()) {
    EXPECT_FALSE(l.rfind(std::string(":") + kBot + "!", 0) == 0 &&
                 l.find(" QUIT ") != std::string::npos)
        << "the default account was restarted: " << l;
  }
  EXPECT_TRUE(gw->wait_for_log("channel irc:second started (start 2", 5s)) << gw->log();
  EXPECT_EQ(gw->log().find("channel irc started (start 2"), std::string::npos) << gw->log();
}

// TLS with the server's certificate checked: a self-signed one is refused unless tlsInsecure.
TEST_F(IrcTest, TlsIsSpokenAndTheCertificateCheckedUnlessTlsInsecure) {
  if (::access("/usr/bin/openssl", X_OK) != 0) GTEST_SKIP() << "no /usr/bin/openssl";
  server.reset();
  server = std::make_unique<Ngircd>(dir, /*tls=*/true);
  auto alice = std::make_unique<IrcClient>(server->port(), "alice");
  json cfg = irc_config(server->port());
  cfg["channels"]["irc"]["port"] = server->tls_port();
  cfg["channels"]["irc"]["tls"] = true;
  cfg["channels"]["irc"]["tlsInsecure"] = true;
  make_gateway(cfg);
  gw->start();
  ASSERT_TRUE(gw->wait_for_log("registered on 127.0.0.1 as drawbot", 15s)) << gw->log();
  alice->say(kBot, "over tls");
  ASSERT_TRUE(alice->wait_privmsg(kBot, "alice", "over tls")) << alice->transcript() << gw->log();

  // The same server checked: its certificate is self-signed (and names localhost, not
  // 127.0.0.1): the handshake fails, the channel retries with back-off.
  auto admin = gw->client({"operator.admin"});
  const json got = admin->request("config.get", json::object());
  const json res = admin->request(
      "config.patch",
      {{"raw", R"({"channels":{"irc":{"tlsInsecure":false}}})"}, {"baseHash", got["hash"]}});
  ASSERT_EQ(res["plan"]["kind"], "hot") << res.dump();
  ASSERT_TRUE(gw->wait_for_log("TLS handshake", 15s)) << gw->log();
  EXPECT_TRUE(gw->wait_for_log("reconnecting in", 5s)) << gw->log();
  EXPECT_EQ(gw->log().find(kServerPassword), std::string::npos) << "the password is in the log";
}

TEST_F(IrcTest, ATakenNickFallsBackToAnUnderscore) {
  IrcClient squatter(server->port(), kBot);  // holds the bot's nick
  json cfg = irc_config(server->port());
  cfg["channels"]["irc"]["dmPolicy"] = "open";
  make_gateway(cfg);
  gw->start();
  const std::string fallback = std::string(kBot) + "_";
  ASSERT_TRUE(gw->wait_for_log("registered on 127.0.0.1 as " + fallback, 15s)) << gw->log();
  squatter.say(fallback, "are you there");
  ASSERT_TRUE(squatter.wait_privmsg(fallback, kBot, "are you there"))
      << squatter.transcript() << gw->log();
}

}  // namespace
}  // namespace drawbridge::e2e
