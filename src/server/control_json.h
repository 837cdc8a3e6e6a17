#pragma once

#include <nlohmann/json.hpp>

#include "server/control.h"

namespace drawbridge::server {

// The control plane's typed results written as OpenClaw's wire payloads: the only place that
// knows their JSON shape.
nlohmann::json to_json(const RestartAnswer& a);
nlohmann::json to_json(const StopAnswer& a);
nlohmann::json to_json(const HealthReport& h);
nlohmann::json to_json(const StatusReport& s);
nlohmann::json to_json(const ReloadReport& r);
nlohmann::json to_json(const ConfigWriteDone& d);
nlohmann::json to_json(const ConfigSnapshot& c);
nlohmann::json to_json(const LogTail& t);     // LogsTailResult
nlohmann::json to_json(const SystemInfo& s);  // SystemInfoResult

}  // namespace drawbridge::server
