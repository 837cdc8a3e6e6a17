#include "channels/telegram/telegram_channel.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <limits>
#include <map>
#include <random>
#include <sstream>
#include <utility>

#include "channels/group_entry.h"
#include "config/bounded_json.h"

namespace drawbridge::channels {

using nlohmann::json;
using namespace std::chrono_literals;

using telegram::id_text;

namespace {

constexpr auto kFirstBackoff = 1000ms;
constexpr auto kMaxBackoff = 30000ms;
constexpr std::size_t kRowsRemembered = 4096;

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Removes every "@name" (any case) that is not part of a longer name; true when one was found.
bool strip_mention(std::string& text, const std::string& name) {
  if (name.empty()) return false;
  const std::string needle = "@" + lower(name);
  bool found = false;
  std::string low = lower(text);
  for (auto at = low.find(needle); at != std::string::npos; at = low.find(needle, at)) {
    const auto end = at + needle.size();
    const bool word_end = end >= low.size() ||
                          !(std::isalnum(static_cast<unsigned char>(low[end])) || low[end] == '_');
    if (!word_end) {
      at = end;
      continue;
    }
    text.erase(at, needle.size());
    low.erase(at, needle.size());
    found = true;
  }
  return found;
}

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return {};
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

// 409s per bot in this process, kept across the channel's restarts (a hot reload builds a new
// channel): only a getUpdates that succeeds ends a conflict. Event-loop thread only.
struct ConflictRecord {
  std::int64_t since_ms = 0;
  std::uint64_t count = 0;
};
std::map<std::string, ConflictRecord>& conflicts_by_bot() {
  static std::map<std::string, ConflictRecord> m;
  return m;
}

}  // namespace

TelegramChannel::TelegramChannel(std::string id, TelegramOptions options,
                                 boost::asio::io_context& io, core::Executor& executor,
                                 pipeline::Pipeline& pipeline)
    : id_(std::move(id)),
      options_(std::move(options)),
      executor_(executor),
      clock_(pipeline.clock()),
      pipeline_(pipeline),
      api_(io, options_.api_root, options_.token),
      bot_bucket_(std::max(1.0, options_.bot_per_second), options_.bot_per_second) {
  webhook_secret_ = options_.webhook_secret;
  if (webhook_secret_.empty()) {
    // Generated: Telegram gets it with setWebhook at every start.
    std::random_device rd;
    static constexpr char kHex[] = "0123456789abcdef";
    for (int i = 0; i < 48; ++i) webhook_secret_ += kHex[rd() % 16];
  }
}

TelegramChannel::~TelegramChannel() {
  *alive_ = false;
  for (auto& [chat, t] : typing_) {
    if (t.timer) executor_.cancel(*t.timer);
  }
  if (retry_timer_) executor_.cancel(*retry_timer_);
}

void TelegramChannel::start() {
  running_ = true;
  stopped_ = false;
  if (options_.dm_policy == "allowlist" && options_.allow_from.empty()) {
    spdlog::warn(
        "channel {}: allowFrom is empty and dmPolicy is \"{}\": no message will be "
        "answered (set channels.{}.allowFrom to user ids, or dmPolicy \"open\")",
        id_, options_.dm_policy, id_);
  }
  if (auto saved = pipeline_.load_cursor("telegram." + options_.bot_id())) {
    // Updates below it are in the inbox already: confirmed at the first poll, never asked for
    // again (the inbox would drop them; this spares it the work).
    try {
      offset_ = std::max<std::int64_t>(offset_, std::stoll(*saved));
    } catch (const std::exception&) {
      spdlog::warn("channel {}: the saved update offset is not a number; starting from Telegram's",
                   id_);
    }
  }
  poll();
}

bool TelegramChannel::take_lock() {
  // In a cluster the bot's lease is the rule, for replicas on one machine too (the lock would
  // keep a second replica of this host from ever taking the bot over).
  if (lock_ || pipeline_.account_leases() != nullptr) return true;
  std::string why;
  lock_ = AccountLock::acquire("telegram-" + options_.bot_id(), why);
  if (lock_) {
    lock_error_.clear();
    return true;
  }
  lock_error_ =
      "bot " + options_.bot_id() + " is polled by another drawbridge on this machine: " + why;
  error(lock_error_);
  spdlog::error("channel {}: {}; not polling until it is free", id_, lock_error_);
  return false;
}

void TelegramChannel::error(std::string what) {
  last_error_ = std::move(what);
  last_error_at_ms_ = clock_.wall_ms();
  ++errors_;
}

pipeline::ChannelHealth TelegramChannel::health() const {
  using pipeline::LinkState;
  pipeline::ChannelHealth h;
  h.last_error = last_error_;
  h.last_error_at_ms = last_error_at_ms_;
  h.errors = errors_;
  h.detail = username_.empty() ? std::string() : "@" + username_;
  const auto& conflicts = conflicts_by_bot();
  const auto c = conflicts.find(options_.bot_id());
  if (c != conflicts.end()) h.conflicts = c->second.count;
  if (!running_) {
    h.state = LinkState::stopped;
  } else if (!standby_.empty()) {
    h.state = LinkState::standby;
    h.detail = standby_;
  } else if (!lock_error_.empty() || bad_token_) {
    h.state = LinkState::failed;
  } else if (c != conflicts.end() && clock_.wall_ms() - c->second.since_ms >=
                                         std::int64_t{options_.conflict_fail_after_s} * 1000) {
    h.state = LinkState::conflict;
  } else {
    h.state = ready_ ? LinkState::connected : LinkState::connecting;
  }
  return h;
}

void TelegramChannel::connect() {
  polling_ = true;
  // getMe: the token works and the API answers; the channel is ready from here on, not only
  // once the first long poll returns (which may take its whole timeout).
  poll_call_ = api_.call(
      "getMe", json::object(), std::chrono::seconds(15),
      [this, alive = alive_](telegram::ApiResult r) {
        if (!*alive) return;
        polling_ = false;
        if (!running_) return end_stop();
        if (!r.ok || !r.result.is_object()) {
          auto delay = backoff_ == 0ms ? kFirstBackoff : std::min(backoff_ * 2, kMaxBackoff);
          backoff_ = delay;
          // 401/404: Telegram does not know the token; retried, but shown as failed.
          bad_token_ = r.error_code == 401 || r.error_code == 404;
          error("getMe: " +
                (r.description.empty() ? std::string("no bot in the answer") : r.description));
          spdlog::error("channel {}: getMe failed ({}{}): retrying in {} ms", id_,
                        r.error_code ? std::to_string(r.error_code) + " " : std::string(),
                        last_error_, delay.count());
          return retry_later(delay);
        }
        connected_ = true;
        // A webhook bot hears nothing until setWebhook has succeeded: not ready before.
        ready_ = options_.webhook_url.empty() || webhook_set_;
        bad_token_ = false;
        backoff_ = 0ms;
        if (r.result.contains("id") && r.result["id"].is_number_integer()) {
          bot_user_id_ = r.result["id"].get<std::int64_t>();
        }
        if (r.result.contains("username") && r.result["username"].is_string()) {
          username_ = r.result["username"].get<std::string>().substr(0, 64);
        }
        spdlog::info("channel {}: connected as @{} (id {})", id_, r.result.value("username", "?"),
                     id_text(r.result.value("id", json())));
        // The commands a user can pick from Telegram's menu; a failure costs nothing else.
        api_.call(
            "setMyCommands",
            {{"commands",
              json::array({{{"command", "status"}, {"description", "What the gateway is doing"}},
                           {{"command", "stop"}, {"description", "Stop the running reply"}},
                           {{"command", "restart"}, {"description", "Restart the gateway"}}})}},
            std::chrono::seconds(15), [this, alive = alive_](telegram::ApiResult c) {
              if (*alive && !c.ok && !c.cancelled) {
                spdlog::warn("channel {}: setMyCommands failed: {}", id_, c.description);
              }
            });
        poll();
      });
}

void TelegramChannel::poll() {
  if (!running_ || polling_) return;
  if (!take_lock()) {
    backoff_ = backoff_ == 0ms ? kFirstBackoff : std::min(backoff_ * 2, kMaxBackoff);
    return retry_later(backoff_);
  }
  if (!hold_lease()) return;
  if (!connected_) return connect();
  if (!options_.webhook_url.empty()) {
    if (!webhook_set_) set_webhook();
    return;  // updates come by POST
  }
  polling_ = true;
  json params = {{"timeout", poll_timeout_s()},
                 {"limit", 100},
                 {"allowed_updates", options_.allowed_updates}};
  if (offset_ > 0) params["offset"] = offset_;
  const auto bound = std::chrono::seconds(options_.poll_timeout_s + 15);
  poll_call_ =
      api_.call("getUpdates", params, bound, [this, alive = alive_](telegram::ApiResult r) {
        if (!*alive) return;
        polling_ = false;
        on_updates(r);
      });
}

void TelegramChannel::set_webhook() {
  polling_ = true;
  json params = {{"url", options_.webhook_url},
                 {"secret_token", webhook_secret_},
                 {"allowed_updates", options_.allowed_updates}};
  poll_call_ = api_.call(
      "setWebhook", params, std::chrono::seconds(15),
      [this, alive = alive_](telegram::ApiResult r) {
        if (!*alive) return;
        polling_ = false;
        if (!running_) return end_stop();
        if (!r.ok) {
          auto delay = backoff_ == 0ms ? kFirstBackoff : std::min(backoff_ * 2, kMaxBackoff);
          backoff_ = delay;
          error(
              "setWebhook: " + (r.error_code ? std::to_string(r.error_code) + " " : std::string()) +
              r.description);
          spdlog::error("channel {}: {}; retrying in {} ms", id_, last_error_, delay.count());
          return retry_later(delay);
        }
        webhook_set_ = true;
        ready_ = true;
        backoff_ = 0ms;
        spdlog::info("channel {}: receiving by webhook on {}", id_, options_.webhook_path);
      });
}

void TelegramChannel::on_updates(const telegram::ApiResult& r) {
  if (!running_) return end_stop();
  if (!r.ok) {
    auto delay = backoff_ == 0ms ? kFirstBackoff : std::min(backoff_ * 2, kMaxBackoff);
    backoff_ = delay;
    if (r.error_code == 409 && r.description.find("webhook is active") != std::string::npos &&
        !webhook_deleted_) {
      // Left by an earlier webhook configuration: this one polls, so it goes (once).
      webhook_deleted_ = true;
      spdlog::warn(
          "channel {}: a webhook is set for this bot and webhookUrl is not: deleting it "
          "to poll",
          id_);
      polling_ = true;
      poll_call_ = api_.call("deleteWebhook", json::object(), std::chrono::seconds(15),
                             [this, alive = alive_](telegram::ApiResult) {
                               if (!*alive) return;
                               polling_ = false;
                               if (!running_) return end_stop();
                               poll();
                             });
      return;
    }
    if (r.error_code == 409) {
      auto& c = conflicts_by_bot()[options_.bot_id()];
      if (c.count++ == 0) c.since_ms = clock_.wall_ms();
      ready_ = false;
      spdlog::error(
          "channel {}: getUpdates conflict ({}): another poller or a webhook uses "
          "this bot; {} in a row, retrying in {} ms",
          id_, r.description, c.count, delay.count());
    } else if (r.retry_after_s) {
      delay = std::chrono::seconds(std::clamp(*r.retry_after_s, 1, 3600));
      spdlog::warn("channel {}: getUpdates rate-limited: retrying in {} s", id_, *r.retry_after_s);
    } else {
      ready_ = false;
      spdlog::warn("channel {}: getUpdates failed ({}{}): retrying in {} ms", id_,
                   r.error_code ? std::to_string(r.error_code) + " " : std::string(), r.description,
                   delay.count());
    }
    error("getUpdates: " + (r.error_code ? std::to_string(r.error_code) + " " : std::string()) +
          r.description);
    return retry_later(delay);
  }
  backoff_ = 0ms;
  conflicts_by_bot().erase(options_.bot_id());
  ready_ = true;
  if (!r.result.is_array()) {
    error("getUpdates answered no array");
    return retry_later(kFirstBackoff);
  }
  batch_next_ = offset_;
  batch_waiting_ = 1;  // held until every update of the batch is handed over
  batch_failed_ = false;
  for (const auto& u : r.result) {
    if (!u.is_object() || !u.contains("update_id") || !u["update_id"].is_number_integer()) {
      continue;
    }
    const auto update_id = u["update_id"].get<std::int64_t>();
    if (update_id < offset_) continue;  // already confirmed: a server that repeats itself
    if (update_id < 0 || update_id == std::numeric_limits<std::int64_t>::max()) continue;
    batch_next_ = std::max(batch_next_, update_id + 1);
    ++batch_waiting_;
    if (!take_update(u, update_id, [this](bool committed) {
          if (!committed) batch_failed_ = true;
          batch_done();
        })) {
      --batch_waiting_;
    }
  }
  batch_done();
}

bool TelegramChannel::take_update(const json& u, std::int64_t update_id,
                                  std::function<void(bool committed)> after) {
  const json* msg = nullptr;
  if (auto m = u.find("message"); m != u.end() && m->is_object()) msg = &*m;
  if (msg == nullptr) return false;
  std::string why, text;
  if (!allowed(*msg, text, why)) {
    spdlog::info("channel {}: update {} ignored: {}", id_, update_id, why);
    return false;
  }
  // allowed() checked the shape: a text, a chat with an id.
  const json& chat = msg->at("chat");
  const auto from = msg->find("from");
  pipeline::InboundMessage in;
  in.channel = id_;
  // Update ids are per bot: a token changed to another bot starts its own sequence.
  in.external_id = options_.bot_id() + ":" + std::to_string(update_id);
  in.chat_id = id_text(chat.value("id", json()));
  in.session_key = id_ + ":" + in.chat_id;
  in.sender = from != msg->end() && from->is_object() ? id_text(from->value("id", json())) : "";
  in.text = std::move(text);
  const auto message_id = msg->value("message_id", json()).is_number_integer()
                              ? msg->at("message_id").get<std::int64_t>()
                              : std::int64_t{0};
  try {
    pipeline_.accept(in, [this, alive = alive_, update_id, message_id, chat = in.chat_id,
                          after = std::move(after)](pipeline::AcceptResult res) {
      if (!*alive) return;
      if (!res.error.empty()) {
        spdlog::error("channel {}: update {} not journaled ({}): it is asked for again", id_,
                      update_id, res.error);
        return after(false);
      }
      if (!res.duplicate) {
        if (message_id > 0 && res.inbound_id > 0) {
          if (row_order_.size() < kRowsRemembered) {
            row_order_.push_back(res.inbound_id);
          } else {
            message_of_row_.erase(row_order_[row_next_]);
            row_order_[row_next_] = res.inbound_id;
            row_next_ = (row_next_ + 1) % kRowsRemembered;
          }
          message_of_row_[res.inbound_id] = message_id;
        }
        typing(chat, true);
      }
      after(true);
    });
  } catch (const std::exception& e) {
    spdlog::error("channel {}: update {} refused: {}", id_, update_id, e.what());
    return false;
  }
  return true;
}

void TelegramChannel::on_webhook(const std::string& secret, const std::string& body,
                                 std::function<void(int, std::string)> respond) {
  if (!running_ || !ready_) {
    // Not set up (yet, or any more): Telegram delivers it again later.
    return respond(503, R"({"ok":false,"description":"not ready"})");
  }
  // Constant time: the secret is the only thing that tells Telegram from anyone else.
  const std::string& want = webhook_secret_;
  unsigned diff = secret.size() != want.size() ? 1u : 0u;
  for (std::size_t i = 0; i < want.size(); ++i) {
    diff |= static_cast<unsigned char>(want[i]) ^
            static_cast<unsigned char>(i < secret.size() ? secret[i] : 0);
  }
  if (diff != 0) {
    spdlog::warn("channel {}: a webhook request without the right secret token: refused", id_);
    return respond(401, R"({"ok":false,"description":"wrong secret token"})");
  }
  config::JsonLimits limits;
  limits.max_bytes = 1 << 20;
  auto parsed = config::parse_bounded_json(body, limits);
  if (!parsed.ok() || !parsed.value.is_object() || !parsed.value.contains("update_id") ||
      !parsed.value["update_id"].is_number_integer() ||
      parsed.value["update_id"].get<std::int64_t>() < 0) {
    return respond(400, R"({"ok":false,"description":"not an update"})");
  }
  const auto update_id = parsed.value["update_id"].get<std::int64_t>();
  auto shared = std::make_shared<std::function<void(int, std::string)>>(std::move(respond));
  if (!take_update(parsed.value, update_id, [shared](bool committed) {
        // Not committed: 500, and Telegram delivers it again.
        (*shared)(committed ? 200 : 500, committed ? R"({"ok":true})" : R"({"ok":false})");
      })) {
    (*shared)(200, R"({"ok":true})");  // ignored on purpose: not wanted again
  }
}

void TelegramChannel::batch_done() {
  if (batch_waiting_ == 0 || --batch_waiting_ > 0) return;
  if (batch_failed_) {
    // Nothing confirmed: Telegram delivers the batch again; the inbox drops what it has.
    return retry_later(kFirstBackoff);
  }
  if (batch_next_ > offset_) {
    offset_ = batch_next_;  // the next poll confirms the batch to Telegram
    // Saved too (after the inbox commit, so it never passes an update not in the inbox): a
    // restart starts from it. Polling does not wait for it: the inbox drops what a lost save
    // lets Telegram deliver again.
    ++saves_waiting_;
    pipeline_.save_cursor(
        "telegram." + options_.bot_id(), std::to_string(offset_),
        [this, alive = alive_](const std::string& err) {
          if (!*alive) return;
          --saves_waiting_;
          if (err.rfind(pipeline::Pipeline::kFenced, 0) == 0) {
            on_fenced(err);
          } else if (!err.empty()) {
            spdlog::warn("channel {}: update offset not saved: {}", id_, err);
          }
          if (!running_) end_stop();
        },
        cursor_fence());
  }
  if (!running_) return end_stop();
  poll();
}

void TelegramChannel::retry_later(std::chrono::milliseconds delay) {
  if (!running_) return end_stop();
  if (retry_timer_) executor_.cancel(*retry_timer_);
  retry_timer_ = executor_.schedule(delay, [this, alive = alive_] {
    if (!*alive) return;
    retry_timer_.reset();
    poll();
  });
}

void TelegramChannel::stop(std::function<void()> done) {
  for (auto& [chat, t] : typing_) {
    if (t.timer) executor_.cancel(*t.timer);
  }
  typing_.clear();
  running_ = false;
  ready_ = false;
  stop_done_ = std::move(done);
  if (retry_timer_) {
    executor_.cancel(*retry_timer_);
    retry_timer_.reset();
  }
  // Rate-limited sends not yet made go back to the reply delivery (it tries again, through
  // whichever channel then has this id).
  auto delayed = std::move(delayed_);
  delayed_.clear();
  for (auto& [n, d] : delayed) {
    executor_.cancel(d.timer);
    executor_.post([done = std::move(d.done)] {
      done(pipeline::SendStatus::retry, "the channel stopped before sending");
    });
  }
  if (polling_) {
    // Only the poll: a sendMessage under way ends by itself, so it is neither cut off after
    // Telegram got it (and sent again) nor left without its answer.
    api_.cancel(poll_call_);  // its handler runs with `cancelled` and ends the stop
    return;
  }
  end_stop();
}

void TelegramChannel::end_stop() {
  if (polling_ || claiming_ || batch_waiting_ > 0 || saves_waiting_ > 0 || sends_in_flight_ > 0 ||
      !stop_done_) {
    return;
  }
  auto done = std::move(stop_done_);
  stop_done_ = nullptr;
  stopped_ = true;
  lock_.reset();  // the next poller (a reload's, a successor's) may take it now
  release_lease();  // and another replica at once (a hand-over, not an expiry)
  executor_.post([done = std::move(done)] { done(); });
}

bool TelegramChannel::allowed(const json& message, std::string& out, std::string& why) const {
  auto text = message.find("text");
  if (text == message.end() || !text->is_string() || text->get<std::string>().empty()) {
    why = "not a text message";
    return false;
  }
  auto chat = message.find("chat");
  if (chat == message.end() || !chat->is_object() || id_text(chat->value("id", json())).empty()) {
    why = "no chat";
    return false;
  }
  const std::string chat_id = id_text(chat->value("id", json()));
  auto from = message.find("from");
  const std::string sender =
      from != message.end() && from->is_object() ? id_text(from->value("id", json())) : "";
  out = text->get<std::string>();
  // "/cmd@thisbot" is "/cmd"; a mention of the bot is taken out of the text.
  const bool mentioned = strip_mention(out, username_);
  out = trim(out);
  const std::string type = chat->value("type", "");
  if (type == "private") {
    if (options_.dm_policy == "disabled") {
      why = "dmPolicy is \"disabled\"";
      return false;
    }
    if (options_.dm_policy == "allowlist" && !options_.allow_from.count(sender)) {
      why = "sender " + sender + " is not in allowFrom";
      return false;
    }
  } else if (type == "group" || type == "supergroup") {
    if (options_.group_policy == "disabled") {
      why = "groupPolicy is \"disabled\"";
      return false;
    }
    auto g = options_.groups.find(chat_id);
    if (g == options_.groups.end()) g = options_.groups.find("*");
    if (options_.group_policy == "allowlist" && g == options_.groups.end()) {
      why = "group " + chat_id + " is not in groups (groupPolicy \"allowlist\")";
      return false;
    }
    if (!options_.group_allow_from.empty() && !options_.group_allow_from.count(sender) &&
        !options_.allow_from.count(sender)) {
      why = "sender " + sender + " is not in groupAllowFrom";
      return false;
    }
    const bool require = g == options_.groups.end() || g->second.require_mention;
    bool addressed = mentioned || (!out.empty() && out[0] == '/');
    if (auto reply = message.find("reply_to_message");
        reply != message.end() && reply->is_object() && bot_user_id_ != 0) {
      const auto rf = reply->find("from");
      addressed = addressed || (rf != reply->end() && rf->is_object() &&
                                rf->value("id", json()).is_number_integer() &&
                                rf->at("id").get<std::int64_t>() == bot_user_id_);
    }
    if (require && !addressed) {
      why = "not addressed to the bot (groups requireMention)";
      return false;
    }
  } else {
    why = "a " + (type.empty() ? std::string("chat") : type) + " is not answered";
    return false;
  }
  if (out.empty()) {
    why = "nothing but the mention";
    return false;
  }
  if ((out == "/restart" || out == "/stop") && !options_.allow_from.count(sender) &&
      !options_.group_allow_from.count(sender)) {
    why = out + " from sender " + sender + ", who is not in allowFrom";
    return false;
  }
  return true;
}

}  // namespace drawbridge::channels
