#!/usr/bin/env bash
# Load-independent cost of a message: starts the gateway (fresh data folder), drives it with
# drawbridge_loadgen (closed loop), and over a window after the warm-up reads
#   - the gateway's CPU time per message, per thread (/proc/PID/task/*/schedstat, ns),
#   - system calls and bytes written per message (/proc/PID/io syscr, syscw, wchar, write_bytes),
#   - commits per message (a uprobe on SqliteStore::commit_batch counted by `perf stat`; only
#     when perf can add probes; the gateway runs from a private copy of the binary for it),
#   - WAL frames and database-file page writes per message (`strace -e pwrite64` for 1 s after
#     the window; strace slows the gateway, the ratio per message is what counts),
# where "messages" are drawbridge_inbound_messages_total from /metrics. On a machine shared
# with other work these stay put while msg/s moves.
#
#   bench/proxies.sh [-c CONNECTIONS] [-s WINDOW_S] [-w WARMUP_S] [-R REPEATS] [-n] [-q MAX_WAIT_S]
# -n: no perf probe, no strace (CPU, syscalls and bytes only).
set -uo pipefail
source "$(dirname "$0")/common.sh"

conns=100 secs=8 warm=4 repeats=1 quiet=0 light=0
while getopts "c:s:w:R:nq:" o; do
  case "$o" in
    c) conns="$OPTARG" ;;
    s) secs="$OPTARG" ;;
    w) warm="$OPTARG" ;;
    R) repeats="$OPTARG" ;;
    n) light=1 ;;
    q) quiet="$OPTARG" ;;
    *) echo "usage: $0 [-c CONNECTIONS] [-s WINDOW_S] [-w WARMUP_S] [-R REPEATS] [-n] [-q S]" >&2
       exit 64 ;;
  esac
done
need_bin "$DRAWBRIDGE_BIN"
need_bin "$LOADGEN_BIN"
bench_mktemp work
config="$work/config.json"
write_config "$config" warn
machine_line
echo "gateway: $DRAWBRIDGE_BIN"

# The uprobe needs a file of its own (perf ties it to the path): a private copy of the binary.
probe=""
bin="$DRAWBRIDGE_BIN"
if [[ "$light" == 0 ]] && command -v perf >/dev/null; then
  bin="$work/drawbridge-proxies-$$"
  cp "$DRAWBRIDGE_BIN" "$bin"
  addr=$(nm "$bin" | awk '$3 == "_ZN10drawbridge5store11SqliteStore12commit_batchEv" {print $1}')
  group="dbproxies$$"
  if [[ -n "$addr" ]] && perf probe -q -x "$bin" -a "$group:commits=0x$addr" >/dev/null 2>&1; then
    probe="$group:commits"
    trap 'perf probe -q -d "$probe" >/dev/null 2>&1; bench_cleanup' EXIT
  else
    echo "(no uprobe: commits per message not counted)"
  fi
fi

