#!/usr/bin/env bash
# Restarts (issue 3): three measurements of the in-process restart, each on a fresh gateway
# (fresh data folder, SQLite store, echo agent, gateway.restart.delayMs 0 and cooldownMs 0):
#
#  1. latency  restart latency after the last reply: an echo agent that answers after
#              TURN_DELAY_MS; per run a chat.send, then gateway.restart.request {delayMs: 0}
#              while the turn runs; status.lastRestart.afterLastReplyMs (last reply delivered ->
#              teardown begins) read after the restart. Target < 5 ms.
#  2. idle     in-process restart of an idle gateway: SIGUSR1 -> first GET /readyz 200 of the
#              new generation (tight poll), and status.lastRestart.durationMs. Target < 50 ms.
#  3. load     restart under load: drawbridge_loadgen --reconnect --verify, open loop RATE msg/s
#              over SESSIONS sessions for SECONDS s, SIGUSR1 every EVERY s; messages lost and
#              replies duplicated (from the transcripts) must be 0; p99 latency reported. The
#              echo agent answers after LOAD_TURN_MS (-l, default 0); connects the gateway
#              refused are counted from its log.
#
#  (baseline, -b S: the same load for S s without restarts, on a fresh gateway, to compare
#              the latency; not run by default)
#
#   bench/restart.sh [-n RUNS] [-t TURN_DELAY_MS] [-l LOAD_TURN_MS] [-r RATE] [-c SESSIONS]
#                    [-d SECONDS] [-e EVERY_S] [-b BASELINE_S] [-o latency,idle,load] [-q MAX_WAIT_S]
#                    [-L LOG_DIR] [-- extra loadgen args]
# -q S: before each part wait up to S s for the machine to be >= 80% idle (default 0).
# -L DIR: keep the gateway logs and JSON results there (the work folder is removed on exit).
# Environment: DRAWBRIDGE_BIN, LOADGEN_BIN, RESTART_PROBE_BIN, BUILD_DIR, BENCH_TMP.
set -uo pipefail
source "$(dirname "$0")/common.sh"
RESTART_PROBE_BIN="${RESTART_PROBE_BIN:-$BUILD_DIR/bench/drawbridge_restart_probe}"

runs=20 turn_delay=200 rate=200 sessions=50 seconds=60 every=2 only="latency,idle,load" quiet=0
keep="" baseline=0 load_turn=0
while getopts "n:t:l:r:c:d:e:b:o:q:L:" o; do
  case "$o" in
    n) runs="$OPTARG" ;;
    t) turn_delay="$OPTARG" ;;
    l) load_turn="$OPTARG" ;;
    r) rate="$OPTARG" ;;
    c) sessions="$OPTARG" ;;
    d) seconds="$OPTARG" ;;
    e) every="$OPTARG" ;;
    b) baseline="$OPTARG" ;;
    o) only="$OPTARG" ;;
    q) quiet="$OPTARG" ;;
    L) keep="$OPTARG" ;;
    *) echo "usage: $0 [-n RUNS] [-t TURN_DELAY_MS] [-l LOAD_TURN_MS] [-r RATE] [-c SESSIONS] [-d SECONDS] [-e EVERY_S] [-b BASELINE_S] [-o latency,idle,load] [-q S] [-L DIR] [-- loadgen args]" >&2
       exit 64 ;;
  esac
done
shift $((OPTIND - 1))
need_bin "$DRAWBRIDGE_BIN"
need_bin "$LOADGEN_BIN"
need_bin "$RESTART_PROBE_BIN"
command -v jq >/dev/null || { echo "jq is needed for the summary" >&2; exit 2; }

bench_mktemp work
machine_line
echo "gateway: $DRAWBRIDGE_BIN"
echo "probe: $RESTART_PROBE_BIN   loadgen: $LOADGEN_BIN"
[[ -n "$keep" ]] && mkdir -p "$keep"

# A restart begins as soon as it is asked for, and any number may follow each other.
restart_gw='"restart": {"delayMs": 0, "cooldownMs": 0}'
FAILED=0
SUMMARY=()

# part_start LABEL CONFIG: a fresh gateway for one part; sets PORT, LOG, DATA.
part_start() {
  local label="$1" config="$2"
  DATA="$work/data-$label"
  LOG="$work/gateway-$label.log"
  mkdir -p "$DATA"
  PORT="$(free_port)" || exit 2
  [[ "$quiet" != 0 ]] && wait_quiet "$quiet" 80
  echo
  echo "=== $label: load $(cut -d' ' -f1-3 /proc/loadavg)"
  start_gateway "$DATA" "$config" "$PORT" "$LOG"
  wait_ready "$PORT" 10 || { cat "$LOG" >&2; exit 1; }
}

