#!/usr/bin/env bash
# The lifecycle guarantees under load (issue 14): runs drawbridge_chaos (bench/chaos/), which
# starts the gateway, the fake Telegram server, ngircd and drawbridge_loadgen on 127.0.0.1,
# injects restarts, reloads and kills on a seeded schedule while WebSocket, Telegram and IRC
# messages flow, and checks every guarantee (exit 1 when one breaks). Then draws the picture:
# latency over time with every injected event marked (gnuplot, PNG), when gnuplot is installed
# (scripts/install-deps.sh --with-bench).
#
#   bench/chaos.sh [-o OUT_DIR] [drawbridge_chaos options]
#   e.g. bench/chaos.sh -o /tmp/chaos -d 300 -r 500 -c 250 --seed 7        (the issue's 5 minutes)
#        bench/chaos.sh -o /tmp/chaos -d 60 --seed 1                       (one minute, defaults)
# Results in OUT_DIR (default $BENCH_TMP/drawbridge-chaos): chaos.json, the summary
# (summary.txt), latency.tsv, events.tsv, rss.tsv, gateway.log, loadgen.json, chaos.png.
# Options of drawbridge_chaos: --help. Environment: DRAWBRIDGE_BIN, LOADGEN_BIN, CHAOS_BIN,
# BUILD_DIR, BENCH_TMP.
set -uo pipefail
source "$(dirname "$0")/common.sh"
CHAOS_BIN="${CHAOS_BIN:-$BUILD_DIR/bench/drawbridge_chaos}"
out="$BENCH_TMP/drawbridge-chaos"
if [[ "${1:-}" == "-o" ]]; then
  out="$2"
  shift 2
fi
need_bin "$DRAWBRIDGE_BIN"
need_bin "$LOADGEN_BIN"
need_bin "$CHAOS_BIN"
mkdir -p "$out"

{
  machine_line
  echo "commit: $(git -C "$BENCH_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(
    [[ -n "$(git -C "$BENCH_ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ]] && echo ' (working tree has changes)')"
  echo "+ drawbridge_chaos --binary $DRAWBRIDGE_BIN --out $out $*"
} | tee "$out/summary.txt"
"$CHAOS_BIN" --binary "$DRAWBRIDGE_BIN" --loadgen "$LOADGEN_BIN" --out "$out" "$@" | tee -a "$out/summary.txt"
rc=${PIPESTATUS[0]}
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/summary.txt"

if [[ -s "$out/latency.tsv" ]]; then
  if command -v gnuplot >/dev/null; then
    title="$(jq -r '"drawbridge under chaos: \(.options.rate) WS msg/s over \(.options.sessions) sessions, \(.options.telegramRate) Telegram/s, \(.options.ircRate) IRC/s; \(.events | length) events in \(.windowS | floor) s"' "$out/chaos.json" 2>/dev/null || echo drawbridge under chaos)"
    xmax="$(jq -r '.windowS | ceil' "$out/chaos.json" 2>/dev/null || echo 0)"
    gnuplot -e "dir='$out'; chart_title='$title'; xmax=${xmax:-0}" "$(dirname "$0")/chaos/plot.gp" &&
      echo "picture: $out/chaos.png"
  else
    echo "gnuplot not installed (scripts/install-deps.sh --with-bench): no picture"
  fi
fi
exit "$rc"
