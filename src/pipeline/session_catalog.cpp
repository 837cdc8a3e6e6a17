// Pipeline: the session catalog the control plane shows and edits (sessions.*, receipts).

#include <spdlog/spdlog.h>

#include "pipeline/pipeline.h"

namespace drawbridge::pipeline {

namespace {
// Enough for a list's one-line preview; the list stays small whatever the sessions hold.
constexpr std::size_t kPreviewChars = 160;

SessionInfo info(store::SessionSummary s) {
  return {std::move(s.session_key), s.created_at_ms,    s.updated_at_ms,
          std::move(s.state),       std::move(s.label), std::move(s.last_role),
          std::move(s.last_text)};
}
}  // namespace

std::vector<SessionInfo> Pipeline::list_sessions(std::size_t limit, std::size_t offset) {
  std::vector<SessionInfo> out;
  for (auto& s : store_.list_sessions(limit, offset, kPreviewChars))
    out.push_back(info(std::move(s)));
  return out;
}

std::optional<SessionInfo> Pipeline::session_summary(const std::string& session_key) {
  auto s = store_.session_summary(session_key, kPreviewChars);
  if (!s) return std::nullopt;
  return info(std::move(*s));
}

bool Pipeline::create_session(const std::string& session_key, const std::string& label) {
  return store_.create_session(session_key, label, clock_.wall_ms());
}

bool Pipeline::label_session(const std::string& session_key, const std::string& label) {
  return store_.set_session_label(session_key, label, clock_.wall_ms());
}

bool Pipeline::reset_session(const std::string& session_key) {
  // A turn still running would answer from the old history; it ends as an abort would.
  // (On another replica's session the reset notice below ends it there.)
  auto aborted = runs_elsewhere(session_key) ? std::vector<std::string>{} : abort(session_key, "");
  const bool found = store_.reset_session(session_key, clock_.wall_ms());
  history_.forget(session_key);
  if (found && runs_elsewhere(session_key)) pass_on("reset", session_key, "");
  if (found) {
    spdlog::info("session {} reset{}", session_key,
                 aborted.empty() ? "" : " (its running turn was aborted)");
  }
  return found;
}

std::optional<InputReceipt> Pipeline::input_receipt(const std::string& channel,
                                                    const std::string& external_id) {
  auto r = store_.input_receipt(channel, external_id);
  if (!r) return std::nullopt;
  // A row stays pending while its turn runs; a turn that runs it, or its end, took it.
  bool consumed = r->state != store::InboxState::pending;
  if (auto it = running_.find(r->session_key); it != running_.end()) {
    consumed = consumed || it->second.info.run_id == external_id;
  }
  return InputReceipt{std::move(r->session_key), consumed, r->transcript_id};
}

}  // namespace drawbridge::pipeline