part_stop() {
  local label="$1"
  stop_gateway "$GW_PID"
  echo "gateway stopped (rc $STOP_RC, ${STOP_MS} ms)"
  echo "gateway warnings and errors: $(grep -ciE '\b(warn|warning|error|critical)\b' "$LOG")"
  grep -iE '\b(warn|warning|error|critical)\b' "$LOG" | head -8 | sed 's/^/    /'
  [[ -n "$keep" ]] && cp "$LOG" "$keep/gateway-$label.log"
}

# The gateway's own line per restart: "generation N ready: restart (R) took X ms, the new
# generation started in Y ms" -> X (or Y with $2 = started).
log_restart_ms() {
  if [[ "${2:-}" == started ]]; then
    grep -o 'the new generation started in [0-9.]* ms' "$1" | grep -o '[0-9.]*' | grep -v '^$'
  else
    grep -o 'ready: restart (.*) took [0-9.]* ms' "$1" | grep -o 'took [0-9.]*' | cut -d' ' -f2
  fi
}

jq_values() { jq -r "select(.summary != true) | $2 | select(. != null)" "$1"; }

# ---- 1. restart latency after the last reply ------------------------------------------------
if [[ ",$only," == *",latency,"* ]]; then
  cfg="$work/config-latency.json"
  write_config "$cfg" info "\"agents\": {\"main\": {\"type\": \"echo\", \"delayMs\": $turn_delay}}" \
    "$restart_gw"
  part_start latency "$cfg"
  echo "+ $RESTART_PROBE_BIN --port $PORT --token $BENCH_TOKEN --mode turn --runs $runs"
  "$RESTART_PROBE_BIN" --port "$PORT" --token "$BENCH_TOKEN" --mode turn --runs "$runs" \
    >"$work/latency.jsonl"
  rc=$?
  part_stop latency
  [[ -n "$keep" ]] && cp "$work/latency.jsonl" "$keep/"
  [[ $rc -eq 0 ]] || { echo "probe rc $rc"; FAILED=1; }
  a=$(jq_values "$work/latency.jsonl" .afterLastReplyMs | stats_line 3)
  c=$(jq_values "$work/latency.jsonl" .clientFinalToShutdownMs | stats_line 3)
  d=$(jq_values "$work/latency.jsonl" .durationMs | stats_line)
  h=$(jq -r 'select(.summary == true) | "history: \(.historyOk // 0) of \(.runs) runs answered exactly once, failures \(.failures)"' "$work/latency.jsonl")
  SUMMARY+=("1. last reply -> restart begins (lastRestart.afterLastReplyMs, ms): $a   [target < 5 ms]"
            "   client view, final event -> shutdown event (ms):               $c"
            "   lastRestart.durationMs (drain incl. the ${turn_delay} ms turn, ms):     $d"
            "   $h")
fi

# ---- 2. in-process restart, idle -------------------------------------------------------------
if [[ ",$only," == *",idle,"* ]]; then
  cfg="$work/config-idle.json"
  write_config "$cfg" info "" "$restart_gw"
  part_start idle "$cfg"
  echo "+ $RESTART_PROBE_BIN --port $PORT --token $BENCH_TOKEN --mode idle --runs $runs --server-pid $GW_PID"
  "$RESTART_PROBE_BIN" --port "$PORT" --token "$BENCH_TOKEN" --mode idle --runs "$runs" \
    --server-pid "$GW_PID" >"$work/idle.jsonl"
  rc=$?
  part_stop idle
  [[ -n "$keep" ]] && cp "$work/idle.jsonl" "$keep/"
  [[ $rc -eq 0 ]] || { echo "probe rc $rc"; FAILED=1; }
  e=$(jq_values "$work/idle.jsonl" .requestToReadyMs | stats_line)
  d=$(jq_values "$work/idle.jsonl" .durationMs | stats_line)
  l=$(log_restart_ms "$LOG" | stats_line)
  s=$(log_restart_ms "$LOG" started | stats_line)
  m=$(jq -r 'select(.missed503 == true) | .run' "$work/idle.jsonl" | wc -l)
  SUMMARY+=("2. idle: SIGUSR1 -> /readyz 200 of the new generation (ms):    $e   [target < 50 ms]"
            "   lastRestart.durationMs (drain start -> ready, whole ms):      $d"
            "   gateway log 'restart took X ms':                              $l"
            "   gateway log 'the new generation started in Y ms':             $s"
            "   runs whose polls missed the 503 window (generation from /metrics): $m")
fi

