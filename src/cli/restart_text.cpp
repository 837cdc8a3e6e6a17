#include "cli/restart_text.h"

namespace drawbridge::cli {

using nlohmann::json;

std::string text_of(const json& o, const char* key, const std::string& otherwise) {
  const auto it = o.find(key);
  if (it == o.end() || it->is_null()) return otherwise;
  return it->is_string() ? it->get<std::string>() : it->dump();
}

std::string describe_restart(const json& r) {
  const std::string status = r.value("status", "");
  const std::string cycle = " (cycle " + text_of(r, "cycle") + ")";
  const std::string note = text_of(r, "note", "");
  if (status == "scheduled") {
    return "restart scheduled in " + text_of(r, "dueInMs") + " ms" + cycle +
           (note.empty() ? "" : "; " + note);
  }
  if (status == "coalesced") return "restart coalesced with the one scheduled" + cycle;
  if (status == "ignored") {
    return "restart ignored: " + (note.empty() ? "already restarting" : note);
  }
  if (status == "shortened") return "restart under way, shortened: " + note + cycle;
  return "restart " + status + cycle + (note.empty() ? "" : "; " + note);
}

}  // namespace drawbridge::cli
