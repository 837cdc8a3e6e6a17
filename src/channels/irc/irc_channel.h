#pragma once

#include <boost/asio/io_context.hpp>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "channels/irc/irc_message.h"
#include "core/clock.h"
#include "core/executor.h"
#include "pipeline/channel.h"
#include "pipeline/pipeline.h"

namespace boost::asio::ssl {
class context;
}

namespace drawbridge::channels {

// What `channels.irc` says, with OpenClaw's keys (docs/DECISIONS.md "IRC").
struct IrcOptions {
  struct Group {
    bool require_mention = true;
  };

  std::string host;
  int port = 6667;  // 6697 with tls
  bool tls = false;
  bool tls_insecure = false;  // tlsInsecure: no certificate or host name check
  std::string nick;
  std::string username;  // default: nick
  std::string realname = "drawbridge";
  std::string password;                    // server PASS, and SASL PLAIN where offered
  std::vector<std::string> channels;       // joined at connect
  std::string group_policy = "allowlist";  // "open" | "allowlist" | "disabled"
  std::map<std::string, Group> groups;     // lower-cased channel name, or "*"
  std::string dm_policy = "allowlist";     // "open" | "allowlist" | "disabled"
  std::set<std::string> allow_from;        // lower-cased nicks or nick!user@host masks; "*"
  std::string command_prefix;              // "!": "!hi" in a channel is addressed
  std::vector<std::string> warnings;       // keys accepted and not honoured, one each

  // Reads `raw` (the channel's object); an error names the key and never shows the password.
  // `env` looks up variables (passwordEnv).
  static std::optional<IrcOptions> parse(
      const nlohmann::json& raw, std::string& error,
      const std::function<std::optional<std::string>(const std::string&)>& env);
};

// A registered plain-TCP connection handed from one process to the next (a re-exec or an
// update): the socket and the protocol state that goes with it (docs/DECISIONS.md "An IRC
// connection outlives a restart").
struct IrcHandover {
  int fd = -1;  // the holder's to close
  nlohmann::json state;
};

// An IRC client (RFC 1459/2812 as servers speak it) on the gateway's event loop: registers
// (CAP LS, SASL PLAIN where offered, PASS, NICK/USER, nick_ fallback), joins the configured
// channels, answers PING, and hands each private message and each channel message addressed to
// the bot to Pipeline::accept until stop(). Replies go out as PRIVMSG lines of at most 512
// bytes through a token bucket (flood control). A lost connection is retried with backoff
// (1 s doubling to 60 s). Every timer runs on the injected Executor.
class IrcChannel final : public pipeline::Channel {
 public:
  // Flood control: kBurst lines at once, then one line per kRefill.
  static constexpr int kBurst = 5;
  static constexpr core::Duration kRefill{500};
  // A line the server sends without a line end within this many bytes is dropped.
  static constexpr std::size_t kMaxInboundLine = 8192;

  IrcChannel(std::string id, IrcOptions options, boost::asio::io_context& io,
             core::Executor& executor, core::Clock& clock, pipeline::Pipeline& pipeline);
  ~IrcChannel() override;

  const std::string& id() const override { return id_; }
  void start() override;
  void stop(std::function<void()> done) override;
  // Ready when connected, or standing by while another replica keeps the connection.
  bool ready() const override { return ready_ || !standby_.empty(); }
  bool carries_over() const override { return true; }
  bool served_elsewhere() const override;
  pipeline::ChannelHealth health() const override;
  void send(const pipeline::OutboundPart& part,
            std::function<void(pipeline::SendStatus, std::string)> done) override;

  const std::string& nick() const { return nick_; }

  // Gives the connection up for another process: reading stops at a complete read, a write
  // under way finishes, then `done` gets the socket and the state (what was read of an
  // unfinished line, lines not yet written, the nick, the ids' sequence). nullopt when this
  // connection cannot be handed over: TLS, not registered or stopping (the channel is left as
  // it was: the caller stops it), or it failed meanwhile (then it has stopped). Never a QUIT.
  void release(std::function<void(std::optional<IrcHandover>)> done);
  // Takes over a connection a predecessor released: start() then reads from it instead of
  // connecting. False with `error` for a state or socket that does not hold up (the fd is
  // then still the caller's); true: the fd is the channel's.
  bool adopt(IrcHandover& handover, std::string& error);

