#include "config/document.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <functional>
#include <stdexcept>

#include "config/check.h"
#include "config/config_text.h"

namespace drawbridge::config {

namespace {

namespace fs = std::filesystem;
using check::Location;
using nlohmann::json;

std::string io_error(const std::string& path, int err) {
  return "cannot write " + path + ": " + std::strerror(err);
}


bool write_all(int fd, std::string_view text) {
  while (!text.empty()) {
    const ssize_t n = ::write(fd, text.data(), text.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (n == 0) {  // a regular file never does this; do not spin if one does
      errno = EIO;
      return false;
    }
    text.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

int fsync_retrying(int fd) {
  int rc;
  do {
    rc = ::fsync(fd);
  } while (rc != 0 && errno == EINTR);
  return rc;
}

// A symlinked config (a dotfiles checkout, a managed /etc) must stay a symlink: renaming over
// the link would replace it with a plain file. So the file written is the one the link points
// to, and the temp file goes into that file's folder so that the rename stays on one file
// system. A dangling link is followed by hand; its target is created.
fs::path write_target(const fs::path& path) {
  std::error_code ec;
  if (!fs::is_symlink(fs::symlink_status(path, ec))) return path;
  if (auto real = fs::canonical(path, ec); !ec) return real;
  fs::path p = path;
  for (int hops = 0; hops < 40 && fs::is_symlink(fs::symlink_status(p, ec)); ++hops) {
    const fs::path next = fs::read_symlink(p, ec);
    if (ec) break;
    p = next.is_absolute() ? next : p.parent_path() / next;
  }
  return p;
}

std::string temp_name(const fs::path& target) {
  static std::atomic<unsigned long> counter{0};
  return "." + target.filename().string() + ".tmp-" + std::to_string(::getpid()) + "-" +
         std::to_string(counter.fetch_add(1));
}

// Keys whose values are secrets: token, apiKey, botToken, password, secret, and any key ending
// in one of token/secret/password/apiKey ("authToken", "clientSecret"). "tokens" and
// "tokenizer" are not.
bool secret_key(std::string_view key) {
  std::string lower(key);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (std::string_view suffix : {"token", "secret", "password", "apikey"}) {
    if (lower.ends_with(suffix)) return true;
  }
  return false;
}

// Where a value sits relative to agents.<id>.env, whose every value is a secret.
enum class Place { kRoot, kAgents, kAgent, kEnv, kOther };

Place child_place(Place parent, std::string_view key) {
  switch (parent) {
    case Place::kRoot:
      return key == "agents" ? Place::kAgents : Place::kOther;
    case Place::kAgents:
      return Place::kAgent;
    case Place::kAgent:
      return key == "env" ? Place::kEnv : Place::kOther;
    default:
      return Place::kOther;
  }
}

using SecretVisitor = std::function<void(const json& value, const Location& at)>;

// Calls `visit` for every scalar redact() hides. Objects are always recursed, even under a
// secret key: their own keys decide. Array elements inherit the secrecy of the array's key.
void visit_secrets(const json& node, Place place, bool secret, const Location& at,
                   const SecretVisitor& visit) {
  if (node.is_object()) {
    for (const auto& [key, value] : node.items()) {
      const Place place_of_child = child_place(place, key);
      visit_secrets(value, place_of_child, secret_key(key) || place == Place::kEnv, at.key(key),
                    visit);
    }
  } else if (node.is_array()) {
    for (std::size_t i = 0; i < node.size(); ++i) {
      visit_secrets(node[i], Place::kOther, secret, at.index(i), visit);
    }
  } else if (secret && !node.is_null()) {
    visit(node, at);
  }
}

// A placeholder with nothing to restore it from: under a secret key of an object it is dropped
// (the secret stays what it was: generated, from the environment, or unset) and its path
// recorded; anywhere else it is an error.
void restore(json& node, const json* current, const Location& at, check::Errors& errors,
             std::vector<std::string>& dropped) {
  const auto placeholder = [](const json& v) {
    return v.is_string() && v.get_ref<const std::string&>() == kRedacted;
  };
  if (node.is_object()) {
    std::vector<std::string> drop;
    for (auto& [key, value] : node.items()) {
      const json* child = nullptr;
      if (current != nullptr && current->is_object()) {
        const auto it = current->find(key);
        if (it != current->end()) child = &*it;
      }
      const Location here = at.key(key);
      if (placeholder(value) && (child == nullptr || child->is_null()) &&
          secret_pointer(here.pointer)) {
        drop.push_back(key);
        dropped.push_back(here.path);
        continue;
      }
      restore(value, child, here, errors, dropped);
    }
    for (const auto& key : drop) node.erase(key);
  } else if (node.is_array()) {
    for (std::size_t i = 0; i < node.size(); ++i) {
      const json* child = nullptr;
      if (current != nullptr && current->is_array() && i < current->size()) child = &(*current)[i];
      restore(node[i], child, at.index(i), errors, dropped);
    }
  } else if (placeholder(node)) {
    if (current != nullptr && !current->is_null() && !placeholder(*current)) {
      node = *current;
    } else {
      errors.add(at, "the redacted placeholder has no value to restore; send the secret itself");
    }
  }
}

}  // namespace

std::string sha256_hex(std::string_view bytes) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int size = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), digest.data(), &size, EVP_sha256(), nullptr) != 1) {
    // Only an allocation failure inside OpenSSL gets here; an empty hash would compare equal
    // to other failures, so there is no value to return.
    throw std::runtime_error("SHA-256 failed");
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(size * 2);
  for (unsigned int i = 0; i < size; ++i) {
    out += kHex[digest[i] >> 4];
    out += kHex[digest[i] & 0xf];
  }
  return out;
}

std::optional<json> parse_json_text(const std::string& text, std::string& error) {
  auto parsed = parse_config_json(text);
  if (!parsed.ok()) {
    error = parsed.error->to_string();
    return std::nullopt;
  }
  return std::move(parsed.value);
}

json merge_patch(const json& target, const json& patch) {
  json result = target;
  result.merge_patch(patch);
  return result;
}

std::string serialize(const json& doc) {
  // replace: a document built in code may hold invalid UTF-8; writing it must not throw.
  return doc.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

std::string last_good_path(const std::string& config_path) {
  return config_path + ".last-good";
}

WriteOutcome write_atomic(const std::string& path, std::string_view text) {
  if (path.empty()) return {false, "cannot write: no path given"};
  const fs::path target = write_target(path);
  const std::string shown =
      target == fs::path(path) ? path : path + " (symlink to " + target.string() + ")";
  const fs::path folder = target.has_parent_path() ? target.parent_path() : fs::path(".");

  struct stat old {};
  const bool exists = ::stat(target.c_str(), &old) == 0 && S_ISREG(old.st_mode);
  const mode_t mode = exists ? (old.st_mode & 07777) : 0600;

  std::string temp;
  int fd = -1;
  for (int attempt = 0; attempt < 100 && fd < 0; ++attempt) {
    temp = (folder / temp_name(target)).string();
    fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 && errno != EEXIST) break;  // EEXIST: a stale temp file of a dead process
  }
  if (fd < 0) return {false, io_error(shown, errno)};

  auto fail = [&](int err) {
    if (fd >= 0) ::close(fd);
    ::unlink(temp.c_str());
    return WriteOutcome{false, io_error(shown, err)};
  };
  // A gateway running as root must not take a user's config away from them. Best effort: when
  // we may not chown, the file becomes ours, as with any editor's save. It comes before fchmod
  // because changing the owner may clear mode bits.
  if (exists && (old.st_uid != ::geteuid() || old.st_gid != ::getegid())) {
    [[maybe_unused]] const int chowned = ::fchown(fd, old.st_uid, old.st_gid);
  }
  // fchmod, not open's mode argument: the umask must not narrow the old file's bits.
  if (::fchmod(fd, mode) != 0) return fail(errno);
  if (!write_all(fd, text)) return fail(errno);
  if (fsync_retrying(fd) != 0) return fail(errno);
  const int closed = ::close(fd);
  fd = -1;
  if (closed != 0) return fail(errno);
  if (::rename(temp.c_str(), target.c_str()) != 0) return fail(errno);

  // Without this the rename itself may be lost in a crash, leaving the old file.
  const int dir = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return {false, io_error(shown, errno)};
  const int synced = fsync_retrying(dir);
  const int err = errno;
  ::close(dir);
  // EINVAL: the file system cannot sync folders; the rename is as durable as it gets there.
  if (synced != 0 && err != EINVAL) return {false, io_error(shown, err)};
  return {true, ""};
}

WriteOutcome save_last_good(const std::string& config_path, std::string_view text) {
  const std::string copy = last_good_path(config_path);
  if (const auto existing = [&] { std::string error; return read_text_file(copy, error); }(); existing && *existing == text) return {true, ""};
  return write_atomic(copy, text);
}

json redact(const json& doc) {
  json out = doc;
  visit_secrets(doc, Place::kRoot, false, Location{}, [&](const json&, const Location& at) {
    out[json::json_pointer(at.pointer)] = std::string(kRedacted);
  });
  return out;
}

bool has_secrets(const json& doc) {
  bool found = false;
  visit_secrets(doc, Place::kRoot, false, Location{}, [&](const json& value, const Location&) {
    // A placeholder hides nothing: a redacted document has no secrets left.
    if (!(value.is_string() && value.get_ref<const std::string&>() == kRedacted)) found = true;
  });
  return found;
}

bool is_secret_key(std::string_view key) {
  return secret_key(key);
}

bool secret_pointer(std::string_view pointer) {
  std::vector<std::string> tokens;
  while (!pointer.empty()) {
    pointer.remove_prefix(1);  // the '/'
    const auto end = std::min(pointer.find('/'), pointer.size());
    std::string token;
    for (std::size_t i = 0; i < end; ++i) {
      if (pointer[i] == '~' && i + 1 < end && (pointer[i + 1] == '0' || pointer[i + 1] == '1')) {
        token += pointer[++i] == '0' ? '~' : '/';
      } else {
        token += pointer[i];
      }
    }
    tokens.push_back(std::move(token));
    pointer.remove_prefix(end);
  }
  if (tokens.size() >= 3 && tokens[0] == "agents" && tokens[2] == "env") return true;
  return std::any_of(tokens.begin(), tokens.end(),
                     [](const std::string& t) { return secret_key(t); });
}

RestoreOutcome restore_redacted(json& doc, const json& current) {
  check::Errors errors;
  RestoreOutcome out;
  restore(doc, &current, Location{}, errors, out.dropped);
  out.errors = errors.take();
  return out;
}

}  // namespace drawbridge::config
