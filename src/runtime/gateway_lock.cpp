#include "runtime/gateway_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

namespace drawbridge::runtime {

std::optional<long long> process_start_time(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return std::nullopt;
  // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
  auto paren = line.rfind(')');
  if (paren == std::string::npos) return std::nullopt;
  std::istringstream rest(line.substr(paren + 2));
  std::string field;
  for (int i = 3; i < 22 && rest >> field; ++i) {
  }
  long long start = 0;
  if (!(rest >> start)) return std::nullopt;
  return start;
}

std::unique_ptr<GatewayLock> GatewayLock::acquire(const std::string& data_dir, int port,
                                                  std::string& error) {
  const std::string path = (std::filesystem::path(data_dir) / "gateway.lock").string();
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    error = "cannot open the gateway lock " + path + ": " + std::strerror(errno);
    return nullptr;
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    std::string holder = "another process";
    std::ifstream in(path);
    nlohmann::json who = nlohmann::json::parse(in, nullptr, false);
    if (who.is_object()) {
      holder = "another gateway (pid " + std::to_string(who.value("pid", 0)) + ", port " +
               std::to_string(who.value("port", 0)) + ")";
    }
    ::close(fd);
    error = err == EWOULDBLOCK
                ? holder + " is using the data folder " + data_dir +
                      "; stop it (`drawbridge stop`, or SIGTERM to its pid) or choose another "
                      "--data-dir"
                : "cannot lock " + path + ": " + std::strerror(err);
    return nullptr;
  }
  nlohmann::json me = {{"pid", ::getpid()},
                       {"startTime", process_start_time(::getpid()).value_or(0)},
                       {"port", port}};
  const std::string text = me.dump() + "\n";
  // Rewritten in place under the lock: a reader that loses the race sees a partial record at
  // worst, and only uses it to name the holder.
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, text.data(), text.size(), 0) < 0) {
    error = "cannot write the gateway lock " + path + ": " + std::strerror(errno);
    ::close(fd);
    return nullptr;
  }
  return std::unique_ptr<GatewayLock>(new GatewayLock(path, fd));
}

void GatewayLock::release() {
  if (fd_ < 0) return;
  ::flock(fd_, LOCK_UN);
  ::close(fd_);
  fd_ = -1;
}

GatewayLock::~GatewayLock() { release(); }

}  // namespace drawbridge::runtime
