#!/usr/bin/env bash
# One gateway's half of bench/peer/compare.sh. Runs INSIDE a private network namespace that
# compare.sh made for it (`unshare -rn`): it brings `lo` up and nothing else, so the gateway,
# the fake model server and the probes reach 127.0.0.1 only. Do not run it by hand outside one.
#
#   unshare -rn bench/peer/side.sh drawbridge|openclaw OUTDIR
#
# Settings come from the environment compare.sh passes (COLD_RUNS, CHAT_RUNS, RESTART_RUNS,
# PATCH_RUNS, SETTLE_S, LOAD_SESSIONS, LOAD_EVERY_MS, LOAD_S, LOAD_RESTART_S, LOAD_GRACE_S,
# NODE_BIN, OPENCLAW_MJS, PEER_DIR, DRAWBRIDGE_BIN, RESTART_PROBE_BIN). Writes OUTDIR/<gw>.json
# and keeps the gateway logs in OUTDIR/<gw>-*.log. What each scenario measures, and the
# switches used for OpenClaw, are in compare.sh's header.
set -uo pipefail
gw="${1:?drawbridge|openclaw}"
out="${2:?OUTDIR}"
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$root/build}"
source "$root/bench/common.sh"
RESTART_PROBE_BIN="${RESTART_PROBE_BIN:-$BUILD_DIR/bench/drawbridge_restart_probe}"
PROBE="$here/probe.mjs"
FAKE="$here/fake_openai.mjs"
TOKEN="bench-token-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
: "${COLD_RUNS:=5}" "${CHAT_RUNS:=20}" "${RESTART_RUNS:=5}" "${PATCH_RUNS:=10}" "${SETTLE_S:=10}"
: "${LOAD_SESSIONS:=2}" "${LOAD_EVERY_MS:=2000}" "${LOAD_S:=60}" "${LOAD_RESTART_S:=20}" "${LOAD_GRACE_S:=30}"
FAKE_PORT=18790

# ---- processes: every one remembered by PID; a gateway is stopped with its descendants ----
_side_pids=()
tree_pids() { # ROOT: the PID and all its descendants, one per line
  ps -e -o pid=,ppid= | awk -v r="$1" '{p[$1]=$2} END {
    n=1; q[1]=r; seen[r]=1; print r
    for (i=1; i<=n; i++) for (c in p) if (p[c]==q[i] && !(c in seen)) { seen[c]=1; q[++n]=c; print c } }'
}
stop_tree() { # PID GRACE_S: SIGTERM to PID, wait, then SIGKILL to whatever of its tree is left;
  # sets STOP_MS (SIGTERM → reaped)
  local pid="$1" grace="${2:-30}" i kids
  STOP_MS=0 # (0: it was gone already)
  kill -0 "$pid" 2>/dev/null || return 0
  kids="$(tree_pids "$pid" | tail -n +2)"
  STOP_T0=$EPOCHREALTIME
  kill -TERM "$pid" 2>/dev/null
  for ((i = 0; i < grace * 500; i++)); do kill -0 "$pid" 2>/dev/null || break; nap 0.002; done
  kill -0 "$pid" 2>/dev/null && { echo "  $pid ignored SIGTERM for $grace s: SIGKILL" >&2; kill -KILL "$pid" 2>/dev/null; }
  wait "$pid" 2>/dev/null
  STOP_MS=$(ms_between "$STOP_T0" "$EPOCHREALTIME") # SIGTERM → exit (reaped)
  local k
  for k in $kids; do kill -0 "$k" 2>/dev/null && kill -KILL "$k" 2>/dev/null; done
  return 0
}
side_cleanup() {
  local p
  for p in "${_side_pids[@]}"; do stop_tree "$p" 10; done
  bench_cleanup
}
trap side_cleanup EXIT

# A sleep without a process per call (polls must not fork): read with a timeout on a pipe
# nobody writes to.
exec {NAPFD}<> <(:)
nap() { read -r -t "$1" -u "$NAPFD" _ 2>/dev/null; return 0; }