 private:
  struct Conn;
  struct OutLine {
    std::string line;                                             // without CRLF
    std::function<void(pipeline::SendStatus, std::string)> done;  // on a part's last line
  };

  void connect();
  void on_connected(const std::shared_ptr<Conn>& c);
  void read(const std::shared_ptr<Conn>& c);
  void on_data(const std::shared_ptr<Conn>& c, std::size_t n);
  void on_line(const std::string& line);
  void on_cap(const irc::Message& m);
  void send_user();  // USER, once per connection
  void arm_nick_regain();  // registered under a fallback nick: ask for ours again later
  void on_welcome(const std::string& nick);
  void on_privmsg(const irc::Message& m);
  void next_nick(bool erroneous);
  void urgent(std::string line);
  void pump();
  void arm_refill();
  void arm_keepalive();
  void fail_connection(const std::string& why);
  void fail_pending(const std::string& why);
  void finish_stop();
  void finish_release();
  void resume_adopted();
  void note_error(const std::string& why);
  std::size_t relay_reserve() const;
  bool channel_allowed(const std::string& chan, bool& require_mention) const;
  bool dm_allowed(const std::string& nick, const std::string& mask) const;
  std::string next_external_id(const irc::Message& m);
  // irc_lease.cpp: the account's lease in a cluster (pipeline::AccountLeases).
  std::string lease_name() const;
  bool lease_ok() const;  // no cluster, or held and certainly still this replica's
  // True when the lease is held: go on. Otherwise claims it and runs `then` once held, or
  // stands by and tries connect() again after leaseMs / 2.
  bool hold_lease(std::function<void()> then);
  void arm_lease_watch();
  void lose_lease();
  void release_lease();

  std::string id_;
  IrcOptions options_;
  boost::asio::io_context& io_;
  core::Executor& executor_;
  core::Clock& clock_;
  pipeline::Pipeline& pipeline_;
  std::shared_ptr<boost::asio::ssl::context> tls_context_;

  std::shared_ptr<Conn> conn_;
  bool running_ = false;
  bool stopping_ = false;
  bool ready_ = false;
  bool registered_ = false;
  bool user_sent_ = false;  // USER of this connection's registration
  pipeline::LinkState state_ = pipeline::LinkState::connecting;
  std::string last_error_;
  std::int64_t last_error_at_ms_ = 0;
  std::uint64_t errors_ = 0;

  std::string nick_;
  int nick_attempt_ = 0;
  bool nick_shorten_ = false;
  std::string own_mask_;   // "nick!user@host" as the server relays our lines, once seen
  std::string cap_list_;   // CAP LS, accumulated over continuation lines
  bool cap_tags_ = false;  // message-tags acknowledged: msgid is the external id
  bool sasl_ = false;

  std::string rbuf_;
  bool skipping_ = false;  // inside an overlong line: dropped up to its end
  bool seen_since_ping_ = false;
  bool ping_sent_ = false;

  std::deque<std::string> urgent_;  // PONG, registration, QUIT: not flood controlled
  std::deque<OutLine> queue_;       // PRIVMSG, JOIN: through the token bucket
  bool writing_ = false;
  bool read_pending_ = false;
  bool releasing_ = false;
  bool adopted_ = false;  // adopt() took a connection over: start() reads from it
  std::function<void(std::optional<IrcHandover>)> release_done_;
  std::vector<std::function<void(pipeline::SendStatus, std::string)>> in_write_;
  int tokens_ = kBurst;

  std::optional<core::TimerId> backoff_timer_, refill_timer_, register_timer_, keepalive_timer_,
      stop_timer_, rejoin_timer_, user_timer_, regain_timer_, lease_timer_, lease_watch_;
  std::int64_t lease_epoch_ = 0;  // the account's lease, while held (a cluster)
  bool claiming_ = false;
  std::string standby_;  // why another replica keeps the connection: the channel waits
  int regain_attempts_ = 0;
  core::Duration backoff_{0};

  std::int64_t conn_epoch_ms_ = 0;  // external ids: "<conn_epoch_ms>-<seq>"
  std::uint64_t seq_ = 0;
  std::function<void()> stop_done_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace drawbridge::channels
