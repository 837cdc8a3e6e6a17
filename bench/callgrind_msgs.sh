#!/usr/bin/env bash
# Instructions per message, independent of the machine's load: runs the gateway under
# `valgrind --tool=callgrind` (fresh data folder), sends a warm-up, zeroes the counters, sends
# N messages closed loop, dumps, and prints the gateway's instructions (Ir) per message in total
# and for a few inclusive functions. Slow (valgrind runs the gateway ~50x slower), so batches
# are larger than without it: compare builds with each other, not with real-time figures.
#
#   bench/callgrind_msgs.sh [-c CONNECTIONS] [-n MESSAGES] [-o OUT_DIR]
set -uo pipefail
source "$(dirname "$0")/common.sh"

conns=100 msgs=3000 out=""
while getopts "c:n:o:" o; do
  case "$o" in
    c) conns="$OPTARG" ;;
    n) msgs="$OPTARG" ;;
    o) out="$OPTARG" ;;
    *) echo "usage: $0 [-c CONNECTIONS] [-n MESSAGES] [-o OUT_DIR]" >&2; exit 64 ;;
  esac
done
need_bin "$DRAWBRIDGE_BIN"
need_bin "$LOADGEN_BIN"
command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 2; }
bench_mktemp work
[[ -z "$out" ]] && out="$work"
mkdir -p "$out"
config="$work/config.json"
write_config "$config" warn
port="$(free_port)" || exit 2
GW_T0=$EPOCHREALTIME
valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.out" \
  "$DRAWBRIDGE_BIN" --config "$config" run --port "$port" --data-dir "$work/data" \
  >"$work/gateway.log" 2>&1 &
GW_PID=$!
_bench_pids+=("$GW_PID")
wait_ready "$port" 60 || { cat "$work/gateway.log" >&2; exit 1; }
lg() {
  "$LOADGEN_BIN" --url "ws://127.0.0.1:$port" --token "$BENCH_TOKEN" --connections "$conns" \
    --messages "$1" --warmup 0 --grace 30 --connect-timeout 30 >"$work/lg.json" 2>"$work/lg.txt"
}
lg $((conns * 3)) || { cat "$work/lg.txt" >&2; exit 1; }
callgrind_control -z "$GW_PID" >/dev/null
lg "$msgs" || { cat "$work/lg.txt" >&2; exit 1; }
callgrind_control -d "$GW_PID" >/dev/null
sleep 1
stop_gateway "$GW_PID"
# The dump asked for after the measured messages (the one at exit is callgrind.out itself).
dump="$out/callgrind.out.1"
[[ -s "$dump" ]] || { echo "no callgrind dump in $out" >&2; exit 1; }
total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
echo "gateway under callgrind: $msgs messages, $conns connections; dump $dump"
awk -v t="$total" -v m="$msgs" 'BEGIN { printf "   Ir per message: %.0f  (IR_PER_MSG)\n", t / m }'
callgrind_annotate --inclusive=yes "$dump" 2>/dev/null |
  grep -E 'StoreThread::loop|commit_batch|WalCheckpoint|WalFrames|stage_reply|insert_inbound|mark_sent|on_chat_event|do_write|handle_frame|parse_bounded_json|chat_send|sqlite3BtreeOpen|sqlite3VdbeExec|__libc_sendmsg|malloc \[|free \[' |
  awk -v m="$msgs" '{ v = $1; gsub(",", "", v); $1 = ""; if (v / m >= 200) printf "   %9.0f /msg %s\n", v / m, substr($0, 1, 140) }' | head -30