# poll_200 PORT PATH TIMEOUT_S: GET PATH until 200, every 1 ms for the first 200 ms, then every
# 10 ms (a tight loop would take a core from a gateway that starts for seconds on 2 cores).
# Sets POLL_T (EPOCHREALTIME of the 200). Returns 1 on timeout or when GW_PID died.
poll_200() {
  local port="$1" path="$2" t0=${EPOCHREALTIME/./} line
  local end=$((t0 + ${3} * 1000000))
  while :; do
    line=""
    if { exec 3<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null; then
      printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$path" >&3
      IFS= read -r -t 2 line <&3 || true
      exec 3<&- 3>&-
      if [[ "$line" == "HTTP/1.1 200"* ]]; then POLL_T=$EPOCHREALTIME; return 0; fi
    fi
    kill -0 "$GW_PID" 2>/dev/null || { echo "  gateway $GW_PID exited" >&2; return 1; }
    local t=${EPOCHREALTIME/./}
    ((t > end)) && { echo "  no 200 from $path within $3 s" >&2; return 1; }
    if ((t - t0 < 200000)); then nap 0.001; else nap 0.01; fi
  done
}

# mem_tree PID: "rss_kb pss_kb processes threads" summed over the process and its descendants
mem_tree() {
  local p rss=0 pss=0 n=0 th=0 v
  for p in $(tree_pids "$1"); do
    [[ -r /proc/$p/status ]] || continue
    v=$(awk '$1=="VmRSS:"{print $2}' "/proc/$p/status"); rss=$((rss + ${v:-0}))
    v=$(awk '$1=="Threads:"{print $2}' "/proc/$p/status"); th=$((th + ${v:-0}))
    v=$(awk '$1=="Pss:"{print $2}' "/proc/$p/smaps_rollup" 2>/dev/null); pss=$((pss + ${v:-0}))
    n=$((n + 1))
  done
  echo "$rss $pss $n $th"
}
tree_names() { # "name(VmRSS KiB)" per process of the tree; for node, its script's file name
  local p n
  for p in $(tree_pids "$1"); do
    n=$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | awk '{n=$1; if ($2 ~ /\.m?js$/) n=n" "$2; print n}')
    n=$(echo "$n" | awk '{for (i=1;i<=NF;i++) {sub(".*/", "", $i)}; print}')
    printf '%s(%s KiB) ' "$n" "$(awk '$1=="VmRSS:"{print $2}' "/proc/$p/status" 2>/dev/null)"
  done
}

# ---- the network: lo only -------------------------------------------------------------------
ip link set lo up || { echo "side.sh: cannot bring lo up (not in a private namespace?)" >&2; exit 2; }
links="$(ip -o link show | awk -F': ' '{print $2}' | tr '\n' ' ')"
routes="$(ip route show 2>/dev/null | grep -vc '^$')"
if [[ "$links" != "lo " || "$routes" != 0 ]]; then
  echo "side.sh: expected only lo and no route, got links '$links', $routes route(s)" >&2
  exit 2
fi

bench_mktemp work
mkdir -p "$out"

# ---- the fake model endpoint (both gateways' turns end there) --------------------------------
"$NODE_BIN" "$FAKE" --port "$FAKE_PORT" >"$work/fake.log" 2>&1 &
_side_pids+=($!)
GW_PID=$! # (poll_200 gives up when GW_PID dies: here that is the fake server)
poll_200 "$FAKE_PORT" /v1/models 10 || { cat "$work/fake.log" >&2; exit 1; }

# ---- each gateway: config and start ----------------------------------------------------------
# new_instance NAME PORT: a fresh data folder (drawbridge) / state folder and HOME (OpenClaw)
# with its config; sets CFG, DATA, LOG.
new_instance() {
  local name="$1" port="$2"
  DATA="$work/$name"
  LOG="$work/$name.log"
  mkdir -p "$DATA"
  if [[ $gw == drawbridge ]]; then
    CFG="$DATA.json"
    cat >"$CFG" <<JSON
{
  "gateway": {"port": $port, "auth": {"token": "$TOKEN"}, "restart": {"delayMs": 0, "cooldownMs": 0}},
  "logging": {"level": "info"},
  "agents": {"main": {"type": "openai", "baseUrl": "http://127.0.0.1:$FAKE_PORT/v1", "model": "fake-echo"}}
}
JSON
  else
    mkdir -p "$DATA/state" "$DATA/home"
    CFG="$DATA/state/openclaw.json"
    cat >"$CFG" <<JSON
{
  "gateway": {"mode": "local", "port": $port, "bind": "loopback", "auth": {"mode": "token", "token": "$TOKEN"},
              "reload": {"mode": "hybrid"}},
  "update": {"checkOnStart": false},
  "telemetry": {"enabled": false},
  "discovery": {"mdns": {"mode": "off"}},
  "logging": {"file": "$DATA/state/openclaw-file.log"},
  "models": {"mode": "merge", "providers": {"fake": {
    "baseUrl": "http://127.0.0.1:$FAKE_PORT/v1", "apiKey": "sk-fake", "api": "openai-completions",
    "models": [{"id": "fake-echo", "name": "Fake echo", "reasoning": false, "input": ["text"],
                "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0},
                "contextWindow": 131072, "maxTokens": 4096}]}}},
  "agents": {"defaults": {"model": {"primary": "fake/fake-echo"}}}
}
JSON
  fi
}

