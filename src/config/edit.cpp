#include "config/edit.h"

#include <cstdio>
#include <ctime>

#include "config/document.h"

namespace drawbridge::config {

EditPlan plan_edit(const EditRequest& request) {
  EditPlan plan;
  nlohmann::json next =
      request.whole ? request.change : merge_patch(request.current, request.change);
  if (!next.is_object()) {
    plan.errors.push_back({"", "", "the resulting config is not an object"});
    return plan;
  }
  // A document read back from config.get carries placeholders for the secrets.
  auto restored = restore_redacted(next, request.current);
  plan.errors = std::move(restored.errors);
  plan.dropped_placeholders = std::move(restored.dropped);
  if (!plan.errors.empty()) return plan;
  if (request.file_exists && without_meta(next) == without_meta(request.current)) {
    plan.unchanged = true;
    return plan;
  }
  next["meta"]["lastTouchedAt"] = request.touched_at;
  next["meta"]["lastTouchedVersion"] = request.touched_version;
  plan.text = serialize(next);
  plan.document = std::move(next);
  return plan;
}

// `meta` is bookkeeping (lastTouchedAt, ...): a write that changes only it is no change.
nlohmann::json without_meta(nlohmann::json doc) {
  if (doc.is_object()) doc.erase("meta");
  return doc;
}

std::string iso_timestamp(std::chrono::system_clock::time_point when) {
  const auto t = std::chrono::system_clock::to_time_t(when);
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(when.time_since_epoch()).count() %
      1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03lldZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<long long>(ms));
  return buf;
}

}  // namespace drawbridge::config
