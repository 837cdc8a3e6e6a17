#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace drawbridge::runtime {

// A listening socket received at start, by systemd's socket-activation convention: from a
// .socket unit at first start, or from the predecessor of a re-exec (runtime/successor.h).
struct InheritedSocket {
  int fd;
  std::string name;  // from LISTEN_FDNAMES; "" when absent
};

// Takes the sockets passed with LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES (fds from 3), only when
// LISTEN_PID is our pid. The three variables are unset in every case, as sd_listen_fds(1) does:
// they were meant for one process only, and a child of ours must not mistake them for its own.
// Each fd taken gets FD_CLOEXEC; one that is not a listening stream socket is closed with a
// warning. Malformed variables are a warning too, and the result is then empty (the fds are
// left alone: we cannot tell which are meant). Call once, before any thread is started
// (setenv/unsetenv are not thread-safe) and before anything else opens fds.
std::vector<InheritedSocket> take_listen_fds();

// The local address of a socket: {"127.0.0.1", 18789}; nullopt when it cannot be read.
std::optional<std::pair<std::string, int>> local_address(int fd);

// Whether a socket bound to have_ip:have_port serves the configured want_ip:want_port. The
// addresses are compared as parsed ("::1" and "0:0:0:0:0:0:0:1" are one); a configured port
// 0 (any free port) matches every port. A text that is not an address matches nothing.
bool same_listen_address(const std::string& have_ip, int have_port, const std::string& want_ip,
                         int want_port);

}  // namespace drawbridge::runtime
