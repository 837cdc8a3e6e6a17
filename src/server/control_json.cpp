#include "server/control_json.h"

namespace drawbridge::server {

using nlohmann::json;

json to_json(const RestartAnswer& a) {
  json out = {{"ok", a.ok}, {"status", a.status}};
  if (a.cycle) out["cycle"] = *a.cycle;
  if (a.due_in_ms) out["dueInMs"] = *a.due_in_ms;
  out["note"] = a.note;
  return out;
}

json to_json(const StopAnswer& a) {
  json out = {{"ok", true}, {"status", a.status}};
  if (!a.note.empty()) out["note"] = a.note;
  return out;
}

}  // namespace drawbridge::server
