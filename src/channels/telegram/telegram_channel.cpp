#include "channels/telegram/telegram_channel.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>
#include <utility>

namespace drawbridge::channels {

using nlohmann::json;
using namespace std::chrono_literals;

namespace {

constexpr auto kFirstBackoff = 1000ms;
constexpr auto kMaxBackoff = 30000ms;
constexpr std::size_t kMaxTokenBytes = 256;
constexpr auto kSendTimeout = 30s;

std::string id_text(const json& v) {
  if (v.is_number_integer()) return std::to_string(v.get<std::int64_t>());
  if (v.is_string()) return v.get<std::string>();
  return {};
}

// A bot token is "<digits>:<letters, digits, - and _>"; anything else is refused rather than
// put into a URL.
bool plausible_token(const std::string& t) {
  const auto colon = t.find(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 >= t.size()) return false;
  if (t.size() > kMaxTokenBytes) return false;
  for (std::size_t i = 0; i < t.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(t[i]);
    if (i < colon && !std::isdigit(c)) return false;
    if (i > colon && !std::isalnum(c) && c != '-' && c != '_') return false;
  }
  return true;
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

std::optional<TelegramOptions> TelegramOptions::parse(
    const json& raw, std::string& error,
    const std::function<std::optional<std::string>(const std::string&)>& env) {
  TelegramOptions o;
  auto text = [&](const char* key, std::string& out) {
    if (!raw.contains(key)) return true;
    if (!raw[key].is_string()) {
      error = std::string("channels.telegram.") + key + ": expected a string";
      return false;
    }
    out = raw[key].get<std::string>();
    return true;
  };
  std::string token, token_env, token_file;
  if (!text("botToken", token) || !text("botTokenEnv", token_env) ||
      !text("tokenFile", token_file) || !text("apiRoot", o.api_root) ||
      !text("dmPolicy", o.dm_policy)) {
    return std::nullopt;
  }
  if (token.empty() && !token_env.empty()) {
    auto v = env(token_env);
    if (!v || v->empty()) {
      error = "channels.telegram.botTokenEnv: the variable " + token_env + " is not set";
      return std::nullopt;
    }
    token = *v;
  }
  if (token.empty() && !token_file.empty()) {
    std::ifstream in(token_file, std::ios::binary);
    if (!in) {
      error = "channels.telegram.tokenFile: cannot read " + token_file;
      return std::nullopt;
    }
    std::string content(kMaxTokenBytes + 2, '\0');
    in.read(content.data(), static_cast<std::streamsize>(content.size()));
    content.resize(static_cast<std::size_t>(in.gcount()));
    while (!content.empty() && std::isspace(static_cast<unsigned char>(content.back()))) {
      content.pop_back();
    }
    token = content;
  }
  if (token.empty()) {
    if (auto v = env("TELEGRAM_BOT_TOKEN")) token = *v;
  }
  if (token.empty()) {
    error =
        "channels.telegram: no bot token (botToken, botTokenEnv, tokenFile or "
        "TELEGRAM_BOT_TOKEN)";
    return std::nullopt;
  }
  if (!plausible_token(token)) {
    // The value is a secret: say what is wrong with it, never what it is.
    error = "channels.telegram: the bot token is not of the form <digits>:<letters and digits>";
    return std::nullopt;
  }
  o.token = token;
  if (auto e = telegram::BotApi::check_root(o.api_root)) {
    error = "channels.telegram.apiRoot: " + *e;
    return std::nullopt;
  }
  if (o.dm_policy == "pairing") {
    o.dm_policy = "allowlist";  // pairing codes are not implemented: only allowFrom is answered
  } else if (o.dm_policy != "open" && o.dm_policy != "allowlist" && o.dm_policy != "disabled") {
    error =
        "channels.telegram.dmPolicy: expected one of \"pairing\", \"allowlist\", \"open\", "
        "\"disabled\"";
    return std::nullopt;
  }
  if (raw.contains("allowFrom")) {
    if (!raw["allowFrom"].is_array()) {
      error = "channels.telegram.allowFrom: expected an array of user ids";
      return std::nullopt;
    }
    for (const auto& v : raw["allowFrom"]) {
      auto s = id_text(v);
      if (s.rfind("telegram:", 0) == 0) s = s.substr(9);  // OpenClaw's prefixed form
      if (s.empty()) {
        error = "channels.telegram.allowFrom: expected user ids (numbers or strings)";
        return std::nullopt;
      }
      o.allow_from.insert(s);
    }
  }
  if (raw.contains("pollTimeoutSeconds")) {
    const auto& v = raw["pollTimeoutSeconds"];
    if (!v.is_number_integer() || v.get<std::int64_t>() < 1 || v.get<std::int64_t>() > 50) {
      error = "channels.telegram.pollTimeoutSeconds: expected an integer in 1..50";
      return std::nullopt;
    }
    o.poll_timeout_s = v.get<int>();
  }
  if (raw.contains("conflictFailAfterSeconds")) {
    const auto& v = raw["conflictFailAfterSeconds"];
    if (!v.is_number_integer() || v.get<std::int64_t>() < 0 || v.get<std::int64_t>() > 86400) {
      error = "channels.telegram.conflictFailAfterSeconds: expected an integer in 0..86400";
      return std::nullopt;
    }
    o.conflict_fail_after_s = v.get<int>();
  }
  return o;
}

TelegramChannel::TelegramChannel(std::string id, TelegramOptions options,
                                 boost::asio::io_context& io, core::Executor& executor,
                                 pipeline::Pipeline& pipeline)
    : id_(std::move(id)),
      options_(std::move(options)),
      executor_(executor),
      clock_(pipeline.clock()),
      pipeline_(pipeline),
      api_(io, options_.api_root, options_.token) {}

TelegramChannel::~TelegramChannel() {
  *alive_ = false;
  if (retry_timer_) executor_.cancel(*retry_timer_);
}

void TelegramChannel::start() {
  running_ = true;
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
  if (lock_) return true;
  std::string why;
  lock_ = AccountLock::acquire("telegram-" + options_.bot_id(), why);
  if (lock_) {
    lock_error_.clear();
    return true;
  }
  lock_error_ = "bot " + options_.bot_id() + " is polled by another drawbridge on this machine: " + why;
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
  api_.call("getMe", json::object(), std::chrono::seconds(15),
            [this, alive = alive_](telegram::ApiResult r) {
              if (!*alive) return;
              polling_ = false;
              if (!running_) return end_stop();
              if (!r.ok || !r.result.is_object()) {
                auto delay = backoff_ == 0ms ? kFirstBackoff : std::min(backoff_ * 2, kMaxBackoff);
                backoff_ = delay;
                // 401/404: Telegram does not know the token; retried, but shown as failed.
                bad_token_ = r.error_code == 401 || r.error_code == 404;
                error("getMe: " + (r.description.empty() ? std::string("no bot in the answer")
                                                         : r.description));
                spdlog::error("channel {}: getMe failed ({}{}): retrying in {} ms", id_,
                              r.error_code ? std::to_string(r.error_code) + " " : std::string(),
                              last_error_, delay.count());
                return retry_later(delay);
              }
              connected_ = true;
              ready_ = true;
              bad_token_ = false;
              backoff_ = 0ms;
              if (r.result.contains("username") && r.result["username"].is_string()) {
                username_ = r.result["username"].get<std::string>().substr(0, 64);
              }
              spdlog::info("channel {}: connected as @{} (id {})", id_,
                           r.result.value("username", "?"), id_text(r.result.value("id", json())));
              poll();
            });
}

void TelegramChannel::poll() {
  if (!running_ || polling_) return;
  if (!take_lock()) {
    backoff_ = backoff_ == 0ms ? kFirstBackoff : std::min(backoff_ * 2, kMaxBackoff);
    return retry_later(backoff_);
  }
  if (!connected_) return connect();
  polling_ = true;
  json params = {{"timeout", options_.poll_timeout_s},
                 {"limit", 100},
                 {"allowed_updates", json::array({"message"})}};
  if (offset_ > 0) params["offset"] = offset_;
  const auto bound = std::chrono::seconds(options_.poll_timeout_s + 15);
  api_.call("getUpdates", params, bound, [this, alive = alive_](telegram::ApiResult r) {
    if (!*alive) return;
    polling_ = false;
    on_updates(r);
  });
}

void TelegramChannel::on_updates(const telegram::ApiResult& r) {
  if (!running_) return end_stop();
  if (!r.ok) {
    auto delay = backoff_ == 0ms ? kFirstBackoff : std::min(backoff_ * 2, kMaxBackoff);
    backoff_ = delay;
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
    const json* msg = nullptr;
    if (auto m = u.find("message"); m != u.end() && m->is_object()) msg = &*m;
    if (msg == nullptr) continue;
    std::string why;
    if (!allowed(*msg, why)) {
      spdlog::info("channel {}: update {} ignored: {}", id_, update_id, why);
      continue;
    }
    // allowed() checked the shape: a text, a chat with an id.
    const json& chat = msg->at("chat");
    const auto from = msg->find("from");
    pipeline::InboundMessage in;
    in.channel = id_;
    in.external_id = std::to_string(update_id);
    in.chat_id = id_text(chat.value("id", json()));
    in.session_key = id_ + ":" + in.chat_id;
    in.sender = from != msg->end() && from->is_object() ? id_text(from->value("id", json())) : "";
    in.text = msg->at("text").get<std::string>();
    ++batch_waiting_;
    try {
      pipeline_.accept(in, [this, alive = alive_, update_id](pipeline::AcceptResult res) {
        if (!*alive) return;
        if (!res.error.empty()) {
          spdlog::error("channel {}: update {} not journaled ({}): it is asked for again", id_,
                        update_id, res.error);
          batch_failed_ = true;
        }
        batch_done();
      });
    } catch (const std::exception& e) {
      spdlog::error("channel {}: update {} refused: {}", id_, update_id, e.what());
      --batch_waiting_;
    }
  }
  batch_done();
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
    pipeline_.save_cursor("telegram." + options_.bot_id(), std::to_string(offset_),
                          [this, alive = alive_](const std::string& err) {
                            if (!*alive) return;
                            --saves_waiting_;
                            if (!err.empty()) {
                              spdlog::warn("channel {}: update offset not saved: {}", id_, err);
                            }
                            if (!running_) end_stop();
                          });
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
  running_ = false;
  ready_ = false;
  stop_done_ = std::move(done);
  if (retry_timer_) {
    executor_.cancel(*retry_timer_);
    retry_timer_.reset();
  }
  if (polling_) {
    api_.cancel_all();  // the poll's handler runs with `cancelled` and ends the stop
    return;
  }
  end_stop();
}

void TelegramChannel::end_stop() {
  if (polling_ || batch_waiting_ > 0 || saves_waiting_ > 0 || !stop_done_) return;
  auto done = std::move(stop_done_);
  stop_done_ = nullptr;
  lock_.reset();  // the next poller (a reload's, a successor's) may take it now
  executor_.post([done = std::move(done)] { done(); });
}

bool TelegramChannel::allowed(const json& message, std::string& why) const {
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
  if (chat->value("type", "") != "private") {
    why = "group chats are not answered yet";
    return false;
  }
  auto from = message.find("from");
  const std::string sender =
      from != message.end() && from->is_object() ? id_text(from->value("id", json())) : "";
  if (options_.dm_policy == "disabled") {
    why = "dmPolicy is \"disabled\"";
    return false;
  }
  if (options_.dm_policy == "allowlist" && !options_.allow_from.count(sender)) {
    why = "sender " + sender + " is not in allowFrom";
    return false;
  }
  return true;
}

void TelegramChannel::send(const pipeline::OutboundPart& part,
                           std::function<void(pipeline::SendStatus, std::string)> done) {
  // A numeric chat id goes as a number (Telegram takes both; "@name" only as text).
  json chat_id = part.chat_id;
  const std::size_t sign = !part.chat_id.empty() && part.chat_id[0] == '-' ? 1 : 0;
  if (part.chat_id.size() > sign && part.chat_id.size() < 20 &&
      std::all_of(part.chat_id.begin() + static_cast<std::ptrdiff_t>(sign), part.chat_id.end(),
                  [](unsigned char c) { return std::isdigit(c); })) {
    chat_id = std::stoll(part.chat_id);
  }
  json params = {{"chat_id", chat_id}, {"text", part.text}};
  api_.call("sendMessage", params, kSendTimeout, [done = std::move(done)](telegram::ApiResult r) {
    using pipeline::SendStatus;
    if (r.ok) return done(SendStatus::sent, {});
    const std::string why =
        (r.error_code ? std::to_string(r.error_code) + " " : std::string()) + r.description;
    if (r.cancelled) return done(SendStatus::retry, why);
    if (r.maybe_done && r.http_status == 0) {
      // Written, never answered: it may have been delivered. Not sent twice.
      return done(SendStatus::failed, why + " (may have been delivered)");
    }
    if (r.error_code == 429 || r.error_code >= 500 || r.http_status == 0) {
      return done(SendStatus::retry, why);
    }
    done(SendStatus::failed, why);  // 400 too long, 403 blocked: not retried
  });
}

}  // namespace drawbridge::channels
