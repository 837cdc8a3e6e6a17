# Shared helpers of the bench/*.sh scripts (sourced, not run). Bash >= 5 (EPOCHREALTIME).
# Every process these scripts start is remembered by PID and stopped by PID on exit.

BENCH_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$BENCH_ROOT/build-bench}"
DRAWBRIDGE_BIN="${DRAWBRIDGE_BIN:-$BUILD_DIR/drawbridge}"
LOADGEN_BIN="${LOADGEN_BIN:-$BUILD_DIR/bench/drawbridge_loadgen}"
# Data folders go on the same disk as a real install would use (not tmpfs).
BENCH_TMP="${BENCH_TMP:-${TMPDIR:-/tmp}}"
BENCH_TOKEN="${BENCH_TOKEN:-bench-token}"

_bench_pids=()
_bench_dirs=()

bench_cleanup() {
  local pid
  for pid in "${_bench_pids[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null
      local i
      for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    fi
  done
  local d
  for d in "${_bench_dirs[@]}"; do [[ -n "$d" && -d "$d" ]] && rm -rf -- "$d"; done
}
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

need_bin() {
  if [[ ! -x "$1" ]]; then
    echo "missing $1: build it first (see docs/BENCHMARKS.md)" >&2
    exit 2
  fi
}

# bench_mktemp VAR: a fresh folder under $BENCH_TMP in VAR, removed on exit. (Not "$(...)":
# the folder must be remembered by this shell, not by a subshell.)
# The commit of the tree at $1 (default the repository), marked when it has changes.
commit_line() {
  local dir="${1:-$BENCH_ROOT}"
  echo "$(git -C "$dir" rev-parse --short HEAD 2>/dev/null || echo unknown)$(
    [[ -n "$(git -C "$dir" status --porcelain --untracked-files=no 2>/dev/null)" ]] &&
      echo ' (working tree has changes)')"
}

bench_mktemp() {
  local d
  d="$(mktemp -d "$BENCH_TMP/drawbridge-bench.XXXXXX")" || exit 2
  _bench_dirs+=("$d")
  printf -v "$1" '%s' "$d"
}

# A TCP port on 127.0.0.1 nobody listens on (bounded tries), below the kernel's ephemeral range
# so that no client socket (the load generator's 100 connections) can hold it.
free_port() {
  local i p lo
  lo=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null)
  lo=${lo:-32768}
  ((lo > 20000)) || lo=30000
  for ((i = 0; i < 200; i++)); do
    p=$((10000 + RANDOM % (lo - 10000)))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  echo "no free port found" >&2
  return 1
}

# write_config FILE LEVEL [EXTRA_JSON_MEMBERS] [EXTRA_GATEWAY_MEMBERS]
# (the last ones go inside "gateway", e.g. '"restart": {"delayMs": 0}')
write_config() {
  local extra="${3:-}" gw="${4:-}"
  cat >"$1" <<JSON
// drawbridge benchmark config
{
  "gateway": {"auth": {"token": "$BENCH_TOKEN"}${gw:+, $gw}},
  "logging": {"level": "$2"}${extra:+,
  $extra}
}
JSON
}

