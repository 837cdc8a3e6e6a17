#!/usr/bin/env bash
# Crash safety under load (issue 5): the Release gateway (fresh data folder, SQLite store, echo
# agent) serves drawbridge_loadgen --reconnect --verify (open loop, RATE msg/s over SESSIONS
# sessions) while the load generator sends it SIGKILL at a random point 0.5..1.5 x EVERY s after
# each start (--kill-every, --kill-max KILLS); this script starts it again on the same port and
# data folder every time it dies, and hands the new pid to the load generator through a pid
# file. At the end the load generator reads every session's transcript:
#   acknowledged  messages the gateway acknowledged (chat.send ok)
#   lost          acknowledged (or in the transcript) and never answered       target 0
#   duplicated    answered twice in the transcript                             target 0
#   dup finals    the same final chat event seen twice by a client: the documented window (a part
#                 delivered to the channel, then the process died before marking it sent; the
#                 next start sends it again). Measured at the client, not in the transcript.
#
#   bench/killloop.sh [-k KILLS] [-e EVERY_S] [-r RATE] [-c SESSIONS] [-t TURN_DELAY_MS]
#                     [-q MAX_WAIT_S] [-L LOG_DIR] [-- extra loadgen args]
# -q S: wait up to S s for the machine to be >= 80% idle first (default 0).
# -L DIR: keep the gateway log and the JSON result there (the work folder is removed on exit).
# Environment: DRAWBRIDGE_BIN, LOADGEN_BIN, BUILD_DIR, BENCH_TMP.
set -uo pipefail
source "$(dirname "$0")/common.sh"

kills=50 every=1 rate=200 sessions=50 turn_delay=0 quiet=0 keep=""
while getopts "k:e:r:c:t:q:L:" o; do
  case "$o" in
    k) kills="$OPTARG" ;;
    e) every="$OPTARG" ;;
    r) rate="$OPTARG" ;;
    c) sessions="$OPTARG" ;;
    t) turn_delay="$OPTARG" ;;
    q) quiet="$OPTARG" ;;
    L) keep="$OPTARG" ;;
    *) echo "usage: $0 [-k KILLS] [-e EVERY_S] [-r RATE] [-c SESSIONS] [-t TURN_DELAY_MS] [-q S] [-L DIR] [-- loadgen args]" >&2
       exit 64 ;;
  esac
done
shift $((OPTIND - 1))
need_bin "$DRAWBRIDGE_BIN"
need_bin "$LOADGEN_BIN"
command -v jq >/dev/null || { echo "jq is needed for the summary" >&2; exit 2; }

bench_mktemp work
machine_line
echo "gateway: $DRAWBRIDGE_BIN   loadgen: $LOADGEN_BIN"
[[ -n "$keep" ]] && mkdir -p "$keep"
[[ "$quiet" != 0 ]] && wait_quiet "$quiet" 80

DATA="$work/data"
LOG="$work/gateway.log"
PIDFILE="$work/gateway.pid"
CFG="$work/config.json"
mkdir -p "$DATA"
agent="\"agents\": {\"main\": {\"type\": \"echo\"$( ((turn_delay > 0)) && echo ", \"delayMs\": $turn_delay")}}"
write_config "$CFG" info "$agent"
PORT="$(free_port)" || exit 2

# start_one: one gateway process on $PORT and $DATA, its output appended to $LOG; sets GW_PID and
# publishes it in $PIDFILE (written whole, then renamed: the load generator never reads half).
starts=0
start_one() {
  starts=$((starts + 1))
  echo "=== start $starts ($(date -u +%T.%N))" >>"$LOG"
  GW_T0=$EPOCHREALTIME
  "$DRAWBRIDGE_BIN" --config "$CFG" run --port "$PORT" --data-dir "$DATA" >>"$LOG" 2>&1 &
  GW_PID=$!
  _bench_pids+=("$GW_PID")
  echo "$GW_PID" >"$PIDFILE.tmp" && mv "$PIDFILE.tmp" "$PIDFILE"
}

start_one
wait_ready "$PORT" 10 || { cat "$LOG" >&2; exit 1; }
echo "gateway pid $GW_PID on port $PORT, data $DATA"

# Long enough for every kill; the load generator stops EVERY s after the last restart.
duration=$(awk -v k="$kills" -v e="$every" 'BEGIN{printf "%d", k * (1.5 * e + 2) + 10}')
echo "+ $LOADGEN_BIN --url ws://127.0.0.1:$PORT --token $BENCH_TOKEN --connections $sessions" \
     "--rate $rate --duration $duration --warmup 0 --grace 15 --reconnect --verify" \
     "--kill-every $every --kill-max $kills --server-pid-file $PIDFILE --give-up 60 --allow-loss $*"
"$LOADGEN_BIN" --url "ws://127.0.0.1:$PORT" --token "$BENCH_TOKEN" --connections "$sessions" \
  --rate "$rate" --duration "$duration" --warmup 0 --grace 15 --reconnect --verify \
  --kill-every "$every" --kill-max "$kills" --server-pid-file "$PIDFILE" --give-up 60 --allow-loss \
  "$@" \
  >"$work/killloop.json" &
LG_PID=$!
_bench_pids+=("$LG_PID")

