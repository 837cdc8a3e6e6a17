#include "channels/irc/irc_channel.h"

#include <openssl/ssl.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>
#include <utility>

#include "channels/group_entry.h"
#include "channels/irc/irc_conn.h"

namespace drawbridge::channels {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using nlohmann::json;
using pipeline::LinkState;
using pipeline::SendStatus;
using namespace std::chrono_literals;

namespace {

constexpr core::Duration kFirstBackoff{1000};
constexpr core::Duration kMaxBackoff{60000};
constexpr core::Duration kRegisterTimeout{30000};
constexpr core::Duration kKeepalive{90000};   // silence this long: PING; twice: reconnect
constexpr core::Duration kStopBound{2000};    // QUIT sent: wait this long for the server's close
constexpr core::Duration kUserFallback{1000};  // no CAP LS answer: USER anyway
constexpr std::size_t kMaxQueuedLines = 400;  // about 200 s of flood-controlled output

}  // namespace
IrcChannel::IrcChannel(std::string id, IrcOptions options, asio::io_context& io,
                       core::Executor& executor, core::Clock& clock, pipeline::Pipeline& pipeline)
    : id_(std::move(id)),
      options_(std::move(options)),
      io_(io),
      executor_(executor),
      clock_(clock),
      pipeline_(pipeline),
      nick_(options_.nick) {
  if (options_.tls) {
    tls_context_ = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
    if (options_.tls_insecure) {
      tls_context_->set_verify_mode(asio::ssl::verify_none);
    } else {
      boost::system::error_code ec;
      tls_context_->set_default_verify_paths(ec);
      if (ec) spdlog::warn("channel {}: no default CA certificates: {}", id_, ec.message());
      tls_context_->set_verify_mode(asio::ssl::verify_peer);
    }
  }
}

IrcChannel::~IrcChannel() {
  *alive_ = false;
  for (auto* t : {&backoff_timer_, &refill_timer_, &register_timer_, &keepalive_timer_,
                  &stop_timer_, &rejoin_timer_, &user_timer_, &regain_timer_, &lease_timer_,
                  &lease_watch_}) {
    if (*t) executor_.cancel(**t);
  }
  if (conn_) conn_->close();
}

void IrcChannel::start() {
  if (running_) return;
  running_ = true;
  stopping_ = false;
  if (options_.dm_policy == "allowlist" && options_.allow_from.empty()) {
    spdlog::warn(
        "channel {}: allowFrom is empty and dmPolicy is \"allowlist\": no private message will "
        "be answered (set channels.{}.allowFrom to nicks, or dmPolicy \"open\")",
        id_, id_);
  }
  if (options_.group_policy == "allowlist" && options_.groups.empty() &&
      !options_.channels.empty()) {
    spdlog::warn(
        "channel {}: groupPolicy is \"allowlist\" and groups is empty: no channel message will "
        "be answered (set channels.{}.groups, or groupPolicy \"open\")",
        id_, id_);
  }
  if (adopted_) {
    if (hold_lease([this] { resume_adopted(); })) resume_adopted();
    return;
  }
  connect();
}

void IrcChannel::connect() {
  if (!running_) return;
  if (!hold_lease([this] { connect(); })) return;
  state_ = LinkState::connecting;
  auto c = std::make_shared<Conn>(io_, tls_context_);
  conn_ = c;
  spdlog::info("channel {}: connecting to {}:{}{}", id_, options_.host, options_.port,
               options_.tls ? " (TLS)" : "");
  c->resolver.async_resolve(
      options_.host, std::to_string(options_.port),
      [this, alive = alive_, c](const boost::system::error_code& ec,
                                tcp::resolver::results_type results) {
        if (!*alive || c != conn_) return;
        if (ec) return fail_connection("cannot resolve " + options_.host + ": " + ec.message());
        asio::async_connect(
            c->socket(), results,
            [this, alive, c](const boost::system::error_code& ec2, const tcp::endpoint&) {
              if (!*alive || c != conn_) return;
              if (ec2) {
                return fail_connection("cannot connect to " + options_.host + ":" +
                                       std::to_string(options_.port) + ": " + ec2.message());
              }
              if (!c->tls) return on_connected(c);
              if (!SSL_set_tlsext_host_name(c->tls->native_handle(), options_.host.c_str())) {
                return fail_connection("TLS: cannot set the server name");
              }
              if (!options_.tls_insecure) {
                c->tls->set_verify_callback(asio::ssl::host_name_verification(options_.host));
              }
              c->tls->async_handshake(asio::ssl::stream_base::client,
                                      [this, alive, c](const boost::system::error_code& ec3) {
                                        if (!*alive || c != conn_) return;
                                        if (ec3) {
                                          return fail_connection("TLS handshake: " + ec3.message());
                                        }
                                        on_connected(c);
                                      });
            });
      });
}

void IrcChannel::send_user() {
  if (user_timer_) {
    executor_.cancel(*user_timer_);
    user_timer_.reset();
  }
  if (user_sent_ || !conn_ || !conn_->open) return;
  user_sent_ = true;
  urgent(irc::format("USER", {options_.username, "0", "*", options_.realname}));
}

void IrcChannel::on_connected(const std::shared_ptr<Conn>& c) {
  if (!lease_ok()) return lose_lease();  // the connect outlasted the lease (a pause)
  // External ids of this connection: its start in ms, strictly after the previous one's, and
  // a sequence number (docs/DECISIONS.md "IRC").
  conn_epoch_ms_ = std::max(clock_.wall_ms(), conn_epoch_ms_ + 1);
  seq_ = 0;
  rbuf_.clear();
  skipping_ = false;
  registered_ = false;
  nick_attempt_ = 0;
  nick_shorten_ = false;
  nick_ = options_.nick;
  cap_list_.clear();
  cap_tags_ = false;
  sasl_ = false;
  own_mask_.clear();
  tokens_ = kBurst;
  c->open = true;
  read(c);
  // PASS first (RFC 2812 3.1.1); registration then waits for CAP END. At most three commands
  // in the first write: ngircd handles three of a client's commands at a time and holds the
  // rest (and everything the client sends after) for a second or two. With a PASS, USER goes
  // with the answer to CAP LS (send_user), or after kUserFallback from a server that ignores
  // CAP.
  user_sent_ = false;
  if (!options_.password.empty()) urgent("PASS " + options_.password);
  urgent("CAP LS 302");
  urgent("NICK " + nick_);
  if (options_.password.empty()) {
    send_user();
  } else {
    user_timer_ = executor_.schedule(kUserFallback, [this, alive = alive_] {
      if (!*alive) return;
      user_timer_.reset();
      send_user();
    });
  }
  register_timer_ = executor_.schedule(kRegisterTimeout, [this, alive = alive_] {
    if (!*alive) return;
    register_timer_.reset();
    if (!registered_) fail_connection("no welcome (001) from the server within 30 s");
  });
}

void IrcChannel::read(const std::shared_ptr<Conn>& c) {
  read_pending_ = true;
  c->read_some([this, alive = alive_, c](const boost::system::error_code& ec, std::size_t n) {
    if (!*alive || c != conn_) return;
    read_pending_ = false;
    if (ec && releasing_ && ec == asio::error::operation_aborted) return finish_release();
    if (ec) {
      if (releasing_) {
        // The connection failed while being handed over: nothing to hand.
        releasing_ = false;
        running_ = false;
        auto done = std::move(release_done_);
        release_done_ = nullptr;
        executor_.post([done = std::move(done)] { done(std::nullopt); });
      }
      if (stopping_) return finish_stop();
      return fail_connection(ec == asio::error::eof ? "the server closed the connection"
                                                    : "read: " + ec.message());
    }
    on_data(c, n);
  });
}

void IrcChannel::on_data(const std::shared_ptr<Conn>& c, std::size_t n) {
  // Woken from a pause past the lease: what came in is another replica's to answer now.
  if (!lease_ok()) return lose_lease();
  seen_since_ping_ = true;
  ping_sent_ = false;
  std::string_view data(c->rbuf.data(), n);
  while (!data.empty()) {
    const auto lf = data.find('\n');
    const std::string_view piece = data.substr(0, lf);
    if (skipping_) {
      if (lf != std::string_view::npos) skipping_ = false;
    } else if (rbuf_.size() + piece.size() > kMaxInboundLine) {
      spdlog::warn("channel {}: a line of more than {} bytes from the server was dropped", id_,
                   kMaxInboundLine);
      rbuf_.clear();
      skipping_ = lf == std::string_view::npos;
    } else {
      rbuf_.append(piece);
      if (lf != std::string_view::npos) {
        std::string line = std::move(rbuf_);
        rbuf_.clear();
        on_line(line);
        if (c != conn_) return;  // the line ended the connection
      }
    }
    if (lf == std::string_view::npos) break;
    data.remove_prefix(lf + 1);
  }
  if (releasing_) return finish_release();
  read(c);
}

std::size_t IrcChannel::relay_reserve() const {
  // ":nick!user@host " the server prepends when it relays our line; before our first JOIN
  // shows it, the longest it can be (a host name is at most 63 bytes).
  if (!own_mask_.empty()) return own_mask_.size() + 2;
  return 1 + nick_.size() + 1 + options_.username.size() + 1 + 1 + 63 + 1;
}

void IrcChannel::send(const pipeline::OutboundPart& part,
                      std::function<void(SendStatus, std::string)> done) {
  auto later = [this](std::function<void(SendStatus, std::string)> d, SendStatus s,
                      std::string why) {
    executor_.post([d = std::move(d), s, why = std::move(why)] { d(s, why); });
  };
  if (!irc::is_valid_target(part.chat_id)) {
    return later(std::move(done), SendStatus::failed,
                 "not an IRC channel or nick: " + irc::sanitize_utf8(part.chat_id));
  }
  if (!standby_.empty()) return later(std::move(done), SendStatus::retry, standby_);
  if (!registered_ || !conn_ || stopping_) {
    return later(std::move(done), SendStatus::retry, "not connected to " + options_.host);
  }
  auto lines = irc::privmsg_lines(part.chat_id, part.text, relay_reserve());
  if (lines.empty()) return later(std::move(done), SendStatus::sent, {});
  if (queue_.size() + lines.size() > kMaxQueuedLines) {
    return later(std::move(done), SendStatus::retry, "send queue full (flood control)");
  }
  for (std::size_t i = 0; i < lines.size(); ++i) {
    queue_.push_back({std::move(lines[i]), i + 1 == lines.size() ? std::move(done) : nullptr});
  }
  pump();
}

void IrcChannel::urgent(std::string line) {
  urgent_.push_back(std::move(line));
  pump();
}

// Writes what may go now: every urgent line, and queued lines while tokens last. One write
// is in flight at a time; a part is reported sent once its last line is written.
void IrcChannel::pump() {
  if (writing_ || releasing_ || !conn_ || !conn_->open || conn_->closed) return;
  if (!lease_ok()) return lose_lease();  // not a byte more under a lease that may be another's
  auto c = conn_;
  c->wbuf.clear();
  while (!urgent_.empty()) {
    c->wbuf += urgent_.front() + "\r\n";
    urgent_.pop_front();
  }
  while (!queue_.empty() && tokens_ > 0 && registered_) {
    c->wbuf += queue_.front().line + "\r\n";
    if (queue_.front().done) in_write_.push_back(std::move(queue_.front().done));
    queue_.pop_front();
    --tokens_;
  }
  arm_refill();
  if (c->wbuf.empty()) return;
  writing_ = true;
  c->write([this, alive = alive_, c](const boost::system::error_code& ec, std::size_t) {
    if (!*alive || c != conn_) return;
    writing_ = false;
    auto written = std::move(in_write_);
    in_write_.clear();
    if (ec) {
      for (auto& d : written) {
        executor_.post([d = std::move(d), why = ec.message()] { d(SendStatus::retry, why); });
      }
      if (stopping_) return finish_stop();
      return fail_connection("write: " + ec.message());
    }
    for (auto& d : written) {
      executor_.post([d = std::move(d)] { d(SendStatus::sent, {}); });
    }
    if (releasing_) return finish_release();
    pump();
  });
}

void IrcChannel::arm_refill() {
  if (refill_timer_ || tokens_ >= kBurst) return;
  refill_timer_ = executor_.schedule(kRefill, [this, alive = alive_] {
    if (!*alive) return;
    refill_timer_.reset();
    tokens_ = std::min(tokens_ + 1, kBurst);
    pump();
    arm_refill();
  });
}

void IrcChannel::arm_keepalive() {
  if (keepalive_timer_) executor_.cancel(*keepalive_timer_);
  seen_since_ping_ = false;
  keepalive_timer_ = executor_.schedule(kKeepalive, [this, alive = alive_] {
    if (!*alive) return;
    keepalive_timer_.reset();
    if (!registered_ || stopping_) return;
    if (!seen_since_ping_) {
      if (ping_sent_) return fail_connection("no answer from the server for 180 s");
      ping_sent_ = true;
      urgent("PING :drawbridge");
    }
    arm_keepalive();
  });
}

void IrcChannel::note_error(const std::string& why) {
  last_error_ = why;
  last_error_at_ms_ = clock_.wall_ms();
  ++errors_;
}

void IrcChannel::fail_pending(const std::string& why) {
  for (auto& l : queue_) {
    if (l.done) {
      executor_.post([d = std::move(l.done), why] { d(SendStatus::retry, why); });
    }
  }
  queue_.clear();
  for (auto& d : in_write_) {
    executor_.post([d = std::move(d), why] { d(SendStatus::retry, why); });
  }
  in_write_.clear();
  urgent_.clear();
}

void IrcChannel::fail_connection(const std::string& why) {
  if (conn_) conn_->close();
  conn_.reset();
  writing_ = false;
  registered_ = false;
  ready_ = false;
  fail_pending(why);
  for (auto* t :
       {&register_timer_, &keepalive_timer_, &rejoin_timer_, &user_timer_, &regain_timer_}) {
    if (*t) {
      executor_.cancel(**t);
      t->reset();
    }
  }
  if (stopping_ || !running_) return finish_stop();
  note_error(why);
  state_ = LinkState::failed;
  backoff_ = backoff_.count() == 0 ? kFirstBackoff : std::min(backoff_ * 2, kMaxBackoff);
  spdlog::warn("channel {}: {}; reconnecting in {} ms", id_, why, backoff_.count());
  if (backoff_timer_) executor_.cancel(*backoff_timer_);
  backoff_timer_ = executor_.schedule(backoff_, [this, alive = alive_] {
    if (!*alive) return;
    backoff_timer_.reset();
    connect();
  });
}

void IrcChannel::stop(std::function<void()> done) {
  if (stopping_ && state_ == LinkState::stopped && !stop_done_) {
    if (done) executor_.post(std::move(done));  // already stopped
    return;
  }
  if (stopping_) {
    // A second stop while one is under way: both are told when it ends.
    auto first = std::move(stop_done_);
    stop_done_ = [first = std::move(first), done = std::move(done)] {
      if (first) first();
      if (done) done();
    };
    return;
  }
  running_ = false;
  stopping_ = true;
  ready_ = false;
  stop_done_ = std::move(done);
  for (auto* t : {&backoff_timer_, &register_timer_, &keepalive_timer_, &rejoin_timer_,
                  &user_timer_, &regain_timer_, &lease_timer_}) {
    if (*t) {
      executor_.cancel(**t);
      t->reset();
    }
  }
  // Replies not yet written go to the next start (the outbox keeps them).
  for (auto& l : queue_) {
    if (l.done) {
      executor_.post([d = std::move(l.done)] { d(SendStatus::retry, "the channel stops"); });
    }
  }
  queue_.clear();
  // A connection that never registered has written no reply: nothing to wait for (and a server
  // that holds its registration would hold the QUIT as long).
  if (!conn_ || !conn_->open || conn_->closed || !registered_) return finish_stop();
  // QUIT, then the server closes; it is given kStopBound to do so.
  urgent("QUIT :restarting");
  stop_timer_ = executor_.schedule(kStopBound, [this, alive = alive_] {
    if (!*alive) return;
    stop_timer_.reset();
    finish_stop();
  });
}

void IrcChannel::finish_stop() {
  if (stop_timer_) {
    executor_.cancel(*stop_timer_);
    stop_timer_.reset();
  }
  if (refill_timer_) {
    executor_.cancel(*refill_timer_);
    refill_timer_.reset();
  }
  if (conn_) conn_->close();
  conn_.reset();
  writing_ = false;
  registered_ = false;
  ready_ = false;
  fail_pending("the channel stops");
  state_ = LinkState::stopped;
  release_lease();  // after the QUIT: the next replica may connect at once
  if (!stop_done_) return;
  auto done = std::move(stop_done_);
  stop_done_ = nullptr;
  executor_.post([done = std::move(done)] { done(); });
}

pipeline::ChannelHealth IrcChannel::health() const {
  pipeline::ChannelHealth h;
  h.state = state_;
  h.last_error = last_error_;
  h.last_error_at_ms = last_error_at_ms_;
  h.errors = errors_;
  h.detail = nick_;
  if (!standby_.empty() && state_ != LinkState::stopped) {
    h.state = LinkState::standby;
    h.detail = standby_;
  }
  return h;
}

}  // namespace drawbridge::channels