# start_instance PORT: sets GW_PID and GW_T0 (EPOCHREALTIME just before the fork)
start_instance() {
  local port="$1"
  GW_T0=$EPOCHREALTIME
  if [[ $gw == drawbridge ]]; then
    "$DRAWBRIDGE_BIN" --config "$CFG" run --port "$port" --data-dir "$DATA" >"$LOG" 2>&1 &
  else
    # OpenClaw's own switches against outbound and optional background work: the set it uses for
    # its isolated "update rehearsal" gateway, less NODE_DISABLE_COMPILE_CACHE (the compile cache
    # only speeds it up), plus Bonjour off and in-process restarts (the PID stays ours).
    env HOME="$DATA/home" OPENCLAW_STATE_DIR="$DATA/state" OPENCLAW_CONFIG_PATH="$CFG" \
      TMPDIR="$PEER_DIR/tmp" NO_COLOR=1 DO_NOT_TRACK=1 \
      OPENCLAW_NO_AUTO_UPDATE=1 OPENCLAW_DISABLE_BONJOUR=1 OPENCLAW_NO_RESPAWN=1 \
      OPENCLAW_SKIP_CHANNELS=1 OPENCLAW_SKIP_CRON=1 OPENCLAW_SKIP_GMAIL_WATCHER=1 \
      OPENCLAW_SKIP_CANVAS_HOST=1 OPENCLAW_SKIP_BROWSER_CONTROL_SERVER=1 \
      OPENCLAW_SKIP_STARTUP_MODEL_PREWARM=1 \
      "$NODE_BIN" "$OPENCLAW_MJS" gateway run --port "$port" >"$LOG" 2>&1 &
  fi
  GW_PID=$!
  _side_pids+=("$GW_PID")
}

probe() { timeout -k 5 "$1" "$NODE_BIN" "$PROBE" "${@:2}" --deadline-s "$1"; }
json_or() { local f="$1"; if jq -e . "$f" >/dev/null 2>&1; then tail -1 "$f"; else echo "${2:-null}"; fi; }

echo "== $gw: $(machine_line)"
if [[ $gw == drawbridge ]]; then
  version="$("$DRAWBRIDGE_BIN" --version 2>/dev/null | head -1)"
  restart_sig=SIGUSR1
else
  version="openclaw $(jq -r .version "$(dirname "$OPENCLAW_MJS")/package.json") on node $("$NODE_BIN" --version)"
  restart_sig=SIGUSR2
fi
echo "   $version; network namespace: links '$links', $routes routes"

# ---- 1. cold start ---------------------------------------------------------------------------
# Run 0 is not counted: it warms the page cache (and OpenClaw's compile cache when empty).
: >"$work/cold.jsonl"
for ((r = 0; r <= COLD_RUNS; r++)); do
  port=$((21000 + r))
  new_instance "cold-$r" "$port"
  start_instance "$port"
  ok=1
  poll_200 "$port" /healthz 180 && th=$POLL_T || ok=0
  ((ok)) && { poll_200 "$port" /readyz 180 && tr=$POLL_T || ok=0; }
  if ((ok == 0)); then
    echo "   cold run $r: not ready; log tail:" >&2; tail -20 "$LOG" >&2
    stop_tree "$GW_PID" 30; continue
  fi
  h=$(ms_between "$GW_T0" "$th"); rd=$(ms_between "$GW_T0" "$tr")
  stop_tree "$GW_PID" 60; st=$STOP_MS
  cp "$LOG" "$out/$gw-cold-$r.log"
  printf '   cold run %d%s: spawn → /healthz 200 %10.1f ms, → /readyz 200 %10.1f ms; SIGTERM → exit %8.1f ms\n' \
    "$r" "$([[ $r == 0 ]] && echo ' (warm-up, not counted)')" "$h" "$rd" "$st"
  ((r > 0)) && echo "{\"run\": $r, \"healthzMs\": $h, \"readyzMs\": $rd, \"stopMs\": $st}" >>"$work/cold.jsonl"
done
cold_json=$(jq -s '{runs: ., readyzMs: (map(.readyzMs) | sort), healthzMs: (map(.healthzMs) | sort), stopMs: (map(.stopMs) | sort)}' "$work/cold.jsonl")

# ---- 2.–6. one instance: idle memory, chat, restarts, load with restarts, hot reload ----------
port=22000
new_instance main "$port"
start_instance "$port"
poll_200 "$port" /readyz 180 || { tail -30 "$LOG" >&2; exit 1; }
main_ready=$(ms_between "$GW_T0" "$POLL_T")
URL="ws://127.0.0.1:$port"
echo "   main instance ready in $main_ready ms; settling $SETTLE_S s"
sleep "$SETTLE_S"
read -r rss pss nproc nthreads <<<"$(mem_tree "$GW_PID")"
names="$(tree_names "$GW_PID")"
echo "   idle after $SETTLE_S s: VmRSS $rss KiB, PSS $pss KiB over $nproc process(es), $nthreads threads: $names"
mem_json="{\"settleS\": $SETTLE_S, \"rssKiB\": $rss, \"pssKiB\": $pss, \"processes\": $nproc, \"threads\": $nthreads, \"tree\": $(jq -Rn --arg s "$names" '$s')}"

