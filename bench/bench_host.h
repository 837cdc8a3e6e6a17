#pragma once

// What the benches that spawn a gateway read of the machine and ask of it: load, CPU time,
// a quiet machine before a run, a free loopback port, an HTTP status. Shared by
// drawbridge_telegram_bench and drawbridge_openai_bench (linux /proc, std only).

#include <sys/types.h>

#include <string>
#include <utility>

namespace bench_host {

// "/proc/loadavg"'s first three fields.
std::string load_avg();
// Busy and total jiffies of the whole machine, from /proc/stat.
std::pair<double, double> machine_jiffies();
// utime + stime (fields 14 and 15) of a /proc/.../stat line, in seconds; -1 when unreadable.
double stat_cpu_s(const std::string& line);
// CPU seconds (user + system) of a process, -1 when it is gone.
double proc_cpu_s(pid_t pid);
// Waits (bounded by max_s seconds) until the machine was at least `pct`% idle over one second.
void wait_quiet(int max_s, int pct);
// A TCP port on 127.0.0.1 nobody listens on, below the ephemeral range (so that no client
// socket holds it when a gateway is started again on it).
int free_port();
// GET `path` on 127.0.0.1:port: the HTTP status, 0 when nothing answered (at most ~2 s).
int http_status(int port, const std::string& path);

}  // namespace bench_host
