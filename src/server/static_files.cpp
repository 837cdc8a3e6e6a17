#include "server/static_files.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>

namespace drawbridge::server {

namespace {

constexpr std::string_view kImmutable = "public, max-age=31536000, immutable";

struct ContentType {
  std::string_view extension;
  std::string_view type;
};

// What the UI's files are; any other extension is not served.
constexpr ContentType kContentTypes[] = {
    {"html", "text/html; charset=utf-8"},
    {"js", "application/javascript; charset=utf-8"},
    {"mjs", "application/javascript; charset=utf-8"},
    {"css", "text/css; charset=utf-8"},
    {"json", "application/json; charset=utf-8"},
    {"map", "application/json; charset=utf-8"},
    {"webmanifest", "application/manifest+json; charset=utf-8"},
    {"svg", "image/svg+xml"},
    {"png", "image/png"},
    {"ico", "image/x-icon"},
    {"gif", "image/gif"},
    {"jpg", "image/jpeg"},
    {"jpeg", "image/jpeg"},
    {"webp", "image/webp"},
    {"woff", "font/woff"},
    {"woff2", "font/woff2"},
    {"ttf", "font/ttf"},
    {"txt", "text/plain; charset=utf-8"},
    {"wasm", "application/wasm"},
};

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::optional<std::string_view> content_type_of(std::string_view file_name) {
  const auto dot = file_name.rfind('.');
  if (dot == std::string_view::npos) return std::nullopt;
  const std::string extension = lower(file_name.substr(dot + 1));
  for (const auto& t : kContentTypes) {
    if (t.extension == extension) return t.type;
  }
  return std::nullopt;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// "%2e" -> "."; nullopt for a malformed escape or a byte no file name of the UI has (controls,
// NUL, backslash), whether it came escaped or not.
std::optional<std::string> decode_path(std::string_view path) {
  std::string out;
  out.reserve(path.size());
  for (std::size_t i = 0; i < path.size(); ++i) {
    char c = path[i];
    if (c == '%') {
      if (i + 2 >= path.size()) return std::nullopt;
      const int hi = hex_value(path[i + 1]);
      const int lo = hex_value(path[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      c = static_cast<char>(hi * 16 + lo);
      i += 2;
    }
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f || c == '\\') return std::nullopt;
    out.push_back(c);
  }
  return out;
}

struct Route {
  enum class Kind { config, index, file } kind;
  std::string file;  // relative to the root, for Kind::file
};

// Where a request target leads in the UI; nullopt: nowhere (404).
std::optional<Route> route_of(std::string_view target, std::string_view accept) {
  const std::string_view path = target.substr(0, target.find_first_of("?#"));
  if (path.empty() || path.front() != '/') return std::nullopt;
  const auto decoded = decode_path(path);
  if (!decoded) return std::nullopt;
  if (*decoded == "/control-ui-config.json") return Route{Route::Kind::config, {}};
  std::vector<std::string_view> segments;
  std::string_view rest = *decoded;
  while (!rest.empty()) {
    const auto slash = rest.find('/');
    const auto segment = rest.substr(0, slash);
    // "." and ".." never, nor hidden files (an install stamp, a .git folder).
    if (!segment.empty() && segment.front() == '.') return std::nullopt;
    if (!segment.empty()) segments.push_back(segment);
    if (slash == std::string_view::npos) break;
    rest.remove_prefix(slash + 1);
  }
  // A deep link (/settings/advanced) whose page refers to its assets relatively asks for
  // /settings/assets/x.js: the assets live at the root, and without this the page is blank.
  const auto assets = std::find(segments.begin(), segments.end(), "assets");
  if (assets != segments.end() && assets + 1 != segments.end()) {
    segments.erase(segments.begin(), assets);
  }
  if (segments.empty()) return Route{Route::Kind::index, {}};
  const std::string_view last = segments.back();
  if (last.find('.') == std::string_view::npos) return Route{Route::Kind::index, {}};
  if (segments.size() == 1 && last == "index.html") return Route{Route::Kind::index, {}};
  if (!content_type_of(last)) {
    // An app route with a dot in it (a session key): a browser's navigation gets the app;
    // anything else asked for a file the UI does not have.
    if (lower(accept).find("text/html") != std::string::npos) {
      return Route{Route::Kind::index, {}};
    }
    return std::nullopt;
  }
  std::string file;
  for (const auto& s : segments) {
    if (!file.empty()) file.push_back('/');
    file.append(s);
  }
  return Route{Route::Kind::file, std::move(file)};
}

std::optional<std::string> real_path(const std::string& path) {
  char* resolved = ::realpath(path.c_str(), nullptr);
  if (resolved == nullptr) return std::nullopt;
  std::string out(resolved);
  std::free(resolved);
  return out;
}

struct Found {
  std::string path;  // resolved
  std::uint64_t size = 0;
};

// The regular file `relative` under `root` (resolved), its symlinks resolved and still inside
// the root: a link out of the folder is as absent as a missing file.
std::optional<Found> find_file(const std::string& root, const std::string& relative) {
  const auto real = real_path(root + "/" + relative);
  if (!real) return std::nullopt;
  const std::string prefix = root.ends_with('/') ? root : root + "/";
  if (!real->starts_with(prefix) || real->size() == prefix.size()) return std::nullopt;
  struct stat st {};
  if (::stat(real->c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return std::nullopt;
  return Found{*real, static_cast<std::uint64_t>(st.st_size)};
}

std::string too_large(std::uint64_t max) {
  return "larger than the " + std::to_string(max / (1024 * 1024)) + " MiB the gateway serves";
}

struct FileRead {
  std::string data;
  std::string error;  // empty: read
};

// The whole file, refused above `max` bytes. O_NONBLOCK: a FIFO swapped in after the check
// must not block the event loop in open().
FileRead read_file(const std::string& path, std::uint64_t max) {
  FileRead out;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) {
    out.error = std::string("cannot open it: ") + std::strerror(errno);
    return out;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    out.error = "not a regular file";
  } else if (static_cast<std::uint64_t>(st.st_size) > max) {
    out.error = too_large(max);
  } else {
    out.data.resize(static_cast<std::size_t>(st.st_size));
    std::size_t got = 0;
    while (got < out.data.size()) {
      const auto n = ::read(fd, out.data.data() + got, out.data.size() - got);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        out.error = std::string("cannot read it: ") + std::strerror(errno);
        break;
      }
      if (n == 0) break;  // it shrank meanwhile: what is there
      got += static_cast<std::size_t>(n);
    }
    out.data.resize(got);
  }
  ::close(fd);
  return out;
}

bool q_is_zero(std::string_view q) {
  q = trim(q);
  if (q.empty() || q.front() != '0') return false;
  q.remove_prefix(1);
  if (q.empty()) return true;
  if (q.front() != '.') return false;
  q.remove_prefix(1);
  return std::all_of(q.begin(), q.end(), [](char c) { return c == '0'; });
}

struct Codings {
  bool br = false;
  bool gzip = false;
};

// Accept-Encoding (RFC 9110 12.5.3): q=0 refuses a coding, "*" stands for those not named.
Codings accepted_codings(std::string_view header) {
  std::optional<bool> br, gzip;
  bool any = false;
  while (!header.empty()) {
    const auto comma = header.find(',');
    std::string_view item = header.substr(0, comma);
    header = comma == std::string_view::npos ? std::string_view{} : header.substr(comma + 1);
    const auto semicolon = item.find(';');
    const std::string name = lower(trim(item.substr(0, semicolon)));
    bool accepted = true;
    if (semicolon != std::string_view::npos) {
      std::string_view params = trim(item.substr(semicolon + 1));
      if (params.size() >= 2 && (params[0] == 'q' || params[0] == 'Q') && params[1] == '=') {
        accepted = !q_is_zero(params.substr(2));
      }
    }
    if (name == "br") br = accepted;
    if (name == "gzip" || name == "x-gzip") gzip = accepted;
    if (name == "*") any = accepted;
  }
  return {br.value_or(any), gzip.value_or(any)};
}

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  for (auto at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) {
    s.replace(at, from.size(), to);
  }
}

std::string sha256_base64(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(data.data(), data.size(), digest, &length, EVP_sha256(), nullptr);
  std::string out(4 * ((length + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), digest,
                                static_cast<int>(length));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

// The end of the start tag beginning at `at` ("<script ..."), quotes respected, and whether it
// has a src attribute.
std::pair<std::size_t, bool> script_start_tag(std::string_view low, std::size_t at) {
  std::size_t i = at + 7;  // after "<script"
  bool src = false;
  while (i < low.size() && low[i] != '>') {
    if (std::isspace(static_cast<unsigned char>(low[i])) || low[i] == '/') {
      ++i;
      continue;
    }
    const std::size_t name_start = i;
    while (i < low.size() && !std::isspace(static_cast<unsigned char>(low[i])) && low[i] != '=' &&
           low[i] != '>' && low[i] != '/') {
      ++i;
    }
    if (low.substr(name_start, i - name_start) == "src") src = true;
    while (i < low.size() && std::isspace(static_cast<unsigned char>(low[i]))) ++i;
    if (i < low.size() && low[i] == '=') {
      ++i;
      while (i < low.size() && std::isspace(static_cast<unsigned char>(low[i]))) ++i;
      if (i < low.size() && (low[i] == '"' || low[i] == '\'')) {
        const auto close = low.find(low[i], i + 1);
        i = close == std::string_view::npos ? low.size() : close + 1;
      } else {
        while (i < low.size() && !std::isspace(static_cast<unsigned char>(low[i])) &&
               low[i] != '>') {
          ++i;
        }
      }
    }
  }
  return {i, src};
}

// CSP hashes of the inline scripts of a page: without them `script-src 'self'` blocks the
// scripts index.html runs before the app (theme, the fallback when the app does not start).
std::vector<std::string> inline_script_hashes(const std::string& html) {
  std::vector<std::string> hashes;
  const std::string low = lower(html);
  std::size_t at = 0;
  while ((at = low.find("<script", at)) != std::string::npos) {
    const char next = at + 7 < low.size() ? low[at + 7] : '\0';
    if (next != '>' && next != '/' && !std::isspace(static_cast<unsigned char>(next))) {
      at += 7;
      continue;
    }
    const auto [tag_end, has_src] = script_start_tag(low, at);
    if (tag_end >= low.size()) break;
    const auto close = low.find("</script", tag_end + 1);
    if (close == std::string::npos) break;
    if (!has_src && close > tag_end + 1) {
      // The browser hashes the text after its input preprocessing: CR LF and CR become LF.
      std::string text = html.substr(tag_end + 1, close - tag_end - 1);
      replace_all(text, "\r\n", "\n");
      std::replace(text.begin(), text.end(), '\r', '\n');
      hashes.push_back("sha256-" + sha256_base64(text));
    }
    at = close + 8;
  }
  return hashes;
}

StaticResponse finish(StaticResponse r, bool head, const std::string& csp) {
  r.headers.emplace_back("Content-Security-Policy", csp);
  r.headers.emplace_back("X-Content-Type-Options", "nosniff");
  r.headers.emplace_back("X-Frame-Options", "DENY");
  r.headers.emplace_back("Referrer-Policy", "no-referrer");
  // A HEAD of a file was not read: its length was set from the file's size.
  if (!head || !r.body.empty()) r.content_length = r.body.size();
  if (head) r.body.clear();
  return r;
}

StaticResponse text(int status, std::string message, bool head) {
  StaticResponse r;
  r.status = status;
  r.headers = {{"Content-Type", "text/plain; charset=utf-8"}, {"Cache-Control", "no-store"}};
  r.body = std::move(message) + "\n";
  r.content_length = r.body.size();
  return finish(std::move(r), head, control_ui_csp());
}

StaticResponse not_found(bool head) {
  return text(404, "Not Found", head);
}

StaticResponse method_not_allowed() {
  auto r = text(405, "use GET or HEAD", false);
  r.headers.emplace_back("Allow", "GET, HEAD");
  return r;
}

StaticResponse missing_files(bool head) {
  return text(503,
              "the Control UI's files are missing: install them with "
              "scripts/install-control-ui.sh and set gateway.controlUi.root to their folder",
              head);
}

StaticResponse unreadable(const std::string& file, const std::string& why, bool head) {
  return text(500, "the Control UI's file " + file + " cannot be served: " + why, head);
}

// What OpenClaw's page reads at start (field names as OpenClaw's gateway sends them); the
// features drawbridge has not (terminal, CLI agents, plugins) are off.
StaticResponse config_json(const ControlUiSettings& s, bool head) {
  const nlohmann::json body = {
      {"basePath", ""},
      {"assistantName", s.assistant_name},
      {"assistantAvatar", nullptr},
      {"assistantAvatarSource", nullptr},
      {"assistantAvatarStatus", nullptr},
      {"assistantAvatarReason", nullptr},
      {"serverVersion", s.server_version},
      {"embedSandbox", "scripts"},
      {"allowExternalEmbedUrls", false},
      // The CSP allows no third-party images.
      {"automaticallyFetchFavicons", false},
      {"communityInvite", false},
      {"terminalEnabled", false},
      {"cliAgentsEnabled", false},
      {"pluginAssetsRequireAuth", true},
      {"pluginFrameGrants", nlohmann::json::array()},
  };
  StaticResponse r;
  r.headers = {{"Content-Type", "application/json; charset=utf-8"}, {"Cache-Control", "no-cache"}};
  r.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return finish(std::move(r), head, control_ui_csp());
}

StaticResponse serve_index(const std::string& root, const ControlUiSettings& s, bool head) {
  const auto found = find_file(root, "index.html");
  if (!found) return missing_files(head);
  auto read = read_file(found->path, s.max_file_bytes);
  if (!read.error.empty()) return unreadable("index.html", read.error, head);
  // Absolute references: a deep link's page must not look for ./assets under its own path.
  std::string html = std::move(read.data);
  replace_all(html, "src=\"./", "src=\"/");
  replace_all(html, "href=\"./", "href=\"/");
  StaticResponse r;
  r.headers = {{"Content-Type", "text/html; charset=utf-8"}, {"Cache-Control", "no-cache"}};
  const auto csp = control_ui_csp(inline_script_hashes(html));
  r.body = std::move(html);
  return finish(std::move(r), head, csp);
}

StaticResponse serve_file(const std::string& root, const std::string& file,
                          const ControlUiSettings& s, const StaticRequest& req, bool head) {
  const auto found = find_file(root, file);
  if (!found) return not_found(head);
  // A precompressed sibling when the client takes it, br first (smaller); never compressed on
  // the fly.
  const auto codings = accepted_codings(req.accept_encoding);
  std::optional<Found> chosen;
  std::string_view encoding;
  if (codings.br) chosen = find_file(root, file + ".br");
  if (chosen) {
    encoding = "br";
  } else if (codings.gzip && (chosen = find_file(root, file + ".gz"))) {
    encoding = "gzip";
  } else {
    chosen = found;
  }
  StaticResponse r;
  r.headers = {
      {"Content-Type", std::string(*content_type_of(file))},
      {"Cache-Control", std::string(file.starts_with("assets/") ? kImmutable : "no-cache")},
      {"Vary", "Accept-Encoding"}};
  if (!encoding.empty()) r.headers.emplace_back("Content-Encoding", std::string(encoding));
  if (chosen->size > s.max_file_bytes) {
    return unreadable(file, too_large(s.max_file_bytes), head);
  }
  if (head) {
    r.content_length = chosen->size;
    return finish(std::move(r), head, control_ui_csp());
  }
  auto read = read_file(chosen->path, s.max_file_bytes);
  if (!read.error.empty()) return unreadable(file, read.error, head);
  r.body = std::move(read.data);
  return finish(std::move(r), head, control_ui_csp());
}

}  // namespace

const std::string* StaticResponse::header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (lower(k) == lower(name)) return &v;
  }
  return nullptr;
}

std::string control_ui_csp(const std::vector<std::string>& script_hashes) {
  std::string scripts = "script-src 'self'";
  for (const auto& h : script_hashes) scripts += " '" + h + "'";
  // OpenClaw's policy without its third-party hosts (OpenAI, Google Fonts, tweakcn) and
  // without https: images: the page needs none of them against drawbridge. ws:/wss: let the
  // page's ?gatewayUrl= reach another gateway, as OpenClaw's does.
  return "default-src 'self'; base-uri 'none'; object-src 'none'; frame-ancestors 'none'; " +
         scripts +
         "; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
         "media-src 'self' data: blob:; font-src 'self' data:; worker-src 'self'; "
         "manifest-src 'self'; connect-src 'self' ws: wss: data:";
}

std::optional<StaticResponse> serve_control_ui(const ControlUiSettings& settings,
                                               const StaticRequest& request) {
  const bool head = request.method == "HEAD";
  const bool readable = head || request.method == "GET";
  const auto route = route_of(request.target, request.accept);
  if (!route) return readable ? std::optional(not_found(head)) : std::nullopt;
  const auto root = real_path(settings.root);
  if (!readable) {
    // 405 where a GET would find something; elsewhere it is not the UI's path at all.
    if (route->kind != Route::Kind::file || (root && find_file(*root, route->file))) {
      return method_not_allowed();
    }
    return std::nullopt;
  }
  if (route->kind == Route::Kind::config) return config_json(settings, head);
  if (!root) return missing_files(head);
  if (route->kind == Route::Kind::index) return serve_index(*root, settings, head);
  return serve_file(*root, route->file, settings, request, head);
}

}  // namespace drawbridge::server
