#!/usr/bin/env bash
# Re-exec restarts (issue 5): SIGUSR2 with no supervisor (DRAWBRIDGE_SUPERVISOR=none) makes the
# gateway drain, pause accepting, start a fresh process on its listening socket (LISTEN_FDS)
# and exit 0 once that one reports ready. drawbridge_restart_probe --mode reexec starts the
# gateway itself, as a child subreaper, so that it can time the old process's exit (pidfd,
# waitpid), reap the successors and stop the last one by pid. Per part, on a fresh gateway
# (fresh data folder, SQLite, echo agent, gateway.restart {delayMs 0, cooldownMs 0}), RUNS
# hand-offs, one every INTERVAL_MS:
#
#  idle  no load: SIGUSR2 -> old process exits, and SIGUSR2 -> first `status` answered by the
#        new pid (a fresh WebSocket per attempt). Target: the new process serves < 100 ms.
#  conn  the same while LOAD_THREADS threads open fresh connections, each `GET /healthz`, as
#        fast as they go: refused connects, resets, EOF before the answer, timeouts and non-200
#        answers counted apart. Target: 0 of each.
#  chat  the same under a light chat load: a chat.send every CHAT_MS on one WebSocket that
#        reconnects after each hand-off; every message answered exactly once (chat.history).
#  phases (not run by default; needs perf) the idle part again under `perf record` of a few
#        tracepoints (signal, flock, fork, exec, the successor's write to its ready pipe, exit):
#        where the time of each hand-off goes, at microsecond resolution.
#
#   bench/reexec.sh [-n RUNS] [-i INTERVAL_MS] [-l LOAD_THREADS] [-c CHAT_MS] [-x EXEC_RUNS]
#                   [-o idle,conn,chat,phases] [-q MAX_WAIT_S] [-L LOG_DIR] [-B]
# -x N: first time N spawns of `drawbridge --version` (spawn -> exit), the floor under a hand-off.
# -q S: before each part wait up to S s for the machine to be >= 80% idle (default 0).
# -L DIR: keep the gateway logs and JSON results there (the work folder is removed on exit).
# -B: do not build (by default: configure build-bench if needed, then build the gateway and the
#     probe, retrying while another build holds the build folder).
# Environment: DRAWBRIDGE_BIN, RESTART_PROBE_BIN, BUILD_DIR, BENCH_TMP.
set -uo pipefail
source "$(dirname "$0")/common.sh"
RESTART_PROBE_BIN="${RESTART_PROBE_BIN:-$BUILD_DIR/bench/drawbridge_restart_probe}"

runs=20 interval=1000 threads=2 chat_ms=50 exec_runs=20 only="idle,conn,chat" quiet=0 keep=""
build=1
while getopts "n:i:l:c:x:o:q:L:B" o; do
  case "$o" in
    n) runs="$OPTARG" ;;
    i) interval="$OPTARG" ;;
    l) threads="$OPTARG" ;;
    c) chat_ms="$OPTARG" ;;
    x) exec_runs="$OPTARG" ;;
    o) only="$OPTARG" ;;
    q) quiet="$OPTARG" ;;
    L) keep="$OPTARG" ;;
    B) build=0 ;;
    *) echo "usage: $0 [-n RUNS] [-i INTERVAL_MS] [-l LOAD_THREADS] [-c CHAT_MS] [-x EXEC_RUNS] [-o idle,conn,chat] [-q S] [-L DIR] [-B]" >&2
       exit 64 ;;
  esac
done
command -v jq >/dev/null || { echo "jq is needed for the summary" >&2; exit 2; }

# ninja takes a lock on the build folder; another engineer's build makes it fail at once.
build_bins() {
  if [[ ! -f "$BUILD_DIR/build.ninja" ]]; then
    cmake -S "$BENCH_ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DDRAWBRIDGE_BENCH=ON -DCMAKE_CXX_COMPILER_LAUNCHER=ccache || exit 2
  fi
  local i out
  for ((i = 0; i < 60; i++)); do
    out=$(ninja -C "$BUILD_DIR" drawbridge drawbridge_restart_probe 2>&1)
    local rc=$?
    if [[ $rc -eq 0 ]]; then
      echo "$out" | tail -1
      return 0
    fi
    if grep -qi 'lock' <<<"$out"; then
      echo "build folder busy (another build): retrying in 10 s" >&2
      sleep 10
      continue
    fi
    echo "$out" | tail -30 >&2
    exit 2
  done
  echo "build folder still busy after 10 minutes" >&2
  exit 2
}
[[ $build -eq 1 ]] && build_bins
need_bin "$DRAWBRIDGE_BIN"
need_bin "$RESTART_PROBE_BIN"

