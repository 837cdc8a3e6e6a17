#include "runtime/carried_connections.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>
#include <openssl/evp.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdlib>
#include <regex>
#include <set>

#include "agents/child_process.h"
#include "runtime/successor.h"

namespace drawbridge::runtime {

using nlohmann::json;

namespace {
constexpr std::size_t kMaxText = 1 << 20;  // the variable; a state is a few hundred bytes
}  // namespace

std::string settings_digest(const json& raw) {
  const std::string text = raw.dump(-1, ' ', false, json::error_handler_t::replace);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(text.data(), text.size(), md, &n, EVP_sha256(), nullptr);
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < n; ++i) {
    out.push_back(kDigits[md[i] >> 4]);
    out.push_back(kDigits[md[i] & 15]);
  }
  return out;
}

std::string encode_carried(const std::vector<CarriedConnection>& conns, int first_fd) {
  json out = json::array();
  for (std::size_t i = 0; i < conns.size(); ++i) {
    out.push_back({{"channel", conns[i].channel},
                   {"digest", conns[i].digest},
                   {"fd", first_fd + static_cast<int>(i)},
                   {"state", conns[i].state}});
  }
  return out.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::vector<CarriedConnection> decode_carried(const std::string& text, int first_fd,
                                              std::size_t max_count,
                                              std::vector<std::string>& warnings) {
  std::vector<CarriedConnection> out;
  if (text.size() > kMaxText) {
    warnings.push_back("longer than " + std::to_string(kMaxText) + " bytes");
    return out;
  }
  const json doc = json::parse(text, nullptr, false);
  if (!doc.is_array() || doc.size() > max_count) {
    warnings.push_back("not an array of at most " + std::to_string(max_count) + " entries");
    return out;
  }
  static const std::regex channel_re("irc(:[a-z0-9_-]{1,64})?");
  static const std::regex digest_re("[0-9a-f]{64}");
  std::set<int> seen;
  for (const auto& e : doc) {
    const bool shaped = e.is_object() && e.contains("channel") && e["channel"].is_string() &&
                        e.contains("digest") && e["digest"].is_string() && e.contains("fd") &&
                        e["fd"].is_number_integer() && e.contains("state") &&
                        e["state"].is_object();
    if (!shaped) {
      warnings.push_back("an entry without channel, digest, fd and state");
      continue;
    }
    const auto channel = e["channel"].get<std::string>();
    const auto digest = e["digest"].get<std::string>();
    const auto fd = e["fd"].get<std::int64_t>();
    if (!std::regex_match(channel, channel_re) || !std::regex_match(digest, digest_re) ||
        fd < first_fd || fd >= first_fd + static_cast<std::int64_t>(max_count) ||
        !seen.insert(static_cast<int>(fd)).second) {
      warnings.push_back("an entry with a bad channel, digest or fd");
      continue;
    }
    out.push_back({channel, digest, static_cast<int>(fd), e["state"]});
  }
  return out;
}

std::vector<CarriedConnection> take_carried_connections() {
  const char* value = std::getenv(kCarriedVariable);
  if (value == nullptr) return {};
  const std::string text = value;
  ::unsetenv(kCarriedVariable);
  if (!started_by_predecessor()) {
    spdlog::warn("{} is set, but no predecessor started this process: ignored", kCarriedVariable);
    return {};
  }
  std::vector<std::string> warnings;
  auto conns = decode_carried(text, kFirstCarriedFd, kMaxCarriedFds, warnings);
  for (const auto& w : warnings) spdlog::warn("{}: {}; skipped", kCarriedVariable, w);
  std::vector<CarriedConnection> open;
  for (auto& c : conns) {
    const int flags = ::fcntl(c.fd, F_GETFD);
    if (flags < 0) {
      spdlog::warn("{}: fd {} of {} is not open; skipped", kCarriedVariable, c.fd, c.channel);
      continue;
    }
    ::fcntl(c.fd, F_SETFD, flags | FD_CLOEXEC);
    open.push_back(std::move(c));
  }
  return open;
}

bool takes_carried_connections(const std::string& binary, std::chrono::milliseconds timeout) {
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return false;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  std::string arg0 = binary, arg1 = "capabilities";
  char* argv[] = {arg0.data(), arg1.data(), nullptr};
  pid_t pid = -1;
  const int err = ::posix_spawn(&pid, binary.c_str(), &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(out[1]);
  if (err != 0) {
    ::close(out[0]);
    return false;
  }
  std::string text;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  char buf[256];
  while (text.size() < 4096) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                          deadline - std::chrono::steady_clock::now())
                          .count();
    pollfd p{out[0], POLLIN, 0};
    if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) <= 0) break;
    const auto n = ::read(out[0], buf, sizeof buf);
    if (n <= 0) break;
    text.append(buf, static_cast<std::size_t>(n));
  }
  ::close(out[0]);
  // Its stdout closed: it is exiting. Its exit is waited for within what is left of `timeout`.
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                        deadline - std::chrono::steady_clock::now())
                        .count();
  if (auto pidfd = agents::open_pidfd(pid); pidfd.get() >= 0 && left > 0) {
    pollfd p{pidfd.get(), POLLIN, 0};
    ::poll(&p, 1, static_cast<int>(left));
  }
  int status = 0;
  if (::waitpid(pid, &status, WNOHANG) != pid) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    return false;
  }
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 &&
         text.find(kCarriedCapability) != std::string::npos;
}

}  // namespace drawbridge::runtime
