#!/usr/bin/env bash
# Config reload (issue 4): how long a hot config change takes to be applied, each part on a
# fresh gateway (fresh data folder, echo agent "main", local channel, log level info,
# gateway.restart.cooldownMs 0, bound to 127.0.0.1):
#
#  1. patch    config.patch RPC -> change applied, hot: per run config.get (for the hash), then
#              config.patch changing channels.local.maxMessageChars (restart-channel) or
#              agents.main.prefix (swap-agent); the gateway answers once the change is applied,
#              so the round trip is the measure. PATCH_RUNS runs per variant, gateway on the
#              default debounce (300 ms). Target < 10 ms.
#  2. edit     file edit -> change applied, hot: the config file rewritten in place with a new
#              agents.main.prefix; status.config.lastReload.appliedAtUnixUs minus the time of the
#              write, and that minus gateway.reload.debounceMs. EDIT_RUNS edits per debounce in
#              DEBOUNCES. Target: debounce + < 20 ms.
#
#   bench/reload.sh [-n PATCH_RUNS] [-m EDIT_RUNS] [-D DEBOUNCES] [-p POLL_US] [-o patch,edit]
#                   [-q MAX_WAIT_S] [-L LOG_DIR]
# -n: config.patch runs per variant (default 200); -m: edits per debounce (default 100);
# -D: comma-separated gateway.reload.debounceMs values for the edit part (default 300,0);
# -p: pause between status polls while waiting for an edit to apply (default 1000 µs);
# -q S: before each part wait up to S s for the machine to be >= 80% idle (default 0);
# -L DIR: keep the gateway logs and JSON results there (the work folder is removed on exit).
# Environment: DRAWBRIDGE_BIN, RELOAD_PROBE_BIN, BUILD_DIR, BENCH_TMP.
set -uo pipefail
source "$(dirname "$0")/common.sh"
RELOAD_PROBE_BIN="${RELOAD_PROBE_BIN:-$BUILD_DIR/bench/drawbridge_reload_probe}"

patch_runs=200 edit_runs=100 debounces="300,0" poll_us=1000 only="patch,edit" quiet=0 keep=""
while getopts "n:m:D:p:o:q:L:" o; do
  case "$o" in
    n) patch_runs="$OPTARG" ;;
    m) edit_runs="$OPTARG" ;;
    D) debounces="$OPTARG" ;;
    p) poll_us="$OPTARG" ;;
    o) only="$OPTARG" ;;
    q) quiet="$OPTARG" ;;
    L) keep="$OPTARG" ;;
    *) echo "usage: $0 [-n PATCH_RUNS] [-m EDIT_RUNS] [-D DEBOUNCES] [-p POLL_US] [-o patch,edit] [-q S] [-L DIR]" >&2
       exit 64 ;;
  esac
done
shift $((OPTIND - 1))
need_bin "$DRAWBRIDGE_BIN"
need_bin "$RELOAD_PROBE_BIN"
command -v jq >/dev/null || { echo "jq is needed for the summary" >&2; exit 2; }

bench_mktemp work
machine_line
echo "gateway: $DRAWBRIDGE_BIN"
echo "probe: $RELOAD_PROBE_BIN"
echo "commit: $(git -C "$BENCH_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(
  [[ -n "$(git -C "$BENCH_ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ]] && echo ' (working tree has changes)')"
[[ -n "$keep" ]] && mkdir -p "$keep"

FAILED=0
SUMMARY=()

# reload_config FILE DEBOUNCE_MS
reload_config() {
  write_config "$1" info \
    '"agents": {"main": {"type": "echo"}}, "channels": {"local": {"maxMessageChars": 0}}' \
    "\"bind\": \"127.0.0.1\", \"reload\": {\"debounceMs\": $2}, \"restart\": {\"cooldownMs\": 0}"
}

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

