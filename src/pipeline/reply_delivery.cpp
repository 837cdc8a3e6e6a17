#include "pipeline/reply_delivery.h"

#include <algorithm>

#include <spdlog/spdlog.h>

namespace drawbridge::pipeline {

namespace {

// Length of the longest prefix of `s` (at most `max` bytes) that does not cut a UTF-8
// sequence in two.
std::size_t utf8_prefix(std::string_view s, std::size_t max) {
  if (s.size() <= max) return s.size();
  std::size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return n == 0 ? max : n;
}

}  // namespace

void ReplyDelivery::reset() {
  *alive_ = false;
  alive_ = std::make_shared<bool>(true);
  replies_.clear();
  rows_.clear();
  for (const auto& [key, timer] : retrying_) executor_.cancel(timer);
  retrying_.clear();
  handing_over_ = false;
}

void ReplyDelivery::set_handing_over(bool on) {
  handing_over_ = on;
  if (!on) return;
  auto waiting = std::exchange(retrying_, {});
  for (const auto& [key, timer] : waiting) {
    executor_.cancel(timer);
    hand_over(key, "a retry was due");
  }
}

void ReplyDelivery::hand_over(const std::string& key, const std::string& why) {
  std::erase_if(rows_, [&](const auto& entry) { return entry.second.key == key; });
  const std::size_t parts = replies_.abandon(key);
  spdlog::warn("reply {} not sent now ({}): {} part(s) left to the next start (kept in the outbox)",
               key, why, parts);
}

void ReplyDelivery::dispatch(std::vector<store::OutboxRecord> rows,
                             std::optional<ReservationId> reservation, bool marked_sent) {
  std::erase_if(rows, [](const auto& r) { return r.state != store::OutboxState::pending; });
  if (rows.empty()) {
    if (reservation) replies_.release(*reservation);
    return;
  }
  const std::string key =
      rows.front().inbound_id ? std::to_string(rows.front().inbound_id) : rows.front().idem_key;
  std::vector<core::ReplyDispatcher::Part> parts;
  parts.reserve(rows.size());
  for (auto& row : rows) {
    parts.push_back({row.id, row.part});
    rows_[row.id] = Row{std::move(row), marked_sent, key};
  }
  if (auto first = replies_.enqueue(key, std::move(parts), reservation)) {
    send_part(key, *first, options_.retry_initial);
  }
}

void ReplyDelivery::settle(const std::string& key, std::int64_t id) {
  rows_.erase(id);
  if (auto next = replies_.settled(key, id)) send_part(key, *next, options_.retry_initial);
}

void ReplyDelivery::publish_final(const store::OutboxRecord& row) {
  ChatEvent ev;
  ev.state = ChatEvent::State::final;
  ev.run_id = row.run_id;
  ev.session_key = row.session_key;
  ev.text = row.text;
  ev.message_id = row.idem_key;
  ev.final_part = row.final_part || row.inbound_id == 0;
  publish_(std::move(ev));
}

void ReplyDelivery::send_part(const std::string& key, core::ReplyDispatcher::Part part,
                              core::Duration delay) {
  auto it = rows_.find(part.id);
  if (it == rows_.end()) return;
  const store::OutboxRecord& row = it->second.record;
  auto route = routes_.find(row.channel);
  if (route == routes_.end()) {
    spdlog::error("reply {} for channel {} dropped: the channel is not configured", row.idem_key,
                  row.channel);
    settle(key, part.id);
    return;
  }
  OutboundPart p{row.id,      row.idem_key, row.inbound_id,  row.part,   row.final_part,
                 row.channel, row.chat_id,  row.session_key, row.run_id, row.text};
  route->second.channel->send(p, [this, alive = alive_, key, part, delay](SendStatus st,
                                                                          std::string err) {
    if (!*alive) return;
    auto it = rows_.find(part.id);
    if (it == rows_.end()) return;
    const auto idem_key = it->second.record.idem_key;
    try {
      switch (st) {
        case SendStatus::sent:
          // If this write is lost to a crash the part is sent again at the next start: the
          // documented window of a duplicate. A part staged as sent has no such write.
          if (!it->second.marked_sent) {
            record_sent(part.id, clock_.wall_ms(), options_.retry_initial, std::nullopt);
          }
          ++metrics_.replies_sent;
          publish_final(it->second.record);
          settle(key, part.id);
          return;
        case SendStatus::retry: {
          if (handing_over_) {
            hand_over(key, err);  // a drain runs: not retried in this generation
            return;
          }
          auto next = std::min(delay * 2, options_.retry_max);
          spdlog::warn("reply {} not sent ({}), retrying in {} ms", idem_key, err, delay.count());
          retrying_[key] = executor_.schedule(delay, [this, alive, key, part, next] {
            if (!*alive) return;
            retrying_.erase(key);
            send_part(key, part, next);
          });
          return;
        }
        case SendStatus::failed:
          round_.write([id = part.id, now = clock_.wall_ms()](store::Store& s) {
            s.mark_failed(id, now);
          });
          ++metrics_.reply_send_failures;
          spdlog::error("reply {} could not be delivered: {}", idem_key, err);
          settle(key, part.id);
          return;
      }
    } catch (const std::exception& e) {
      spdlog::error("reply {}: cannot record delivery: {}", idem_key, e.what());
      ++metrics_.errors_total;
      settle(key, part.id);
    }
  });
}

void ReplyDelivery::send_notice(const std::string& id, const std::string& channel,
                                const std::string& chat_id, const std::string& session_key,
                                const std::string& text,
                                std::function<void(std::string error)> done) {
  auto route = routes_.find(channel);
  if (route == routes_.end()) {
    done("channel " + channel + " is not configured");
    return;
  }
  OutboundPart p;
  p.idem_key = "notice:" + id;
  p.final_part = true;
  p.channel = channel;
  p.chat_id = chat_id;
  p.session_key = session_key;
  p.run_id = p.idem_key;
  p.text = text;
  route->second.channel->send(p, [this, alive = alive_, p, done = std::move(done)](
                                     SendStatus st, std::string err) {
    if (!*alive) return;
    if (st == SendStatus::sent) {
      store::OutboxRecord row;
      row.idem_key = p.idem_key;
      row.final_part = true;
      row.session_key = p.session_key;
      row.run_id = p.run_id;
      row.text = p.text;
      publish_final(row);
    }
    done(st == SendStatus::sent ? std::string() : (err.empty() ? "not sent" : err));
  });
}

void ReplyDelivery::record_sent(std::int64_t outbox_id, std::int64_t now_ms,
                                core::Duration retry_delay, std::optional<ReservationId> held) {
  round_.write([outbox_id, now_ms](store::Store& s) { s.mark_sent(outbox_id, now_ms); });
  round_.after_commit([this, alive = alive_, outbox_id, now_ms, retry_delay,
                       held](const std::string& error) {
    if (!*alive) return;
    if (error.empty()) {
      if (held) replies_.release(*held);
      return;
    }
    // The part was delivered: left pending, the next start would send it a second time. Write
    // it again, backing off, and hold "deliveries idle" meanwhile so a drain waits for it.
    const auto hold = held ? *held : replies_.reserve("sent:" + std::to_string(outbox_id));
    spdlog::warn("outbox {} was delivered but not recorded as sent; again in {} ms", outbox_id,
                 retry_delay.count());
    executor_.schedule(retry_delay, [this, alive, outbox_id, now_ms, hold,
                                     next = std::min(retry_delay * 2, options_.retry_max)] {
      if (*alive) record_sent(outbox_id, now_ms, next, hold);
    });
  });
}

std::vector<std::string> ReplyDelivery::split(const std::string& text, int max_chars) {
  std::vector<std::string> parts;
  if (text.empty()) return parts;
  if (max_chars <= 0 || text.size() <= static_cast<std::size_t>(max_chars)) {
    parts.push_back(text);
    return parts;
  }
  std::string_view rest = text;
  const auto max = static_cast<std::size_t>(max_chars);
  while (!rest.empty()) {
    std::size_t n = utf8_prefix(rest, max);
    if (n < rest.size()) {
      // Prefer to break after a newline, then after a space, in the second half of the chunk.
      auto nl = rest.substr(0, n).rfind('\n');
      auto sp = rest.substr(0, n).rfind(' ');
      if (nl != std::string_view::npos && nl >= n / 2) {
        n = nl + 1;
      } else if (sp != std::string_view::npos && sp >= n / 2) {
        n = sp + 1;
      }
    }
    parts.emplace_back(rest.substr(0, n));
    rest.remove_prefix(n);
  }
  return parts;
}

}  // namespace drawbridge::pipeline