metric() {
  local line=""
  if { exec 4<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null; then
    printf 'GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&4
    line=$(timeout 2 cat <&4 | awk -v m="$1" '$1 == m {print $2}')
    exec 4<&- 4>&-
  fi
  echo "${line:-0}"
}
# thread name -> on-CPU ns, one "name ns" line per thread
threads() {
  local t name
  for t in /proc/"$GW_PID"/task/*; do
    if [[ "${t##*/}" == "$GW_PID" ]]; then name="main/event-loop"; else name="thread-${t##*/}"; fi
    # on-CPU ns (schedstat), then user and system ticks (stat fields 14, 15)
    printf '%s %s %s\n' "$name" "$(cut -d' ' -f1 "$t/schedstat")" \
      "$(sed 's/.*) //' "$t/stat" | awk '{print $12 " " $13}')"
  done
}
io() { awk '{printf "%s=%s ", $1, $2}' "/proc/$GW_PID/io"; }

for ((n = 1; n <= repeats; n++)); do
  [[ "$quiet" != 0 ]] && wait_quiet "$quiet" 80
  port="$(free_port)" || exit 2
  DRAWBRIDGE_BIN="$bin" start_gateway "$work/data-$n" "$config" "$port" "$work/gateway-$n.log"
  wait_ready "$port" 10 || { cat "$work/gateway-$n.log" >&2; exit 1; }
  "$LOADGEN_BIN" --url "ws://127.0.0.1:$port" --token "$BENCH_TOKEN" --connections "$conns" \
    --duration $((secs + warm + 3)) --warmup 1 --server-pid "$GW_PID" \
    >"$work/loadgen-$n.json" 2>"$work/loadgen-$n.txt" &
  lg=$!
  _bench_pids+=("$lg")
  sleep "$warm"
  perf_pid=""
  if [[ -n "$probe" ]]; then
    perf stat -x, -e "$probe" -p "$GW_PID" -o "$work/perfstat-$n.txt" -- sleep "$secs" &
    perf_pid=$!
  fi
  m0=$(metric drawbridge_inbound_messages_total)
  t0=$EPOCHREALTIME
  threads >"$work/th0"
  io0=$(io)
  sleep "$secs"
  m1=$(metric drawbridge_inbound_messages_total)
  t1=$EPOCHREALTIME
  threads >"$work/th1"
  io1=$(io)
  [[ -n "$perf_pid" ]] && wait "$perf_pid"
  if [[ "$light" == 0 ]] && command -v strace >/dev/null; then
    s0=$(metric drawbridge_inbound_messages_total)
    timeout 1 strace -f -y -e trace=pwrite64 -p "$GW_PID" -o "$work/strace-$n.txt" 2>/dev/null
    s1=$(metric drawbridge_inbound_messages_total)
  fi
  wait "$lg"
  lg_rc=$?
  stop_gateway "$GW_PID"

  msgs=$((m1 - m0))
  secs_real=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b - a}')
  echo "--- run $n: $msgs messages in ${secs_real} s ($(awk -v m="$msgs" -v s="$secs_real" \
    'BEGIN{printf "%d", m / s}') msg/s, load $(cut -d' ' -f1-3 /proc/loadavg)); loadgen rc $lg_rc"
  tick=$(getconf CLK_TCK)
  join <(sort "$work/th0") <(sort "$work/th1") | awk -v m="$msgs" -v hz="$tick" '
    { d = $5 - $2; tot += d; u = ($6 - $3) / hz * 1e6 / m; s = ($7 - $4) / hz * 1e6 / m
      if (d > 1e6) printf "   %-24s %7.1f us/msg (user %.0f, system %.0f)\n", $1, d / 1000 / m, u, s }
    END { printf "   %-24s %7.1f us/msg  (CPU_US_PER_MSG)\n", "gateway, all threads", tot / 1000 / m }'
  awk -v a="$io0" -v b="$io1" -v m="$msgs" 'BEGIN {
    split(a, x, " "); split(b, y, " ")
    for (i in x) { split(x[i], p, "="); v0[p[1]] = p[2] }
    for (i in y) { split(y[i], p, "="); v1[p[1]] = p[2] }
    printf "   syscalls/msg: read %.2f  write %.2f   bytes/msg: wchar %.0f  write_bytes %.0f\n",
      (v1["syscr:"] - v0["syscr:"]) / m, (v1["syscw:"] - v0["syscw:"]) / m,
      (v1["wchar:"] - v0["wchar:"]) / m, (v1["write_bytes:"] - v0["write_bytes:"]) / m }'
  if [[ -s "$work/perfstat-$n.txt" ]]; then
    awk -F, -v m="$msgs" '$3 ~ /commits/ { printf "   commits/msg: %.4f (%d commits)\n", $1 / m, $1 }' \
      "$work/perfstat-$n.txt"
  fi
  if [[ -s "$work/strace-$n.txt" ]]; then
    awk -v m="$((s1 - s0))" '/pwrite64\(/ {
        f = ($0 ~ /-wal>/) ? "wal" : "db"; n[f]++; if ($NF >= 4096) pages[f]++ }
      END { if (m > 0) printf "   under strace (%d msgs): WAL pwrite %.2f/msg (page frames %.2f), db-file pwrite %.2f/msg\n",
              m, n["wal"] / m, pages["wal"] / m, n["db"] / m }' "$work/strace-$n.txt"
  fi
  jq -r '"   loadgen: throughput \(.throughput | floor) msg/s, p50 \(.latencyMs.p50) ms, gateway CPU \(.gatewayCpuPct | floor) %, lost \(.lost) dup \(.duplicates) errors \(.errors)"' \
    "$work/loadgen-$n.json" 2>/dev/null
done
