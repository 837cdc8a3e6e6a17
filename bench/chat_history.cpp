// See chat_history.h.

#include "chat_history.h"

#include <algorithm>
#include <unordered_set>

namespace bench_history {

using nlohmann::json;

namespace {

std::string text_of(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) return {};
  if (it->is_string()) return it->get<std::string>();
  if (it->is_number()) return it->dump();
  return {};
}

}  // namespace

Entry parse_entry(const json& e) {
  Entry out;
  if (!e.is_object()) return out;
  out.role = text_of(e, "role");
  if (auto oc = e.find("__openclaw"); oc != e.end() && oc->is_object()) {
    out.id = text_of(*oc, "id");
    out.run_id = text_of(*oc, "runId");
    out.idem_key = text_of(*oc, "idempotencyKey");
  }
  return out;
}

std::vector<Attribution> attribute(const std::vector<Entry>& entries,
                                   const std::function<bool(const std::string&)>& known) {
  static constexpr std::string_view kUserSuffix = ":user";
  std::vector<Attribution> out(entries.size());
  std::string last_user;  // the key of the closest user entry so far
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const Entry& e = entries[i];
    if (e.role == "user") {
      std::string key;
      if (!e.run_id.empty() && known(e.run_id)) {
        key = e.run_id;
      } else if (e.idem_key.size() > kUserSuffix.size() && e.idem_key.ends_with(kUserSuffix)) {
        std::string k = e.idem_key.substr(0, e.idem_key.size() - kUserSuffix.size());
        if (known(k)) key = std::move(k);
      } else if (!e.idem_key.empty() && known(e.idem_key)) {
        key = e.idem_key;
      }
      out[i].key = key;
      last_user = key;
      continue;
    }
    if (e.role != "assistant") continue;
    if (!e.run_id.empty() && known(e.run_id)) {
      out[i].key = e.run_id;
    } else if (!last_user.empty() && !e.run_id.starts_with("notice:")) {
      out[i].key = last_user;
      out[i].by_position = true;
    }
  }
  return out;
}

Transcript read(bench_ws::Ws& ws, const std::string& session, bench_ws::Millis timeout) {
  Transcript t;
  std::vector<std::vector<Entry>> pages;  // newest first
  std::unordered_set<std::string> seen;
  json cursor = json::object();  // {} first; then {"before": n} or {"offset": n}
  for (bool more = true; more && t.pages < 10000;) {
    json params = {{"sessionKey", session}, {"limit", 1000}};
    params.update(cursor);
    auto r = ws.request("chat.history", params, timeout);
    if (!r) {
      t.error = "chat.history: " + ws.last_error();
      return t;
    }
    const json& p = r->value("payload", json::object());
    if (!r->value("ok", false) || !p.contains("messages") || !p["messages"].is_array()) {
      t.error = "chat.history: " + r->dump().substr(0, 240);
      return t;
    }
    ++t.pages;
    std::vector<Entry> page;
    for (const auto& m : p["messages"]) {
      Entry e = parse_entry(m);
      if (!e.id.empty() && !seen.insert(e.id).second) continue;
      page.push_back(std::move(e));
    }
    pages.push_back(std::move(page));
    more = p.value("hasMore", false);
    if (!more) break;
    if (p.contains("nextBefore") && p["nextBefore"].is_number_integer() &&
        p["nextBefore"].get<std::int64_t>() > 0) {
      cursor = {{"before", p["nextBefore"]}};
    } else if (p.contains("nextOffset") && p["nextOffset"].is_number_integer()) {
      cursor = {{"offset", p["nextOffset"]}};
    } else {
      t.truncated = true;
      more = false;
    }
  }
  for (auto it = pages.rbegin(); it != pages.rend(); ++it) {
    t.entries.insert(t.entries.end(), std::make_move_iterator(it->begin()),
                     std::make_move_iterator(it->end()));
  }
  return t;
}

}  // namespace bench_history
