#!/usr/bin/env bash
# Throughput: starts the gateway (fresh data folder, SQLite store, echo agent), runs
# drawbridge_loadgen against it, prints the load generator's summary, stops the gateway.
# Repeats -R times (a fresh gateway each time) and prints best and median.
# When the config knows `store.durability`, also runs a short run with "power"
# (synchronous=FULL: an fsync per commit).
#
#   bench/throughput.sh [-c CONNECTIONS] [-d SECONDS] [-w WARMUP_S] [-k INFLIGHT] [-r RATE]
#                       [-R REPEATS] [-P POWER_SECONDS (0: skip)] [-q MAX_WAIT_S]
#                       [-- extra loadgen args]
# -q S: before each run wait up to S s for the machine to be >= 80% idle (default 0).
set -uo pipefail
source "$(dirname "$0")/common.sh"

conns=100 duration=20 warmup=3 inflight=1 rate=0 repeats=1 power_s=5 quiet=0
while getopts "c:d:w:k:r:R:P:q:" o; do
  case "$o" in
    c) conns="$OPTARG" ;;
    d) duration="$OPTARG" ;;
    w) warmup="$OPTARG" ;;
    k) inflight="$OPTARG" ;;
    r) rate="$OPTARG" ;;
    R) repeats="$OPTARG" ;;
    P) power_s="$OPTARG" ;;
    q) quiet="$OPTARG" ;;
    *) echo "usage: $0 [-c N] [-d S] [-w S] [-k K] [-r RATE] [-R REPEATS] [-P S] [-q S] [-- loadgen args]" >&2
       exit 64 ;;
  esac
done
shift $((OPTIND - 1))
need_bin "$DRAWBRIDGE_BIN"
need_bin "$LOADGEN_BIN"

bench_mktemp work
machine_line
echo "gateway: $DRAWBRIDGE_BIN   loadgen: $LOADGEN_BIN"

# one_run LABEL CONFIG DURATION -> appends the loadgen JSON to $work/LABEL.jsonl
one_run() {
  local label="$1" config="$2" dur="$3" n="$4"
  local data="$work/data-$label-$n" port log rc
  mkdir -p "$data"
  port="$(free_port)" || exit 2
  log="$work/gateway-$label-$n.log"
  [[ "$quiet" != 0 ]] && wait_quiet "$quiet" 80
  start_gateway "$data" "$config" "$port" "$log"
  wait_ready "$port" 10 || { cat "$log" >&2; exit 1; }
  echo "--- $label run $n: load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "+ $LOADGEN_BIN --url ws://127.0.0.1:$port --token $BENCH_TOKEN --connections $conns" \
       "--duration $dur --warmup $warmup --rate $rate --inflight $inflight --server-pid $GW_PID ${*:5}"
  "$LOADGEN_BIN" --url "ws://127.0.0.1:$port" --token "$BENCH_TOKEN" --connections "$conns" \
    --duration "$dur" --warmup "$warmup" --rate "$rate" --inflight "$inflight" \
    --server-pid "$GW_PID" "${@:5}" >"$work/out.json"
  rc=$?
  cat "$work/out.json" >>"$work/$label.jsonl"
  local rss hwm
  rss=$(awk '$1=="VmRSS:"{print $2}' "/proc/$GW_PID/status" 2>/dev/null)
  hwm=$(awk '$1=="VmHWM:"{print $2}' "/proc/$GW_PID/status" 2>/dev/null)
  echo "gateway after the run: VmRSS $((rss / 1024)) MiB, VmHWM $((hwm / 1024)) MiB, db $(du -sh "$data" | cut -f1)"
  stop_gateway "$GW_PID"
  echo "gateway stopped (rc $STOP_RC, ${STOP_MS} ms); loadgen rc $rc"
  grep -iE 'error|critical' "$log" | head -5
  [[ $rc -eq 0 ]] || FAILED=1
}

summary() {
  local label="$1"
  [[ -s "$work/$label.jsonl" ]] || return 0
  jq -s -r --arg name "$label" '
    def med: sort | if length % 2 == 1 then .[length/2|floor] else (.[length/2-1] + .[length/2]) / 2 end;
    "== \($name): \(length) run(s)",
    "   throughput finals/s: best \(map(.throughput) | max | floor)  median \(map(.throughput) | med | floor)",
    "   p50 ms: best \(map(.latencyMs.p50) | min * 1000 | round / 1000)  median \(map(.latencyMs.p50) | med * 1000 | round / 1000)",
    "   p99 ms: best \(map(.latencyMs.p99) | min * 1000 | round / 1000)  median \(map(.latencyMs.p99) | med * 1000 | round / 1000)",
    "   lost \(map(.lost) | add)  duplicates \(map(.duplicates) | add)  errors \(map(.errors) | add)",
    "   gateway CPU %: \(map(.gatewayCpuPct // 0 | floor) | tostring)  loadgen CPU %: \(map(.loadgenCpuPct | floor) | tostring)"
  ' "$work/$label.jsonl"
}

FAILED=0
config="$work/config-default.json"
write_config "$config" warn
for ((n = 1; n <= repeats; n++)); do one_run default "$config" "$duration" "$n" "$@"; done

power_config="$work/config-power.json"
write_config "$power_config" warn '"store": {"durability": "power"}'
if [[ "$power_s" != 0 ]]; then
  if "$DRAWBRIDGE_BIN" config validate "$power_config" >"$work/validate.txt" 2>&1; then
    one_run power "$power_config" "$power_s" 1 "$@"
  else
    echo "--- power run skipped: this build's config has no store.durability:"
    sed 's/^/    /' "$work/validate.txt" | head -5
  fi
fi

echo
summary default
summary power
echo "target: >= 5000 finals/s with 100 concurrent sessions (closed loop, echo agent, SQLite)"
exit "$FAILED"
