#include "runtime/event_relay.h"

#include <charconv>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

namespace drawbridge::runtime {

using pipeline::ChatEvent;
using nlohmann::json;

namespace {

const char* state_name(ChatEvent::State s) { return pipeline::to_string(s); }

std::optional<ChatEvent::State> state_of(const std::string& s) {
  if (s == "delta") return ChatEvent::State::delta;
  if (s == "final") return ChatEvent::State::final;
  if (s == "error") return ChatEvent::State::error;
  if (s == "aborted") return ChatEvent::State::aborted;
  return std::nullopt;
}

// Reads "<digits><sep>" from the front of `s`.
bool take_number(std::string_view& s, char sep, std::uint64_t& out) {
  const auto* end = s.data() + s.size();
  auto [p, ec] = std::from_chars(s.data(), end, out);
  if (ec != std::errc() || p == s.data() || p == end || *p != sep) return false;
  s.remove_prefix(static_cast<std::size_t>(p - s.data()) + 1);
  return true;
}

// The longest prefix of `s` of at most `n` bytes that ends between UTF-8 characters.
std::size_t utf8_cut(std::string_view s, std::size_t n) {
  if (n >= s.size()) return s.size();
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return n;
}

bool is_last(const ChatEvent& ev) {
  return ev.state != ChatEvent::State::delta && ev.final_part;
}

}  // namespace

EventRelay::EventRelay(core::Executor& executor, std::string replica_id, Send send,
                       Publish publish)
    : executor_(executor),
      replica_id_(std::move(replica_id)),
      send_(std::move(send)),
      publish_(std::move(publish)) {}

EventRelay::~EventRelay() {
  *alive_ = false;
  if (timer_) executor_.cancel(*timer_);
}

std::vector<std::string> EventRelay::encode(const std::string& origin, std::uint64_t number,
                                            const ChatEvent& ev, std::size_t max_bytes) {
  json j = {{"k", state_name(ev.state)}, {"r", ev.run_id}, {"s", ev.session_key},
            {"t", ev.text},              {"m", ev.message_id}, {"e", ev.error},
            {"f", ev.final_part},        {"ts", ev.ts_ms}};
  // Replaced, not refused: a reply may carry any bytes.
  const std::string body = j.dump(-1, ' ', false, json::error_handler_t::replace);
  const std::string who = std::to_string(origin.size()) + ":" + origin;
  // Room for the header's numbers (20 digits each at most).
  const std::size_t header = 3 * 21 + who.size();
  const std::size_t room = max_bytes > header + 16 ? max_bytes - header : 16;
  std::vector<std::string_view> parts;
  std::string_view rest(body);
  while (!rest.empty()) {
    auto n = utf8_cut(rest, room);
    if (n == 0) n = std::min(rest.size(), room);  // not UTF-8 after all: cut anywhere
    parts.push_back(rest.substr(0, n));
    rest.remove_prefix(n);
  }
  std::vector<std::string> out;
  out.reserve(parts.size());
  for (std::size_t i = 0; i < parts.size(); ++i) {
    out.push_back(std::to_string(number) + " " + std::to_string(i) + " " +
                  std::to_string(parts.size()) + " " + who + std::string(parts[i]));
  }
  return out;
}

std::optional<ChatEvent> EventRelay::decode_event(const std::string& text) {
  const json j = json::parse(text, nullptr, false);
  if (!j.is_object()) return std::nullopt;
  auto str = [&](const char* key) -> std::optional<std::string> {
    auto it = j.find(key);
    if (it == j.end() || !it->is_string()) return std::nullopt;
    return it->get<std::string>();
  };
  const auto kind = str("k");
  const auto run = str("r");
  const auto session = str("s");
  if (!kind || !run || !session || run->empty()) return std::nullopt;
  const auto state = state_of(*kind);
  if (!state) return std::nullopt;
  ChatEvent ev;
  ev.state = *state;
  ev.run_id = *run;
  ev.session_key = *session;
  ev.text = str("t").value_or("");
  ev.message_id = str("m").value_or("");
  ev.error = str("e").value_or("");
  if (auto f = j.find("f"); f != j.end() && f->is_boolean()) ev.final_part = f->get<bool>();
  if (auto ts = j.find("ts"); ts != j.end() && ts->is_number_integer()) {
    ev.ts_ms = ts->get<std::int64_t>();
  }
  return ev;
}

std::string EventRelay::hello(const std::string& origin) {
  return "hello " + std::to_string(origin.size()) + ":" + origin;
}

void EventRelay::set_peers(bool peers) {
  if (peers == peers_) return;
  peers_ = peers;
  if (!peers_) pending_.clear();
  spdlog::info("cluster: {}", peers_ ? "another replica listens: chat events are relayed"
                                      : "no other replica: chat events are not relayed");
}

void EventRelay::on_chat_event(const ChatEvent& event) {
  if (delivering_) return;  // another replica's: it sent it to everyone already
  if (!peers_) return;
  if (event.state == ChatEvent::State::delta) {
    auto [it, fresh] = pending_.try_emplace(event.run_id, event);
    if (!fresh) {
      if (it->second.text.size() + event.text.size() > kMaxEventBytes) {
        flush_deltas();  // a flood of text: out now rather than held
        pending_[event.run_id] = event;
      } else {
        it->second.text += event.text;
      }
    }
    if (!timer_) {
      timer_ = executor_.schedule(kCoalesce, [this, alive = alive_] {
        if (!*alive) return;
        timer_.reset();
        flush_deltas();
      });
    }
    return;
  }
  std::vector<ChatEvent> out;
  if (auto it = pending_.find(event.run_id); it != pending_.end()) {
    out.push_back(std::move(it->second));  // its deltas come before it
    pending_.erase(it);
  }
  out.push_back(event);
  send_events(std::move(out));
}

void EventRelay::flush_deltas() {
  if (pending_.empty()) return;
  std::vector<ChatEvent> out;
  for (auto& [run, ev] : pending_) out.push_back(std::move(ev));
  pending_.clear();
  send_events(std::move(out));
}

void EventRelay::send_events(std::vector<ChatEvent> events) {
  std::vector<std::string> payloads;
  for (const auto& ev : events) {
    auto notices = encode(replica_id_, ++number_, ev);
    ++sent_;
    for (auto& n : notices) payloads.push_back(std::move(n));
  }
  if (!payloads.empty()) send_(std::move(payloads));
}

void EventRelay::on_notice(const std::string& payload) {
  std::string_view s(payload);
  if (s.substr(0, 6) == "hello ") {
    s.remove_prefix(6);
    std::uint64_t n = 0;
    if (!take_number(s, ':', n) || n != s.size()) {
      ++refused_;
      return;
    }
    if (s != replica_id_) set_peers(true);
    return;
  }
  std::uint64_t number = 0, index = 0, count = 0, who = 0;
  if (!take_number(s, ' ', number) || !take_number(s, ' ', index) ||
      !take_number(s, ' ', count) || !take_number(s, ':', who) || who > s.size() ||
      count == 0 || index >= count || count > kMaxEventBytes / 1024) {
    ++refused_;
    return;
  }
  const std::string origin(s.substr(0, who));
  if (origin == replica_id_) return;  // our own, back from the database
  s.remove_prefix(who);
  const std::string key = origin + "\n" + std::to_string(number);
  if (count == 1) {
    if (auto ev = decode_event(std::string(s))) return deliver(std::move(*ev));
    ++refused_;
    return;
  }
  auto it = assemblies_.find(key);
  if (index == 0) {
    if (it != assemblies_.end()) ++refused_;  // begun again: the old one is dropped
    while (assemblies_.size() >= kMaxAssemblies && !assembly_order_.empty()) {
      assemblies_.erase(assembly_order_.front());
      assembly_order_.pop_front();
      ++refused_;
    }
    it = assemblies_.insert_or_assign(key, Assembly{count, 0, {}}).first;
    assembly_order_.push_back(key);
  }
  if (it == assemblies_.end()) {
    ++refused_;  // its beginning was lost
    return;
  }
  auto& a = it->second;
  if (a.count != count || a.next != index || a.json.size() + s.size() > kMaxEventBytes) {
    assemblies_.erase(it);
    std::erase(assembly_order_, key);
    ++refused_;
    return;
  }
  a.json.append(s);
  ++a.next;
  if (a.next < a.count) return;
  auto ev = decode_event(a.json);
  assemblies_.erase(it);
  std::erase(assembly_order_, key);
  if (!ev) {
    ++refused_;
    return;
  }
  deliver(std::move(*ev));
}

void EventRelay::deliver(ChatEvent ev) {
  if (ev.state == ChatEvent::State::delta) {
    if (accumulated_.size() >= kMaxRuns && !accumulated_.count(ev.run_id)) {
      spdlog::warn("cluster: {} runs of other replicas stream at once: forgetting what they "
                   "streamed so far",
                   accumulated_.size());
      accumulated_.clear();
    }
    auto& acc = accumulated_[ev.run_id];
    if (acc.size() + ev.text.size() > kMaxEventBytes) acc.clear();
    acc += ev.text;
    ev.accumulated = acc;
  } else if (is_last(ev)) {
    accumulated_.erase(ev.run_id);
  }
  ++received_;
  delivering_ = true;
  struct Reset {
    bool& flag;
    ~Reset() { flag = false; }
  } reset{delivering_};
  publish_(std::move(ev));
}

}  // namespace drawbridge::runtime
