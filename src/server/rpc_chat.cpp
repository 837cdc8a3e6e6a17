#include "server/rpc_chat.h"

#include <limits>

#include "server/rpc_errors.h"

namespace drawbridge::server {

namespace {
// OpenClaw's ChatHistoryParams.inputRunIds: at most 50.
constexpr std::size_t kMaxInputRunIds = 50;
}  // namespace

nlohmann::json transcript_message(const pipeline::TranscriptMessage& e) {
  nlohmann::json m = {{"role", e.role},
                      {"content", nlohmann::json::array({{{"type", "text"}, {"text", e.text}}})},
                      {"timestamp", e.created_at_ms},
                      {"__openclaw", {{"id", std::to_string(e.id)}, {"seq", e.id}}}};
  if (!e.run_id.empty()) {
    m["__openclaw"]["runId"] = e.run_id;
    if (e.role == "user") m["__openclaw"]["idempotencyKey"] = e.run_id;
  }
  if (e.interrupted) {
    // pi-ai's AssistantMessage fields, which OpenClaw's clients read: a reply cut short.
    m["stopReason"] = "aborted";
    m["errorMessage"] = "interrupted: the reply was cut short";
  }
  return m;
}

void ChatMethods::install(RpcMethods& rpc) {
  rpc.add("chat.history", scope::read,
          [this](const Caller& c, const nlohmann::json& p) { return chat_history(c, p); });
  // The dashboard opens a session with chat.startup {sessionKey, limit, maxBytes}: OpenClaw
  // answers it with its history handler, and so does drawbridge.
  rpc.add("chat.startup", scope::read,
          [this](const Caller& c, const nlohmann::json& p) { return chat_history(c, p); });
  rpc.add_async("chat.send", scope::write,
                [this](const Caller& c, const nlohmann::json& p, Respond r) {
                  chat_send(c, p, std::move(r));
                });
  rpc.add("chat.abort", scope::write,
          [this](const Caller&, const nlohmann::json& p) { return chat_abort(p); });
  rpc.add_async("send", scope::write, [this](const Caller&, const nlohmann::json& p, Respond r) {
    send(p, std::move(r));
  });
  rpc.add(
      "sessions.messages.subscribe", scope::read,
      [this](const Caller& c, const nlohmann::json& p) { return messages_subscribe(c, p, true); });
  rpc.add(
      "sessions.messages.unsubscribe", scope::read,
      [this](const Caller& c, const nlohmann::json& p) { return messages_subscribe(c, p, false); });
}

void ChatMethods::chat_send(const Caller& caller, const nlohmann::json& params, Respond respond) {
  Params p(params);
  std::string err;
  auto session = p.string("sessionKey", true, true, err);
  auto message = err.empty() ? p.string("message", true, false, err) : std::nullopt;
  auto key = err.empty() ? p.string("idempotencyKey", true, true, err) : std::nullopt;
  if (!err.empty()) return respond(invalid(err));
  if (auto why = check_sizes(*session, *key, caller.client_id, *message, limits_.max_message_bytes,
                             "params")) {
    return respond(invalid(*why));
  }

  const auto m = pipeline::local_chat_message(
      {local_channel_, *session, caller.client_id, *message, *key, /*key_is_run_id=*/true});
  // Subscribe first: the first delta may follow the ack immediately.
  if (caller.subscribe) caller.subscribe(*session);
  auto on_accepted = [respond](const pipeline::AcceptResult& res) {
    if (!res.error.empty()) {
      return respond(store_unavailable(std::runtime_error(res.error)));
    }
    // Duplicates answer like OpenClaw's dedupe: in_flight while it runs, then its outcome.
    std::string status = res.status;
    if (res.duplicate) {
      if (status == "queued" || status == "in_flight")
        status = "in_flight";
      else if (status == "done")
        status = "ok";
      else if (status == "aborted")
        status = "timeout";
      else if (status == "failed")
        status = "error";
    }
    nlohmann::json out = {{"runId", res.run_id}, {"status", status}};
    if (res.duplicate && status == "timeout") out["summary"] = "aborted";
    if (!res.reason.empty()) out["reason"] = res.reason;
    respond(out);
  };
  try {
    pipeline_.accept(m, on_accepted);
  } catch (const std::invalid_argument& e) {
    respond(RpcError{std::string(error_code::unavailable), e.what(), nullptr, false, {}});
  }
}

RpcOutcome ChatMethods::chat_history(const Caller& caller, const nlohmann::json& params) {
  Params p(params);
  std::string err;
  auto session = p.string("sessionKey", true, true, err);
  auto limit = err.empty() ? p.integer("limit", 1, 1000, err) : std::nullopt;
  auto before = err.empty() ? p.integer("before", 1, std::numeric_limits<std::int64_t>::max(), err)
                            : std::nullopt;
  if (!err.empty()) return invalid(err);
  if (auto why = check_sizes(*session, "", "", "", 0, "params")) return invalid(*why);
  if (caller.subscribe) caller.subscribe(*session);
  try {
    nlohmann::json messages = nlohmann::json::array();
    // Paged and capped by bytes: a long session never makes one answer larger than
    // gateway.limits.maxHistoryBytes (older entries: `before` = nextBefore).
    auto page = pipeline_.history_page(*session, limit.value_or(200), limits_.max_history_bytes,
                                       before.value_or(0));
    for (const auto& e : page.messages) messages.push_back(transcript_message(e));
    const bool more = page.more && !page.messages.empty();
    const std::int64_t next_before = more ? page.messages.front().id : 0;
    nlohmann::json active = nlohmann::json::array();
    for (const auto& r : pipeline_.active_runs()) {
      if (r.session_key == *session) active.push_back(r.run_id);
    }
    nlohmann::json info = {{"sessionKey", *session}, {"hasActiveRun", !active.empty()}};
    if (!active.empty()) {
      info["activeRunIds"] = active;
      info["status"] = "running";
    }
    nlohmann::json out = {{"sessionKey", *session},
                          {"sessionId", *session},
                          {"messages", std::move(messages)},
                          {"sessionInfo", std::move(info)}};
    if (more) {
      out["hasMore"] = true;
      out["nextBefore"] = next_before;
    }
    // The dashboard asks, after a send or a reload, whether the runs it started were taken:
    // without an answer it shows "Delivery unconfirmed" under the message.
    if (auto ids = params.find("inputRunIds"); ids != params.end() && ids->is_array()) {
      nlohmann::json receipts = nlohmann::json::array();
      std::size_t asked = 0;
      for (const auto& id : *ids) {
        if (!id.is_string() || id.get_ref<const std::string&>().empty()) continue;
        if (++asked > kMaxInputRunIds) break;
        const auto& run_id = id.get_ref<const std::string&>();
        if (run_id.size() > kMaxSessionKey) continue;
        auto r = pipeline_.input_receipt(local_channel_, run_id);
        if (!r || r->session_key != *session) continue;
        const bool consumed = r->consumed;
        nlohmann::json entry = {{"runId", run_id}, {"state", consumed ? "consumed" : "pending"}};
        if (consumed && r->transcript_id > 0) {
          entry["consumedByEventId"] = std::to_string(r->transcript_id);
        }
        receipts.push_back(std::move(entry));
      }
      out["inputReceipts"] = std::move(receipts);
    }
    return out;
  } catch (const std::exception& e) {
    return store_unavailable(e);
  }
}

RpcOutcome ChatMethods::chat_abort(const nlohmann::json& params) {
  Params p(params);
  std::string err;
  auto session = p.string("sessionKey", true, true, err);
  auto run_id = err.empty() ? p.string("runId", false, true, err) : std::nullopt;
  if (!err.empty()) return invalid(err);
  try {
    const bool elsewhere = pipeline_.runs_elsewhere(*session);
    auto aborted = pipeline_.abort(*session, run_id.value_or(""));
    nlohmann::json out{{"ok", true}, {"aborted", !aborted.empty()}, {"runIds", aborted}};
    // Another replica runs the session: the abort went to it (its `aborted` event follows).
    if (elsewhere) out["passedOn"] = true;
    return out;
  } catch (const std::exception& e) {
    return store_unavailable(e);
  }
}

void ChatMethods::send(const nlohmann::json& params, Respond respond) {
  Params p(params);
  std::string err;
  auto to = p.string("to", true, true, err);
  auto key = err.empty() ? p.string("idempotencyKey", true, true, err) : std::nullopt;
  auto message = err.empty() ? p.string("message", false, false, err) : std::nullopt;
  auto channel = err.empty() ? p.string("channel", false, true, err) : std::nullopt;
  auto session = err.empty() ? p.string("sessionKey", false, false, err) : std::nullopt;
  if (!err.empty()) return respond(invalid(err));
  if (!message || message->empty()) {
    return respond(invalid("params.message: required (text to send)"));
  }
  if (auto why = check_sizes(session.value_or(""), *key, "", *message, limits_.max_message_bytes,
                             "params")) {
    return respond(invalid(*why));
  }
  if (to->size() > kMaxSessionKey) {
    return respond(invalid("params.to: longer than " + std::to_string(kMaxSessionKey) + " bytes"));
  }
  pipeline::SendRequest req{channel.value_or(local_channel_), *to, *message, *key,
                            session.value_or("")};
  if (!pipeline_.has_channel(req.channel)) {
    return respond(RpcError{std::string(error_code::invalid_request),
                            "params.channel: channel \"" + req.channel + "\" is not configured",
                            nullptr,
                            {},
                            {}});
  }
  pipeline_.send(
      req, [respond, key = *key, channel = req.channel, to = *to](const pipeline::SendResult& res) {
        if (!res.error.empty()) return respond(store_unavailable(std::runtime_error(res.error)));
        nlohmann::json out = {
            {"runId", key}, {"messageId", res.message_id}, {"channel", channel}, {"chatId", to}};
        if (res.duplicate) out["duplicate"] = true;
        respond(out);
      });
}

RpcOutcome ChatMethods::messages_subscribe(const Caller& caller, const nlohmann::json& params,
                                           bool on) {
  Params p(params);
  std::string err;
  auto key = p.string("key", true, true, err);
  if (!err.empty()) return invalid(err);
  if (auto why = check_sizes(*key, "", "", "", 0, "params")) return invalid(*why);
  if (caller.subscribe_messages) caller.subscribe_messages(*key, on);
  // The chat events of the session too: a page that opened it sees its runs stream.
  if (on && caller.subscribe) caller.subscribe(*key);
  return nlohmann::json{{"subscribed", on}, {"key", *key}};
}

}  // namespace drawbridge::server
