#!/usr/bin/env bash
# Where the gateway's time goes under the throughput load: starts the gateway (fresh data
# folder), drives it with drawbridge_loadgen (100 connections, closed loop) and, after a warm-up,
#   1. counts the gateway's system calls per message with `strace -c` (messages from /metrics),
#   2. samples it with `perf record --call-graph dwarf`,
# then prints the top functions by self time and by inclusive time.
#
#   bench/profile.sh [-c CONNECTIONS] [-s PERF_SECONDS] [-o OUT_DIR] [-q MAX_WAIT_S]
# Needs perf and strace (root or kernel.perf_event_paranoid <= 1). OUT_DIR keeps perf.data.
set -uo pipefail
source "$(dirname "$0")/common.sh"

conns=100 secs=8 out="" quiet=0
while getopts "c:s:o:q:" o; do
  case "$o" in
    c) conns="$OPTARG" ;;
    s) secs="$OPTARG" ;;
    o) out="$OPTARG" ;;
    q) quiet="$OPTARG" ;;
    *) echo "usage: $0 [-c CONNECTIONS] [-s PERF_SECONDS] [-o OUT_DIR] [-q MAX_WAIT_S]" >&2; exit 64 ;;
  esac
done
need_bin "$DRAWBRIDGE_BIN"
need_bin "$LOADGEN_BIN"
command -v perf >/dev/null || { echo "perf is not installed" >&2; exit 2; }
bench_mktemp work
[[ -z "$out" ]] && out="$work"
mkdir -p "$out"
config="$work/config.json"
write_config "$config" warn
[[ "$quiet" != 0 ]] && wait_quiet "$quiet" 80
machine_line

port="$(free_port)" || exit 2
start_gateway "$work/data" "$config" "$port" "$work/gateway.log"
wait_ready "$port" 10 || { cat "$work/gateway.log" >&2; exit 1; }
total=$((3 + secs + 2 + 6))
"$LOADGEN_BIN" --url "ws://127.0.0.1:$port" --token "$BENCH_TOKEN" --connections "$conns" \
  --duration "$total" --warmup 2 --server-pid "$GW_PID" >"$out/loadgen.json" 2>"$out/loadgen.txt" &
lg=$!
_bench_pids+=("$lg")
sleep 3

inbound() {
  local line=""
  if { exec 4<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null; then
    printf 'GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&4
    line=$(timeout 2 cat <&4 | awk '/^drawbridge_inbound_messages_total/{print $2}')
    exec 4<&- 4>&-
  fi
  echo "${line:-0}"
}

if command -v strace >/dev/null; then
  m0=$(inbound)
  timeout 2 strace -c -f -p "$GW_PID" -o "$out/strace.txt" 2>/dev/null
  m1=$(inbound)
  msgs=$((m1 - m0))
  echo "== system calls per message (strace -c for 2 s, $msgs messages; strace slows the gateway)"
  awk -v n="$msgs" 'NR > 2 && $NF != "total" && $4 ~ /^[0-9]+$/ && n > 0 {
                      printf "   %-12s %7.2f per message\n", $NF, $4 / n }' "$out/strace.txt" | head -8
fi
sleep 1
perf record -F 999 --call-graph dwarf,16384 -p "$GW_PID" -o "$out/perf.data" -- sleep "$secs" \
  >/dev/null 2>"$out/perf-record.txt"
wait "$lg"
cat "$out/loadgen.txt"
stop_gateway "$GW_PID"

echo "== top functions by self time (% of the gateway's samples)"
perf report -i "$out/perf.data" --no-children --sort dso,symbol --stdio -g none \
  --percent-limit 1 2>/dev/null | grep '%' | cut -c1-150
echo "== drawbridge functions by inclusive time (% of the gateway's samples)"
perf report -i "$out/perf.data" --children --sort symbol --stdio -g none --percent-limit 2 \
  2>/dev/null | grep '%' | grep -E 'drawbridge::|sqlite3_step|sqlite3WalFrames|Transaction|pwrite|sendmsg|fdatasync|fcntl|malloc|nlohmann' \
  | grep -v '(inlined)' | cut -c1-150 | head -45
echo "perf data: $out/perf.data"
