// libFuzzer target: config text.
//
// The input is a config file's text: config::load_config_text (JSON with comments, the schema,
// validation, the environment overrides) and config::parse_bounded_json with the limits of
// client frames and with those of config files. Neither may crash, hang or blow up memory;
// parse_bounded_json must never throw.

#include <cstddef>
#include <cstdint>
#include <string>

#include "config/bounded_json.h"
#include "config/config.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);

  drawbridge::config::JsonLimits frame_limits;  // the defaults: client frames and bodies
  auto a = drawbridge::config::parse_bounded_json(text, frame_limits);
  (void)a;

  drawbridge::config::JsonLimits file_limits;
  file_limits.allow_comments = true;
  file_limits.reject_duplicate_keys = true;
  auto b = drawbridge::config::parse_bounded_json(text, file_limits);
  (void)b;

  // A path that is never read: it only places relative paths (store.dataDir).
  auto loaded = drawbridge::config::load_config_text("/nonexistent-fuzz/drawbridge.json", text);
  (void)loaded;
  return 0;
}
