#!/usr/bin/env bash
# Idle memory: starts the gateway with a fresh data folder, waits until /readyz is 200, stays
# idle for S seconds (default 5), then reads VmRSS, VmHWM (peak RSS) and RssAnon/RssFile from
# /proc/PID/status, and stops it.
#
#   bench/idle_rss.sh [-s IDLE_SECONDS] [-n RUNS] [-q MAX_WAIT_S]
set -uo pipefail
source "$(dirname "$0")/common.sh"

idle=5
runs=1
quiet=0
while getopts "s:n:q:" o; do
  case "$o" in
    s) idle="$OPTARG" ;;
    n) runs="$OPTARG" ;;
    q) quiet="$OPTARG" ;;
    *) echo "usage: $0 [-s IDLE_SECONDS] [-n RUNS] [-q MAX_WAIT_S]" >&2; exit 64 ;;
  esac
done
need_bin "$DRAWBRIDGE_BIN"

bench_mktemp work
config="$work/config.json"
write_config "$config" warn
[[ "$quiet" != 0 ]] && wait_quiet "$quiet" 80
machine_line

kb_of() { awk -v k="$1:" '$1 == k {print $2}' "$2"; }
: >"$work/rss.txt"
for ((r = 1; r <= runs; r++)); do
  data="$work/data-$r"
  mkdir -p "$data"
  port="$(free_port)" || exit 2
  start_gateway "$data" "$config" "$port" "$work/run-$r.log"
  wait_ready "$port" 10 || { cat "$work/run-$r.log" >&2; exit 1; }
  sleep "$idle"
  cp "/proc/$GW_PID/status" "$work/status-$r" || exit 1
  rss=$(kb_of VmRSS "$work/status-$r")
  hwm=$(kb_of VmHWM "$work/status-$r")
  anon=$(kb_of RssAnon "$work/status-$r")
  file=$(kb_of RssFile "$work/status-$r")
  threads=$(kb_of Threads "$work/status-$r")
  stop_gateway "$GW_PID"
  awk -v r="$r" -v rss="$rss" -v hwm="$hwm" -v anon="$anon" -v file="$file" -v th="$threads" -v idle="$idle" \
    'BEGIN{printf "run %d: after %s s idle: VmRSS %.2f MiB  VmHWM %.2f MiB  (RssAnon %.2f MiB, RssFile %.2f MiB, %d threads)\n",
           r, idle, rss/1024, hwm/1024, anon/1024, file/1024, th}'
  awk -v rss="$rss" 'BEGIN{printf "%.3f\n", rss/1024}' >>"$work/rss.txt"
done
[[ $runs -gt 1 ]] && echo "VmRSS (MiB): $(stats_line <"$work/rss.txt")"
echo "target: idle RSS after 5 s < 20 MB"