# The probe is ours; the gateway it runs now is named in its pid file. If the probe had to be
# killed, that gateway is stopped here by its pid (after checking it is still a drawbridge).
PROBE_PID="" PID_FILE=""
stop_left_gateway() {
  [[ -n "$1" && -s "$1" ]] || return 0
  local gw i
  gw=$(cat "$1")
  if [[ "$gw" =~ ^[0-9]+$ ]] && kill -0 "$gw" 2>/dev/null &&
     tr '\0' ' ' <"/proc/$gw/cmdline" 2>/dev/null | grep -qF -- "$DRAWBRIDGE_BIN"; then
    echo "stopping the gateway the probe left, pid $gw" >&2
    kill -TERM "$gw" 2>/dev/null
    for ((i = 0; i < 100; i++)); do kill -0 "$gw" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$gw" 2>/dev/null && kill -KILL "$gw" 2>/dev/null
  fi
}
reexec_cleanup() {
  if [[ -n "$PROBE_PID" ]] && kill -0 "$PROBE_PID" 2>/dev/null; then
    kill -TERM "$PROBE_PID" 2>/dev/null
    local i
    for ((i = 0; i < 200; i++)); do kill -0 "$PROBE_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$PROBE_PID" 2>/dev/null && kill -KILL "$PROBE_PID" 2>/dev/null
    wait "$PROBE_PID" 2>/dev/null
  fi
  PROBE_PID=""
  stop_left_gateway "$PID_FILE"
  bench_cleanup
}
trap reexec_cleanup EXIT

bench_mktemp work
machine_line
echo "commit: $(git -C "$BENCH_ROOT" log --oneline -1)  (working tree: $(git -C "$BENCH_ROOT" status --porcelain --untracked-files=no | wc -l) modified file(s))"
echo "gateway: $DRAWBRIDGE_BIN"
echo "probe: $RESTART_PROBE_BIN"
[[ -n "$keep" ]] && mkdir -p "$keep"

FAILED=0
ROWS=()
PROBE_PREFIX=()

# part LABEL PROBE_ARGS...: one fresh gateway, RUNS hand-offs; the results in $work/LABEL.jsonl.
part() {
  local label="$1"
  shift
  local data="$work/data-$label" log="$work/gateway-$label.log" cfg="$work/config-$label.json"
  mkdir -p "$data"
  write_config "$cfg" info "" '"restart": {"delayMs": 0, "cooldownMs": 0}'
  local port
  port="$(free_port)" || exit 2
  [[ "$quiet" != 0 ]] && wait_quiet "$quiet" 80
  echo
  echo "=== $label: load $(cut -d' ' -f1-3 /proc/loadavg)"
  PID_FILE="$work/gateway-$label.pid"
  local args=(--mode reexec --port "$port" --token "$BENCH_TOKEN" --binary "$DRAWBRIDGE_BIN"
              --config "$cfg" --data-dir "$data" --log "$log" --pid-file "$PID_FILE"
              --runs "$runs" --interval-ms "$interval" --timeout-ms 10000 "$@")
  echo "+ ${PROBE_PREFIX[*]}${PROBE_PREFIX:+ }$RESTART_PROBE_BIN ${args[*]}"
  "${PROBE_PREFIX[@]}" "$RESTART_PROBE_BIN" "${args[@]}" >"$work/$label.jsonl" &
  PROBE_PID=$!
  # Bounded: each run is bounded by the probe (10 s); this bounds the whole part.
  local bound=$((60 + runs * (interval / 1000 + 12))) t0=$SECONDS
  while kill -0 "$PROBE_PID" 2>/dev/null; do
    if ((SECONDS - t0 > bound)); then
      echo "probe still running after $bound s: stopping it" >&2
      kill -TERM "$PROBE_PID" 2>/dev/null
      break
    fi
    sleep 0.2
  done
  wait "$PROBE_PID"
  local rc=$?
  PROBE_PID=""
  stop_left_gateway "$PID_FILE"
  [[ $rc -eq 0 ]] || { echo "probe rc $rc"; FAILED=1; }
  local hand_offs
  hand_offs=$(grep -c 'handed over to pid' "$log")
  echo "hand-offs in the gateway log: $hand_offs; warnings and errors: $(grep -ciE '\b(warn|warning|error|critical)\b' "$log")"
  grep -iE '\b(warn|warning|error|critical)\b' "$log" | head -8 | sed 's/^/    /'
  if [[ -n "$keep" ]]; then
    cp "$log" "$keep/gateway-$label.log"
    cp "$work/$label.jsonl" "$keep/$label.jsonl"
  fi
}

