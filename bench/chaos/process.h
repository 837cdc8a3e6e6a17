#pragma once

// The processes bench/chaos starts besides drawbridge (a peer gateway, the fake model server):
// spawned with an environment of their own and their output in a log file, waited for, and
// stopped with all their descendants, every one by its pid. Linux /proc and POSIX only.

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

namespace chaos::proc {

// This process's environment less the variables named in `drop` (a name ending in '*': every
// variable it begins), plus `extra` ("NAME=value").
std::vector<std::string> environment(const std::vector<std::string>& drop,
                                     const std::vector<std::string>& extra);
// fork + exec `argv` (argv[0] a path) with `env`, stdout and stderr appended to `log`, stdin
// /dev/null. Throws when it cannot.
pid_t spawn(const std::vector<std::string>& argv, const std::vector<std::string>& env,
            const std::filesystem::path& log);
// Waits for a child's exit: its exit status, -1 when a signal ended it; -2 when it did not end
// within `timeout` (it is then killed and reaped).
int wait_exit(pid_t pid, std::chrono::milliseconds timeout);
// `root` and its descendants (from /proc's parent pids), root first; empty when root is gone.
std::vector<pid_t> tree(pid_t root);
// VmRSS of one process in KiB, -1 when unreadable.
long rss_kib(pid_t pid);
// SIGKILL to each pid still there (never 0, 1 or below), and reaps those that are children
// of this process (a child subreaper inherits orphans).
void kill_all(const std::vector<pid_t>& pids);

}  // namespace chaos::proc