# HTTP status of GET PATH on 127.0.0.1:PORT with bash's /dev/tcp (no process spawned);
# prints 000 when nothing answers. One attempt, at most ~1 s.
http_status() {
  local port="$1" path="$2" line=""
  if { exec 3<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null; then
    printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$path" >&3
    IFS= read -r -t 1 line <&3 || true
    exec 3<&- 3>&-
  fi
  line="${line#HTTP/1.1 }"
  echo "${line:0:3}" | grep -E '^[0-9]{3}$' || echo 000
}

# start_gateway DATA_DIR CONFIG PORT LOG: sets GW_PID and GW_T0 (EPOCHREALTIME before the fork).
start_gateway() {
  GW_T0=$EPOCHREALTIME
  "$DRAWBRIDGE_BIN" --config "$2" run --port "$3" --data-dir "$1" >"$4" 2>&1 &
  GW_PID=$!
  _bench_pids+=("$GW_PID")
}

# wait_ready PORT TIMEOUT_S: polls /readyz until 200. Sets READY_T (EPOCHREALTIME) on success.
wait_ready() {
  local port="$1" deadline line
  deadline=$(awk -v t="$EPOCHREALTIME" -v d="$2" 'BEGIN{printf "%.6f", t + d}')
  local i
  for ((i = 0; i < 2000000; i++)); do
    line=""
    if { exec 3<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null; then
      printf 'GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3
      IFS= read -r -t 2 line <&3 || true
      exec 3<&- 3>&-
      if [[ "$line" == "HTTP/1.1 200"* ]]; then
        READY_T=$EPOCHREALTIME
        return 0
      fi
    fi
    kill -0 "$GW_PID" 2>/dev/null || { echo "gateway $GW_PID exited before ready" >&2; return 1; }
    # Bash cannot compare floats: compare the integer microseconds.
    if (( ${EPOCHREALTIME/./} > ${deadline/./} )); then
      echo "gateway not ready on port $port after $2 s" >&2
      return 1
    fi
  done
  return 1
}

# stop_gateway PID: SIGTERM, wait up to 10 s, then SIGKILL. Sets STOP_RC (exit status) and
# STOP_MS (SIGTERM to exit). Call it in this shell, not in $(...): it waits for its child.
stop_gateway() {
  local pid="$1" i t0=$EPOCHREALTIME
  STOP_RC=""
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 5000; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.002
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "gateway $pid ignored SIGTERM for 10 s: SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null
  fi
  wait "$pid" 2>/dev/null
  STOP_RC=$?
  STOP_MS=$(ms_between "$t0" "$EPOCHREALTIME")
}

# ms between two EPOCHREALTIME values
ms_between() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", (b - a) * 1000}'; }

# stats over numbers on stdin: min median p90 max mean (one line); $1: decimals (default 2)
stats_line() {
  sort -g | awk -v d="${1:-2}" '{v[NR]=$1; s+=$1} END {
    if (NR == 0) { print "n=0"; exit }
    med = (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2
    r = 0.9 * (NR - 1) + 1; lo = int(r); hi = (lo < NR) ? lo + 1 : lo
    p90 = v[lo] + (v[hi] - v[lo]) * (r - lo)
    f = "%." d "f"
    printf "n=%d min=" f " median=" f " p90=" f " max=" f " mean=" f "\n", NR, v[1], med, p90, v[NR], s/NR
  }'
}

machine_line() {
  echo "host: $(nproc) cpu(s), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), kernel $(uname -r); load: $(cut -d' ' -f1-3 /proc/loadavg)"
}

# wait_quiet MAX_WAIT_S MIN_IDLE_PCT: waits (bounded) until the machine's CPUs were at least
# MIN_IDLE_PCT idle over one second; other users of a shared machine skew every number here.
# Prints what it saw; returns 1 when it gave up (the caller may still run, and say so).
wait_quiet() {
  local max="${1:-0}" want="${2:-80}" waited=0 idle
  while :; do
    idle=$(awk 'NR==1{for(i=2;i<=9;i++)t+=$i; print t, $5+$6}' /proc/stat)
    sleep 1
    idle=$(awk -v prev="$idle" 'NR==1{for(i=2;i<=9;i++)t+=$i; split(prev,p," ");
            printf "%d", 100 * (($5+$6) - p[2]) / (t - p[1])}' /proc/stat)
    waited=$((waited + 1))
    if ((idle >= want)); then
      echo "machine ${idle}% idle (waited ${waited} s); load $(cut -d' ' -f1-3 /proc/loadavg)"
      return 0
    fi
    if ((waited >= max)); then
      echo "WARNING: machine only ${idle}% idle after ${waited} s; running anyway (load $(cut -d' ' -f1-3 /proc/loadavg))"
      return 1
    fi
  done
}