runs_values() { jq -r "select(.summary != true and .execBaseline != true) | $2 | select(. != null)" "$1"; }
summary_value() { jq -r "select(.summary == true) | $2" "$1"; }

# row LABEL WHAT TARGET_MS FILE JQ: one table row from the per-run values; verdict on the max.
row() {
  local label="$1" what="$2" target="$3" file="$4" expr="$5" line verdict="-"
  line=$(runs_values "$file" "$expr" | sort -g | awk '{v[NR]=$1} END {
    if (NR == 0) { print "0 - - - -"; exit }
    r50 = 0.5 * (NR - 1) + 1; l = int(r50); h = (l < NR) ? l + 1 : l; p50 = v[l] + (v[h] - v[l]) * (r50 - l)
    r90 = 0.9 * (NR - 1) + 1; l = int(r90); h = (l < NR) ? l + 1 : l; p90 = v[l] + (v[h] - v[l]) * (r90 - l)
    printf "%d %.2f %.2f %.2f %.2f\n", NR, v[1], p50, p90, v[NR] }')
  read -r n min p50 p90 max <<<"$line"
  if [[ "$target" != "-" && "$n" != 0 ]]; then
    verdict=$(awk -v m="$max" -v t="$target" 'BEGIN { print (m < t) ? "met" : "MISSED" }')
  fi
  ROWS+=("$(printf '| %-6s | %-52s | %-6s | %3s | %7s | %7s | %7s | %7s | %-7s |' "$label" "$what" \
    "$target" "$n" "$min" "$p50" "$p90" "$max" "$verdict")")
}

rows_for() {
  local label="$1" f="$work/$1.jsonl"
  row "$label" "SIGUSR2 -> first status answered by the new pid (ms)" 100 "$f" .sigToNewStatusMs
  row "$label" "SIGUSR2 -> old process exited (pidfd) (ms)" - "$f" .sigToOldExitMs
  [[ "${2:-}" == load ]] &&
    row "$label" "longest GET /healthz during the hand-off (ms)" - "$f" .maxRequestMs
  row "$label" "gateway log: drain finished in (ms)" - "$f" .logDrainMs
  row "$label" "gateway log: handed over in (spawn -> READY) (ms)" - "$f" .logHandOffMs
  row "$label" "gateway log: successor run() -> ready (ms)" - "$f" .logSuccessorReadyInMs
}

# perf script of the phases part -> one line per hand-off: run, then ms from SIGUSR2 (kill) to the
# old process's unlock of the gateway lock (drain done, hand-off begins), unlock -> fork, fork ->
# exec done, exec -> the successor takes the lock (loader, static init, main, config), lock ->
# "READY" written to fd 4 (its run(): store, socket, channels), READY -> the old process is gone,
# and the whole: SIGUSR2 -> old process gone.
PHASES_AWK='
{ pid = $2; t = $4; sub(":", "", t); t = t * 1000; ev = $5 }
ev == "syscalls:sys_enter_kill:" && $NF == "0x0000000c" { n++; k[n] = t; next }
n == 0 { next }
ev == "syscalls:sys_enter_flock:" && $NF == "0x00000008" && !u[n] { u[n] = t; op[n] = pid; next }
ev == "sched:sched_process_fork:" && u[n] && !f[n] && pid == op[n] { f[n] = t; split($NF, a, "="); np[n] = a[2]; next }
ev == "sched:sched_process_exec:" && f[n] && !e[n] && pid == np[n] { e[n] = t; next }
ev == "syscalls:sys_enter_flock:" && $NF == "0x00000006" && e[n] && !l[n] && pid == np[n] { l[n] = t; next }
ev == "syscalls:sys_enter_write:" && l[n] && !r[n] && pid == np[n] { r[n] = t; next }
ev == "sched:sched_process_exit:" && $NF == "group_dead=true" && u[n] && !x[n] && pid == op[n] { x[n] = t; next }
END { for (i = 1; i <= n; i++) if (x[i] && r[i]) printf "%d %.3f %.3f %.3f %.3f %.3f %.3f %.3f\n", i, u[i]-k[i], f[i]-u[i], e[i]-f[i], l[i]-e[i], r[i]-l[i], x[i]-r[i], x[i]-k[i] }'