echo "   chat: $CHAT_RUNS turns (+1 warm-up) through the fake model"
probe 600 chat --url "$URL" --token "$TOKEN" --runs "$CHAT_RUNS" --warmup 1 2>&1 >"$work/chat.json" | sed 's/^/   /' >&2
chat_json=$(json_or "$work/chat.json")

echo "   restart to ready: $RESTART_RUNS × $restart_sig"
if [[ $gw == drawbridge ]]; then
  # Its restart is shorter than any poll interval: its own probe tells the new generation's 200
  # by the generation counter (bench/restart.sh, part 2).
  timeout -k 5 600 "$RESTART_PROBE_BIN" --port "$port" --token "$TOKEN" --mode idle --runs "$RESTART_RUNS" \
    --server-pid "$GW_PID" >"$work/restart.jsonl" 2>"$work/restart.err"
  rc=$?
  restart_json=$(jq -s --argjson rc "$rc" '[.[] | select(.requestToReadyMs != null) | .requestToReadyMs] | sort |
    {mode: "restart", signal: "SIGUSR1", tool: "drawbridge_restart_probe --mode idle", failures: (if $rc == 0 then 0 else 1 end),
     signalToReadyMs: {n: length, min: .[0], p50: (if length % 2 == 1 then .[(length - 1) / 2] else (.[length / 2 - 1] + .[length / 2]) / 2 end), max: .[-1]}}' "$work/restart.jsonl")
  echo "$restart_json" | jq -c .signalToReadyMs | sed 's/^/   SIGUSR1 → \/readyz 200 (ms): /'
else
  probe 900 restart --port "$port" --pid "$GW_PID" --signal SIGUSR2 --runs "$RESTART_RUNS" --settle-ms 3000 \
    2>&1 >"$work/restart.json" | sed 's/^/   /' >&2
  restart_json=$(json_or "$work/restart.json")
fi
poll_200 "$port" /readyz 180 || echo "   not ready after the restarts" >&2

echo "   load: $LOAD_SESSIONS sessions, a message every $LOAD_EVERY_MS ms each, $LOAD_S s, $restart_sig every $LOAD_RESTART_S s"
probe $((LOAD_S + LOAD_GRACE_S + 300)) load --url "$URL" --token "$TOKEN" --sessions "$LOAD_SESSIONS" \
  --every-ms "$LOAD_EVERY_MS" --duration "$LOAD_S" --pid "$GW_PID" --signal "$restart_sig" \
  --restart-every "$LOAD_RESTART_S" --grace "$LOAD_GRACE_S" 2>&1 >"$work/load.json" | sed 's/^/   /' >&2
load_json=$(json_or "$work/load.json")
read -r rss2 pss2 nproc2 _ <<<"$(mem_tree "$GW_PID")"
echo "   after the load: VmRSS $rss2 KiB, PSS $pss2 KiB over $nproc2 process(es)"

poll_200 "$port" /readyz 180 || echo "   not ready after the load" >&2
echo "   hot reload: $PATCH_RUNS × config.patch messages.inbound.debounceMs"
probe 600 patch --url "$URL" --token "$TOKEN" --runs "$PATCH_RUNS" --gap-ms 300 \
  --patch '{"messages":{"inbound":{"debounceMs":VALUE}}}' 2>&1 >"$work/patch.json" | sed 's/^/   /' >&2
patch_json=$(json_or "$work/patch.json")

alive=$(kill -0 "$GW_PID" 2>/dev/null && echo true || echo false)
stop_tree "$GW_PID" 60; stop_ms=$STOP_MS
cp "$LOG" "$out/$gw-main.log"


jq -n --arg gw "$gw" --arg version "$version" --arg links "$links" --argjson routes "$routes" \
  --argjson cold "$cold_json" --argjson mem "$mem_json" --argjson chat "$chat_json" \
  --argjson restart "$restart_json" --argjson load "$load_json" --argjson patch "$patch_json" \
  --argjson mainReadyMs "$main_ready" --argjson alive "$alive" --argjson stopMs "$stop_ms" \
  --argjson after "{\"rssKiB\": $rss2, \"pssKiB\": $pss2, \"processes\": $nproc2}" \
  '{gateway: $gw, version: $version, network: {links: $links, routes: $routes},
    coldStart: $cold, idleMemory: $mem, chat: $chat, restart: $restart, load: $load, memoryAfterLoad: $after,
    hotReload: $patch, mainReadyMs: $mainReadyMs, aliveAtEnd: $alive, stopMs: $stopMs}' >"$out/$gw.json"
echo "   wrote $out/$gw.json"