# stat_row FILE MEASURE: "p50 / p90 / p99 / max (n)" from the probe's summary line.
stat_row() {
  jq -r --arg m "$2" 'select(.summary == true) | .stats[$m] |
    if . == null or .n == 0 then "n/a" else
    "\(.p50 * 1000 | round / 1000) / \(.p90 * 1000 | round / 1000) / \(.p99 * 1000 | round / 1000) / \(.max * 1000 | round / 1000)  (n \(.n))" end' "$1"
}
counts() {
  jq -r 'select(.summary == true) | "failed \(.failures), not hot \(.notHot)"' "$1"
}

# run_probe LABEL ARGS...: runs the probe on the part's gateway; its JSON lines go to
# $work/LABEL.jsonl, its summary to the terminal.
run_probe() {
  local label="$1"
  shift
  echo "+ $RELOAD_PROBE_BIN --port $PORT --token $BENCH_TOKEN $*"
  "$RELOAD_PROBE_BIN" --port "$PORT" --token "$BENCH_TOKEN" "$@" >"$work/$label.jsonl"
  local rc=$?
  [[ $rc -eq 0 ]] || { echo "probe rc $rc"; FAILED=1; }
  [[ -n "$keep" ]] && cp "$work/$label.jsonl" "$keep/"
  return 0
}

# ---- 1. config.patch -> applied --------------------------------------------------------------
if [[ ",$only," == *",patch,"* ]]; then
  for variant in channel agent; do
    label="patch-$variant"
    cfg="$work/config-$label.json"
    reload_config "$cfg" 300
    part_start "$label" "$cfg"
    run_probe "$label" --mode "$label" --runs "$patch_runs"
    log_lines=$(grep -c 'config.patch wrote' "$LOG")
    part_stop "$label"
    echo "gateway log: $log_lines 'config.patch wrote' lines"
  done
  SUMMARY+=("1. config.patch -> change applied (RPC round trip), ms: p50 / p90 / p99 / max   [target < 10 ms; OpenClaw ~450 ms]"
            "   channels.local.maxMessageChars (restart-channel):  $(stat_row "$work/patch-channel.jsonl" patchMs)   $(counts "$work/patch-channel.jsonl")"
            "     … of which the apply step (lastReload.durationMs): $(stat_row "$work/patch-channel.jsonl" applyMs)"
            "   agents.main.prefix (swap-agent):                   $(stat_row "$work/patch-agent.jsonl" patchMs)   $(counts "$work/patch-agent.jsonl")"
            "     … of which the apply step (lastReload.durationMs): $(stat_row "$work/patch-agent.jsonl" applyMs)"
            "   config.get round trip (reference), channel part:  $(stat_row "$work/patch-channel.jsonl" configGetMs)"
            "   config.get round trip (reference), agent part:    $(stat_row "$work/patch-agent.jsonl" configGetMs)")
fi

# ---- 2. file edit -> applied -----------------------------------------------------------------
if [[ ",$only," == *",edit,"* ]]; then
  SUMMARY+=("2. file edit (in place) -> change applied (appliedAtUnixUs - write), ms: p50 / p90 / p99 / max   [target debounce + < 20 ms; OpenClaw ~880 ms]")
  IFS=, read -ra dlist <<<"$debounces"
  for d in "${dlist[@]}"; do
    label="edit-$d"
    cfg="$work/config-$label.json"
    reload_config "$cfg" "$d"
    part_start "$label" "$cfg"
    run_probe "$label" --mode edit --config "$cfg" --runs "$edit_runs" --poll-us "$poll_us"
    part_stop "$label"
    SUMMARY+=("   debounceMs $d: write -> applied:       $(stat_row "$work/$label.jsonl" appliedMs)   $(counts "$work/$label.jsonl")"
              "   debounceMs $d: minus the debounce:     $(stat_row "$work/$label.jsonl" overDebounceMs)"
              "   debounceMs $d: apply step (durationMs): $(stat_row "$work/$label.jsonl" applyMs)")
  done
fi

echo
echo "== summary ($(date -u +%FT%TZ); load now $(cut -d' ' -f1-3 /proc/loadavg))"
printf '%s\n' "${SUMMARY[@]}"
exit "$FAILED"