# phase_rows FILE: a table row per phase column of FILE (lines of PHASES_AWK).
phase_rows() {
  local names=("SIGUSR2 -> drain done, lock released" "lock released -> fork" \
               "fork -> exec done" "exec -> successor takes the lock" \
               "successor lock -> READY on the pipe" "READY -> old process gone" \
               "SIGUSR2 -> old process gone (under perf)")
  local c line
  for c in 2 3 4 5 6 7 8; do
    line=$(awk -v c="$c" '{print $c}' "$1" | sort -g | awk '{v[NR]=$1} END {
      if (NR == 0) { print "0 - - - -"; exit }
      r50 = 0.5 * (NR - 1) + 1; l = int(r50); h = (l < NR) ? l + 1 : l; p50 = v[l] + (v[h] - v[l]) * (r50 - l)
      r90 = 0.9 * (NR - 1) + 1; l = int(r90); h = (l < NR) ? l + 1 : l; p90 = v[l] + (v[h] - v[l]) * (r90 - l)
      printf "%d %.2f %.2f %.2f %.2f\n", NR, v[1], p50, p90, v[NR] }')
    read -r n min p50 p90 max <<<"$line"
    ROWS+=("$(printf '| %-6s | %-52s | %-6s | %3s | %7s | %7s | %7s | %7s | %-7s |' phase \
      "${names[$((c - 2))]} (ms)" - "$n" "$min" "$p50" "$p90" "$max" -)")
  done
}

EXTRA=()
for p in ${only//,/ }; do
  case "$p" in
    idle)
      part idle --load-threads 0 --exec-baseline "$exec_runs"
      rows_for idle
      b=$(jq -r 'select(.execBaseline == true) | .ms | "n=\(.n) min \(.min*100|round/100) p50 \(.p50*100|round/100) p90 \(.p90*100|round/100) max \(.max*100|round/100) ms"' "$work/idle.jsonl")
      EXTRA+=("exec floor: spawn of \`drawbridge --version\` -> exit: $b")
      ;;
    conn)
      part conn --load-threads "$threads"
      rows_for conn load
      EXTRA+=("conn: $threads thread(s) of fresh connections, GET /healthz each, over the whole part: $(summary_value "$work/conn.jsonl" '.load | "ok \(.ok)  refused \(.refused)  reset \(.reset)  eof-before-answer \(.eof)  non-200 \(.non200)  timeout \(.timeout)  other connect errors \(.connectError)"')   [target: 0 failed] -> $(summary_value "$work/conn.jsonl" 'if .loadFailed == 0 then "met" else "MISSED: \(.loadFailed) failed; samples \(.loadFailureSamples)" end')")
      ;;
    chat)
      part chat --load-threads 0 --chat-every-ms "$chat_ms"
      rows_for chat
      EXTRA+=("chat: $(summary_value "$work/chat.jsonl" '.chat | "a chat.send every \(.everyMs) ms: sent \(.sent), acked \(.acked), final seen \(.finals), no final seen \(.noFinalSeen) (re-sent, already answered: \(.resentAlreadyAnswered)), ack statuses \(.ackStatuses | tojson), errors \(.errors), reconnects \(.reconnects); latency p50 \(.latencyMs.p50 // 0 | .*100|round/100) max \(.latencyMs.max // 0 | .*100|round/100) ms; history: ok \(.history.ok // "n/a") lost \(.history.lost // "n/a") duplicated \(.history.duplicated // "n/a")"')")
      ;;
    phases)
      command -v perf >/dev/null || { echo "phases: perf is needed" >&2; exit 2; }
      PROBE_PREFIX=(perf record -q -o "$work/perf.data"
        -e sched:sched_process_fork,sched:sched_process_exec,sched:sched_process_exit
        -e syscalls:sys_enter_flock,syscalls:sys_enter_kill
        -e syscalls:sys_enter_write --filter "fd == 4" --)
      part phases --load-threads 0
      PROBE_PREFIX=()
      perf script -i "$work/perf.data" 2>/dev/null | awk "$PHASES_AWK" >"$work/phases.txt"
      [[ -n "$keep" ]] && cp "$work/phases.txt" "$keep/"
      rows_for phases
      phase_rows "$work/phases.txt"
      ;;
    *) echo "unknown part $p" >&2; exit 64 ;;
  esac
  EXTRA+=("$p: cold start of its first gateway (spawn -> status answered): $(summary_value "$work/$p.jsonl" '.coldStartMs * 100 | round / 100') ms; runs $(summary_value "$work/$p.jsonl" '"\(.runs) of \(.runsAsked), failures \(.failures)"')")
done

echo
echo "== summary ($(date -u +%FT%TZ); load now $(cut -d' ' -f1-3 /proc/loadavg))"
printf '| %-6s | %-52s | %-6s | %3s | %7s | %7s | %7s | %7s | %-7s |\n' part measure target n min p50 p90 max verdict
printf '|--------|------------------------------------------------------|--------|-----|---------|---------|---------|---------|---------|\n'
printf '%s\n' "${ROWS[@]}"
echo
printf '%s\n' "${EXTRA[@]}"
exit "$FAILED"
