#pragma once

// The IRC end-to-end tests' fixture: ngircd (Debian package `ngircd`), started by the test on a
// free loopback port with a generated config in the test's temp folder, and a small IRC client
// of the test that talks to the gateway's bot. Every wait has a deadline.

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

using SteadyClock = std::chrono::steady_clock;
inline constexpr const char* kServerPassword = "e2e-irc-secret";
inline constexpr const char* kBot = "drawbot";

inline std::string ngircd_binary() {
  for (const char* p : {"/usr/sbin/ngircd", "/usr/bin/ngircd", "/usr/local/sbin/ngircd"}) {
    if (::access(p, X_OK) == 0) return p;
  }
  return {};
}

inline int connect_loopback(int port) {
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

inline json irc_config(int port, int delay_ms = 0) {
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

inline bool is_join(const std::string& line, const std::string& nick, const std::string& chan) {
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
  // Asks the gateway's status, one answer after the other (each answer is the next event;
  // bounded by the deadline), until a turn runs.
  bool turn_running(Millis timeout) {
    auto c = gw->client({"operator.read"});
    const auto deadline = SteadyClock::now() + timeout;
    while (SteadyClock::now() < deadline) {
      const json s = c->request("status", json::object());
      if (!s.value("activeRuns", json::array()).empty()) return true;
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

inline bool is_bot_quit(const std::string& l) {
  return l.rfind(std::string(":") + kBot + "!", 0) == 0 && l.find(" QUIT :") != std::string::npos;
}

inline std::size_t count_lines(const IrcClient& c,
                               const std::function<bool(const std::string&)>& pred) {
  std::size_t n = 0;
  for (const auto& l : c.lines()) n += pred(l);
  return n;
}

}  // namespace drawbridge::e2e
