#!/usr/bin/env bash
# The openai agent's streaming overhead against the fake OpenAI endpoint (issue 13): runs
# drawbridge_openai_bench, which starts the tests' fake OpenAI server in its own process and
# the real gateway as a child (fresh data folder, free 127.0.0.1 port, one openai agent pointed
# at the fake, its API key in the child's environment only), drives it with WebSocket clients
# and measures: first-delta overhead (client receipt of the first `chat` delta - the fake's
# write of the first content delta), the delay of every delta with 200 concurrent streams, and
# the gateway's RSS per stream held open.
#
# The `direct` part reads the same streams straight from the fake: the measurement's floor.
#
#   bench/openai.sh [drawbridge_openai_bench options]
#   e.g. bench/openai.sh -q 300 -R 3 -p direct,first,streams
#        bench/openai.sh -q 300 -R 3 -p direct,streams --pace grid
#        bench/openai.sh -q 300 -p memory --mem-streams 200,1000
# Options (see --help): -p PARTS (direct,first,streams,memory), -n TURNS, --first-concurrency
# LIST, --first-deltas K, --first-gap-ms MS, --first-think-ms MS, --warmup-turns N, -s STREAMS,
# -k DELTAS, --gap-ms MS, --stagger-ms MS, --pace steady|grid|after-write, --mem-streams LIST,
# --settle-ms MS, -R REPEATS, -q MAX_WAIT_S (wait for the machine to be >= 80% idle before each
# run), -L DIR (keep logs), --json FILE, --samples FILE (every delta, and scheduler samples).
# Environment: DRAWBRIDGE_BIN, OPENAI_BENCH_BIN, BUILD_DIR, BENCH_TMP.
set -uo pipefail
source "$(dirname "$0")/common.sh"
OPENAI_BENCH_BIN="${OPENAI_BENCH_BIN:-$BUILD_DIR/bench/drawbridge_openai_bench}"
need_bin "$DRAWBRIDGE_BIN"
need_bin "$OPENAI_BENCH_BIN"

machine_line
echo "commit: $(git -C "$BENCH_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(
  [[ -n "$(git -C "$BENCH_ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ]] && echo ' (working tree has changes)')"
echo "+ $OPENAI_BENCH_BIN --bin $DRAWBRIDGE_BIN --tmp $BENCH_TMP $*"
"$OPENAI_BENCH_BIN" --bin "$DRAWBRIDGE_BIN" --tmp "$BENCH_TMP" "$@"
rc=$?
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
exit "$rc"
