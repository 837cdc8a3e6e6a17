#include "irc_load.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <unordered_map>

#include "bench_host.h"

extern char** environ;

namespace chaos {
namespace {

namespace fs = std::filesystem;
using Steady = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr std::size_t kMaxLine = 4096;       // a longer line drops the connection
constexpr std::size_t kMaxRecv = 64 * 1024;  // so does a larger receive buffer
constexpr std::size_t kMaxSend = 64 * 1024;  // and a larger send backlog
constexpr auto kRegisterTimeout = 10s;       // connect, 001 and the PONG of "PING :ready"
constexpr auto kReconnectDelay = 1s;
constexpr std::chrono::milliseconds kPollCap{25};  // start() and stop_sending() act within it

double wall_ms() {
  return std::chrono::duration<double, std::milli>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string ngircd_binary() {
  for (const char* p : {"/usr/sbin/ngircd", "/usr/bin/ngircd", "/usr/local/sbin/ngircd"}) {
    if (::access(p, X_OK) == 0) return p;
  }
  return {};
}

// A non-blocking TCP socket to 127.0.0.1:port whose connect has begun; -1 on failure.
int start_connect(int port, bool& in_progress) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  in_progress = false;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) return fd;
  if (errno == EINPROGRESS) {
    in_progress = true;
    return fd;
  }
  ::close(fd);
  return -1;
}

// Whether something accepts on 127.0.0.1:port (a blocking connect, loopback: immediate).
bool listening(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// One IRC line: prefix (without ':'), command, parameters (the trailing one last).
struct Line {
  std::string prefix, command;
  std::vector<std::string> params;
};

Line parse(const std::string& raw) {
  Line l;
  std::size_t i = 0;
  const auto word = [&]() {
    const auto sp = raw.find(' ', i);
    std::string w = raw.substr(i, sp == std::string::npos ? std::string::npos : sp - i);
    i = sp == std::string::npos ? raw.size() : raw.find_first_not_of(' ', sp);
    if (i == std::string::npos) i = raw.size();
    return w;
  };
  if (i < raw.size() && raw[i] == '@') word();  // IRCv3 tags: not used
  if (i < raw.size() && raw[i] == ':') l.prefix = word().substr(1);
  l.command = word();
  while (i < raw.size()) {
    if (raw[i] == ':') {
      l.params.push_back(raw.substr(i + 1));
      break;
    }
    l.params.push_back(word());
  }
  return l;
}

// SIGTERM, up to 5 s for it to exit, then SIGKILL; reaped in both cases.
void stop_child(pid_t pid) {
  if (pid <= 0) return;
  ::kill(pid, SIGTERM);
  const auto deadline = Steady::now() + 5s;
  int st = 0;
  while (Steady::now() < deadline) {
    if (::waitpid(pid, &st, WNOHANG) == pid) return;
    std::this_thread::sleep_for(10ms);
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, &st, 0);  // SIGKILL ends it: reaped at once
}

bool id_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Ngircd

bool Ngircd::available() {
  return !ngircd_binary().empty();
}

Ngircd::Ngircd(const fs::path& dir) {
  const std::string bin = ngircd_binary();
  if (bin.empty()) throw std::runtime_error("ngircd is not installed");
  fs::create_directories(dir / "ngircd.conf.d");
  std::random_device rd;
  std::ostringstream pw;
  pw << "chaos-" << std::hex << rd() << rd();
  password_ = pw.str();
  std::string why;
  // The port is free when picked, not reserved: another process may take it before ngircd
  // binds it (ngircd then exits); a few attempts with fresh ports.
  for (int attempt = 0; attempt < 3; ++attempt) {
    port_ = bench_host::free_port();
    const fs::path conf = dir / "ngircd.conf";
    {
      std::ofstream out(conf, std::ios::trunc);
      out << "[Global]\nName = irc.chaos.test\nInfo = drawbridge chaos\n"
          << "AdminInfo1 = chaos\nAdminInfo2 = chaos\nAdminEMail = chaos@localhost\n"
          << "Listen = 127.0.0.1\nPorts = " << port_ << "\nPassword = " << password_
          << "\nMotdPhrase = chaos\n"
          << "[Limits]\nMaxNickLength = 30\nMaxConnectionsIP = 0\nPingTimeout = 120\n"
          << "PongTimeout = 20\n"
          << "[Options]\nPAM = no\nIdent = no\nDNS = no\nIncludeDir = "
          << (dir / "ngircd.conf.d").string() << "\n";
      if (!out) throw std::runtime_error("cannot write " + conf.string());
    }
    const std::string out_file = (dir / "ngircd.out").string();
    const std::string err_file = (dir / "ngircd.err").string();
    std::vector<std::string> args{bin, "-n", "-f", conf.string()};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, out_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 2, err_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawnattr_init(&attr);
    sigset_t none, defaults;
    sigemptyset(&none);
    sigemptyset(&defaults);
    for (int s : {SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGCHLD}) sigaddset(&defaults, s);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    pid_t pid = -1;
    const int rc = ::posix_spawn(&pid, bin.c_str(), &fa, &attr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) throw std::runtime_error(std::string("cannot start ngircd: ") + strerror(rc));
    pid_ = pid;
    const auto deadline = Steady::now() + 10s;
    bool exited = false;
    while (Steady::now() < deadline) {
      if (listening(port_)) return;
      int st = 0;
      if (::waitpid(pid_, &st, WNOHANG) == pid_) {
        exited = true;
        pid_ = -1;
        break;
      }
      std::this_thread::sleep_for(20ms);
    }
    why = "ngircd did not listen on 127.0.0.1:" + std::to_string(port_) + ": " +
          read_text(out_file) + read_text(err_file);
    if (!exited) break;  // it runs but does not listen: no point in another port
  }
  stop_child(pid_);  // one that runs but does not listen
  pid_ = -1;
  throw std::runtime_error(why);
}

Ngircd::~Ngircd() {
  stop_child(pid_);
  pid_ = -1;
}

// ---------------------------------------------------------------------------------------------
// IrcLoad

struct IrcLoad::Impl {
  enum class State { Idle, Connecting, Registering, Ready };
  struct User {
    std::string nick;
    int fd = -1;
    State state = State::Idle;
    std::string rbuf, wbuf;
    std::deque<std::size_t> awaiting_pong;  // messages whose "PING :<id>" is not answered yet
    Steady::time_point deadline{};          // of connect + registration
    Steady::time_point reconnect_at{};
    Steady::time_point next_send{};
    std::int64_t seq = 0;
  };

  int port;
  std::string password, bot, prefix;
  double rate;
  std::vector<User> users;

  mutable std::mutex m;  // guards what follows
  std::condition_variable cv;
  IrcResult res;
  std::vector<int> owner;  // res.messages[i] was sent by users[owner[i]]
  std::unordered_map<std::string, std::size_t> by_id;
  int ready = 0;  // users registered now
  std::string last_error;

  std::atomic<bool> sending{false}, stopping{false};
  std::thread thread;

  Impl(int port_, std::string pw, std::string bot_, int n, double rate_, std::string pfx)
      : port(port_),
        password(std::move(pw)),
        bot(std::move(bot_)),
        prefix(std::move(pfx)),
        rate(rate_) {
    if (n <= 0 || !(rate > 0)) throw std::invalid_argument("IrcLoad: users and rate must be > 0");
    if (prefix.empty() || !std::all_of(prefix.begin(), prefix.end(), id_char)) {
      throw std::invalid_argument("IrcLoad: the nick prefix must be letters, digits, - or _");
    }
    users.resize(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i)
      users[static_cast<std::size_t>(i)].nick = prefix + std::to_string(i);
  }

  ~Impl() {
    stopping = true;
    if (thread.joinable()) thread.join();
  }

  void ensure_thread() {
    if (!thread.joinable()) thread = std::thread([this] { run(); });
  }

  // The bot's nick or one of its fallbacks ("nick_" ... as the gateway picks when taken).
  bool is_bot(const std::string& nick) const {
    const std::string n = lower(nick), b = lower(bot);
    if (n.rfind(b, 0) != 0) return false;
    return std::all_of(n.begin() + static_cast<std::ptrdiff_t>(b.size()), n.end(),
                       [](char c) { return c == '_'; });
  }

  void fail(User& u, const std::string& why) {
    if (u.fd >= 0) ::close(u.fd);
    u.fd = -1;
    {
      std::lock_guard lk(m);
      if (u.state == State::Ready) --ready;
      ++res.connection_errors;
      last_error = u.nick + ": " + why;
    }
    u.state = State::Idle;
    u.rbuf.clear();
    u.wbuf.clear();
    u.awaiting_pong.clear();  // their 401 or PONG will not come: they stay unanswered
    u.reconnect_at = Steady::now() + kReconnectDelay;
    cv.notify_all();
  }

  void open(User& u) {
    bool in_progress = false;
    u.fd = start_connect(port, in_progress);
    if (u.fd < 0) {
      fail(u, std::string("connect: ") + strerror(errno));
      return;
    }
    u.deadline = Steady::now() + kRegisterTimeout;
    u.state = State::Connecting;
    if (!in_progress) registering(u);
  }

  void registering(User& u) {
    u.state = State::Registering;
    queue(u, "PASS " + password + "\r\nNICK " + u.nick + "\r\nUSER " + u.nick +
                 " 0 * :chaos user\r\n");
  }

  // Appends to the send buffer and writes what the socket takes now.
  void queue(User& u, const std::string& data) {
    if (u.fd < 0) return;
    if (u.wbuf.size() + data.size() > kMaxSend) {
      fail(u, "send backlog over 64 KiB");
      return;
    }
    u.wbuf += data;
    flush(u);
  }

  void flush(User& u) {
    while (u.fd >= 0 && !u.wbuf.empty()) {
      const auto n = ::send(u.fd, u.wbuf.data(), u.wbuf.size(), MSG_NOSIGNAL);
      if (n > 0) {
        u.wbuf.erase(0, static_cast<std::size_t>(n));
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        return;
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else {
        fail(u, std::string("write: ") + strerror(errno));
        return;
      }
    }
  }

  // Recorded once written (a write that fails drops the connection and records nothing).
  void send_message(User& u, int idx) {
    const std::string id = u.nick + "-" + std::to_string(u.seq++);
    const double sent = wall_ms();
    // The PING behind it: a 401 that comes before its PONG belongs to this message.
    queue(u, "PRIVMSG " + bot + " :" + id + "\r\nPING :" + id + "\r\n");
    if (u.fd < 0) return;
    std::lock_guard lk(m);
    const std::size_t at = res.messages.size();
    IrcMessage msg;
    msg.id = id;
    msg.sent_ms = sent;
    res.messages.push_back(std::move(msg));
    owner.push_back(idx);
    by_id.emplace(id, at);
    u.awaiting_pong.push_back(at);
  }

  void on_read(User& u, int idx) {
    char buf[16384];
    for (int reads = 0; reads < 8 && u.fd >= 0; ++reads) {  // then the others' turn
      const auto n = ::recv(u.fd, buf, sizeof buf, 0);
      if (n == 0) return fail(u, "closed by the server");
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;
        return fail(u, std::string("read: ") + strerror(errno));
      }
      u.rbuf.append(buf, static_cast<std::size_t>(n));
      if (u.rbuf.size() > kMaxRecv) return fail(u, "receive buffer over 64 KiB");
      std::size_t from = 0;
      for (auto lf = u.rbuf.find('\n'); lf != std::string::npos; lf = u.rbuf.find('\n', from)) {
        if (lf + 1 - from > kMaxLine) return fail(u, "a line over 4 KiB");
        std::string line = u.rbuf.substr(from, lf - from);
        from = lf + 1;
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (!line.empty()) on_line(u, idx, line);
        if (u.fd < 0) return;  // the line closed it
      }
      u.rbuf.erase(0, from);
      if (u.rbuf.size() > kMaxLine) return fail(u, "a line over 4 KiB");
    }
  }

  void on_line(User& u, int idx, const std::string& raw) {
    const Line l = parse(raw);
    const std::string last = l.params.empty() ? std::string() : l.params.back();
    if (l.command == "PING") {
      queue(u, "PONG :" + last + "\r\n");
    } else if (l.command == "001") {
      // ngircd holds a connection that sent 3 commands at once (PASS, NICK, USER) for 1 s:
      // ready once that is over (the PONG comes after it), so the first message is not held.
      if (u.state == State::Registering) queue(u, "PING :ready\r\n");
    } else if (l.command == "432" || l.command == "433" || l.command == "436" ||
               l.command == "464" || l.command == "465" || l.command == "ERROR") {
      if (l.command == "ERROR" || u.state != State::Ready) fail(u, raw);
    } else if (l.command == "PONG" && u.state == State::Registering) {
      if (last != "ready") return;
      u.state = State::Ready;
      {
        std::lock_guard lk(m);
        ++ready;
      }
      cv.notify_all();
    } else if (l.command == "PONG") {  // answers the messages up to the one it names
      std::lock_guard lk(m);
      const auto it = std::find_if(u.awaiting_pong.begin(), u.awaiting_pong.end(),
                                   [&](std::size_t at) { return res.messages[at].id == last; });
      if (it != u.awaiting_pong.end()) u.awaiting_pong.erase(u.awaiting_pong.begin(), it + 1);
    } else if (l.command == "401") {
      // ngircd adds 2 s of penalty to every error reply: the user's next commands (its PING
      // too) are read 2 s later. Keep users / rate >= 2 s, or a long absence builds a backlog.
      if (l.params.size() >= 2 && is_bot(l.params[1]) && !u.awaiting_pong.empty()) {
        {
          std::lock_guard lk(m);
          res.messages[u.awaiting_pong.front()].bot_absent = true;
        }
        cv.notify_all();
      }
    } else if (l.command == "PRIVMSG" && is_bot(l.prefix.substr(0, l.prefix.find('!')))) {
      on_reply(idx, last);
    }
  }

  // A PRIVMSG of the bot: every token of the text that is an id we sent (once per line). A
  // reply that reaches another user than the sender is not an answer: counted unknown.
  // (Ids are "<prefix><user>-<n>".)
  void on_reply(int idx, const std::string& text) {
    const double now = wall_ms();
    std::vector<std::size_t> seen;
    bool unknown = true, names_an_id = false;
    std::lock_guard lk(m);
    for (std::size_t i = 0; i < text.size();) {
      if (!id_char(text[i])) {
        ++i;
        continue;
      }
      std::size_t j = i;
      while (j < text.size() && id_char(text[j])) ++j;
      const std::string token = text.substr(i, j - i);
      const auto it = by_id.find(token);
      i = j;
      if (token.rfind(prefix, 0) == 0 && token.find('-') != std::string::npos) names_an_id = true;
      if (it == by_id.end() || owner[it->second] != idx) continue;
      if (std::find(seen.begin(), seen.end(), it->second) != seen.end()) continue;
      seen.push_back(it->second);
      unknown = false;
      IrcMessage& msg = res.messages[it->second];
      if (msg.replies++ == 0) msg.reply_ms = now;
    }
    // Text that names none of our ids is the gateway speaking for itself (a restart notice):
    // counted apart. One that names an id but not one of this user's is a reply gone wrong.
    if (unknown) ++(names_an_id ? res.unknown_replies : res.other_replies);
    cv.notify_all();
  }

  void run() {
    bool was_sending = false;
    std::vector<pollfd> pfds;
    std::vector<std::size_t> who;
    while (!stopping) {
      auto now = Steady::now();
      const bool snd = sending.load();
      const auto period = std::chrono::duration_cast<Steady::duration>(
          std::chrono::duration<double>(static_cast<double>(users.size()) / rate));
      if (snd && !was_sending) {  // spread the users over one period
        for (std::size_t i = 0; i < users.size(); ++i) {
          users[i].next_send =
              now + std::chrono::duration_cast<Steady::duration>(
                        std::chrono::duration<double>(static_cast<double>(i) / rate));
        }
      }
      was_sending = snd;
      auto wake = now + kPollCap;
      for (std::size_t i = 0; i < users.size(); ++i) {
        User& u = users[i];
        if (u.state == State::Idle && now >= u.reconnect_at) open(u);
        if ((u.state == State::Connecting || u.state == State::Registering) && now >= u.deadline) {
          fail(u, "not registered within 10 s");
        }
        if (u.state == State::Ready && snd && now >= u.next_send) {
          send_message(u, static_cast<int>(i));
          u.next_send += period;
          if (u.next_send <= now) u.next_send = now + period;  // late: skip, never burst
        }
        if (u.state == State::Idle) wake = std::min(wake, u.reconnect_at);
        if (u.state == State::Connecting || u.state == State::Registering) {
          wake = std::min(wake, u.deadline);
        }
        if (u.state == State::Ready && snd) wake = std::min(wake, u.next_send);
      }
      pfds.clear();
      who.clear();
      for (std::size_t i = 0; i < users.size(); ++i) {
        User& u = users[i];
        if (u.fd < 0) continue;
        short ev = POLLIN;
        if (u.state == State::Connecting || !u.wbuf.empty()) ev |= POLLOUT;
        pfds.push_back({u.fd, ev, 0});
        who.push_back(i);
      }
      now = Steady::now();
      const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(wake - now).count();
      const int timeout = static_cast<int>(std::clamp<long long>(ms + 1, 0, kPollCap.count()));
      if (::poll(pfds.data(), pfds.size(), timeout) <= 0) continue;
      for (std::size_t k = 0; k < pfds.size(); ++k) {
        User& u = users[who[k]];
        if (pfds[k].revents == 0 || u.fd != pfds[k].fd) continue;
        if (u.state == State::Connecting) {
          int err = 0;
          socklen_t len = sizeof err;
          ::getsockopt(u.fd, SOL_SOCKET, SO_ERROR, &err, &len);
          if (err != 0) {
            fail(u, std::string("connect: ") + strerror(err));
            continue;
          }
          registering(u);
          continue;
        }
        if (pfds[k].revents & (POLLIN | POLLHUP | POLLERR)) on_read(u, static_cast<int>(who[k]));
        if (u.fd >= 0 && (pfds[k].revents & POLLOUT)) flush(u);
      }
    }
    for (auto& u : users) {  // a polite goodbye, best effort, then closed
      if (u.fd < 0) continue;
      if (u.state == State::Ready) {
        static const char kQuit[] = "QUIT :done\r\n";
        ::send(u.fd, kQuit, sizeof kQuit - 1, MSG_NOSIGNAL);
      }
      ::close(u.fd);
      u.fd = -1;
    }
  }

  bool all_answered() const {
    return std::all_of(res.messages.begin(), res.messages.end(),
                       [](const IrcMessage& x) { return x.bot_absent || x.replies > 0; });
  }
};

IrcLoad::IrcLoad(int port, std::string password, std::string bot_nick, int users, double rate,
                 std::string prefix)
    : impl_(std::make_unique<Impl>(port, std::move(password), std::move(bot_nick), users, rate,
                                   std::move(prefix))) {}

IrcLoad::~IrcLoad() = default;

void IrcLoad::connect() {
  impl_->ensure_thread();
  std::unique_lock lk(impl_->m);
  const int n = static_cast<int>(impl_->users.size());
  if (!impl_->cv.wait_for(lk, kRegisterTimeout, [&] { return impl_->ready == n; })) {
    throw std::runtime_error("IRC: " + std::to_string(impl_->ready) + " of " + std::to_string(n) +
                             " users registered within 10 s; last error: " + impl_->last_error);
  }
}

void IrcLoad::start() {
  impl_->ensure_thread();
  impl_->sending = true;
}

void IrcLoad::stop_sending() {
  impl_->sending = false;
}

bool IrcLoad::wait_answered(int timeout_ms) {
  std::unique_lock lk(impl_->m);
  return impl_->cv.wait_for(lk, std::chrono::milliseconds(std::max(timeout_ms, 0)),
                            [&] { return impl_->all_answered(); });
}

IrcResult IrcLoad::result() const {
  std::lock_guard lk(impl_->m);
  return impl_->res;
}

}  // namespace chaos