# Event-driven: wait for whichever ends first, the gateway (killed: start it again) or the load
# generator (done). No polling loop.
restart_ms=()
deaths=0 unexpected=0
while :; do
  wait -n -p ended "$GW_PID" "$LG_PID"
  rc=$?
  if [[ "${ended:-}" == "$LG_PID" ]]; then
    lg_rc=$rc
    break
  fi
  if [[ "${ended:-}" != "$GW_PID" ]]; then continue; fi
  deaths=$((deaths + 1))
  # 137 = 128 + SIGKILL; anything else is the gateway failing on its own.
  ((rc == 137)) || { unexpected=$((unexpected + 1)); echo "gateway exited with $rc (not SIGKILL)" >&2; }
  t_dead=$EPOCHREALTIME
  start_one
  if ! wait_ready "$PORT" 10; then
    echo "gateway did not come back after death $deaths" >&2
    tail -40 "$LOG" >&2
    kill -TERM "$LG_PID" 2>/dev/null
    wait "$LG_PID"
    lg_rc=99
    break
  fi
  restart_ms+=("$(ms_between "$t_dead" "$READY_T")")
done

ready_after=$(http_status "$PORT" /readyz)
stop_gateway "$GW_PID"
echo "gateway stopped (rc $STOP_RC); load generator rc $lg_rc; gateway deaths $deaths (not by SIGKILL: $unexpected); /readyz after the run: $ready_after"
[[ -n "$keep" ]] && cp "$LOG" "$work/killloop.json" "$keep/"

suspended=$(grep -c 'is suspended' "$LOG")
stale=$(grep -c 'older than messages.replyTtlMs' "$LOG")
repaired=$(grep -c 'did not shut down cleanly' "$LOG")
# What the starts replayed (the gateway's "replaying N unfinished message(s) and M undelivered
# reply part(s)" line). The M parts include every part that was in the duplicate window (sent
# to the channel, not yet marked sent): an upper bound of the window, since the rest were
# simply never sent before the kill.
replayed_msgs=$(grep -o 'replaying [0-9]* unfinished' "$LOG" | awk '{s+=$2} END{print s+0}')
replayed_parts=$(grep -o 'and [0-9]* undelivered reply part' "$LOG" | awk '{s+=$2} END{print s+0}')
r=$(jq -r '
  "sent \(.sent)  acknowledged \(.acked)  finals \(.finals)  finals missed while reconnecting \(.finalMissed)  unsent \(.unsent // 0)  errors \(.errors)",
  "verify (transcripts): checked \(.verify.messagesChecked // 0), ok \(.verify.ok // 0), lost \(.verify.lost // "n/a") (acknowledged or journaled \(.verify.lostAccepted // "n/a"), never accepted \(.verify.lostNeverAccepted // "n/a")), duplicated replies \(.verify.duplicatedReplies // "n/a"), duplicated user entries \(.verify.duplicatedUserEntries // "n/a"), unexpected entries \(.verify.unexpectedEntries // "n/a")",
  "event level: duplicate finals (the documented window) \(.duplicates), no final and no reply \(.lost)",
  "kills: \(.kill.killsSent) SIGKILL sent (\(.kill.killFailures) failed), \(.kill.restartsSeen) restarts seen; SIGKILL -> new pid median \(.kill.killToNewPidMsMedian * 10 | round / 10) ms, max \(.kill.killToNewPidMsMax * 10 | round / 10) ms",
  "reconnect: disconnects \(.reconnect.disconnects), reconnects \(.reconnect.reconnects) (\(.reconnect.reconnectFailures) failed attempts), re-sent with the same key \(.reconnect.resentSameKey), longest down \(.reconnect.longestDownMs | round) ms",
  "latency ms (finals received): p50 \(.latencyMs.p50 * 100 | round / 100)  p90 \(.latencyMs.p90 * 100 | round / 100)  p99 \(.latencyMs.p99 * 100 | round / 100)  max \(.latencyMs.max * 100 | round / 100)"
' "$work/killloop.json")
rs=$(printf '%s\n' "${restart_ms[@]}" | stats_line)

echo
echo "== summary ($(date -u +%FT%TZ); load now $(cut -d' ' -f1-3 /proc/loadavg))"
echo "$kills kill -9 cycles, $rate msg/s over $sessions sessions, echo delay ${turn_delay} ms, SIGKILL 0.5..1.5 x $every s after each start"
echo "$r"
echo "gateway death -> /readyz 200 again (script restart, ms): $rs"
echo "gateway log: starts that repaired mid-turn sessions $repaired, sessions suspended $suspended, stale-reply lines $stale"
echo "replayed at the starts: $replayed_msgs unfinished message(s), $replayed_parts undelivered reply part(s) (upper bound of parts in the duplicate window)"

# Judged on the transcripts (--allow-loss: a duplicate final event is the documented window, not
# a failure; a duplicate or missing transcript entry is).
FAILED=0
[[ "$lg_rc" == 0 ]] || FAILED=1
bad=$(jq -r '[.verify.lost, .verify.duplicatedReplies, .verify.duplicatedUserEntries,
              .verify.sessionsUnreadable, .verify.sessionsTruncated, .verify.wrongSession,
              .verify.unexpectedEntries] | map(. // 1) | add' "$work/killloop.json")
[[ "$bad" == 0 ]] || { echo "FAILED: lost, duplicated or unexpected transcript entries" >&2; FAILED=1; }
((suspended == 0 && unexpected == 0)) || FAILED=1
exit "$FAILED"
