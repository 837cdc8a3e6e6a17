#pragma once

// The IRC side of bench/chaos: a real IRC server (ngircd, Debian package, started here on
// 127.0.0.1) and users on it who send private messages to the gateway's bot at a steady rate
// and read its replies. Only POSIX sockets and the standard library.

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace chaos {

// ngircd in the foreground (-n) with everything in `dir`: 127.0.0.1 only, a server password,
// no DNS/ident/PAM, no system include folder. Stopped by its pid (SIGTERM, then SIGKILL).
class Ngircd {
 public:
  explicit Ngircd(
      const std::filesystem::path& dir);  // throws std::runtime_error when it cannot start
  ~Ngircd();
  Ngircd(const Ngircd&) = delete;
  Ngircd& operator=(const Ngircd&) = delete;
  int port() const { return port_; }
  const std::string& password() const { return password_; }
  static bool available();  // the binary is installed

 private:
  int port_ = 0;
  std::string password_;
  pid_t pid_ = -1;
};

// One message a user sent to the bot.
struct IrcMessage {
  std::string id;           // unique text token, e.g. "irc-u3-17"
  double sent_ms = 0;       // wall clock (ms since the epoch) when the PRIVMSG was written
  double reply_ms = -1;     // wall clock of the first reply that contains the id, -1: none
  int replies = 0;          // replies that contained the id
  bool bot_absent = false;  // the server answered 401 No such nick: never reached the bot
};

struct IrcResult {
  std::vector<IrcMessage> messages;
  std::int64_t unknown_replies = 0;  // PRIVMSGs of the bot naming an id not sent by that user
  std::int64_t other_replies = 0;    // PRIVMSGs of the bot naming no id at all (notices)
  std::int64_t connection_errors = 0;
};

// `users` users (nicks "<prefix>0".."<prefix>N-1") connect to 127.0.0.1:port with the server
// password and, once started, each sends "PRIVMSG <bot_nick> :<id>" every users/rate seconds
// (all together `rate` messages per second). Every PRIVMSG is followed by "PING :<id>", so a
// 401 that arrives before the PONG for <id> belongs to that message. Replies from the bot are
// matched by the id they contain. PINGs from the server are answered. All on one thread with
// poll(); bounded buffers; a user whose connection fails reconnects after 1 s.
class IrcLoad {
 public:
  IrcLoad(int port, std::string password, std::string bot_nick, int users, double rate,
          std::string prefix = "chaosu");
  ~IrcLoad();  // stops the thread, closes the sockets
  // Connects and registers every user (waits for 001 and the PONG of a PING behind it, which
  // ngircd's 1 s throttle after registration holds; at most 10 s); throws on failure.
  void connect();
  // Starts sending in the background.
  void start();
  // Stops sending; replies are still read.
  void stop_sending();
  // Waits until every message that was not bot_absent has a reply, or timeout_ms passed.
  bool wait_answered(int timeout_ms);
  // A copy of what happened so far (thread safe).
  IrcResult result() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace chaos
