#!/usr/bin/env bash
# Cold start: starts the gateway N times, each with a fresh data folder, and measures the time
# from spawning the process to the first `GET /readyz` answered 200 (polled in a tight loop with
# bash's /dev/tcp, no process spawned per poll). Also collects the gateway's own
# "ready in X ms" log line (store open -> listening, measured inside the process).
#
#   bench/cold_start.sh [-n RUNS] [-r] [-q MAX_WAIT_S]
#     -n RUNS   starts (default 20)
#     -r        reuse one data folder (a restart of an existing install) instead of a fresh one
#     -q S      first wait up to S s for the machine to be >= 80% idle (default 0: do not wait)
# Environment: DRAWBRIDGE_BIN, BUILD_DIR, BENCH_TMP (see bench/common.sh).
set -uo pipefail
source "$(dirname "$0")/common.sh"

runs=20
reuse=0
quiet=0
while getopts "n:rq:" o; do
  case "$o" in
    n) runs="$OPTARG" ;;
    r) reuse=1 ;;
    q) quiet="$OPTARG" ;;
    *) echo "usage: $0 [-n RUNS] [-r] [-q MAX_WAIT_S]" >&2; exit 64 ;;
  esac
done
need_bin "$DRAWBRIDGE_BIN"

bench_mktemp work
config="$work/config.json"
write_config "$config" info   # info: the "ready in X ms" line is logged at info
[[ "$quiet" != 0 ]] && wait_quiet "$quiet" 80
machine_line
echo "binary: $DRAWBRIDGE_BIN; data folder: $([[ $reuse == 1 ]] && echo "reused (created by run 0, not counted)" || echo "fresh per run")"
if [[ $reuse == 1 ]]; then
  # Run 0 creates the database; the counted runs open an existing one.
  mkdir -p "$work/data"
  port="$(free_port)" || exit 2
  start_gateway "$work/data" "$config" "$port" "$work/run-0.log"
  wait_ready "$port" 10 || { cat "$work/run-0.log" >&2; exit 1; }
  stop_gateway "$GW_PID"
fi

: >"$work/exec_to_ready.txt"
: >"$work/self_ready.txt"
: >"$work/stop.txt"
for ((r = 1; r <= runs; r++)); do
  data="$work/data-$r"
  [[ $reuse == 1 ]] && data="$work/data"
  mkdir -p "$data"
  port="$(free_port)" || exit 2
  log="$work/run-$r.log"
  start_gateway "$data" "$config" "$port" "$log"
  if ! wait_ready "$port" 10; then
    cat "$log" >&2
    exit 1
  fi
  ms=$(ms_between "$GW_T0" "$READY_T")
  self=$(grep -o 'ready in [0-9.]* ms' "$log" | head -1 | grep -o '[0-9.]*' | head -1)
  stop_gateway "$GW_PID"
  echo "$ms" >>"$work/exec_to_ready.txt"
  [[ -n "$self" ]] && echo "$self" >>"$work/self_ready.txt"
  echo "$STOP_MS" >>"$work/stop.txt"
  printf 'run %2d: exec -> /readyz 200 %8.2f ms   gateway log "ready in %s ms"   SIGTERM -> exit %s ms (rc %s)\n' \
    "$r" "$ms" "${self:-?}" "$STOP_MS" "$STOP_RC"
done

echo "exec -> /readyz 200 (ms):   $(stats_line <"$work/exec_to_ready.txt")"
echo "gateway 'ready in' (ms):    $(stats_line <"$work/self_ready.txt")"
echo "SIGTERM -> exit (ms):       $(stats_line <"$work/stop.txt")"
echo "target: exec -> /readyz 200 < 50 ms"