# ---- 3. restarts under load ------------------------------------------------------------------
if [[ ",$only," == *",load,"* ]]; then
  cfg="$work/config-load.json"
  write_config "$cfg" info "\"agents\": {\"main\": {\"type\": \"echo\", \"delayMs\": $load_turn}}" \
    "$restart_gw"
  part_start load "$cfg"
  echo "+ $LOADGEN_BIN --url ws://127.0.0.1:$PORT --token $BENCH_TOKEN --connections $sessions" \
       "--rate $rate --duration $seconds --warmup 0 --grace 15 --reconnect --verify" \
       "--restart-every $every --server-pid $GW_PID $*"
  "$LOADGEN_BIN" --url "ws://127.0.0.1:$PORT" --token "$BENCH_TOKEN" --connections "$sessions" \
    --rate "$rate" --duration "$seconds" --warmup 0 --grace 15 --reconnect --verify \
    --restart-every "$every" --server-pid "$GW_PID" "$@" >"$work/load.json"
  rc=$?
  gens=$(grep -c 'ready: restart (' "$LOG")
  refused=$(grep -c 'connect refused' "$LOG")
  ready_after=$(http_status "$PORT" /readyz)
  part_stop load
  [[ -n "$keep" ]] && cp "$work/load.json" "$keep/"
  echo "loadgen rc $rc; restarts completed (gateway log): $gens; /readyz after the run: $ready_after"
  [[ $rc -eq 0 ]] || FAILED=1
  l=$(log_restart_ms "$LOG" | stats_line)
  r=$(jq -r '
    "sent \(.sent)  finals with latency \(.finals)  finals missed while reconnecting \(.finalMissed)  unsent \(.unsent // 0)  errors \(.errors)",
    "   verify: lost \(.verify.lost // "n/a") (accepted \(.verify.lostAccepted // "n/a"))  duplicated replies \(.verify.duplicatedReplies // "n/a")  duplicated user entries \(.verify.duplicatedUserEntries // "n/a")  checked \(.verify.messagesChecked // 0) (\(.verify.ok // 0) ok)",
    "   event level: no final and no reply \(.lost)  duplicate finals \(.duplicates)",
    "   latency ms (finals received): p50 \(.latencyMs.p50 * 100 | round / 100)  p90 \(.latencyMs.p90 * 100 | round / 100)  p99 \(.latencyMs.p99 * 100 | round / 100)  max \(.latencyMs.max * 100 | round / 100)",
    "   SIGUSR1 sent \(.reconnect.restartsSignalled)  disconnects \(.reconnect.disconnects)  reconnects \(.reconnect.reconnects)  re-sent with the same key \(.reconnect.resentSameKey)  longest down \(.reconnect.longestDownMs | round) ms"
  ' "$work/load.json")
  SUMMARY+=("3. load: $rate msg/s over $sessions sessions, ${load_turn} ms turns, SIGUSR1 every $every s for $seconds s: $gens restarts completed, $refused connect(s) refused"
            "   $r"
            "   gateway log 'restart took X ms' under load:                   $l")
fi

# ---- baseline: the same load without restarts ------------------------------------------------
if [[ "$baseline" != 0 ]]; then
  cfg="$work/config-baseline.json"
  write_config "$cfg" info "" "$restart_gw"
  part_start baseline "$cfg"
  echo "+ $LOADGEN_BIN --url ws://127.0.0.1:$PORT --token $BENCH_TOKEN --connections $sessions" \
       "--rate $rate --duration $baseline --warmup 0 --grace 15 --reconnect --verify --server-pid $GW_PID $*"
  "$LOADGEN_BIN" --url "ws://127.0.0.1:$PORT" --token "$BENCH_TOKEN" --connections "$sessions" \
    --rate "$rate" --duration "$baseline" --warmup 0 --grace 15 --reconnect --verify \
    --server-pid "$GW_PID" "$@" >"$work/baseline.json"
  rc=$?
  part_stop baseline
  [[ -n "$keep" ]] && cp "$work/baseline.json" "$keep/"
  [[ $rc -eq 0 ]] || FAILED=1
  r=$(jq -r '"sent \(.sent)  verify lost \(.verify.lost // "n/a")  duplicated \(.verify.duplicatedReplies // "n/a")  latency ms p50 \(.latencyMs.p50 * 100 | round / 100)  p90 \(.latencyMs.p90 * 100 | round / 100)  p99 \(.latencyMs.p99 * 100 | round / 100)  max \(.latencyMs.max * 100 | round / 100)"' "$work/baseline.json")
  SUMMARY+=("   baseline, same load for $baseline s without restarts: $r")
fi

echo
echo "== summary ($(date -u +%FT%TZ); load now $(cut -d' ' -f1-3 /proc/loadavg))"
printf '%s\n' "${SUMMARY[@]}"
exit "$FAILED"
