#pragma once

// OpenClaw's Control UI (its web dashboard) served from a folder on the gateway's own origin:
// which file, or which refusal, answers one request. No sockets here; the HTTP session writes
// the answer. Every byte of the request target is hostile until checked; nothing outside the
// folder (after resolving symlinks) is ever read.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace drawbridge::server {

struct ControlUiSettings {
  std::string root;  // the folder holding index.html; empty: the UI is not served
  std::string assistant_name = "drawbridge";
  std::string server_version;
  // A file larger than this is refused rather than read into memory (the UI's largest asset
  // is a few MB).
  std::uint64_t max_file_bytes = 32 * 1024 * 1024;
};

struct StaticRequest {
  std::string_view method;  // "GET", "HEAD", ...
  std::string_view target;  // as received: path, query
  std::string_view accept;  // the Accept header: a browser's navigation asks for text/html
  std::string_view accept_encoding;
};

struct StaticResponse {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;  // without Content-Length
  std::string body;                                          // empty for HEAD
  std::uint64_t content_length = 0;                          // of what a GET gets, HEAD included
  // The value of the header `name` (as spelled in `headers`), or nullptr.
  const std::string* header(std::string_view name) const;
};

// The UI's answer to `request`: a file, index.html for an app route, /control-ui-config.json,
// or a refusal (404, 405, 500, 503), each with the UI's security headers. nullopt: not the UI's
// to answer (a method other than GET/HEAD on a path the UI does not serve), the caller's 404.
std::optional<StaticResponse> serve_control_ui(const ControlUiSettings& settings,
                                               const StaticRequest& request);

// The Content-Security-Policy of the UI's pages; `script_hashes` ("sha256-...") allow the
// inline scripts of index.html.
std::string control_ui_csp(const std::vector<std::string>& script_hashes = {});

}  // namespace drawbridge::server
