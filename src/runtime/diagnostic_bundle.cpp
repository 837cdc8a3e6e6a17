#include "runtime/diagnostic_bundle.h"

#include <unistd.h>

#include <chrono>
#include <filesystem>

#include "runtime/file_modes.h"

namespace drawbridge::runtime {

namespace fs = std::filesystem;
using nlohmann::json;

std::string DiagnosticBundle::write(const std::string& data_dir, std::string& error) const {
  json recent = json::array();
  if (recent_log) {
    for (auto& line : recent_log->last_formatted()) {
      while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
      recent.push_back(line);
    }
  }
  const auto wall = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count();
  json bundle = {{"reason", reason},
                 {"pid", ::getpid()},
                 {"version", DRAWBRIDGE_VERSION},
                 {"generation", generation},
                 {"drain", drain},
                 {"blockers", drain.is_object() ? drain["waitingOn"] : json::array()},
                 {"writtenAtMs", wall},
                 {"recentLog", recent}};
  const auto dir = fs::path(data_dir) / "diagnostics";
  const auto path = dir / ("watchdog-" + std::to_string(wall) + ".json");
  auto err = make_private_dir(dir.string());
  if (!err) err = write_private_file(path.string(), bundle.dump(2) + "\n");
  if (err) error = *err;
  return path.string();
}

}  // namespace drawbridge::runtime
